"""Pass: the bias of a leaky layer (LIF, CubaLIF, LI) becomes a constant-drive input, exactly.

NIR adds a bias with the input: a CubaLIF filters it through its synaptic current (I += dt/tau_syn (-I + w_in
(W x + b))), and every framework adds it from the first step on which the layer receives input. Lava adds a
neuron's bias to v from step 0. Neither the place (v instead of the current) nor the onset can be fixed by the
neuron's own fields when it leaks, so the bias is moved onto a connection:

  Input -> [Flatten] -> <L>.drive_in: Affine(W = 0, b = 1) -> <L>.drive: IF(threshold 0.5, reset to zero)
        -> <L>.drive_w: Affine(W = b, column) -> L

The drive neuron (``snnc.drive``, one neuron) fires on every step from step depth(L) - 1 on (its initial potential
``snnc.v_init`` = 1.25 - depth(L) holds it back; ``snnc.bias_onset`` marks it as already placed), so L receives b
through its input from step depth(L) on, the step its first input arrives: into the current like any input, and
from the layer's onset, as NIR and the frameworks say. The drive is a clock, not a signal: the plan gives it depth
0 (``snnc.ir.plan``), the energy report charges its spikes as synaptic operations of L and nothing for its zero
input weights. In a framework that reads the file (no connection delays, no snnc metadata) the drive fires from
step 0, which again is the bias.

IF and I layers keep their biases (Lava adds them to v, which is what NIR's IF says; ``bias_onset`` fixes the
onset). The drive is dense, so L must be a vector layer (a (C, H, W) leaky layer with a bias is refused by
name)."""
from __future__ import annotations

import math

import nir
import numpy as np
import torch
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse
from snnc.ir.errors import UnsupportedLayerError
from snnc.ir.graph import Graph, validate
from snnc.ir.nir_compat import make_graph
from snnc.ir.plan import build_plan

LEAKY = (nir.LIF, nir.CubaLIF, nir.LI)
DRIVE_THRESHOLD = 0.5  # the drive neuron: bias 1 per step, threshold 0.5, reset to zero: a spike every step


def drive_v_init(depth: int) -> float:
    """Initial potential of a drive neuron whose target is at ``depth``: it first fires at step depth - 1
    (v after step t is v_init + t + 1; 0.25 from the threshold on either side, so integer rounding cannot move it)."""
    return 1.25 - depth


def add_constant_drives(graph: Graph) -> Graph:
    """Every leaky layer whose incoming connections carry a bias gets it through a drive neuron instead (module
    docstring); biases of the chains into it are set to 0. Graphs without such a layer come back unchanged.
    A biased node shared by chains into several layers raises UnsupportedLayerError naming it."""
    plan = build_plan(graph)
    targets = []
    for n in plan.neurons:
        if not isinstance(graph.nodes[n], LEAKY):
            continue
        bias = np.zeros(plan.shapes[n])
        for i in plan.incoming[n]:
            bias = bias + Synapse(graph, plan, plan.connections[i], False, torch.device("cpu")).bias
        if np.any(bias != 0):
            targets.append((n, bias))
    if not targets:
        return graph
    nodes = dict(graph.nodes)
    edges = [tuple(e) for e in graph.edges]
    users: dict[str, set[str]] = {}
    for c in plan.connections:
        for o in c.ops:
            users.setdefault(o, set()).add(c.dst)
    in_shape = tuple(plan.shapes[plan.input])

    def fresh(base: str) -> str:
        while base in nodes:
            base += "_"
        return base

    for n, bias in targets:
        if len(plan.shapes[n]) != 1:
            raise UnsupportedLayerError(f"node {n!r}: a bias into a leaky layer of shape {plan.shapes[n]} is not "
                                        "supported (snnc moves it onto a dense constant-drive input, which feeds "
                                        "vector layers only)")
        for i in plan.incoming[n]:
            for o in plan.connections[i].ops:
                node = nodes[o]
                b = getattr(node, "bias", None)
                if b is None or not np.any(np.asarray(b) != 0):
                    continue
                if len(users[o]) > 1:
                    raise UnsupportedLayerError(
                        f"node {o!r}: field 'bias' feeds the leaky layer {n!r} and also {sorted(users[o] - {n})}; "
                        "snnc moves a leaky layer's bias onto a constant-drive input and cannot split a shared one")
                nodes[o] = _without_bias(node)
        d = plan.depths[n]
        src = plan.input
        if len(in_shape) > 1:
            fl = fresh(f"{n}.drive_flat")
            nodes[fl] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
            edges.append((src, fl))
            src = fl
        din, drv, dw = fresh(f"{n}.drive_in"), fresh(f"{n}.drive"), fresh(f"{n}.drive_w")
        nodes[din] = nir.Affine(weight=np.zeros((1, math.prod(in_shape))), bias=np.ones(1))
        nodes[drv] = nir.IF(r=np.ones(1), v_threshold=np.full(1, DRIVE_THRESHOLD),
                            metadata={cv.RESET: "zero", cv.V_INIT: drive_v_init(d), cv.DRIVE: True,
                                      cv.BIAS_ONSET: True,
                                      cv.SOURCE: f"constant_drive: the bias of {n!r} from step {d}"})
        nodes[dw] = nir.Affine(weight=bias.reshape(-1, 1).astype(np.float64), bias=np.zeros(bias.size))
        edges += [(src, din), (din, drv), (drv, dw), (dw, n)]
    out = make_graph(nodes, edges, dict(graph.metadata or {}))
    validate(out)
    return out


def _without_bias(node):
    """A copy of an Affine or Conv2d node with bias 0."""
    import copy

    new = copy.copy(node)
    new.bias = np.zeros_like(np.asarray(node.bias, dtype=np.float64))
    return new


def is_drive(node) -> bool:
    return bool(cv.meta(node, cv.DRIVE, False))
