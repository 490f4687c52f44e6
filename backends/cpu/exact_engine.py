"""Fast engine for integer graphs: Lava's fixed point computed exactly in float32/float64, fused and in place.

Why float arithmetic is exact here (checked per connection and per layer when the run is planned):
- A connection's output (conv, sum-pool or dense accumulator) is a sum of products w_j * s_j of integers.
  Let ``bound`` = max over output neurons of sum_j |w_j| * max|s_j| (computed by running the chain on |W| and an
  all-``max|s|`` input; max|s| = 1 for spikes, max|x_int| of this run's data for the graded input). Every
  partial sum of every summation order (blocked GEMM, FMA, oneDNN direct conv, cuBLAS split-K) then lies in
  [-bound, bound], and every integer of magnitude <= 2**24 is a float32 (2**53: float64). So if bound < 2**23 the
  float32 result is the exact integer and Lava's 24-bit conv wrap cannot happen; otherwise the connection runs
  in float64 (exact while bound < 2**53) with the wrap applied. Winograd/FFT convolutions are not sums of
  products of the inputs, so the engine turns cuDNN off and TF32 off on CUDA (im2col + GEMM) and asks for
  "highest" float32 matmul precision. Dense ``acc << e`` / ``acc >> -e`` (floor) is acc * 2**e, then floor:
  exact (power-of-two scaling of an exact integer).
- The connection's weighted op runs as ``kernels`` plans it (kernels.py proves each form): a fused kernel that is
  constant on aligned s x s blocks (AvgPool2d composed into the next conv or linear by fuse_synapses) as an
  s x s sum-pool then the small op, whose products w * (sum of a block's inputs) each add up the fused op's
  products over that block, all of one sign, so the bound above covers every partial sum of this form too; and
  where the input is 0..255 (spikes, pooled spikes) and the weights are g * m (g a power of two, |m| <= 127), on
  oneDNN's int8 kernels: int32 accumulation is exact (|acc| <= bound / g < 2**23), the float32 result
  acc * g * scale is exact below 2**24.
- A neuron layer with du = 4095 (u = a << 6 each step) and dv = 0 keeps v in float32 when
  64 * A < 2**23 (A = sum of its incoming bounds A_1.. after the shift: u never wraps) and
  64 * (A - A_1) + max|bias << 6| < 2**23. The update is v + 64 a_1 + 64 a_2 + ... + bias6, each addend an exact
  float32 integer, |v| <= 2**23 - 1 after the previous clamp. If every partial sum stays within 2**24 in
  magnitude, everything is exact. Otherwise let the first partial sum beyond 2**24 be positive (negative is
  symmetric): the addends after it total < 2**23, so the true result is > 2**23 > V_LIM, and rounding is
  monotone with 2**24 and 2**23 representable, so the computed result is >= 2**23 too: both clamp to V_LIM and
  both count one saturation. After the clamp the float32 v equals Lava's integer v. On such a layer the int8
  kernels deliver 64 a_i themselves (w_scale times 64; |64 a_i| < 2**23) and the first incoming one adds bias6
  too (one value per output channel): the addends are then v, (64 a_1 + bias6), 64 a_2, ..., the first computed
  exactly inside the kernel (|64 a_1| + |bias6| < 2**24), those after it totalling 64 (A - A_1) < 2**23 - max|bias6|:
  the argument above holds unchanged (when a_1's source is silent, bias6 is added last, as before).
  Any other layer keeps v (and u) in float64: all values are integers below 2**53; decay(x, d) =
  trunc(x * (4096 - d) / 4096) is exact (the product is < 2**36, division by 4096 is a power-of-two scaling).
A potential floor (``snnc.v_min``) is max(v, integer within 24 bits) after the clamp: exact in either dtype.
Spikes are float32 0/1 tensors (and uint8 copies for the int8 kernels); spike counts are accumulated in float32
(exact below 2**24 steps), or for layers with uint8 copies in uint8, added into int32 every 255 steps.
Overflow events (u wrap, v saturation, conv wrap) are counted exactly: on CPU after a cheap min/max check, on
CUDA into device tensors without a host sync. Peak memory per batch is the layer states and one buffer per
connection: O(B x neurons), independent of T (rasters excepted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from snnc.ir import conventions as cv
from snnc.ir.neuron import EventCounter, decay, fire_, wrap_current
from snnc.ir.plan import fan_in

from . import kernels as kn

V_LIM = float(cv.V_MAX)  # 2**23 - 1
U_MAX = float(2 ** 23)
F32_EXACT = 2.0 ** 24
A_WRAP = 2.0 ** 17  # u = a << 6 wraps when a > 2**17 or a <= -2**17
F64_EXACT = 2.0 ** 53
_CL = torch.channels_last  # layout of 4-d states, spikes and conv weights (see _fmt)


@dataclass
class ConnPlan:
    """One connection as the engine runs it: ops on ``dtype`` tensors, the proven bound, whether it can wrap."""

    index: int
    src: str
    dst: str
    ops: list  # ("reshape", shape) | ("pool", params) | ("w", kernels.Weighted): the weighted op, last
    bound: float  # max |accumulator| over outputs and inputs (before the dense shift)
    a_bound: float  # max |a| delivered to the neuron (after shift / wrap)
    dtype: torch.dtype
    wrap: bool  # conv/pool output may leave [-2**23, 2**23): apply Lava's wrap and count it
    wexp: int | None = None  # dense connections: Lava's weight exponent (a = acc << wexp, floored for < 0)
    scaled: bool = False  # the int8 kernel delivers 64 a (a << 6, any dense shift included), see plan_layers
    int8_ready: bool = False  # the weights split into int8 (plan_connections); plan_layers prepares the kernel

    @property
    def int8(self) -> bool:
        """The weighted op runs on the int8 kernel (its input: uint8 spikes)."""
        return bool(self.ops) and self.ops[-1][0] == "w" and self.ops[-1][1].int8 is not None


@dataclass
class LayerPlan:
    """One neuron layer as the engine runs it."""

    name: str
    dtype: torch.dtype
    readout: bool
    reset_zero: bool
    du: int
    dv: int
    a_bound: float
    bias6: torch.Tensor | None  # None when all zero
    vth6: torch.Tensor | float | None
    v0: torch.Tensor
    incoming: list[int] = field(default_factory=list)
    u_wrap_possible: bool = False  # general path: u carried and/or wrapped in float64
    u_check: bool = False  # simple path whose u = a << 6 may leave (-2**23, 2**23]: check a, wrap when needed
    vth_min: float = math.inf  # smallest threshold << 6 (-inf disables the no-spike shortcut)
    vmin6: torch.Tensor | float | None = None  # potential floor (v units); None: no floor
    vmin_max: float = -math.inf  # largest floor value: a batch whose min(v) is >= it needs no clamp
    bias_conn: int | None = None  # the incoming connection whose int8 kernel also adds bias6 (plan_layers)


def supported(layers: dict) -> bool:
    """The engine runs integer layers (any node type: in an integer graph du/dv say the dynamics) whose reset
    is immediate (``snnc.reset_timing`` "delayed"/"guarded" layers run on the reference engine)."""
    return all(L.integer and hasattr(L, "du") and getattr(L, "timing", "immediate") == "immediate"
               for L in layers.values())


def _chain(x: torch.Tensor, ops: list) -> torch.Tensor:
    for op in ops:
        if op[0] == "reshape":
            x = x.reshape((x.shape[0],) + tuple(op[1]))
        elif op[0] == "pool":
            p = op[1]
            x = F.avg_pool2d(x, p["kernel_size"], p["stride"], p["padding"], count_include_pad=True,
                             divisor_override=1)
        elif op[0] == "w":
            x = kn.run_weighted(op[1], x)
        elif op[0] == "conv":  # the unplanned form (bounds): op = ("conv", w, params)
            p = op[2]
            x = F.conv2d(x, op[1], None, stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                         groups=p["groups"])
        elif op[0] == "dense":
            x = x.reshape(x.shape[0], -1) @ op[1].T
    return x


def plan_connections(syns: list, plan, in_max: float, dev: torch.device, in_nonneg: bool = False,
                     batch: int | None = None) -> list[ConnPlan]:
    """Per connection: its weighted op planned (``kernels``: pool-then-op where the weights factor), its bound,
    dtype and wrap flag, and the int8 kernel where it is exact (``batch`` sizes it). The bound runs the planned
    chain on a max-valued input with the positive and the negative weights separately when the input is >= 0
    (spikes; unsigned graded input): every partial sum then lies in [-sum|W-| * max, sum W+ * max]; with signed
    input, on |W|. A factored op's products w * sum(x over a block) are each the sum of the fused op's products
    w * x over that block, all of one sign: the same bound covers every partial sum of either form."""
    out = []
    int8_ok = kn.int8_available(dev)
    for i, (syn, c) in enumerate(zip(syns, plan.connections)):
        ops, wexp = [], None
        src_shape = tuple(plan.shapes[c.src])
        for st in syn.steps:
            if st[0] in ("reshape", "pool"):
                ops.append(st[:2])
            elif st[0] == "conv":
                ops.append(("conv", st[1].to(torch.float64).cpu(), st[3]))
            elif st[0] == "dense_int":
                ops.append(("dense", st[1].to(torch.float64).cpu()))
                wexp = int(st[2])
        ops = _plan_weighted(ops, src_shape)
        nonneg = in_nonneg or c.src != plan.input
        probe = torch.full((1,) + src_shape, in_max if c.src == plan.input else 1.0, dtype=torch.float64)
        bound = max(float(_chain(probe, _signed(ops, 1, nonneg)).max()),
                    float(_chain(probe, _signed(ops, -1, nonneg)).max())) if probe.numel() else 0.0
        wrap = wexp is None and bound >= U_MAX
        a_bound = math.ceil(bound * 2.0 ** wexp) if wexp is not None else min(bound, U_MAX)
        dtype = torch.float32 if bound < U_MAX else torch.float64
        if bound >= F64_EXACT:
            raise OverflowError(f"connection {c.src!r} -> {c.dst!r}: accumulator bound {bound:.3g} >= 2**53")
        int8 = False
        if ops and ops[-1][0] == "w":
            op = ops[-1][1]
            op.w = _fmt(op.w.to(device=dev, dtype=dtype)) if op.kind == "conv" else \
                op.w.to(device=dev, dtype=dtype).contiguous()
            if int8_ok and dtype == torch.float32 and c.src != plan.input and batch and op.pool ** 2 <= 255:
                op.quant = kn.int8_weight(op.w)  # 0/1 spikes in (sum-pooled: at most pool**2)
                op.batch = batch
                int8 = op.quant is not None
        out.append(ConnPlan(i, c.src, c.dst, ops, bound, float(a_bound), dtype, wrap, wexp, int8_ready=int8))
    return out


def _signed(ops: list, sign: int, nonneg: bool) -> list:
    """The chain with its weights w replaced by max(sign * w, 0) (nonneg input) or |w| (the bound probes)."""
    def f(w: torch.Tensor) -> torch.Tensor:
        return (sign * w).clamp(min=0) if nonneg else w.abs()
    return [("w", replace(o[1], w=f(o[1].w), int8=None)) if o[0] == "w" else
            (o[0], f(o[1])) + tuple(o[2:]) if o[0] in ("conv", "dense") else o for o in ops]


def _plan_weighted(ops: list, src_shape: tuple) -> list:
    """The chain's ops (float64 weights) with its weighted op (conv or dense, last) as a ``kernels.Weighted``,
    factored into sum-pool then op where the weights allow; other chains (pool only, reshapes) as they are."""
    kinds = [o[0] for o in ops]
    if not ops or kinds[-1] not in ("conv", "dense") or any(k != "reshape" for k in kinds[:-1]):
        return ops
    last = ops[-1]
    w, pool, params, pre = last[1], 1, None, []
    if last[0] == "conv":
        if len(kinds) != 1 or len(src_shape) != 3:
            return ops
        params = last[2]
        f = kn.factor_conv(w, params, src_shape[1:])
        if f is not None:
            pool, w, params = f
        in_shape = (src_shape[0], src_shape[1] // pool, src_shape[2] // pool)
    elif len(src_shape) == 3:  # a dense over a channels-last (C, H, W) state flattened, maybe pooled first
        f = kn.factor_dense(w, src_shape)
        if f is not None:
            pool, w = f
        c, h, wd = src_shape[0], src_shape[1] // pool, src_shape[2] // pool
        w = w.reshape(w.shape[0], c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # columns in (H, W, C)
        in_shape = (c * h * wd,)
    else:
        pre, in_shape = list(ops[:-1]), (math.prod(src_shape),)
    return pre + [("w", kn.Weighted(last[0], pool, w.contiguous(), params, in_shape=in_shape))]


def plan_layers(layers: dict, plan, conns: list[ConnPlan], dev: torch.device) -> dict[str, LayerPlan]:
    """Per neuron layer: float32 state when the module docstring's bound holds, else float64."""
    out = {}
    for n, L in layers.items():
        inc = plan.incoming[n]
        A = sum(conns[i].a_bound for i in inc)
        bias6 = L.bias6.to(torch.float64)
        bmax = float(bias6.abs().max()) if bias6.numel() else 0.0
        simple = L.du + 1 >= cv.DECAY_UNITY and L.dv == 0
        a_first = conns[inc[0]].a_bound if inc else 0.0
        u_check = simple and 64 * A >= U_MAX
        general = not simple or (u_check and len(inc) > 1 and A >= F32_EXACT)
        # with u_check the summed a is wrapped first: one addend |u| <= 2**23 (then the bias)
        f32 = not general and (bmax + (0.0 if u_check else 64 * (A - a_first))) < U_MAX \
            and float(L.v0.abs().max()) <= V_LIM
        dt = torch.float32 if f32 else torch.float64
        vmin6 = getattr(L, "vmin6", None)  # integers within 24 bits: exact in float32
        out[n] = LayerPlan(n, dt, L.vth6 is None, L.reset == "zero", L.du, L.dv, A,
                           None if bmax == 0 else _fmt(bias6.to(device=dev, dtype=dt)),
                           _per_layer(L.vth6, dev, dt), _fmt(L.v0.to(device=dev, dtype=dt)), list(inc),
                           u_wrap_possible=general, u_check=u_check and not general,
                           vth_min=-math.inf if L.vth6 is None else float(L.vth6.min()),
                           vmin6=_per_layer(vmin6, dev, dt),
                           vmin_max=-math.inf if vmin6 is None else float(vmin6.max()))
        _plan_int8(out[n], conns, bias6, f32 and not general and not u_check)
    return out


def _plan_int8(L: LayerPlan, conns: list[ConnPlan], bias6: torch.Tensor, fold: bool) -> None:
    """Prepare the int8 kernels of a layer's incoming connections (those whose weights split, plan_connections).
    ``fold`` (a float32 layer on the simple path: 64 A < 2**23, so |64 a| < 2**23): each kernel delivers 64 a
    instead of a (w_scale times 64, times 2**wexp for a dense shift >= 0) and the first incoming kernel also adds
    bias6 (one value per output channel; the module docstring's order of additions holds: bias6 joins the first
    addend, computed exactly inside the kernel as |64 a_1| + |bias6| < 2**24). Saves one pass over v per
    connection and step (the alpha-64 add and the bias add)."""
    for k, i in enumerate(L.incoming):
        c = conns[i]
        if not c.int8_ready:
            continue
        op = c.ops[-1][1]
        scale, bias = 1.0, None
        if fold and (c.wexp is None or c.wexp >= 0):
            scale = 64.0 * 2.0 ** (c.wexp or 0)
            if k == 0 and L.bias6 is not None:
                per_ch = bias6.to(torch.float64).reshape(bias6.shape[0], -1)
                if bool((per_ch == per_ch[:, :1]).all()):
                    bias = per_ch[:, 0]
        if kn.plan_int8(op, op.in_shape, op.batch, float(op.pool * op.pool), scale, bias):
            c.scaled = scale != 1.0
            if bias is not None:
                L.bias_conn = i


def _per_layer(t: torch.Tensor | None, dev: torch.device, dt: torch.dtype) -> torch.Tensor | float | None:
    """A per-neuron constant (threshold, floor) as a Python scalar when one value holds for the whole layer,
    else a ``dt`` tensor in the state layout; None stays None."""
    if t is None:
        return None
    if bool((t == t.flatten()[0]).all()):
        return float(t.flatten()[0])
    return _fmt(t.to(device=dev, dtype=dt))


def _fmt(t: torch.Tensor) -> torch.Tensor:
    """Layout of 4-d states, spikes and conv weights: channels-last (oneDNN's direct conv on NCHW input at
    batch >= 128 measured 2.5x slower); per-neuron (C, H, W) tensors become (1, C, H, W) channels-last so that
    the elementwise updates stream all operands in the same order."""
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return t.contiguous(memory_format=_CL) if t.dim() == 4 else t.contiguous()


@dataclass
class BatchResult:
    logits_diff: np.ndarray  # readout v(end) - v(before the output sees input), in v units (x64)
    potentials: np.ndarray
    counts: dict[str, np.ndarray]


def run_batch(plan, lp: dict[str, LayerPlan], conns: list[ConnPlan], xb: torch.Tensor, latency: int,
              counter: EventCounter, rast: dict | None, sl: slice, shown: int = -1) -> BatchResult:
    """Simulate one batch of integer inputs for ``latency`` steps (module docstring): ``xb`` (B, *input), one frame
    presented every step (``shown`` -1), or a sequence (B, T_in, *input) whose first ``shown`` slices are presented
    at steps 0 .. shown - 1 (``_input_feed``)."""
    B = xb.shape[0]
    dev = xb.device
    ro = plan.readout
    # clone first: for B = 1 the expanded view is already in layout and _fmt would return v0 itself
    v = {n: _fmt(L.v0.expand((B,) + tuple(plan.shapes[n])).clone()) for n, L in lp.items()}
    u = {n: torch.zeros_like(v[n]) for n, L in lp.items() if L.u_wrap_possible}
    spk = {n: _fmt(torch.zeros((B,) + tuple(plan.shapes[n]), dtype=torch.float32, device=dev))
           for n, L in lp.items() if not L.readout}
    # layers feeding an int8 kernel convert their spikes to uint8 once per step and count them in uint8 (added
    # into int32 every 255 steps: one byte per neuron instead of a float32 read-modify-write); others in float32
    to8 = {c.src for c in conns if c.int8}
    cnt = {n: torch.zeros_like(spk[n]) for n in spk if n not in to8}
    cnt8 = {n: torch.zeros_like(spk[n], dtype=torch.uint8) for n in spk if n in to8}
    s8buf = {n: torch.zeros_like(c) for n, c in cnt8.items()}  # copy_ into a kept buffer: half the time of .to()
    cnt32 = {n: torch.zeros_like(spk[n], dtype=torch.int32) for n in cnt8}
    since8 = {n: 0 for n in cnt8}
    buf: list[torch.Tensor | None] = [None] * len(conns)
    x_const = {}
    for c in conns:  # the input connection's output is the same every step: compute it once
        if c.src == plan.input and shown < 0:
            x_const[c.index] = _deliver(c, xb.to(c.dtype), counter, latency)  # the reference counts every step
    # layers fed only by the (constant) input: precompute 64 a + bias6 (|.| <= 64 A + max|bias6| < 2**24: exact)
    drive = {}
    for n, L in lp.items():
        if L.incoming and n not in u and not L.u_check and all(i in x_const for i in L.incoming) \
                and L.dtype == torch.float32:
            d = sum(x_const[i] * 64.0 for i in L.incoming)
            drive[n] = d + L.bias6 if L.bias6 is not None else d
    v_before = None
    # CPU: a layer none of whose neurons fired this step (known from the min/max check) skips its reset and its
    # outgoing GEMM/conv (they would deliver exactly 0); on CUDA that check would cost a host sync
    silent = {n: None for n in spk}
    s8: dict[str, torch.Tensor] = {}
    for t in range(latency):
        for n, L in lp.items():
            vn = v[n]
            if n in u:  # general path: u carried / may wrap (float64 state)
                un = decay(u[n], L.du + 1)
                for i in L.incoming:
                    if buf[i] is not None:
                        un = un + buf[i] * 64.0
                u[n] = un = wrap_current(un, counter, n)
                if L.dv:
                    vn = decay(vn, L.dv)
                    v[n] = vn
                vn.add_(un)
            elif L.u_check:  # u = a << 6 may wrap: sum a, count and apply Lava's single wrap, add 64 a
                a = fan_in(buf, L.incoming)
                if a is not None:
                    if counter.out_of_range((n, "u_wrap"), a, -A_WRAP + 1, A_WRAP) is not False:
                        a = torch.where(a > A_WRAP, a - 2 * A_WRAP, torch.where(a <= -A_WRAP, a + 2 * A_WRAP, a))
                    vn.add_(a, alpha=64)
            elif t > 0 and n in drive:  # constant input drive 64 a + bias6, one exact addend (see the proof)
                vn.add_(drive[n])
            else:  # in incoming order (the docstring's proof); a scaled buffer holds 64 a (+ bias6: bias_conn)
                for i in L.incoming:
                    if buf[i] is not None:
                        if conns[i].scaled:
                            vn.add_(buf[i])
                        else:
                            vn.add_(buf[i], alpha=64)
            if L.bias6 is not None and not (t > 0 and n in drive) and \
                    (L.bias_conn is None or buf[L.bias_conn] is None):
                vn.add_(L.bias6)
            over = counter.out_of_range((n, "v_saturate"), vn, -V_LIM, V_LIM) is not False
            if L.vmin6 is not None and counter.last_min < L.vmin_max:  # floor: v = max(clip(v), v_min << 6)
                if isinstance(L.vmin6, float):  # one pass: the floor (>= -V_LIM) subsumes the lower clip
                    vn.clamp_(L.vmin6, V_LIM)
                else:
                    torch.maximum(vn, L.vmin6, out=vn)
                    if over:
                        vn.clamp_(max=V_LIM)
            elif over:
                vn.clamp_(-V_LIM, V_LIM)
            if L.readout:
                if t == plan.depth - 1 and n == ro:
                    v_before = vn.clone()
                continue
            s = spk[n]
            if counter.last_max <= L.vth_min:  # CPU: max(v) from the check above says no neuron fires
                if silent[n] is False:
                    s.zero_()
                silent[n] = True
                if rast is not None:
                    rast[n][t, sl] = False
                continue
            silent[n] = False
            fire_(vn, L.vth6, L.reset_zero, s)  # exact: s is 0/1, vth << 6 < 2**23 (floor applied above)
            if n in cnt8:
                s8[n] = s8buf[n].copy_(s)
                cnt8[n].add_(s8[n])
                since8[n] += 1
                if since8[n] == 255:
                    cnt32[n].add_(cnt8[n])
                    cnt8[n].zero_()
                    since8[n] = 0
            else:
                cnt[n].add_(s)
            if rast is not None:
                rast[n][t, sl] = s.to(torch.bool).cpu().numpy()
        if t == plan.depth - 1 and v_before is None:
            v_before = v[ro].clone()
        for c in conns:
            if c.index in x_const:
                buf[c.index] = x_const[c.index]
            elif c.src == plan.input:
                buf[c.index] = _input_feed(c, xb, t, shown, counter)
            elif c.src not in spk or silent[c.src]:
                buf[c.index] = None  # a readout emits no spikes; a silent layer delivers exactly 0
            else:
                s = spk[c.src]
                if c.int8:  # uint8 spikes for the int8 kernel, converted once per layer and step (above)
                    s = s8[c.src]
                elif c.dtype != torch.float32:
                    s = s.to(c.dtype)
                buf[c.index] = _deliver(c, s, counter, 1)
        s8 = {}
    vr = v[ro]
    if v_before is None:
        v_before = lp[ro].v0.expand_as(vr)
    diff = (vr.to(torch.float64) - v_before.to(torch.float64)).cpu().numpy()
    counts = {n: c.to(torch.int32).cpu().numpy() for n, c in cnt.items()}
    counts.update({n: cnt32[n].add_(cnt8[n]).cpu().numpy() for n in cnt8})
    return BatchResult(diff, vr.to(torch.int64).cpu().numpy(), counts)


def _input_feed(c: ConnPlan, xseq: torch.Tensor, t: int, shown: int, counter: EventCounter) -> torch.Tensor | None:
    """A sequence's input connection at step t: slice t delivered (exact, as ``_deliver``) while t < ``shown``;
    None (nothing delivered, like a silent layer) for a slice without events and after the sequence."""
    if t >= shown:
        return None
    xt = xseq[:, t]
    if xt.device.type == "cpu" and not bool(xt.any()):
        return None
    return _deliver(c, xt.to(c.dtype), counter, 1)


def _deliver(c: ConnPlan, x: torch.Tensor, counter: EventCounter, times: int) -> torch.Tensor:
    """Connection output a (exact integers in c.dtype): conv/pool wrapped to 24 bits, dense shifted."""
    y = _chain(x, c.ops)
    if c.scaled:  # the int8 kernel delivered 64 a (shift included): exact, no wrap possible (a float32 layer)
        return y
    if c.wexp is not None:
        e = c.wexp
        if e > 0:
            y = y * float(2 ** e)
        elif e < 0:
            y = torch.floor(y * float(2.0 ** e))
    elif c.wrap:
        if counter.out_of_range((f"{c.src}->{c.dst}", "conv_wrap"), y, -U_MAX, U_MAX - 1, times) is not False:
            y = torch.remainder(y + U_MAX, 2 * U_MAX) - U_MAX
    return y


class exact_mode:
    """Context: float32 matmul precision "highest", no TF32, and on CUDA no cuDNN (no Winograd/FFT convs)."""

    def __init__(self, dev: torch.device):
        self.dev = dev

    def __enter__(self):
        self.prec = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        self.cuda = None
        if self.dev.type == "cuda":
            self.cuda = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                         torch.backends.cudnn.enabled)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.enabled = False
        return self

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.prec)
        if self.cuda is not None:
            (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.enabled) = self.cuda
        return False
