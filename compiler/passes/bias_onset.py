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
import torch

from snnc.backends.cpu.plan import build_plan
from snnc.backends.cpu.simulator import _Synapse
from snnc.ir import conventions as cv
from snnc.ir.graph import Graph, copy_graph

ONSET = "snnc.bias_onset"  # True on neurons whose v_init was pre-charged by this pass


def compensate_bias_onset(graph: Graph) -> Graph:
    """v_init -= depth * bias for IF and I layers (capped below threshold); marks them ``snnc.bias_onset``."""
    g = copy_graph(graph)
    plan = build_plan(g)
    integer = cv.graph_kind(g) == cv.INTEGER
    for n in plan.neurons:
        node = g.nodes[n]
        if not isinstance(node, (nir.IF, nir.I)) or cv.meta(node, ONSET, False):
            continue
        if integer and int(cv.meta(node, cv.DV, 0)) != 0:
            continue
        shape = plan.shapes[n]
        bias = np.zeros(shape)
        for i in plan.incoming[n]:
            bias = bias + _Synapse(g, plan, plan.connections[i], integer, torch.device("cpu")).bias
        d = plan.depths[n]
        if d == 0 or not np.any(bias):
            continue
        v0 = cv.v_init(node, shape) - d * bias
        if isinstance(node, nir.IF):
            th = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape)
            v0 = np.minimum(v0, th)
            vm = cv.v_min(node, shape)
            if vm is not None and np.any(v0 + bias < vm):  # lower the floor under the pre-charged trajectory
                low = np.minimum(vm, v0 + bias)
                if integer:  # within the 24-bit potential (below it Lava saturates v anyway)
                    low = np.maximum(low, -(cv.V_MAX // 64))
                node.metadata = dict(node.metadata or {})
                node.metadata[cv.V_MIN] = low.tolist()
        node.metadata = dict(node.metadata or {})
        node.metadata[cv.V_INIT] = v0.tolist()
        node.metadata[ONSET] = True
    return g
