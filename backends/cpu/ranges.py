"""The ranges quantize sizes the integer potentials from, per neuron layer (the pipeline's ``ranges`` stage):

- ``calibration_ranges``: the float range run, layer by layer: the ranges ``simulate(graph, x, steps,
  track_ranges=True)`` records, bit for bit, computed faster. Its cost is samples x (steps + depth) x the graph's
  MACs per step, in float64: VGG-16 for 32x32 over 256 samples x 64 steps is about 40 TMAC (minutes).
- ``probe_ranges``: the same quantities from a float32 run on the engine's planned kernels (pool-then-conv where a
  fused kernel factors: 1/1.6 of the fused MACs on VGG-16, and float32 instead of float64), not bit-equal to
  ``simulate``: a probe on a few samples.
- ``estimate_ranges``: the ANN's pre-activations over all calibration samples (one forward each, recorded by the
  convert stage) combined with a probe."""
from __future__ import annotations

import math

import nir
import numpy as np
import torch
import torch.nn.functional as F
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse, batched_input
from snnc.ir.graph import Graph
from snnc.ir.neuron import fire, step_float
from snnc.ir.plan import Plan, build_plan, fan_in

from . import kernels as kn
from .simulator import Layer, batches, simulate

BLOCK_BYTES = 1 << 20  # float64 bytes of one layer's (steps x batch x neurons) block: stays in cache
_CALIB_CONV_FRAMES = 64  # frames (steps x samples) per conv call: fewer calls, each frame about as fast
_FRAMEWISE: dict[tuple, bool] = {}  # conv call shape -> whether a frame's result is independent of the batch


def pointwise_scale(syn: Synapse) -> tuple[np.ndarray, np.ndarray] | None:
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


def _deliver(syn: Synapse, pointwise: tuple | None, s: np.ndarray, out: np.ndarray) -> None:
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


def calibration_ranges(graph: Graph, x: np.ndarray, steps: int | None, batch_size: int = 256,
                       plan: Plan | None = None) -> dict[str, dict[str, float]]:
    """Observed ranges of a float graph on inputs ``x`` (N, *input_shape) over ``steps`` + depth steps, per neuron
    layer: "a" = max |a + bias| over steps with input, "v" = max v before the reset (max |v| for the readout),
    float units.

    Bit for bit ``simulate(graph, x, steps, batch_size, track_ranges=True).ranges``: per neuron and step the same
    float64 operations as Layer.step's float branch (IF and I layers), and every synapse product as in
    ``simulate`` (dense products on the same batch of samples; a conv may take several steps in one call where
    its frames were checked to come out the same). It runs layer by layer over blocks of steps instead of step by
    step: the sums of inputs, the range maxima and the silence checks leave the step loop, and the IF update runs
    on numpy arrays (less overhead per call than torch on small arrays). Graphs with other layers (LIF, CubaLIF,
    LI), recurrent connections, sequences (x of shape (N, T, *input_shape); ``steps`` None: T) and integer graphs
    go to ``simulate``. ``plan``: build_plan(graph), if built."""
    from snnc.ir.sequence import input_series

    plan = build_plan(graph) if plan is None else plan
    series = input_series(plan.shapes[plan.input], x, plan.input)
    if series.sequence:
        return simulate(graph, x, steps, batch_size=batch_size, track_ranges=True).ranges
    if steps is None or steps < 1:
        raise ValueError("steps must be >= 1")
    pos = {n: k for k, n in enumerate(plan.neurons)}
    if cv.graph_kind(graph) == cv.INTEGER \
            or not all(isinstance(graph.nodes[n], (nir.IF, nir.I)) for n in plan.neurons) \
            or any(c.src != plan.input and pos[c.src] >= pos[c.dst] for c in plan.connections):
        return simulate(graph, x, steps, batch_size=batch_size, track_ranges=True).ranges
    dev = torch.device("cpu")
    x = batched_input(plan, x)
    x = x.astype(np.float64)
    syn = [Synapse(graph, plan, c, False, dev) for c in plan.connections]
    layers = {}
    for n in plan.neurons:
        bias = sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
        layers[n] = Layer(n, graph.nodes[n], plan.shapes[n], False, bias, dev)
    if any(layers[c.src].readout for c in plan.connections if c.src != plan.input):
        # a connection out of the readout delivers nothing (it emits no spikes): not modelled here
        return simulate(graph, x, steps, batch_size=batch_size, track_ranges=True).ranges
    const = {}
    for n, L in layers.items():
        r = L.r.numpy()
        const[n] = dict(r=None if np.all(r == 1) else r,  # a * 1 = a exactly
                        bias=L.bias.numpy(), br=L.bias * L.r, v0=L.v0.numpy(), vth=L.vth, vmin=L.vmin,
                        reset=L.reset)
    pointwise = [None if c.src == plan.input else pointwise_scale(s) for c, s in zip(plan.connections, syn)]
    latency = steps + plan.depth
    last_use = {n: max((pos[c.dst] for c in plan.connections if c.src == n), default=-1) for n in plan.neurons}
    rng_a = {n: 0.0 for n in plan.neurons}
    rng_v = {n: 0.0 for n in plan.neurons}
    widest = max(math.prod(plan.shapes[n]) for n in plan.neurons)
    for sl in batches(x.shape[0], batch_size):
        B = sl.stop - sl.start
        xb = torch.as_tensor(x[sl], dtype=torch.float64, device=dev)
        # an input connection delivers the same value at every step from step 1 on
        xin = {i: syn[i].linear(xb).numpy() for i, c in enumerate(plan.connections) if c.src == plan.input}
        v = {n: np.broadcast_to(const[n]["v0"], (B,) + tuple(plan.shapes[n])).copy() for n in plan.neurons}
        last: dict[str, np.ndarray] = {}  # layer -> its spikes at the step before the block
        block = max(2, min(latency, BLOCK_BYTES // (8 * B * widest)))
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
                vn = torch.from_numpy(v[n])
                art = torch.from_numpy(ar)
                for j in range(k):  # the float kernel of snnc.ir.neuron, as simulate runs it
                    p = step_float(vn, art[j - j0] if j >= j0 else None, cn["br"], 1.0)
                    pre[j] = p.numpy()
                    if cn["vth"] is None:  # the readout: no floor, no spikes
                        vn = p
                        continue
                    vn, s = fire(p, cn["vth"], cn["vmin"], cn["reset"])
                    sp[j] = s.numpy()
                v[n] = vn.numpy()
                pr = pre.reshape(k, -1)
                vm = pr.max(1) if cn["vth"] is not None else np.maximum(pr.max(1), -pr.min(1))
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


def _float_kernel(syn: Synapse, src_shape: tuple) -> kn.Weighted | None:
    """A fused float connection's one weighted op (conv, or dense after an optional flatten) as a float32
    ``kernels.Weighted``, factored into pool-then-op where its weights allow; None for any other chain."""
    core = [st for st in syn.steps if st[0] not in ("add", "reshape")]
    if len(core) != 1 or core[0][0] not in ("conv", "matmul"):
        return None
    if core[0][0] == "conv":
        _, w, _, p = core[0]
        if len(src_shape) != 3 or any(st[0] == "reshape" for st in syn.steps):
            return None
        f = kn.factor_conv(w, p, src_shape[1:])
        pool, w, p = f if f is not None else (1, w, p)
        return kn.Weighted("conv", pool, w.to(torch.float32).contiguous(memory_format=torch.channels_last), p)
    w = core[0][1]
    if len(src_shape) == 3:  # flattened (C, H, W) source: columns reordered for the channels-last flatten
        f = kn.factor_dense(w, src_shape)
        pool, w = f if f is not None else (1, w)
        c, h, wd = src_shape[0], src_shape[1] // pool, src_shape[2] // pool
        w = w.reshape(w.shape[0], c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        return kn.Weighted("dense", pool, w.to(torch.float32).contiguous(), None)
    if len(src_shape) != 1:
        return None
    return kn.Weighted("dense", 1, w.to(torch.float32).contiguous(), None)


def probe_ranges(graph: Graph, x: np.ndarray, steps: int, plan: Plan | None = None) -> dict[str, dict[str, float]]:
    """The ranges of ``calibration_ranges`` (same definitions, float units) from a float32 run of the float graph
    on ``x`` (all samples in one batch) for ``steps`` + depth steps, with the same dynamics (``snnc.ir.neuron``'s
    float IF kernel, one step of delay per connection) and connections on ``kernels`` (pool-then-op, channels-last
    float32). Not bit-equal to ``simulate`` (float32, other summation orders): a probe for ``estimate_ranges``.
    Graphs with other layers than IF/I go to ``calibration_ranges``."""
    plan = build_plan(graph) if plan is None else plan
    if cv.graph_kind(graph) == cv.INTEGER or not all(isinstance(graph.nodes[n], (nir.IF, nir.I)) for n in plan.neurons):
        return calibration_ranges(graph, x, steps, plan=plan)
    dev, f32, cl = torch.device("cpu"), torch.float32, torch.channels_last
    x = batched_input(plan, x)
    syn = [Synapse(graph, plan, c, False, dev) for c in plan.connections]
    ops = [_float_kernel(s, tuple(plan.shapes[c.src])) for s, c in zip(syn, plan.connections)]

    def fmt(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=cl) if t.dim() == 4 else t

    def deliver(i: int, src: torch.Tensor) -> torch.Tensor:
        if ops[i] is None:
            return syn[i].linear(src.to(torch.float64)).to(f32)
        return fmt(kn.run_weighted(ops[i], fmt(src)))

    B = x.shape[0]
    const = {}
    for n in plan.neurons:
        bias = sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
        L = Layer(n, graph.nodes[n], plan.shapes[n], False, bias, dev)
        r = L.r.to(f32)
        const[n] = dict(r=None if bool((r == 1).all()) else fmt(r.unsqueeze(0)), bias=fmt(L.bias.to(f32).unsqueeze(0)),
                        vth=None if L.vth is None else fmt(L.vth.to(f32).unsqueeze(0)),
                        vmin=None if L.vmin is None else fmt(L.vmin.to(f32).unsqueeze(0)), reset=L.reset,
                        v0=fmt(L.v0.to(f32).expand((B,) + tuple(plan.shapes[n])).clone()))
        const[n]["br"] = const[n]["bias"] if const[n]["r"] is None else const[n]["bias"] * const[n]["r"]
    xb = fmt(torch.as_tensor(x, dtype=f32))
    xin = {i: deliver(i, xb) for i, c in enumerate(plan.connections) if c.src == plan.input}
    v = {n: const[n]["v0"] for n in plan.neurons}
    buf: list = [None] * len(plan.connections)
    spk: dict = {}
    rng_a = {n: 0.0 for n in plan.neurons}
    rng_v = {n: 0.0 for n in plan.neurons}
    with torch.no_grad():
        for t in range(steps + plan.depth):
            for n in plan.neurons:
                cn = const[n]
                a = fan_in(buf, plan.incoming[n])
                vn = step_float(v[n], a, cn["br"], 1.0 if cn["r"] is None else cn["r"])
                if a is not None:
                    lo, hi = torch.aminmax(a + cn["bias"])
                    rng_a[n] = max(rng_a[n], float(hi), -float(lo))
                lo, hi = torch.aminmax(vn)
                rng_v[n] = max(rng_v[n], float(hi) if cn["vth"] is not None else max(float(hi), -float(lo)))
                if cn["vth"] is None:
                    v[n] = vn
                    continue
                v[n], s = fire(vn, cn["vth"], cn["vmin"], cn["reset"])
                spk[n] = s
            for i, c in enumerate(plan.connections):
                if c.src == plan.input:
                    buf[i] = xin[i]
                else:
                    s = spk.get(c.src)
                    buf[i] = deliver(i, s.to(f32)) if s is not None and bool(s.any()) else None
    return {n: {"a": rng_a[n], "v": rng_v[n]} for n in plan.neurons}


def estimate_ranges(graph: Graph, x: np.ndarray, steps: int, pre_absmax: dict[str, float], output_key: str,
                    probe_samples: int = 2, probe_steps: int = 8, plan: Plan | None = None
                    ) -> dict[str, dict[str, float]]:
    """Ranges (as ``calibration_ranges``: "a" = max |a + bias| per step, "v" = max v before the reset, max |v| for
    the readout; float units) for a ``steps``-step run, estimated from the ANN and a probe.

    pre_absmax: max |pre-activation| of each ReLU-like ANN node over all calibration samples, keyed by the node's
    torch name (an IF layer's ``snnc.source``), and max |ANN output| under ``output_key``. The probe is
    ``probe_ranges`` on the first ``probe_samples`` samples of ``x`` for ``probe_steps`` steps.
    Per layer: a = max(ANN pre-activation, probe a) (the ANN's is the rate-averaged input, the probe's shows
    bursts); spiking layers: v = max(probe v, max threshold + a) (quantize uses min(v, theta + a): above it a neuron
    fires every step); the readout: v = max(steps x max |logit| + depth x max |bias| (the potential integrates the
    logit once per step with input and the bias from step 0), the probe's v scaled by (steps + depth) /
    (probe_steps + depth)). Layers without an ANN source (relays, imported graphs) take the probe's values, the
    readout's scaled as above."""
    plan = build_plan(graph) if plan is None else plan
    probe = probe_ranges(graph, x[:max(1, probe_samples)], probe_steps, plan=plan)
    out = {}
    for n in plan.neurons:
        node = graph.nodes[n]
        pa, pv = probe[n]["a"], probe[n]["v"]
        readout = isinstance(node, nir.I) or bool(cv.meta(node, cv.READOUT, False)) or n == plan.readout
        z = pre_absmax.get(output_key if readout else cv.meta(node, cv.SOURCE, ""))
        a = pa if z is None else max(pa, float(z))
        if readout:
            bias = sum((np.abs(Synapse(graph, plan, plan.connections[i], False, torch.device("cpu")).bias)
                        for i in plan.incoming[n]), np.zeros(plan.shapes[n]))
            v = pv * (steps + plan.depth) / (probe_steps + plan.depth)
            if z is not None:
                v = max(v, steps * float(z) + plan.depth * float(bias.max(initial=0.0)))
        else:
            theta = float(np.max(np.asarray(getattr(node, "v_threshold", 0.0), dtype=np.float64)))
            v = max(pv, theta + a) if z is not None else pv
        out[n] = {"a": a, "v": v}
    return out
