"""Straight-through-estimator fine-tuning of a torch model whose chosen layers are binary (alpha * sign W).

Forward uses alpha * sign(W) (alpha = mean |W| per output channel, or per tensor); backward passes the gradient
to the latent float W unchanged (STE). BatchNorm statistics re-adapt to the binary weights while training. After
training the parametrization is removed leaving the weights exactly alpha * sign(W), so a per-channel binary conv
stays per-channel binary after BatchNorm folding (BN scales each output channel by one factor)."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from snnc.ir.errors import UnsupportedLayerError
from snnc.train.fit import fit
from torch.nn.utils import parametrize

Trainer = Callable[..., nn.Module]  # (model, x, y, epochs=, lr=, seed=) -> trained model (snnc.train.fit.fit)


class SignSTE(nn.Module):
    """Parametrization W -> alpha * sign(W) with a straight-through gradient."""

    def __init__(self, per_channel: bool = True) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim())) if self.per_channel else tuple(range(w.dim()))
        alpha = w.abs().mean(dim=dims, keepdim=True)
        wb = alpha * torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
        return w + (wb - w).detach()


def _modules_by_label(model: nn.Module) -> dict[str, nn.Module]:
    """Weighted modules by their torch.fx node name (dots become underscores; a name starting with a digit, as in
    an nn.Sequential, gets a leading underscore) and dotted name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fx = name.replace(".", "_")
            out[name] = out[fx] = m
            if fx[:1].isdigit():
                out["_" + fx] = m
    return out


def finetune_binary(model: nn.Module, layers: list[str], x: np.ndarray, y: np.ndarray, epochs: int = 10,
                    lr: float = 1e-3, per_channel: bool = True, seed: int = 0, trainer: Trainer = fit) -> nn.Module:
    """A copy of ``model`` with ``layers`` (module / fx names) binarized and fine-tuned ``epochs`` epochs (STE) by
    ``trainer``."""
    m = copy.deepcopy(model)
    table = _modules_by_label(m)
    for lay in layers:
        if lay not in table:
            raise UnsupportedLayerError(f"layer {lay!r}: no Conv2d/Linear of that name to fine-tune binary; "
                                        f"candidates {sorted(k for k in table if '.' not in k)}")
        parametrize.register_parametrization(table[lay], "weight", SignSTE(per_channel))
    if epochs > 0:
        trainer(m, x, y, epochs=epochs, lr=lr, seed=seed)
    for lay in layers:
        if parametrize.is_parametrized(table[lay], "weight"):
            parametrize.remove_parametrizations(table[lay], "weight", leave_parametrized=True)
    return m.eval()


def finetuned_float_graph(model: nn.Module, layers: list[str], x: np.ndarray, y: np.ndarray, epochs: int = 10,
                          per_channel: bool = True, options=None, trainer: Trainer = fit):
    """Fine-tune (``finetune_binary``) then compile up to the fused float graph (``snnc.pipeline.float_graph``)."""
    from snnc.pipeline import float_graph

    m = finetune_binary(model, layers, x, y, epochs, per_channel=per_channel, trainer=trainer)
    return float_graph(m, x, options)
