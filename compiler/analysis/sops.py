"""Synaptic operations (SOPs) counted from the spikes the simulator produced, exact per neuron.

Counting convention (one place, used by ``snnc energy``):
- A *connection* (``backends.cpu.plan``) is the chain of linear nodes between two neuron layers; on Loihi it is one
  Dense/Conv synapse. The **fan-out** of a source neuron j is the number of destination neurons the connection
  wires it to, structurally (every entry of the weight tensor's connectivity counts, zero-valued weights included:
  the hardware still delivers the event to that synapse). For conv it depends on position (padding, stride), so it
  is computed per neuron as the transposed structural operator applied to ones (Sinabs' ``connection_map``).
- **SOPs** of a connection from a spiking layer = sum over samples, steps and source neurons of
  spikes_j x fanout_j = sum_j spike_counts[src][n, j] * fanout_j (one accumulate, AC, each).
- The input: binary events (every presented value, quantized in integer graphs, is 0 or 1: a 1-bit event input,
  Lava sends them as spikes) are counted as **SOPs** like any spike. Sequences (``snnc.ir.sequence``) count the
  events of the presented slices; a static frame is presented on every step.
- A **graded input** layer sends a multi-bit value every step, so each of its events is a multiply-accumulate:
  we count it separately as ``input_macs`` = sum over samples, steps and input elements with a non-zero (quantized)
  value of fanout_j. The simulator presents the input on every one of the ``latency_steps`` (T + depth) steps.
- Constant drives (``snnc.drive``, passes/constant_drive.py): the drive neuron's spikes into its layer are SOPs;
  its zero-weight input connection (only there to give it an input) counts nothing.
- Residual fan-in: each incoming connection of a layer is counted separately (their sum is the layer's ops).
- **Neuron updates** = neurons x latency_steps per sample, for every neuron layer (the readout included).

Counts are exact integers (int64); per inference values divide by the number of samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import nir
import numpy as np
import torch
import torch.nn.functional as F
from snnc.ir import conventions as cv
from snnc.ir.chain import quantize_input
from snnc.ir.errors import DataError, GraphError
from snnc.ir.graph import Graph, conv2d_params, pool_params
from snnc.ir.plan import Connection, Plan, build_plan

if TYPE_CHECKING:  # a run of either backend (CPU SimResult, Lava LavaResult): read only
    from snnc.backends.cpu.simulator import SimResult

_MIXING = (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)


@dataclass
class ConnectionOps:
    """Operations of one connection over all samples and steps (integers)."""

    src: str
    dst: str
    graded: bool  # source is the graded (multi-bit) Input: events are MACs, not ACs (binary input events are ACs)
    events: int  # spikes (or non-zero graded input values) sent over the connection
    ops: int  # events x fan-out: SOPs (ACs) for spiking sources, MACs for the graded input
    synapses: int  # structural synapses of the connection (sum of the fan-out map)


def _structural(graph: Graph, plan: Plan, conn: Connection):
    """The connection's chain with every weight replaced by one (its connectivity), as a function on float64."""
    steps = []
    shape = plan.shapes[conn.src]
    for n in conn.ops:
        node = graph.nodes[n]
        out = plan.shapes[n]
        if isinstance(node, nir.Flatten) or isinstance(node, nir.Scale):
            steps.append(("reshape", tuple(out)))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            steps.append(("dense", torch.ones(w.shape, dtype=torch.float64)))
        elif isinstance(node, nir.Conv2d):
            p = conv2d_params(node, n)
            w = np.asarray(node.weight)
            steps.append(("conv", torch.ones(w.shape, dtype=torch.float64), p))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            p = pool_params(node, n)
            steps.append(("pool", p))
        else:
            raise GraphError(f"node {n!r}: {type(node).__name__} inside a connection has no SOP rule")
        shape = out

    def f(x: torch.Tensor) -> torch.Tensor:
        y = x
        for st in steps:
            if st[0] == "reshape":
                y = y.reshape((y.shape[0],) + st[1])
            elif st[0] == "dense":
                y = y.reshape(y.shape[0], -1) @ st[1].T
            elif st[0] == "conv":
                p = st[2]
                y = F.conv2d(y, st[1], None, stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                             groups=p["groups"])
            else:
                p = st[1]
                y = F.avg_pool2d(y, p["kernel_size"], p["stride"], p["padding"], count_include_pad=True,
                                 divisor_override=1)
        return y

    return f, shape


def fanout_map(graph: Graph, conn: Connection, plan: Plan | None = None, chunk: int = 1024) -> np.ndarray:
    """Per source neuron: the number of destination neurons it is wired to, shape ``plan.shapes[conn.src]`` (int64).

    One weighted node in the chain (always so after ``fuse_synapses``): the transposed structural operator applied
    to ones (= number of paths = number of targets). Several weighted nodes: paths can merge, so targets are
    counted exactly by pushing one-hot batches of ``chunk`` source neurons through the chain."""
    plan = plan or build_plan(graph)
    f, _ = _structural(graph, plan, conn)
    src_shape = tuple(plan.shapes[conn.src])
    nsrc = int(np.prod(src_shape))
    mixing = [n for n in conn.ops if isinstance(graph.nodes[n], _MIXING)]
    if len(mixing) <= 1:
        x = torch.zeros((1,) + src_shape, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        return np.rint(g[0].numpy()).astype(np.int64)
    out = np.zeros(nsrc, dtype=np.int64)
    with torch.no_grad():
        for i in range(0, nsrc, chunk):
            k = min(chunk, nsrc - i)
            eye = torch.zeros((k, nsrc), dtype=torch.float64)
            eye[torch.arange(k), torch.arange(i, i + k)] = 1.0
            y = f(eye.reshape((k,) + src_shape)).reshape(k, -1)
            out[i:i + k] = (y > 0).sum(1).numpy()
    return out.reshape(src_shape)


def input_events(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Per sample (and step, for a sequence) and input element: 1 where the input is non-zero (after quantization
    in integer graphs); the shape of ``x``."""
    xin = quantize_input(graph, x) if cv.graph_kind(graph) == cv.INTEGER else np.asarray(x, dtype=np.float64)
    return (xin != 0).astype(np.int64)


def input_is_binary(graph: Graph, x: np.ndarray) -> bool:
    """Every input value (quantized in integer graphs) is 0 or 1: events, counted as SOPs."""
    xin = quantize_input(graph, x) if cv.graph_kind(graph) == cv.INTEGER else np.asarray(x, dtype=np.float64)
    return bool(np.all((xin == 0) | (xin == 1)))


def count_ops(graph: Graph, result: SimResult, x: np.ndarray | None = None,
              plan: Plan | None = None) -> list[ConnectionOps]:
    """SOPs (and input MACs) of every connection of ``graph`` for the run ``result`` (from ``spike_counts``).

    ``x`` are the inputs the run was given, static (N, *input) or a sequence (N, T, *input) (needed for the input
    connection)."""
    from snnc.ir.sequence import input_series, window_events

    plan = plan or build_plan(graph)
    rows = []
    binary = None
    for conn in plan.connections:
        if conn.src == plan.input and cv.meta(graph.nodes[conn.dst], cv.DRIVE, False):
            rows.append(ConnectionOps(conn.src, conn.dst, False, 0, 0, 0))  # a drive's placeholder input
            continue
        fo = fanout_map(graph, conn, plan)
        if conn.src == plan.input:
            if x is None:
                raise DataError("count_ops: the inputs x are needed to count the input connection's operations")
            series = input_series(plan.shapes[plan.input], x, plan.input)
            if series.samples != result.samples:
                raise DataError(f"count_ops: x has {series.samples} samples, the run had {result.samples}")
            if binary is None:
                binary = input_is_binary(graph, series.x)
            ev = window_events(input_events(graph, series.x), series.sequence, result.steps, result.latency_steps)
            per_el = ev.reshape(ev.shape[0], -1).sum(0)
            rows.append(ConnectionOps(conn.src, conn.dst, not binary, int(per_el.sum()),
                                      int(per_el @ fo.reshape(-1)), int(fo.sum())))
        else:
            counts = result.spike_counts[conn.src].reshape(result.samples, -1).astype(np.int64).sum(0)
            rows.append(ConnectionOps(conn.src, conn.dst, False, int(counts.sum()), int(counts @ fo.reshape(-1)),
                                      int(fo.sum())))
    return rows


def sops_from_rates(rates: np.ndarray, fanout: np.ndarray, samples: int, window: int) -> float:
    """Analytic SOPs: sum_j rate_j * window * samples * fanout_j, rates in spikes per neuron per step."""
    return float(np.sum(np.asarray(rates, dtype=np.float64) * np.asarray(fanout)) * window * samples)


def sops_from_rasters(graph: Graph, result: SimResult, plan: Plan | None = None) -> dict[tuple[str, str], int]:
    """SOPs measured step by step: each step's spike raster pushed through the structural operator, outputs summed.

    Independent of ``fanout_map`` (forward, not transposed); needs ``simulate(..., rasters=True)``."""
    if result.rasters is None:
        raise DataError("sops_from_rasters needs a run with rasters=True")
    plan = plan or build_plan(graph)
    out = {}
    with torch.no_grad():
        for conn in plan.connections:
            if conn.src == plan.input:
                continue
            f, _ = _structural(graph, plan, conn)
            r = result.rasters[conn.src]
            tot = 0.0
            for t in range(r.shape[0]):
                tot += float(f(torch.as_tensor(r[t], dtype=torch.float64)).sum())
            out[(conn.src, conn.dst)] = int(round(tot))
    return out


def neuron_updates(result: SimResult) -> dict[str, int]:
    """Per neuron layer: neurons x latency_steps x samples (every neuron is updated every step)."""
    return {n: int(k) * result.latency_steps * result.samples for n, k in result.neurons_per_layer.items()}
