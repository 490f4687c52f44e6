"""Execution plan of a graph for the simulators: neuron layers in order and the connections between them.

A *connection* is the chain of linear nodes (Affine, Linear, Conv2d, SumPool2d, AvgPool2d, Scale, Flatten)
from a source (the Input or a neuron layer) to a target neuron layer. Like Lava's Dense/Conv processes, each
connection delivers at step t what its source emitted at step t-1 (one step of delay per connection).

Recurrent graphs: a connection whose target does not come after its source in the feed-forward order (the graph
without its ``back_edges``) is *recurrent*; a loop through k neuron layers (k connections) therefore takes k steps
(``Plan.loops``). Since every connection is buffered, the order in which the layers of one step are updated does
not matter, so cycles need no other scheduling. Depths count forward connections only; a constant-drive neuron
(``snnc.drive``, passes/constant_drive.py) is a clock, not a signal: it has depth 0 like the Input."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    recurrent: bool = False  # the target is not after the source in the feed-forward order (closes a loop)


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
    loops: list[list[str]] = field(default_factory=list)  # each simple loop: neuron layers in order; k layers = k steps

    @property
    def recurrent(self) -> bool:
        return bool(self.loops)


def fan_in(buf: list, incoming: list[int]) -> Any:
    """Sum of what the connections ``incoming`` (indices into ``buf``) deliver this step; a None entry delivers
    nothing, and None comes back when nothing arrives (a layer with no input this step)."""
    a = None
    for i in incoming:
        if buf[i] is not None:
            a = buf[i] if a is None else a + buf[i]
    return a


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
    pos = {n: k for k, n in enumerate(neurons)}
    for c in conns:
        c.recurrent = c.src != inp and pos[c.src] >= pos[c.dst]
    incoming = {n: [i for i, c in enumerate(conns) if c.dst == n] for n in neurons}
    for n in neurons:
        if not incoming[n]:
            raise GraphError(f"neuron layer {n!r} has no input connection")
        if all(conns[i].recurrent for i in incoming[n]):
            raise GraphError(f"neuron layer {n!r} has only recurrent input connections (from "
                             f"{sorted({conns[i].src for i in incoming[n]})}); nothing brings the input to it")
    depth: dict[str, int] = {inp: 0}
    for n in neurons:
        depth[n] = 0 if cv.meta(graph.nodes[n], cv.DRIVE, False) else \
            max(depth[conns[i].src] + 1 for i in incoming[n] if not conns[i].recurrent)
    return Plan(inp, neurons, conns, shapes, readout, depth[readout], incoming, depth, neuron_loops(conns, neurons))


def neuron_loops(conns: list[Connection], neurons: list[str]) -> list[list[str]]:
    """The simple cycles of the neuron-level graph (one node per neuron layer, one edge per connection), each as
    its layers in order starting from the earliest; a self-connection is a loop of one layer."""
    import networkx as nx

    g = nx.DiGraph([(c.src, c.dst) for c in conns])
    if nx.is_directed_acyclic_graph(g):
        return []
    order = {n: k for k, n in enumerate(neurons)}
    loops = []
    for cyc in nx.simple_cycles(g):
        k = min(range(len(cyc)), key=lambda i: order[cyc[i]])
        loops.append(cyc[k:] + cyc[:k])
    return sorted(loops, key=lambda c: (len(c), [order[n] for n in c]))
