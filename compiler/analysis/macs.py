"""ANN cost: multiply-accumulates (MACs) per inference of the network a graph describes, per node and connection.

conv: out_elems x in_ch/groups x kh x kw; affine/linear: in x out; sum/avg pooling: out_elems x kh x kw (the
window's adds, counted as MACs: the ANN's average is a scaled sum). Flatten, Scale and neurons cost nothing here
(the ANN's ReLU is a compare). Counted on the graph as given: after ``fuse_synapses`` a pooling layer folded into
the next affine is counted as that affine's larger in x out (see ``snnc energy`` docs)."""
from __future__ import annotations

import math

import nir
import numpy as np
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
