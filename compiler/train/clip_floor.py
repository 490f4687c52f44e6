"""QCFS clip-floor activation (Bu et al., ICLR 2022) for ANN training, and a helper that swaps it for ReLU.

h(z) = (lambda / L) * clip(floor(z * L / lambda + 1/2), 0, L), with a trainable bound lambda (> 0, float, one per
layer) and L quantization levels; floor has a straight-through gradient. The frontend converts a ClipFloor to an
IF neuron with threshold theta = lambda (method "qcfs", no calibration); with initial potential theta/2 the
expected conversion error is zero for every T, and the SNN at T = L reproduces the ANN closely.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return g


class ClipFloor(nn.Module):
    """Quantization-clip-floor-shift activation: L levels in [0, lambda], shift phi = 1/2 (float in, float out).

    levels: L >= 1 (use L about the T you will run; L = 4 or 8 for low latency)
    init: initial lambda (the layer's activation bound, in activation units)."""

    def __init__(self, levels: int = 4, init: float = 4.0, shift: float = 0.5) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"ClipFloor: levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.shift = float(shift)
        self.lam = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.lam.abs() + 1e-6
        q = _FloorSTE.apply(x * self.levels / lam + self.shift)
        return torch.clamp(q, 0, self.levels) * (lam / self.levels)

    @property
    def threshold(self) -> float:
        """The IF threshold this layer converts to (lambda, float)."""
        return float(self.lam.detach().abs()) + 1e-6

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lambda={self.threshold:.4g}"


def swap_relu(model: nn.Module, levels: int = 4, calib: np.ndarray | None = None,
              percentile: float = 99.9) -> nn.Module:
    """Replace every ``nn.ReLU`` submodule of ``model`` (in place) by ``ClipFloor(levels)``; returns the model.

    With ``calib`` (float inputs (N, ...)), each lambda starts at the ``percentile`` of that ReLU's activations on
    it (a good start for fine-tuning a trained ReLU net); otherwise lambda starts at 4.0."""
    inits: dict[str, float] = {}
    if calib is not None:
        acts: dict[str, list] = {}
        hooks = []
        for name, m in model.named_modules():
            if isinstance(m, nn.ReLU):
                hooks.append(m.register_forward_hook(
                    lambda mod, i, o, name=name: acts.setdefault(name, []).append(o.detach().ravel())))
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.as_tensor(np.asarray(calib, dtype=np.float32)))
        model.train(was)
        for h in hooks:
            h.remove()
        for name, a in acts.items():
            v = float(np.percentile(torch.cat(a).numpy(), percentile))
            inits[name] = v if v > 0 else 1.0
    for name, m in list(model.named_modules()):
        for cname, child in list(m.named_children()):
            full = f"{name}.{cname}" if name else cname
            if isinstance(child, nn.ReLU):
                setattr(m, cname, ClipFloor(levels, init=inits.get(full, 4.0)))
    return model
