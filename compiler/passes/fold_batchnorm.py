"""Pass: fold every BatchNorm-derived affine (``snnc.from_bn``) into the Conv2d/Affine before it."""
from __future__ import annotations

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.graph import Graph, copy_graph, predecessors, successors, validate


def fold_batchnorm(graph: Graph) -> Graph:
    """Compose BN (per-channel y = s*x + t) into the preceding Conv2d/Affine: W' = s*W, b' = s*b + t.

    A BN whose predecessor is not a weighted layer with a single consumer is left in place (fuse_synapses
    composes it later)."""
    g = copy_graph(graph, share_arrays=True)  # it assigns new arrays, never writes into one
    for name in list(g.nodes):
        bn = g.nodes.get(name)
        if bn is None or not cv.meta(bn, cv.FROM_BN, False):
            continue
        preds = predecessors(g, name)
        if len(preds) != 1:
            continue
        prev = g.nodes[preds[0]]
        if len(successors(g, preds[0])) != 1:
            continue
        if isinstance(bn, nir.Conv2d):
            s = np.asarray(bn.weight, dtype=np.float64).reshape(-1)
        else:
            s = np.diag(np.asarray(bn.weight, dtype=np.float64))
        t = np.asarray(bn.bias, dtype=np.float64)
        if isinstance(prev, nir.Conv2d) and isinstance(bn, nir.Conv2d):
            prev.weight = np.asarray(prev.weight, dtype=np.float64) * s[:, None, None, None]
        elif isinstance(prev, nir.Affine) and isinstance(bn, nir.Affine):
            prev.weight = np.asarray(prev.weight, dtype=np.float64) * s[:, None]
        else:
            continue
        prev.bias = np.asarray(prev.bias, dtype=np.float64) * s + t
        prev.metadata = dict(prev.metadata or {})
        prev.metadata[cv.FOLDED_BN] = name
        outs = successors(g, name)
        g.edges = [e for e in g.edges if name not in e] + [(preds[0], o) for o in outs]
        del g.nodes[name]
    validate(g)
    return g
