"""Batched SNN simulator: bit-accurate Lava 0.10.0 fixed point for integer graphs, the same dynamics in float.

``simulate`` runs a graph's plan (``snnc.ir.plan``) step by step: each connection (``snnc.ir.chain``) delivers at
step t what its source emitted at t - 1, each neuron layer updates with the kernel of its arithmetic
(``snnc.ir.neuron``: integer fixed point in int64, or float64). Integer graphs run on the exact engine
(``exact_engine.py``, the same kernel scheduled fused and in place, bit-identical); the int64 step loop here is the
reference. Each wrap of u or of a conv output and each saturation of v is counted per layer (``events``).
The neuron kernels and their reset timings (``snnc.reset_timing``) are ``snnc.ir.neuron``'s. Input: one static frame
per sample, presented every step, or a sequence with one slice per step (``snnc.ir.sequence``: the rule, the steps
and the readout window). Recurrent connections need nothing special: every connection delivers what its source
emitted at the previous step (``snnc.ir.plan``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import nir
import numpy as np
import torch
from snnc.backends.cpu.device import torch_device
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse, quantize_input
from snnc.ir.errors import GraphError, OverflowEventError, QuantizationError
from snnc.ir.graph import Graph
from snnc.ir.neuron import EventCounter, fire, fire_delayed, step_float, step_integer, step_leaky
from snnc.ir.plan import build_plan, fan_in
from snnc.ir.sequence import input_series


@dataclass
class SimResult:
    """Outcome of a simulation run over all samples.

    logits: float (N, n_out), readout potential gathered over the last ``steps`` steps, in ANN logit units
    potentials: readout potential at the end (int for integer graphs: Lava's 24-bit v), (N, n_out)
    sequence / input_steps: whether the input was a sequence, and its length T_in (None for a static frame)
    spikes_per_layer: neuron layer -> total spikes over samples and steps
    spike_counts: neuron layer -> per-neuron spike count per sample (N, *shape), int32
    rasters: neuron layer -> bool (latency_steps, N, *shape), only when requested
    events: neuron/connection -> {"u_wrap", "v_saturate", "conv_wrap"} counts
    """

    logits: np.ndarray
    potentials: np.ndarray
    steps: int
    latency_steps: int
    samples: int
    kind: str
    spikes_per_layer: dict[str, int]
    spike_counts: dict[str, np.ndarray]
    events: dict[str, dict[str, int]]
    seconds: float
    rasters: dict[str, np.ndarray] | None = None
    final_state: dict[str, dict[str, np.ndarray]] | None = None
    neurons_per_layer: dict[str, int] = field(default_factory=dict)
    engine: str = "reference"  # "fast" (exact_engine) or "reference" (the int64 / float64 step loop)
    ranges: dict[str, dict[str, float]] | None = None  # layer -> max |a| per step; max v before reset (max |v| for
    # the readout). Spiking layers may saturate on the negative side (counted in events): only the positive side
    # decides spikes early, and a bound on the negative side would cost the weights their precision.
    sequence: bool = False
    input_steps: int | None = None

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.logits.argmax(1) == np.asarray(labels)).mean())

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    def total_events(self) -> int:
        return int(sum(sum(d.values()) for d in self.events.values()))


class Layer:
    """Per-neuron-layer constants (threshold, bias, decays, reset, init) in the simulation's units."""

    def __init__(self, name: str, node, shape: tuple, integer: bool, bias: np.ndarray, dev):
        self.name, self.shape, self.integer = name, shape, integer
        self.readout = isinstance(node, nir.I) or bool(cv.meta(node, cv.READOUT, False))
        self.reset = cv.reset_mode(node)
        self.timing = cv.reset_timing(node)
        if self.timing not in cv.RESET_TIMINGS:
            raise GraphError(f"node {name!r}: field 'snnc.reset_timing' must be one of {cv.RESET_TIMINGS}, got "
                             f"{self.timing!r}")
        if self.reset not in ("subtract", "zero"):
            raise GraphError(f"node {name!r}: field 'snnc.reset' must be 'subtract' or 'zero', got {self.reset!r}")
        if isinstance(node, nir.I):
            vth = np.full(shape, np.inf)
            r = np.asarray(node.r, dtype=np.float64)
        elif isinstance(node, nir.IF):
            vth = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape)
            r = np.asarray(node.r, dtype=np.float64)
        elif isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
            vth = np.full(shape, np.inf) if isinstance(node, nir.LI) else \
                np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape)
            r = np.ones(shape)
        else:
            raise GraphError(f"node {name!r}: the simulator runs IF, LIF, CubaLIF, LI and I neurons; "
                             f"{type(node).__name__} needs the NIR import lowering first")
        # leaky neurons in canonical discrete time (dt = 1 step, forward Euler, see compiler/frontend/nir_import):
        # u <- alpha u + g_u a;  v <- beta v + g_v (u or a) + bias, beta = 1 - 1/tau, g_v = r/tau (1 = no gain)
        self.leaky = isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF))
        if self.leaky:
            def _dec(tau, gain):
                t = np.broadcast_to(np.asarray(tau, dtype=np.float64), shape)
                g = np.broadcast_to(np.asarray(gain, dtype=np.float64), shape)
                with np.errstate(divide="ignore", invalid="ignore"):
                    gg = np.where(np.isinf(t) & np.isinf(g), 1.0, g / t)
                return (torch.as_tensor(1.0 - 1.0 / t, dtype=torch.float64, device=dev),
                        torch.as_tensor(gg, dtype=torch.float64, device=dev))
            cuba = isinstance(node, nir.CubaLIF)
            self.beta, self.gain_v = _dec(node.tau_mem if cuba else node.tau, node.r)
            self.alpha, self.gain_u = _dec(node.tau_syn, node.w_in) if cuba else (None, None)
            if isinstance(node, nir.LI) or not np.all(np.isfinite(vth)):
                self.readout = True
        r = np.broadcast_to(r, shape)
        v0 = cv.v_init(node, shape)
        if integer:
            if not np.all(r == 1):
                raise QuantizationError(f"node {name!r}: field 'r' must be 1 in an integer graph")
            self.du = int(cv.meta(node, cv.DU, 4095))
            self.dv = int(cv.meta(node, cv.DV, 0))
            if self.readout:
                self.vth6 = None
            else:
                if np.any(~np.isfinite(vth)) or np.any(vth != np.round(vth)) or np.any(vth < 0) \
                        or np.any(vth > cv.VTH_MAX):
                    raise QuantizationError(f"node {name!r}: field 'v_threshold' must hold integers in "
                                            f"[0, {cv.VTH_MAX}] in an integer graph")
                self.vth6 = torch.as_tensor(vth.astype(np.int64) << cv.ACT_SHIFT, device=dev)
            self.bias6 = torch.as_tensor(np.round(bias).astype(np.int64) << cv.ACT_SHIFT, device=dev)
            self.v0 = torch.as_tensor(np.round(v0 * 64).astype(np.int64), device=dev)
            # potential floor (snnc.v_min), int64 in v units (x 64), within the 24-bit range; None: no floor
            vmin6 = None if self.readout else cv.v_min_fixed(node, shape)
            self.vmin6 = None if vmin6 is None else torch.as_tensor(vmin6, device=dev)
        else:
            self.r = torch.as_tensor(np.array(r), dtype=torch.float64, device=dev)
            self.vth = None if self.readout else torch.as_tensor(np.array(vth), dtype=torch.float64,
                                                                 device=dev)
            self.bias = torch.as_tensor(bias, dtype=torch.float64, device=dev)
            self.v0 = torch.as_tensor(v0, dtype=torch.float64, device=dev)
            vmin = None if self.readout else cv.v_min(node, shape)
            self.vmin = None if vmin is None else torch.as_tensor(vmin, dtype=torch.float64, device=dev)


    def step(self, u: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, counter: EventCounter,
             rng_a: dict, rng_v: dict | None, s_prev: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One time-step of this layer (``snnc.ir.neuron``): (u, v, input a or None) -> (u, v, spikes or None for
        the readout). Integer: Lava fixed point, wraps and saturations counted; float: the same dynamics in
        float64. ``rng_v`` (when given) records ranges: max |a (+ bias)| and max v before the floor. ``s_prev``:
        this layer's spikes of the previous step (used by the "delayed" reset timing, ``snnc.reset_timing``)."""
        n = self.name
        guard = None
        if self.timing == "guarded" and not self.readout:
            guard = v > (self.vth6 if self.integer else self.vth)
        if self.integer:
            u, v = step_integer(u, v, a, self.du, self.dv, self.bias6, counter, n)
            if rng_v is not None:
                if a is not None:
                    rng_a[n] = max(rng_a[n], float(a.abs().max()))
                rng_v[n] = max(rng_v[n], float(v.max() if self.vth6 is not None else v.abs().max()) / 64.0)
            if self.vth6 is None:
                return u, v, None
            if self.timing == "delayed":
                v, s = fire_delayed(v, self.vth6, self.vmin6, self.reset, s_prev, lo=-cv.V_MAX)
                return u, v, s
            v, s = fire(v, self.vth6, self.vmin6, self.reset, guard=guard)
            return u, v, s
        if self.leaky:
            u, v = step_leaky(u, v, a, self.alpha, self.gain_u, self.beta, self.gain_v, self.bias)
        else:
            v = step_float(v, a, self.bias * self.r, self.r)
        if rng_v is not None:
            if a is not None:
                rng_a[n] = max(rng_a[n], float((a + self.bias).abs().max()))
            rng_v[n] = max(rng_v[n], float(v.max() if self.vth is not None else v.abs().max()))
        if self.vth is None:
            return u, v, None
        if self.timing == "delayed":
            return (u,) + fire_delayed(v, self.vth, self.vmin, self.reset, s_prev)
        v, s = fire(v, self.vth, self.vmin, self.reset, guard=guard)
        return u, v, s


def batches(n: int, batch_size: int) -> Iterable[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def simulate(graph: Graph, x: np.ndarray, steps: int | None = None, batch_size: int = 256, rasters: bool = False,
             device: str = "cpu", strict: bool = False, record_final: bool = False,
             progress: bool = False, track_ranges: bool = False, engine: str = "auto") -> SimResult:
    """Run ``graph`` on inputs ``x`` for ``steps`` + depth steps: x (N, *input_shape) is one frame per sample,
    presented every step; x (N, T_in, *input_shape) a sequence, slice t at step t (``snnc.ir.sequence``: the rule,
    and ``steps`` None = T_in).

    Integer graphs (``snnc.kind == "integer"``) run Lava's fixed-point arithmetic exactly; float graphs run the
    same dynamics in float64. The output is read as the readout layer's potential gathered over the last
    ``steps`` steps (the first ``depth`` steps carry no input signal to it).
    engine: "auto" runs integer IF/I graphs on the exact float32/float64 engine (backends/cpu/exact_engine.py,
    bit-identical, much faster) unless ``track_ranges`` or ``record_final`` is asked; "reference" forces the
    int64 step loop below; "fast" forces the engine (error if the graph has layers it does not run)."""
    if engine not in ("auto", "fast", "reference"):
        raise ValueError(f"engine must be 'auto', 'fast' or 'reference', got {engine!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    plan = build_plan(graph)
    integer = cv.graph_kind(graph) == cv.INTEGER
    dev = torch_device(device)
    series = input_series(plan.shapes[plan.input], x, plan.input)
    steps = series.run_steps(steps)
    x = series.x
    xin = quantize_input(graph, x) if integer else x.astype(np.float64)
    shown = series.presented(steps)  # sequence: slices presented; -1: the static frame on every step
    syn = [Synapse(graph, plan, c, integer, dev) for c in plan.connections]
    layers = {}
    for n in plan.neurons:
        bias = sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
        layers[n] = Layer(n, graph.nodes[n], plan.shapes[n], integer, bias, dev)
    latency = steps + plan.depth
    N = x.shape[0]
    out_shape = plan.shapes[plan.readout]
    logits = np.zeros((N,) + tuple(out_shape))
    potentials = np.zeros((N,) + tuple(out_shape), dtype=np.int64 if integer else np.float64)
    counts = {n: np.zeros((N,) + tuple(plan.shapes[n]), dtype=np.int32) for n in plan.neurons}
    events = {n: {"u_wrap": 0, "v_saturate": 0} for n in plan.neurons}
    rast = {n: np.zeros((latency, N) + tuple(plan.shapes[n]), dtype=bool) for n in plan.neurons} if rasters else None
    final: dict[str, dict[str, np.ndarray]] | None = {} if record_final else None
    rng_a = {n: 0.0 for n in plan.neurons}
    rng_v = {n: 0.0 for n in plan.neurons}
    scale = float(cv.meta(graph.nodes[plan.readout], cv.SCALE, 1.0)) if integer else 1.0
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=N, desc="simulate", unit="sample")
    from . import exact_engine as ee

    use_fast = integer and not track_ranges and not record_final and ee.supported(layers)
    if engine == "fast" and not use_fast:
        raise GraphError("engine='fast' runs integer graphs of IF/I layers without track_ranges/record_final")
    use_fast = use_fast and engine != "reference"
    counter = EventCounter(dev)
    if use_fast:
        with ee.exact_mode(dev):
            in_max = float(np.abs(xin).max()) if xin.size else 0.0
            conns = ee.plan_connections(syn, plan, in_max, dev, in_nonneg=bool(xin.size == 0 or xin.min() >= 0),
                                        batch=min(batch_size, N))
            lplan = ee.plan_layers(layers, plan, conns, dev)
            for sl in batches(N, batch_size):
                xb = torch.as_tensor(xin[sl], dtype=torch.float32 if in_max < 2 ** 24 else torch.float64,
                                     device=dev)
                br = ee.run_batch(plan, lplan, conns, xb, latency, counter, rast, sl, shown)
                logits[sl] = br.logits_diff / (64.0 * scale) / steps
                potentials[sl] = br.potentials
                for n, c in br.counts.items():
                    counts[n][sl] = c
                if bar is not None:
                    bar.update(sl.stop - sl.start)
    for sl in ([] if use_fast else batches(N, batch_size)):
        B = sl.stop - sl.start
        xb = torch.as_tensor(xin[sl], dtype=torch.float64, device=dev)
        dtype = torch.int64 if integer else torch.float64
        u = {n: torch.zeros((B,) + tuple(plan.shapes[n]), dtype=dtype, device=dev) for n in plan.neurons}
        v = {n: (layers[n].v0.expand((B,) + tuple(plan.shapes[n])).clone()) for n in plan.neurons}
        buf = [None] * len(syn)
        spikes = {n: None for n in plan.neurons}
        cnt = {n: torch.zeros((B,) + tuple(plan.shapes[n]), dtype=torch.int32, device=dev) for n in plan.neurons}
        v_before = None
        for t in range(latency):
            for n in plan.neurons:
                L = layers[n]
                a = fan_in(buf, plan.incoming[n])
                u[n], vv, s = L.step(u[n], v[n], a, counter, rng_a, rng_v if track_ranges else None, spikes[n])
                v[n] = vv
                spikes[n] = s
                if s is not None:
                    cnt[n] += s
                    if rast is not None:
                        rast[n][t, sl] = s.cpu().numpy()
            if t == plan.depth - 1:
                v_before = v[plan.readout].clone()
            xt = xb if shown < 0 else (xb[:, t] if t < shown else None)  # the input of this step
            for i, c in enumerate(plan.connections):
                src = xt if c.src == plan.input else spikes[c.src]
                if src is None:
                    buf[i] = None
                    continue
                if src is not xb and dev.type == "cpu" and not bool(src.any()):
                    # a silent layer (or an input slice without events) delivers exactly 0 (integer and float
                    # chains alike): skip its GEMM/conv
                    buf[i] = torch.zeros((B,) + tuple(syn[i].out_shape), dtype=dtype, device=dev)
                    continue
                srcf = src.to(torch.float64)
                buf[i] = syn[i](srcf) if integer else syn[i].linear(srcf)
        vr = v[plan.readout]
        if v_before is None:
            v_before = layers[plan.readout].v0.expand_as(vr)
        diff = (vr - v_before).to(torch.float64)
        if integer:
            diff = diff / (64.0 * scale)
        logits[sl] = (diff / steps).cpu().numpy()
        potentials[sl] = vr.cpu().numpy()
        for n in plan.neurons:
            counts[n][sl] = cnt[n].cpu().numpy()
        if final is not None:
            for n in plan.neurons:
                final.setdefault(n, {"u": [], "v": []})
                final[n]["u"].append(u[n].cpu().numpy())
                final[n]["v"].append(v[n].cpu().numpy())
        if bar is not None:
            bar.update(B)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    for (k, kind), c in counter.totals().items():
        if c:
            events.setdefault(k, {})[kind] = events.get(k, {}).get(kind, 0) + c
    for i, c in enumerate(plan.connections):
        if syn[i].wraps:
            events.setdefault(f"{c.src}->{c.dst}", {})["conv_wrap"] = syn[i].wraps
    if final is not None:
        final = {n: {k: np.concatenate(vs) for k, vs in d.items()} for n, d in final.items()}
    res = SimResult(
        logits=logits.reshape(N, -1), potentials=potentials.reshape(N, -1), steps=steps, latency_steps=latency,
        samples=N, kind=cv.INTEGER if integer else cv.FLOAT,
        spikes_per_layer={n: int(counts[n].sum()) for n in plan.neurons if not layers[n].readout},
        spike_counts=counts, events=events, seconds=seconds, rasters=rast, final_state=final,
        neurons_per_layer={n: math.prod(plan.shapes[n]) for n in plan.neurons},
        engine="fast" if use_fast else "reference",
        ranges={n: {"a": rng_a[n], "v": rng_v[n]} for n in plan.neurons} if track_ranges else None,
        sequence=series.sequence, input_steps=series.steps_in)
    if strict and res.total_events():
        bad = {k: d for k, d in events.items() if sum(d.values())}
        raise OverflowEventError(f"overflow events during simulation (--strict): {bad}")
    return res
