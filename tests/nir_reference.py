"""A reference reading of a feed-forward NIR graph, written from NIR's equations independently of snnc's lowering.

It steps every node once per time-step in topological order, with no delay on connections (the frameworks'
convention: a layer sees this step's input), so snnc's layer at connection depth k spikes k steps later.
Euler steps of size ``dt`` (seconds): IF v += dt·r·I; LIF v += dt/tau·(v_leak − v + r·I); spike when
v > v_threshold, then v −= v_threshold ("subtract") or v = 0 ("zero"). float64 throughout.
Supported: Input, Output, Affine, Linear, Scale, Conv2d, SumPool2d, AvgPool2d, Flatten, IF, LIF.
(Imported as a top-level module: pytest puts ``tests/`` on sys.path for its conftest.)
"""
from __future__ import annotations

import networkx as nx
import nir
import numpy as np
import torch
import torch.nn.functional as F


def _a(v) -> np.ndarray:
    return np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float64)


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(_a(v)).astype(int).ravel()
    return (int(a[0]), int(a[-1]))


def _apply(node, h: torch.Tensor) -> torch.Tensor:
    """One stateless node on a batch (N, ...)."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        y = h @ torch.as_tensor(_a(node.weight)).T
        return y + torch.as_tensor(_a(node.bias)) if isinstance(node, nir.Affine) else y
    if isinstance(node, nir.Scale):
        return h * torch.as_tensor(_a(node.scale))
    if isinstance(node, nir.Conv2d):
        b = torch.as_tensor(_a(node.bias)) if node.bias is not None else None
        return F.conv2d(h, torch.as_tensor(_a(node.weight)), b, stride=_pair(node.stride),
                        padding=_pair(node.padding), dilation=_pair(node.dilation), groups=int(_a(node.groups)))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = _pair(node.kernel_size)
        y = F.avg_pool2d(h, k, _pair(node.stride), _pair(node.padding))
        return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
    if isinstance(node, nir.Flatten):
        return h.reshape(h.shape[0], -1)
    raise TypeError(f"reference: no stateless rule for {type(node).__name__}")


def run_reference(graph: nir.NIRGraph, x: np.ndarray, steps: int, dt: float = 1.0,
                  reset: str = "subtract") -> dict[str, np.ndarray]:
    """Spikes of every IF/LIF node, (steps, N, *shape) bool, for the static input ``x`` (N, *input shape)
    presented every step."""
    order = list(nx.topological_sort(nx.DiGraph([tuple(e) for e in graph.edges])))
    preds = {n: [s for s, d in graph.edges if d == n] for n in order}
    xin = torch.as_tensor(np.asarray(x, np.float64))
    v: dict[str, torch.Tensor] = {}
    out: dict[str, list[np.ndarray]] = {}
    for _ in range(steps):
        val: dict[str, torch.Tensor] = {}
        for n in order:
            node = graph.nodes[n]
            if isinstance(node, nir.Input):
                val[n] = xin
                continue
            h = sum(val[p] for p in preds[n])
            if isinstance(node, nir.Output):
                val[n] = h
            elif isinstance(node, (nir.IF, nir.LIF)):
                r = torch.as_tensor(_a(node.r))
                th = torch.as_tensor(_a(node.v_threshold))
                vv = v.get(n, torch.zeros_like(h))
                if isinstance(node, nir.IF):
                    vv = vv + dt * r * h
                else:
                    vv = vv + dt / torch.as_tensor(_a(node.tau)) * (torch.as_tensor(_a(node.v_leak)) - vv + r * h)
                s = vv > th
                vv = vv - th * s if reset == "subtract" else torch.where(s, torch.zeros_like(vv), vv)
                v[n] = vv
                val[n] = s.double()
                out.setdefault(n, []).append(s.numpy())
            else:
                val[n] = _apply(node, h)
    return {n: np.stack(r) for n, r in out.items()}
