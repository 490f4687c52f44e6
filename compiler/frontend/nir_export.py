"""NIR export for a named framework: rewrite the few nodes a framework's NIR reader does not know.

snnc's own files (``snnc.ir.graph.write``) use standard NIR nodes plus ``snnc.*`` metadata; they read back
unchanged. Some readers know fewer node types; ``to_framework`` writes the same network in the nodes they read:
  "sinabs": sinabs.from_nir knows Affine/Conv1d/Conv2d/SumPool2d/Flatten/IF/LIF/LI, not Linear or I.
            Linear -> Affine(bias 0); the I readout -> IF with v_threshold = READOUT_VTH (never fires: its
            IAF ``v_mem`` is the readout potential). Refused (GraphError naming node and field): a nonzero
            ``snnc.v_init`` and ``snnc.reset`` = "zero" (sinabs' IAF starts at 0 and subtracts), AvgPool2d/Scale.
"""
from __future__ import annotations

import copy

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError
from snnc.ir.graph import validate

READOUT_VTH = 1e30  # a threshold the readout never reaches (float32-representable)
TARGETS = ("sinabs",)


def to_framework(graph: nir.NIRGraph, target: str = "sinabs") -> nir.NIRGraph:
    """A copy of an snnc float graph in the node types ``target``'s NIR reader knows (module docstring)."""
    if target not in TARGETS:
        raise GraphError(f"export target must be one of {TARGETS}, got {target!r}")
    if cv.graph_kind(graph) == cv.INTEGER:
        raise GraphError("export for a framework takes the float graph (integer graphs are in Lava units)")
    g = copy.deepcopy(graph)
    validate(g)
    md = dict(g.metadata or {})
    for name, node in list(g.nodes.items()):
        if cv.is_neuron(node):
            vi = np.asarray(cv.meta(node, cv.V_INIT, 0.0), dtype=np.float64)
            if np.any(vi != 0):
                raise GraphError(f"node {name!r}: field 'snnc.v_init' is nonzero; sinabs' IAF starts at 0")
            if cv.reset_mode(node) != "subtract":
                raise GraphError(f"node {name!r}: field 'snnc.reset' is 'zero'; sinabs' NIR import subtracts")
        if isinstance(node, nir.I):
            g.nodes[name] = nir.IF(r=np.asarray(node.r, np.float64), v_threshold=np.full(np.shape(node.r), READOUT_VTH),
                                   metadata=dict(node.metadata or {}))
            md[cv.READOUT_NODE] = name
        elif isinstance(node, nir.Linear):
            w = np.asarray(node.weight, np.float64)
            g.nodes[name] = nir.Affine(weight=w, bias=np.zeros(w.shape[0]))
            g.nodes[name].metadata = dict(node.metadata or {})
        elif isinstance(node, (nir.AvgPool2d, nir.Scale)):
            raise GraphError(f"node {name!r}: {type(node).__name__} has no sinabs NIR reader; export the fused "
                             "float graph (fuse_synapses composes it into the synapse)")
    g.metadata = md
    return g
