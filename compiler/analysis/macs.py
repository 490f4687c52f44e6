"""ANN cost: multiply-accumulates (MACs) per inference of the network a graph describes, per node and connection.

conv: out_elems x in_ch/groups x kh x kw; affine/linear: in x out; sum/avg pooling: out_elems x kh x kw (the
window's adds, counted as MACs: the ANN's average is a scaled sum). Flatten, Scale and neurons cost nothing here
(the ANN's ReLU is a compare).

The ANN baseline of ``snnc energy`` is the *source* network: ``source_macs`` counts the graph as converted from the
torch model (or imported from another tool's NIR file) before ``fuse_synapses``, where pooling is still its own
operation; the compile pipeline records it in the graph (``snnc.ann_macs``, ``snnc.ann_macs_counted_on``).
``graph_macs`` / ``connection_macs`` count a graph as given: after fusing, a pooling layer folded into the next
affine is counted as that affine's larger in x out (the digits CNN: 20,480 instead of 2,048 + 5,120)."""
from __future__ import annotations

import math

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.graph import Graph, conv2d_params, infer_shapes, pool_params
from snnc.ir.plan import Plan, build_plan


def node_macs(node, name: str, out_shape: tuple) -> int:
    """MACs of one node for one input sample (0 for nodes that do no arithmetic)."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        return int(w.shape[0] * w.shape[1])
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)  # (out, in/groups, kh, kw)
        conv2d_params(node, name)  # validates the fields, naming the node
        return int(math.prod(out_shape) * w.shape[1] * w.shape[2] * w.shape[3])
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        kh, kw = pool_params(node, name)["kernel_size"]
        return int(math.prod(out_shape) * kh * kw)
    return 0


def graph_macs(graph: Graph) -> dict[str, int]:
    """MACs per inference for every node with arithmetic, in the graph's node order."""
    shapes = infer_shapes(graph)
    out = {}
    for name, node in graph.nodes.items():
        m = node_macs(node, name, tuple(shapes[name]))
        if m:
            out[name] = m
    return out


def connection_macs(graph: Graph, plan: Plan | None = None) -> dict[tuple[str, str], int]:
    """MACs per inference of each connection (src, dst): the sum over the linear nodes of its chain."""
    plan = plan or build_plan(graph)
    per_node = graph_macs(graph)
    return {(c.src, c.dst): sum(per_node.get(n, 0) for n in c.ops) for c in plan.connections}


# what the ANN baseline was counted on (the JSON key ``ann_macs_counted_on`` and the energy table say it)
COUNTED_ON = {
    "torch": "source network: the torch model as trained (conv, linear and pooling each counted; BatchNorm folded), "
             "before fusing",
    "nir": "NIR graph from another tool, as imported by snnc (before fusing; its own layers, BatchNorm folded)",
    "graph": "this graph as given (no source count recorded in it: fused synapses, pooling folded into the next "
             "layer)",
}


def source_macs(graph: Graph, plan: Plan | None = None) -> dict[str, int]:
    """MACs per inference of an unfused graph (converted or imported), summed over the connections into each neuron
    layer (keyed by neuron layer name, so the count survives fusing, calibration and relay insertion).

    BatchNorm affines (``snnc.from_bn``) and constant drives (``snnc.drive``) count 0: they fold into the layer
    before them, or are its bias. A linear node that the
    converter distributed over the operands of a residual add (copies sharing one ``snnc.source``) counts once."""
    plan = plan or build_plan(graph)
    shapes = infer_shapes(graph)
    seen: set[str] = set()
    out = {n: 0 for n in plan.neurons}
    drive = drive_neurons(graph, plan)
    for c in plan.connections:
        if c.src in drive or c.dst in drive:  # a constant drive (a bias into LIF/CubaLIF) is a bias in the ANN
            continue
        for op in c.ops:
            node = graph.nodes[op]
            if cv.meta(node, cv.FROM_BN, False):
                continue
            key = str(cv.meta(node, cv.SOURCE) or op)
            if key in seen:
                continue
            seen.add(key)
            out[c.dst] += node_macs(node, op, tuple(shapes[op]))
    return out


def layer_ann_macs(graph: Graph, plan: Plan | None = None) -> tuple[dict[str, int], str]:
    """(ANN MACs per inference by neuron layer, what they were counted on: a ``COUNTED_ON`` key). The source
    network's count recorded at compile time when the graph has one, else the graph as given (constant drives
    count 0, as in ``source_macs``)."""
    plan = plan or build_plan(graph)
    rec = cv.meta(graph, cv.ANN_MACS)
    if rec:
        return ({n: int(rec.get(n, 0)) for n in plan.neurons},
                str(cv.meta(graph, cv.ANN_MACS_COUNTED_ON, "torch")))
    out = {n: 0 for n in plan.neurons}
    drive = drive_neurons(graph, plan)
    for (src, dst), m in connection_macs(graph, plan).items():
        if src not in drive and dst not in drive:
            out[dst] += m
    return out, "graph"


def drive_neurons(graph: Graph, plan: Plan) -> set[str]:
    """Neuron layers that are constant drives (``snnc.drive``: a bias into LIF/CubaLIF lowered to spikes)."""
    return {n for n in plan.neurons if cv.meta(graph.nodes[n], cv.DRIVE, False)}
