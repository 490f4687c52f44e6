"""Pass: replace the weights of chosen synapses by alpha * sign(W) (ALBSNN binary layers).

alpha = mean |W| (the L2-optimal scale for sign(W), XNOR-Net) per output channel (Conv2d output channel, Affine
row; ``per_channel=True``) or one per layer. sign(0) is +1, so every weight of a scale group takes one of exactly
two values, +alpha or -alpha (a group whose weights are all zero keeps alpha = 0: one value).

Marked synapses carry ``snnc.binary = True`` and ``snnc.binary_scale`` = "channel" | "layer"; the quantize pass
turns them into integer weights +-K per group (see its docstring: per-layer alpha is folded into the target
layer's scale so that K is a power of two and Lava's Dense holds the sign in a 2-bit field; per-channel alpha
keeps multi-bit mantissas +-m_c, because Lava has one weight_exp per process)."""
from __future__ import annotations

from collections.abc import Iterable

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError
from snnc.ir.graph import Graph, copy_graph, topo_order, validate

WEIGHTED = (nir.Affine, nir.Linear, nir.Conv2d)


def layer_label(name: str, node) -> str:
    """The name a user gives a synapse: its source torch module (``snnc.source``), else the node name."""
    src = cv.meta(node, cv.SOURCE)
    return str(src) if src else name


def weighted_layers(graph: Graph) -> list[tuple[str, str]]:
    """(label, node name) of every weighted synapse (Affine/Linear/Conv2d) in topological order."""
    return [(layer_label(n, graph.nodes[n]), n) for n in topo_order(graph)
            if isinstance(graph.nodes[n], WEIGHTED) and not cv.meta(graph.nodes[n], cv.FROM_BN, False)]


def resolve_layers(graph: Graph, layers: Iterable[str]) -> list[str]:
    """Node names of ``layers`` given as labels (torch module names) or node names; unknown names raise."""
    table = weighted_layers(graph)
    by_label = {lab: n for lab, n in table}
    names = {n for _, n in table}
    out = []
    for lay in layers:
        if lay in names:
            out.append(lay)
        elif lay in by_label:
            out.append(by_label[lay])
        else:
            raise GraphError(f"layer {lay!r}: no weighted synapse of that name to binarize; weighted layers are "
                             f"{[lab for lab, _ in table]}")
    return out


def binary_weight(w: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(alpha * sign(W), alpha): alpha = mean |W| over each output channel (axis 0) or over all of W."""
    w = np.asarray(w, dtype=np.float64)
    axes = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
    alpha = np.abs(w).mean(axis=axes, keepdims=True) if w.size else np.zeros((1,) * w.ndim)
    sign = np.where(w >= 0, 1.0, -1.0)
    return alpha * sign, np.broadcast_to(alpha, (w.shape[0],) + (1,) * (w.ndim - 1)).reshape(-1).copy()


def binarize(graph: Graph, layers: Iterable[str], per_channel: bool = True) -> Graph:
    """Float graph -> float graph whose ``layers`` (labels or synapse names) hold alpha * sign(W)."""
    if cv.graph_kind(graph) == cv.INTEGER:
        raise GraphError("binarize runs on a float graph (before quantize); this graph is already integer")
    g = copy_graph(graph)
    for name in resolve_layers(g, layers):
        node = g.nodes[name]
        w = np.asarray(node.weight, dtype=np.float64)
        if not np.all(np.isfinite(w)):
            raise GraphError(f"layer {name!r}: field 'weight' holds non-finite values; cannot binarize")
        node.weight, _ = binary_weight(w, per_channel)
        node.metadata = dict(node.metadata or {})
        node.metadata[cv.BINARY] = True
        node.metadata[cv.BINARY_SCALE] = "channel" if per_channel else "layer"
    validate(g)
    return g
