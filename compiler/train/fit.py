"""Supervised training of a torch classifier (Adam + cross-entropy): the trainer that fine-tuning and the examples
pass around (``snnc.train.binary_finetune`` takes one as an argument)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from snnc.ir.errors import DataError, one_line


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 30, lr: float = 3e-3, seed: int = 0,
          batch: int = 64) -> nn.Module:
    """Adam + cross-entropy, cosine learning rate, for ``epochs`` epochs of mini-batches; images (N, C, H, W) get a
    random shift of up to one pixel per batch. CPU, deterministic for a seed. Returns the model in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            xb = xt[idx]
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            if xb.dim() == 4:
                xb = torch.roll(xb, shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` (float inputs) whose argmax output equals the integer label ``y``."""
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(x))
            return float((out.argmax(1).numpy() == y).mean())
    except Exception as e:  # the data does not fit the model (shape, dtype) or the output is not (N, classes)
        raise DataError(f"the model failed on data of shape {tuple(np.shape(x))}: {type(e).__name__}: "
                        f"{one_line(e, 300)}") from None
