"""The max-pooling conversion rule: rate-coded spikes have no exact max, so snnc trains with average pooling.

``swap_maxpool(model)`` replaces every ``nn.MaxPool2d`` by an ``nn.AvgPool2d`` of the same kernel, stride and
padding (in place) -- do it before training (or fine-tune after swapping). The converter raises
``UnsupportedLayerError`` naming the layer for any MaxPool2d / F.max_pool2d it meets."""
from __future__ import annotations

import torch.nn as nn
from snnc.ir.errors import UnsupportedLayerError


def swap_maxpool(model: nn.Module) -> nn.Module:
    """Replace each ``nn.MaxPool2d`` submodule by the matching ``nn.AvgPool2d``; returns the model."""
    for name, m in list(model.named_modules()):
        for cname, child in list(m.named_children()):
            if isinstance(child, nn.MaxPool2d):
                if child.dilation not in (1, (1, 1)) or child.return_indices:
                    raise UnsupportedLayerError(f"layer {(name + '.' if name else '') + cname!r} (MaxPool2d): "
                                                "dilation/return_indices have no average-pool equivalent")
                setattr(m, cname, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                               ceil_mode=child.ceil_mode))
    return model
