"""Batched SNN simulator: bit-accurate Lava 0.10.0 fixed point for integer graphs, the same dynamics in float.

Integer semantics (per neuron layer, per step; all state int64 holding 24-bit values):
  a  = sum over incoming connections of the value buffered at the previous step
       Dense (Affine/Linear): a = (mant @ s) << weight_exp   (>> floors when weight_exp < 0), no saturation
       Conv (Conv2d/SumPool2d): a = wrap24(conv(W, s))        (Lava's signed_clamp: [-2**23, 2**23))
  u  = decay(u, du + 1) + (a << 6), wrapped once into (-2**23, 2**23]        (u: int, 24-bit, wraps)
  v  = clip(decay(v, dv) + u + (bias << 6), -(2**23 - 1), 2**23 - 1)      (v: int, 24-bit, saturates)
  v  = max(v, round(v_min * 64))        only where the node has a floor (``snnc.v_min``, spiking neurons)
  s  = v > vth << 6;  reset: v -= vth << 6 ("subtract") or v = 0 ("zero"); u is never reset
  decay(x, d) = sign(x * (4096 - d)) * (|x * (4096 - d)| >> 12)
Float semantics: a as above without rounding; v += a (+ bias); v = max(v, v_min); s = v > vth; same resets.
Each wrap of u or of a conv output and each saturation of v is counted per layer (``events``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError, OverflowEventError, QuantizationError
from snnc.ir.graph import Graph, conv2d_params, pool_params

from .plan import Connection, Plan, build_plan

V_LIM = cv.V_MAX  # 2**23 - 1
U_MAX = 2 ** 23


@dataclass
class SimResult:
    """Outcome of a simulation run over all samples.

    logits: float (N, n_out), readout potential gathered over the last ``steps`` steps, in ANN logit units
    potentials: readout potential at the end (int for integer graphs: Lava's 24-bit v), (N, n_out)
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
    ranges: dict[str, dict[str, float]] | None = None  # layer -> max |a| per step; max v before reset (max |v| for
    # the readout). Spiking layers may saturate on the negative side (counted in events): only the positive side
    # decides spikes early, and a bound on the negative side would cost the weights their precision.

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.logits.argmax(1) == np.asarray(labels)).mean())

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    def total_events(self) -> int:
        return int(sum(sum(d.values()) for d in self.events.values()))


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """Lava's decay: sign(x*(4096-d)) * (|x*(4096-d)| >> 12), round toward zero."""
    if d == 0:
        return x
    if d >= cv.DECAY_UNITY:
        return torch.zeros_like(x)
    p = x * (cv.DECAY_UNITY - d)
    return torch.sign(p) * (p.abs() >> 12)


def _flatten_shape(node: nir.Flatten, in_shape: tuple) -> tuple:
    from snnc.ir.graph import node_output_shape

    return node_output_shape("flatten", node, in_shape)


def _batched_input(plan: Plan, x: np.ndarray) -> np.ndarray:
    """``x`` as (N, *input shape): one sample gains a batch axis; a shape that does not fit is a DataError."""
    x = np.asarray(x)
    in_shape = plan.shapes[plan.input]
    if x.ndim == len(in_shape):
        x = x[None]
    if tuple(x.shape[1:]) != tuple(in_shape):
        from snnc.ir.errors import DataError

        raise DataError(f"input data has per-sample shape {tuple(x.shape[1:])}, the graph's Input node "
                        f"{plan.input!r} expects {tuple(in_shape)}")
    return x


class _Layer:
    """Per-neuron-layer constants (threshold, bias, decays, reset, init) in the simulation's units."""

    def __init__(self, name: str, node, shape: tuple, integer: bool, bias: np.ndarray, dev):
        self.name, self.shape, self.integer = name, shape, integer
        self.readout = isinstance(node, nir.I) or bool(cv.meta(node, cv.READOUT, False))
        self.reset = cv.reset_mode(node)
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


    def step(self, u: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, events: dict,
             rng_a: dict, rng_v: dict | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One time-step of this layer: (u, v, input a or None) -> (u, v, spikes or None for the readout).

        Integer: Lava LIF fixed point (module docstring), counting u wraps and v saturations in ``events``.
        Float: v += r * (a + bias), spike if v > vth, reset. ``rng_v`` (when given) records ranges."""
        n = self.name
        if self.integer:
            uu = _decay(u, self.du + 1)
            if a is not None:
                uu = uu + (a << cv.ACT_SHIFT)
            hi, lo = uu > U_MAX, uu <= -U_MAX
            if bool(hi.any()) or bool(lo.any()):
                events["u_wrap"] += int(hi.sum() + lo.sum())
                uu = torch.where(hi, uu - 2 * U_MAX, torch.where(lo, uu + 2 * U_MAX, uu))
            vv = _decay(v, self.dv) + uu + self.bias6
            sat = (vv > V_LIM) | (vv < -V_LIM)
            if bool(sat.any()):
                events["v_saturate"] += int(sat.sum())
                vv = vv.clamp(-V_LIM, V_LIM)
            if rng_v is not None:
                if a is not None:
                    rng_a[n] = max(rng_a[n], float(a.abs().max()))
                rng_v[n] = max(rng_v[n], float(vv.max() if self.vth6 is not None else vv.abs().max()) / 64.0)
            if self.vth6 is None:
                return uu, vv, None
            if self.vmin6 is not None:
                vv = torch.maximum(vv, self.vmin6)
            s = vv > self.vth6
            vv = torch.where(s, vv - self.vth6 if self.reset == "subtract" else torch.zeros_like(vv), vv)
            return uu, vv, s
        if self.leaky:
            uu, drive = u, a
            if self.alpha is not None:
                uu = self.alpha * u + (a * self.gain_u if a is not None else 0.0)
                drive = uu
            vv = self.beta * v + self.gain_v * self.bias
            if drive is not None:
                vv = vv + self.gain_v * drive
            u = uu
        else:
            vv = v + self.bias * self.r
            if a is not None:
                vv = vv + a * self.r
        if rng_v is not None:
            if a is not None:
                rng_a[n] = max(rng_a[n], float((a + self.bias).abs().max()))
            rng_v[n] = max(rng_v[n], float(vv.max() if self.vth is not None else vv.abs().max()))
        if self.vth is None:
            return u, vv, None
        if self.vmin is not None:
            vv = torch.maximum(vv, self.vmin)
        s = vv > self.vth
        vv = torch.where(s, vv - self.vth if self.reset == "subtract" else torch.zeros_like(vv), vv)
        return u, vv, s


class _Synapse:
    """One connection compiled to a callable: float chain, or integer Dense/Conv with Lava's rounding."""

    def __init__(self, graph: Graph, plan: Plan, conn: Connection, integer: bool, dev):
        self.conn, self.integer, self.dev = conn, integer, dev
        src_shape = plan.shapes[conn.src]
        self.kind = "identity"
        self.steps: list = []
        weighted = [n for n in conn.ops if not isinstance(graph.nodes[n], nir.Flatten)]
        shape = src_shape
        if integer:
            if len(weighted) > 1:
                raise GraphError(f"connection {conn.src!r} -> {conn.dst!r}: an integer graph needs exactly one "
                                 f"synapse node per connection, found {weighted} (run the fuse_synapses pass)")
            if not weighted:
                raise GraphError(f"connection {conn.src!r} -> {conn.dst!r} has no synapse node")
        self.bias = np.zeros(plan.shapes[conn.dst], dtype=np.float64)
        for n in conn.ops:
            node = graph.nodes[n]
            if isinstance(node, nir.Flatten):
                out = _flatten_shape(node, shape)
                self.steps.append(("reshape", out))
                shape = out
                continue
            out = plan.shapes[n]
            if isinstance(node, (nir.Affine, nir.Linear)):
                w = np.asarray(node.weight, dtype=np.float64)
                b = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64) * np.ones(w.shape[0])
                if integer:
                    wexp = int(cv.meta(node, cv.WEIGHT_EXP, 0))
                    mant = w / 2.0 ** wexp
                    if not np.all(mant == np.round(mant)):
                        raise QuantizationError(f"node {n!r}: field 'weight' is not an integer mantissa times "
                                                f"2**snnc.weight_exp ({wexp})")
                    self.steps.append(("dense_int", torch.as_tensor(mant, device=dev), wexp))
                    self.kind = "dense"
                else:
                    self.steps.append(("matmul", torch.as_tensor(w, device=dev)))
                    self.steps.append(("add", torch.as_tensor(b, device=dev)))
                if integer:
                    self.bias = self.bias + b.reshape(self.bias.shape)
            elif isinstance(node, nir.Conv2d):
                p = conv2d_params(node, n)
                w = np.asarray(node.weight, dtype=np.float64)
                b = np.asarray(node.bias, dtype=np.float64) * np.ones(w.shape[0])
                if integer:
                    if not np.all(w == np.round(w)):
                        raise QuantizationError(f"node {n!r}: field 'weight' must hold integers in an integer "
                                                "graph (Lava's Conv has no weight exponent)")
                    self.bias = self.bias + np.broadcast_to(b[:, None, None], out)
                    self.kind = "conv"
                    self.steps.append(("conv", torch.as_tensor(w, device=dev), None, p))
                    self.steps.append(("wrap24",))
                else:
                    self.steps.append(("conv", torch.as_tensor(w, device=dev), torch.as_tensor(b, device=dev), p))
            elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                p = pool_params(node, n)
                div = 1 if isinstance(node, nir.SumPool2d) else None
                self.steps.append(("pool", p, div))
                if integer:
                    if isinstance(node, nir.AvgPool2d):
                        raise GraphError(f"node {n!r}: AvgPool2d is not integer; quantize turns it into SumPool2d")
                    self.kind = "conv"
                    self.steps.append(("wrap24",))
            elif isinstance(node, nir.Scale):
                if integer:
                    raise GraphError(f"node {n!r}: Scale nodes must be folded before quantization")
                self.steps.append(("scale", torch.as_tensor(np.asarray(node.scale, dtype=np.float64), device=dev)))
            else:
                raise GraphError(f"node {n!r}: {type(node).__name__} inside a connection is not supported")
            shape = out
        if not integer:
            # the bias part of a float chain is added undelayed at the neuron (as Lava adds bias in the neuron)
            zero = torch.zeros((1,) + tuple(src_shape), dtype=torch.float64, device=dev)
            self.bias = self(zero)[0].cpu().numpy()
            self.linear_only = True
        self.out_shape = plan.shapes[conn.dst]
        self.wraps = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, *src_shape) float64 (spikes 0/1 or graded input) -> (B, *dst_shape)."""
        y = x
        for st in self.steps:
            op = st[0]
            if op == "reshape":
                y = y.reshape((y.shape[0],) + tuple(st[1]))
            elif op == "matmul":
                y = y.reshape(y.shape[0], -1) @ st[1].T
            elif op == "add":
                y = y + st[1]
            elif op == "dense_int":
                acc = (y.reshape(y.shape[0], -1) @ st[1].T).round().to(torch.int64)
                e = st[2]
                y = acc << e if e >= 0 else acc >> (-e)
            elif op == "conv":
                _, w, b, p = st
                y = F.conv2d(y.to(w.dtype), w, b, stride=p["stride"], padding=p["padding"],
                             dilation=p["dilation"], groups=p["groups"])
                if self.integer:
                    y = y.round().to(torch.int64)
            elif op == "pool":
                p, div = st[1], st[2]
                y = F.avg_pool2d(y.to(torch.float64), p["kernel_size"], p["stride"], p["padding"],
                                 count_include_pad=True, divisor_override=div)
                if self.integer:
                    y = y.round().to(torch.int64)
            elif op == "wrap24":
                over = (y >= U_MAX) | (y < -U_MAX)
                if bool(over.any()):
                    self.wraps += int(over.sum())
                    y = (y + U_MAX) % (2 * U_MAX) - U_MAX
            elif op == "scale":
                y = y * st[1]
        return y

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """Float chains: the input-dependent part (bias removed; it is added at the neuron)."""
        if getattr(self, "_bias_t", None) is None or self._bias_t.device != x.device:
            self._bias_t = torch.as_tensor(self.bias, device=x.device)
        return self(x) - self._bias_t


def _as_batches(n: int, batch_size: int) -> Iterable[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Graded input spikes of an integer graph: clip(round(x / snnc.input_scale)) to snnc.input_bits."""
    scale = cv.meta(graph, cv.INPUT_SCALE)
    if scale is None or not np.isfinite(scale) or scale <= 0:
        raise QuantizationError(f"graph metadata 'snnc.input_scale' must be a positive number in an integer graph, "
                                f"got {scale!r}")
    bits = int(cv.meta(graph, cv.INPUT_BITS, 8))
    signed = bool(cv.meta(graph, cv.INPUT_SIGNED, True))
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / float(scale)), lo, hi)


def simulate(graph: Graph, x: np.ndarray, steps: int, batch_size: int = 256, rasters: bool = False,
             device: str = "cpu", strict: bool = False, record_final: bool = False,
             progress: bool = False, track_ranges: bool = False, engine: str = "auto") -> SimResult:
    """Run ``graph`` on inputs ``x`` (N, *input_shape), presented every step, for ``steps`` + depth steps.

    Integer graphs (``snnc.kind == "integer"``) run Lava's fixed-point arithmetic exactly; float graphs run the
    same dynamics in float64. The output is read as the readout layer's potential gathered over the last
    ``steps`` steps (the first ``depth`` steps carry no input signal to it).
    engine: "auto" runs integer IF/I graphs on the exact float32/float64 engine (backends/cpu/exact_engine.py,
    bit-identical, much faster) unless ``track_ranges`` or ``record_final`` is asked; "reference" forces the
    int64 step loop below; "fast" forces the engine (error if the graph has layers it does not run)."""
    if engine not in ("auto", "fast", "reference"):
        raise ValueError(f"engine must be 'auto', 'fast' or 'reference', got {engine!r}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    plan = build_plan(graph)
    integer = cv.graph_kind(graph) == cv.INTEGER
    dev = torch.device(device)
    x = _batched_input(plan, x)
    xin = quantize_input(graph, x) if integer else x.astype(np.float64)
    syn = [_Synapse(graph, plan, c, integer, dev) for c in plan.connections]
    layers = {}
    for n in plan.neurons:
        bias = sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
        layers[n] = _Layer(n, graph.nodes[n], plan.shapes[n], integer, bias, dev)
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
    scale = float(cv.meta(graph.nodes[plan.readout], "snnc.scale", 1.0)) if integer else 1.0
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
    if use_fast:
        with ee.exact_mode(dev):
            in_max = float(np.abs(xin).max()) if xin.size else 0.0
            conns = ee.plan_connections(syn, plan, in_max, dev, in_nonneg=bool(xin.size == 0 or xin.min() >= 0))
            lplan = ee.plan_layers(layers, plan, conns, dev)
            counter = ee._Counter(dev)
            for sl in _as_batches(N, batch_size):
                xb = torch.as_tensor(xin[sl], dtype=torch.float32 if in_max < 2 ** 24 else torch.float64,
                                     device=dev)
                br = ee.run_batch(plan, lplan, conns, xb, latency, counter, rast, sl)
                logits[sl] = br.logits_diff / (64.0 * scale) / steps
                potentials[sl] = br.potentials
                for n, c in br.counts.items():
                    counts[n][sl] = c
                if bar is not None:
                    bar.update(sl.stop - sl.start)
            for (k, kind), c in counter.totals().items():
                if c:
                    events.setdefault(k, {})[kind] = events.get(k, {}).get(kind, 0) + c
    for sl in ([] if use_fast else _as_batches(N, batch_size)):
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
                a = None
                for i in plan.incoming[n]:
                    if buf[i] is not None:
                        a = buf[i] if a is None else a + buf[i]
                u[n], vv, s = L.step(u[n], v[n], a, events[n], rng_a, rng_v if track_ranges else None)
                v[n] = vv
                spikes[n] = s
                if s is not None:
                    cnt[n] += s
                    if rast is not None:
                        rast[n][t, sl] = s.cpu().numpy()
            if t == plan.depth - 1:
                v_before = v[plan.readout].clone()
            for i, c in enumerate(plan.connections):
                src = xb if c.src == plan.input else spikes[c.src]
                if src is None:
                    buf[i] = None
                    continue
                if src is not xb and dev.type == "cpu" and not bool(src.any()):
                    # a silent layer delivers exactly 0 (integer and float chains alike): skip its GEMM/conv
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
        ranges={n: {"a": rng_a[n], "v": rng_v[n]} for n in plan.neurons} if track_ranges else None)
    if strict and res.total_events():
        bad = {k: d for k, d in events.items() if sum(d.values())}
        raise OverflowEventError(f"overflow events during simulation (--strict): {bad}")
    return res


# --- float range calibration (quantize), layer by layer ------------------------------------------------------

_CALIB_BLOCK_BYTES = 1 << 20  # float64 bytes of one layer's (steps x batch x neurons) block: stays in cache
_CALIB_CONV_FRAMES = 64  # frames (steps x samples) per conv call: fewer calls, each frame about as fast
_FRAMEWISE: dict[tuple, bool] = {}  # conv call shape -> whether a frame's result is independent of the batch


def _pointwise_scale(syn: _Synapse) -> tuple[np.ndarray, np.ndarray] | None:
    """(w, b), each (C, 1, 1), when the float chain is one per-channel 1x1 conv (groups = channels, stride 1, no
    padding), e.g. a residual shortcut; else None.

    On 0/1 spikes each output of such a conv is b + w * s: one exact product, one rounded addition, so the
    float64 value equals F.conv2d's whatever its algorithm."""
    if len(syn.steps) != 1 or syn.steps[0][0] != "conv":
        return None
    _, w, b, p = syn.steps[0]
    c = int(w.shape[0])
    if tuple(w.shape) != (c, 1, 1, 1) or p["groups"] != c or tuple(p["stride"]) != (1, 1) \
            or tuple(p["padding"]) != (0, 0):
        return None
    return w.reshape(c, 1, 1).cpu().numpy(), b.reshape(c, 1, 1).cpu().numpy()


def _deliver(syn: _Synapse, pointwise: tuple | None, s: np.ndarray, out: np.ndarray) -> None:
    """out[j] = what ``simulate`` buffers for spikes s[j] (bool (steps, B, *src_shape)): syn.linear(s[j]), or
    exactly 0 where the whole batch is silent (simulate skips that product)."""
    live = np.flatnonzero(s.reshape(s.shape[0], -1).any(1))
    if len(live) < s.shape[0]:
        out[...] = 0.0
    if not len(live):
        return
    if pointwise is not None:
        w, b = pointwise
        if len(live) < s.shape[0]:
            out[live] = (s[live] * w + b) - syn.bias
        else:  # the same operations in place
            np.multiply(s, w, out=out)
            out += b
            out -= syn.bias
        return
    conv = syn.steps[0] if len(syn.steps) == 1 and syn.steps[0][0] == "conv" else None
    if conv is None:  # any other chain (dense products among them) gets a fresh tensor per step, as in simulate
        for j in live:
            out[j] = syn.linear(torch.from_numpy(s[j]).to(torch.float64)).numpy()
        return
    # a single conv: syn.linear(x) without its per-call dispatch, subtracting straight into out[j]. Its input is
    # unfolded into a fresh buffer first, except a 1x1 / stride 1 / no padding kernel: that one gets a fresh tensor
    _, w, b, p = conv
    stride, padding, dilation, groups = p["stride"], p["padding"], p["dilation"], p["groups"]
    fresh = tuple(w.shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
    sf = torch.from_numpy(s.astype(np.float64))
    of = torch.from_numpy(out)
    bias_t = torch.from_numpy(syn.bias)

    def conv2d(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.clone() if fresh else x, w, b, stride, padding, dilation, groups)

    # consecutive live steps share one call of up to _CALIB_CONV_FRAMES frames (fewer, larger calls) where the
    # conv computes each frame on its own: checked once per call shape against one call per step
    group = max(1, _CALIB_CONV_FRAMES // s.shape[1])
    runs: list[list[int]] = []
    for j in live.tolist():
        if runs and runs[-1][1] == j and j - runs[-1][0] < group:
            runs[-1][1] = j + 1
        else:
            runs.append([j, j + 1])
    key0 = (tuple(w.shape), str(p), tuple(s.shape[1:]), torch.get_num_threads())
    for j, e in runs:
        x = sf[j:e].flatten(0, 1)
        if e - j > 1:
            key = key0 + (e - j,)
            if key not in _FRAMEWISE:
                y = conv2d(x)
                per = torch.cat([conv2d(sf[i]) for i in range(j, e)])
                _FRAMEWISE[key] = torch.equal(y, per)
                y = y if _FRAMEWISE[key] else per
            else:
                y = conv2d(x) if _FRAMEWISE[key] else torch.cat([conv2d(sf[i]) for i in range(j, e)])
        else:
            y = conv2d(x)
        torch.sub(y, bias_t, out=of[j:e].view((-1,) + tuple(of.shape[2:])))


def calibration_ranges(graph: Graph, x: np.ndarray, steps: int, batch_size: int = 256,
                       plan: Plan | None = None) -> dict[str, dict[str, float]]:
    """Observed ranges of a float graph on inputs ``x`` (N, *input_shape) over ``steps`` + depth steps, per neuron
    layer: "a" = max |a + bias| over steps with input, "v" = max v before the reset (max |v| for the readout),
    float units.

    Bit for bit ``simulate(graph, x, steps, batch_size, track_ranges=True).ranges``: per neuron and step the same
    float64 operations as _Layer.step's float branch (IF and I layers), and every synapse product as in
    ``simulate`` (dense products on the same batch of samples; a conv may take several steps in one call where
    its frames were checked to come out the same). It runs layer by layer over blocks of steps instead of step by
    step: the sums of inputs, the range maxima and the silence checks leave the step loop, and the IF update runs
    on numpy arrays (less overhead per call than torch on small arrays). Graphs with other layers (LIF, CubaLIF,
    LI), recurrent connections, and integer graphs go to ``simulate``. ``plan``: build_plan(graph), if built."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    plan = build_plan(graph) if plan is None else plan
    pos = {n: k for k, n in enumerate(plan.neurons)}
    if cv.graph_kind(graph) == cv.INTEGER \
            or not all(isinstance(graph.nodes[n], (nir.IF, nir.I)) for n in plan.neurons) \
            or any(c.src != plan.input and pos[c.src] >= pos[c.dst] for c in plan.connections):
        return simulate(graph, x, steps, batch_size=batch_size, track_ranges=True).ranges
    dev = torch.device("cpu")
    x = _batched_input(plan, x)
    x = x.astype(np.float64)
    syn = [_Synapse(graph, plan, c, False, dev) for c in plan.connections]
    layers = {}
    for n in plan.neurons:
        bias = sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
        layers[n] = _Layer(n, graph.nodes[n], plan.shapes[n], False, bias, dev)
    if any(layers[c.src].readout for c in plan.connections if c.src != plan.input):
        # a connection out of the readout delivers nothing (it emits no spikes): not modelled here
        return simulate(graph, x, steps, batch_size=batch_size, track_ranges=True).ranges
    const = {}
    for n, L in layers.items():
        r, bias = L.r.numpy(), L.bias.numpy()
        vth = None if L.vth is None else L.vth.numpy()
        const[n] = dict(
            r=None if np.all(r == 1) else r,  # a * 1 = a exactly
            bias=bias, br=(L.bias * L.r).numpy(), v0=L.v0.numpy(), vth=vth,
            vmin=None if L.vmin is None else L.vmin.numpy(), subtract=L.reset == "subtract",
            # subtract reset as v - vth * s: exact (vth * 0 = +0, v - +0 = v) for finite vth > 0
            mul_reset=vth is not None and L.reset == "subtract" and bool(np.all(np.isfinite(vth) & (vth > 0))))
    pointwise = [None if c.src == plan.input else _pointwise_scale(s) for c, s in zip(plan.connections, syn)]
    latency = steps + plan.depth
    last_use = {n: max((pos[c.dst] for c in plan.connections if c.src == n), default=-1) for n in plan.neurons}
    rng_a = {n: 0.0 for n in plan.neurons}
    rng_v = {n: 0.0 for n in plan.neurons}
    widest = max(math.prod(plan.shapes[n]) for n in plan.neurons)
    for sl in _as_batches(x.shape[0], batch_size):
        B = sl.stop - sl.start
        xb = torch.as_tensor(x[sl], dtype=torch.float64, device=dev)
        # an input connection delivers the same value at every step from step 1 on
        xin = {i: syn[i].linear(xb).numpy() for i, c in enumerate(plan.connections) if c.src == plan.input}
        v = {n: np.broadcast_to(const[n]["v0"], (B,) + tuple(plan.shapes[n])).copy() for n in plan.neurons}
        last: dict[str, np.ndarray] = {}  # layer -> its spikes at the step before the block
        block = max(2, min(latency, _CALIB_BLOCK_BYTES // (8 * B * widest)))
        for t0 in range(0, latency, block):
            k = min(latency, t0 + block) - t0
            j0 = 1 if t0 == 0 else 0  # no connection delivers anything at step 0
            spk: dict[str, np.ndarray] = {}  # layer -> bool (k, B, *shape) spikes of this block
            for n in plan.neurons:
                cn, shape = const[n], (B,) + tuple(plan.shapes[n])
                a = np.empty((k - j0,) + shape)  # summed input of steps t0 + j0 .. t0 + k - 1, in simulate's order
                tmp = None
                for q, i in enumerate(plan.incoming[n]):
                    c = plan.connections[i]
                    if q:
                        tmp = np.empty_like(a) if tmp is None else tmp
                    dst = tmp if q else a
                    if c.src == plan.input:
                        dst[...] = xin[i]
                    else:  # step t receives the source's spikes of step t - 1
                        src = spk[c.src][:k - 1]
                        _deliver(syn[i], pointwise[i], src if j0 else np.concatenate([last[c.src][None], src]), dst)
                    if q:
                        a += dst
                ar = a if cn["r"] is None else a * cn["r"]
                ab = (a + cn["bias"]).reshape(k - j0, -1)
                am = np.maximum(ab.max(1), -ab.min(1))  # max |a + bias| per step
                pre = np.empty((k,) + shape)  # v before the floor and the reset, per step
                sp = np.zeros((k,) + shape, dtype=bool)
                br = np.ascontiguousarray(np.broadcast_to(cn["br"], shape))
                vth, vmin = cn["vth"], cn["vmin"]
                if vth is not None:
                    vth = np.ascontiguousarray(np.broadcast_to(vth, shape))
                dv = np.empty(shape) if cn["mul_reset"] else None
                vn = v[n]
                for j in range(k):
                    p = pre[j]
                    np.add(vn, br, out=p)
                    if j >= j0:
                        np.add(p, ar[j - j0], out=p)
                    if vth is None:  # the readout: no floor, no spikes
                        vn = p
                        continue
                    if vmin is not None:
                        np.maximum(p, vmin, out=vn)
                        p = vn
                    np.greater(p, vth, out=sp[j])
                    if cn["mul_reset"]:
                        np.multiply(sp[j], vth, out=dv)
                        np.subtract(p, dv, out=vn)
                    else:
                        if p is not vn:
                            np.copyto(vn, p)
                        if cn["subtract"]:
                            np.subtract(vn, vth, out=vn, where=sp[j])
                        else:
                            np.copyto(vn, 0.0, where=sp[j])
                v[n] = vn if vth is not None else vn.copy()
                pr = pre.reshape(k, -1)
                vm = pr.max(1) if vth is not None else np.maximum(pr.max(1), -pr.min(1))
                for j in range(k):  # fold step by step, as simulate does (a NaN step is skipped the same way)
                    if j >= j0:
                        rng_a[n] = max(rng_a[n], float(am[j - j0]))
                    rng_v[n] = max(rng_v[n], float(vm[j]))
                spk[n] = sp
                for m in [m for m in spk if last_use[m] <= pos[n]]:  # blocks no later layer reads
                    last[m] = spk.pop(m)[-1]
            for m, sp in spk.items():
                last[m] = sp[-1]
    return {n: {"a": rng_a[n], "v": rng_v[n]} for n in plan.neurons}
