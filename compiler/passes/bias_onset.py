"""Pass: pre-charge each IF/I layer's initial potential by -depth * bias so its bias starts with its first input.

Lava adds a neuron's bias from step 0, but a layer at depth d (d connections from the input) first receives input
at step d, so by then it has gathered d steps of bias that the ANN never had; at small T that dominates. Starting
at v_init - d * B (B: summed bias of the incoming synapses, per neuron, per step) makes v equal v_init exactly at
step d. For B < 0 the pre-charge is capped at the threshold, so no neuron fires before its input arrives (v only
falls until then). A potential floor (``snnc.v_min``) below which the pre-charged trajectory would start (lowest
point v_init - (d - 1) * B, after the first step's bias) is lowered to that point for those neurons, so the floor
never cuts the pre-charge and the onset stays exact. Works on float graphs (threshold units) and integer graphs (a_in units, exact integers).
Leaky neurons (dv > 0) are left alone: their decay makes the compensation inexact."""
from __future__ import annotations

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.chain import connection_bias
from snnc.ir.errors import QuantizationError
from snnc.ir.graph import Graph, copy_graph
from snnc.ir.plan import build_plan


def compensate_bias_onset(graph: Graph) -> Graph:
    """v_init -= depth * bias for IF and I layers (capped below threshold); marks them ``snnc.bias_onset``."""
    g = copy_graph(graph, share_arrays=True)  # only metadata changes
    plan = build_plan(g)
    integer = cv.graph_kind(g) == cv.INTEGER
    for n in plan.neurons:
        node = g.nodes[n]
        if not isinstance(node, (nir.IF, nir.I)) or cv.meta(node, cv.BIAS_ONSET, False):
            continue
        if integer and int(cv.meta(node, cv.DV, 0)) != 0:
            continue
        shape = plan.shapes[n]
        bias = np.zeros(shape)
        for i in plan.incoming[n]:
            bias = bias + connection_bias(g, plan, plan.connections[i], integer)
        d = plan.depths[n]
        if d == 0 or not np.any(bias):
            continue
        th = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape) \
            if isinstance(node, nir.IF) else None
        v0, low = onset_start(cv.v_init(node, shape), bias, d, th, None if th is None else cv.v_min(node, shape))
        if integer and np.any(v0 * 64 < -cv.V_MAX):  # Lava would saturate v and cut the onset: early spikes
            raise QuantizationError(
                f"layer {n!r}: the bias-onset pre-charge {float(v0.min()):.6g} (a_in units, field 'snnc.v_init') "
                f"is below Lava's 24-bit potential {-cv.V_MAX / 64:.6g}; quantize with this snnc version (its scale "
                "leaves room for the pre-charge) or compile with bias_onset=False")
        node.metadata = dict(node.metadata or {})
        if low is not None and np.any(low < cv.v_min(node, shape)):
            node.metadata[cv.V_MIN] = np.asarray(low, dtype=np.float64)  # arrays: lists of floats cost 10x to copy
        node.metadata[cv.V_INIT] = np.asarray(v0, dtype=np.float64)  # and write (nir's asdict walks every item)
        node.metadata[cv.BIAS_ONSET] = True
    return g


def onset_start(v_init: np.ndarray, bias: np.ndarray, depth: int, vth: np.ndarray | None,
                v_min: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(pre-charged initial potential, floor) of one layer: v_init - depth * bias, capped at the threshold ``vth``
    (None for the readout), and the floor ``v_min`` lowered under the pre-charged trajectory (lowest point
    v0 + bias, after the first step's bias). Same units in and out (float: threshold units; integer: a_in)."""
    v0 = v_init - depth * bias
    if vth is None:
        return v0, v_min
    v0 = np.minimum(v0, vth)
    if v_min is None or not np.any(v0 + bias < v_min):
        return v0, v_min
    return v0, np.minimum(v_min, v0 + bias)
