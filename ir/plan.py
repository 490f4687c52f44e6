"""Execution plan of a graph for the simulators: neuron layers in order and the connections between them.

A *connection* is the chain of linear nodes (Affine, Linear, Conv2d, SumPool2d, AvgPool2d, Scale, Flatten)
from a source (the Input or a neuron layer) to a target neuron layer. Like Lava's Dense/Conv processes, each
connection delivers at step t what its source emitted at step t-1 (one step of delay per connection)."""
from __future__ import annotations

from dataclasses import dataclass, field

import nir
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError, UnsupportedLayerError
from snnc.ir.graph import (
    Graph,
    input_name,
    output_name,
    predecessors,
    successors,
    topo_order,
    validate,
)


@dataclass
class Connection:
    """src -> ops... -> dst; ``ops`` are linear node names in order (may be empty: identity)."""

    src: str
    ops: list[str]
    dst: str


@dataclass
class Plan:
    input: str
    neurons: list[str]  # neuron layers in topological order (readout included)
    connections: list[Connection]
    shapes: dict[str, tuple]
    readout: str  # neuron whose potential is the network output
    depth: int  # connections on the longest path Input -> readout (= steps before the output sees input)
    incoming: dict[str, list[int]] = field(default_factory=dict)  # neuron -> indices into connections
    depths: dict[str, int] = field(default_factory=dict)  # neuron -> step at which its first input arrives


def build_plan(graph: Graph) -> Plan:
    """Validate ``graph`` and split it into neuron layers and connections; names the offending node on error."""
    shapes = validate(graph)
    order = topo_order(graph)
    inp, out = input_name(graph), output_name(graph)
    neurons = [n for n in order if cv.is_neuron(graph.nodes[n])]
    for n in order:
        node = graph.nodes[n]
        if not (cv.is_neuron(node) or cv.is_linear(node) or isinstance(node, (nir.Input, nir.Output))):
            raise UnsupportedLayerError(f"node {n!r}: {type(node).__name__} is not supported by the simulator")
    out_preds = predecessors(graph, out)
    if len(out_preds) != 1 or not cv.is_neuron(graph.nodes[out_preds[0]]):
        raise GraphError(f"Output node {out!r} must have exactly one neuron layer as its input "
                         f"(snnc reads the output as that layer's potential); it has {out_preds}")
    readout = out_preds[0]
    conns: list[Connection] = []

    def walk(src: str, name: str, ops: list[str]) -> None:
        for nxt in successors(graph, name):
            node = graph.nodes[nxt]
            if cv.is_neuron(node):
                conns.append(Connection(src, ops, nxt))
            elif cv.is_linear(node):
                if len(predecessors(graph, nxt)) > 1:
                    raise GraphError(f"node {nxt!r}: fan-in into a {type(node).__name__} is not supported; "
                                     "fan-in (residual adds) must go into a neuron layer")
                walk(src, nxt, ops + [nxt])
            elif isinstance(node, nir.Output):
                if name != readout:
                    raise GraphError(f"node {name!r} feeds the Output directly; only the readout may")
            else:
                raise UnsupportedLayerError(f"node {nxt!r}: {type(node).__name__} cannot be simulated")

    for src in [inp] + neurons:
        walk(src, src, [])
    incoming = {n: [i for i, c in enumerate(conns) if c.dst == n] for n in neurons}
    for n in neurons:
        if not incoming[n]:
            raise GraphError(f"neuron layer {n!r} has no input connection")
    depth: dict[str, int] = {inp: 0}
    for n in neurons:
        depth[n] = max(depth.get(conns[i].src, 0) + 1 for i in incoming[n])
    return Plan(inp, neurons, conns, shapes, readout, depth[readout], incoming, depth)
