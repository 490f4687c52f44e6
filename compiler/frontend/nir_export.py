"""NIR export for a named framework: rewrite the few nodes a framework's NIR reader does not know or misreads.

snnc's own files (``snnc.ir.graph.write``) use standard NIR nodes plus ``snnc.*`` metadata; they read back
unchanged. Some readers know fewer node types; ``to_framework`` writes the same network in the nodes they read:
  "sinabs":   sinabs.from_nir knows Affine/Conv1d/Conv2d/SumPool2d/Flatten/IF/LIF/LI, not Linear or I.
              Linear -> Affine(bias 0); the I readout -> IF with v_threshold = READOUT_VTH (never fires: its
              IAF ``v_mem`` is the readout potential). Refused (GraphError naming node and field): a nonzero
              ``snnc.v_init`` and ``snnc.reset`` = "zero" (sinabs' IAF starts at 0 and subtracts), AvgPool2d/Scale.
  "snntorch": snnTorch 1.0.0's import_from_nir reads IF as a *leaky* neuron (beta = 0.9), has no I, and reads LIF
              with dt = SNNTORCH_DT s and reset to zero. IF -> LIF(tau = SNNTORCH_TAU s, r = tau/dt · r_IF,
              v_leak = 0): beta = 1 - dt/tau is exactly 1.0 in float64, input gain r·dt/tau = r_IF; the I readout ->
              the same LIF with v_threshold = READOUT_VTH (its ``mem`` is the readout potential). Refused
              (GraphError): ``snnc.reset`` = "subtract", a nonzero ``snnc.v_init``, a potential floor
              (``snnc.v_min``: snnTorch's Leaky has none), a threshold or r that differs between a layer's
              neurons (snnTorch takes one per layer), SumPool2d/AvgPool2d/Scale (not in its reader).
The name of the node standing for the readout is in graph metadata ``snnc.readout_node`` (cv.READOUT_NODE).
"""
from __future__ import annotations

import copy
from typing import Any

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError
from snnc.ir.graph import validate

READOUT_VTH = 1e30  # a threshold the readout never reaches (float32-representable)
TARGETS = ("sinabs", "snntorch")
SNNTORCH_DT = 1e-4  # s: the step snnTorch 1.0.0's import_from_nir assumes for LIF/CubaLIF
SNNTORCH_TAU = 1e13  # s: 1 - SNNTORCH_DT / SNNTORCH_TAU == 1.0 in float64 (no leak)


def _check_neuron(name: str, node: Any, target: str) -> None:
    """The neuron fields a target's reader cannot express (GraphError naming node and field)."""
    vi = np.asarray(cv.meta(node, cv.V_INIT, 0.0), dtype=np.float64)
    if np.any(vi != 0):
        raise GraphError(f"node {name!r}: field 'snnc.v_init' is nonzero; {target} neurons start at 0")
    reset = cv.reset_mode(node)
    if target == "sinabs" and reset != "subtract":
        raise GraphError(f"node {name!r}: field 'snnc.reset' is 'zero'; sinabs' NIR import subtracts")
    if target == "snntorch" and not isinstance(node, nir.I):
        if reset != "zero":
            raise GraphError(f"node {name!r}: field 'snnc.reset' is {reset!r}; snnTorch's import_from_nir resets "
                             "to zero (convert with reset='zero')")
        if cv.meta(node, cv.V_MIN, None) is not None:
            raise GraphError(f"node {name!r}: field 'snnc.v_min' is set; snnTorch's Leaky has no potential floor "
                             "(convert with v_floor=None)")


def _uniform(name: str, field: str, value: Any) -> float:
    a = np.unique(np.asarray(value, dtype=np.float64))
    if a.size != 1:
        raise GraphError(f"node {name!r}: field {field!r} differs between neurons; snnTorch's import_from_nir "
                         "takes one value per layer")
    return float(a[0])


def _snntorch_lif(name: str, node: Any, threshold: float, metadata: dict) -> nir.LIF:
    """An IF/I node as the leak-free LIF snnTorch's reader builds exactly (module docstring)."""
    shape = np.shape(node.r)
    r = _uniform(name, "r", node.r)
    th = np.full(shape, float(threshold))
    return nir.LIF(tau=np.full(shape, SNNTORCH_TAU), r=np.full(shape, SNNTORCH_TAU / SNNTORCH_DT * r),
                   v_leak=np.zeros(shape), v_threshold=th, metadata=dict(metadata, **{cv.RESET: "zero"}))


def _rewrite(name: str, node: Any, target: str, md: dict) -> Any:
    """The node as ``target``'s reader takes it (the node itself where it needs no change)."""
    meta = dict(getattr(node, "metadata", None) or {})
    if isinstance(node, (nir.AvgPool2d, nir.Scale)) or (target == "snntorch" and isinstance(node, nir.SumPool2d)):
        raise GraphError(f"node {name!r}: {type(node).__name__} has no {target} NIR reader; export the fused "
                         "float graph (fuse_synapses composes it into the synapse)")
    if isinstance(node, nir.I):
        md[cv.READOUT_NODE] = name
        if target == "snntorch":
            return _snntorch_lif(name, node, READOUT_VTH, meta)
        return nir.IF(r=np.asarray(node.r, np.float64), v_threshold=np.full(np.shape(node.r), READOUT_VTH),
                      metadata=meta)
    if isinstance(node, nir.IF) and target == "snntorch":
        return _snntorch_lif(name, node, _uniform(name, "v_threshold", node.v_threshold), meta)
    if isinstance(node, nir.Linear) and target == "sinabs":
        w = np.asarray(node.weight, np.float64)
        out = nir.Affine(weight=w, bias=np.zeros(w.shape[0]))
        out.metadata = meta
        return out
    if isinstance(node, nir.Conv2d) and target == "snntorch" and node.bias is None:
        out = copy.copy(node)
        out.bias = np.zeros(np.shape(node.weight)[0])  # snnTorch's reader copies the bias unconditionally
        return out
    return node


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
            _check_neuron(name, node, target)
        g.nodes[name] = _rewrite(name, node, target, md)
    g.metadata = md
    return g
