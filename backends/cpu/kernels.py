"""The exact engine's connection kernels: one weighted op of an integer connection (conv or dense), planned to
compute the same integer accumulator faster. Two rewrites, each exact by construction (checked on the weights
when the run is planned, never assumed):

- Pool then op (``factor_conv``, ``factor_dense``). ``fuse_synapses`` composes AvgPool2d(s) followed by a k x k
  conv into one (k s) x (k s) stride-s conv, and pool -> flatten -> linear into one dense over the unpooled map;
  quantize keeps such a weight constant on aligned s x s blocks (equal floats round to equal integers). Then
  conv(x, W) = conv(sumpool_s(x), W_s), W_s holding one weight per block: every output is the same sum of the
  same integer products w * x, grouped by block (integer sums are exact in any order), at 1/s**2 of the MACs.
  Lava runs the fused kernel; the engine and Lava still agree bit for bit.
- int8 x uint8 -> int32 (``Int8Op``, oneDNN's quantized conv/linear: AMX/VNNI on x86). A connection whose
  input is 0..255 (spikes, sum-pooled spikes) and whose integer weights are g * m with g a power of two and
  |m| <= 127 accumulates m * x exactly in int32 (|acc| <= bound < 2**23 < 2**31) and writes float32
  acc * (x_scale * w_scale) with x_scale = 1, w_scale = g * out_scale (powers of two): the exact integer
  out_scale * g * acc whenever |out_scale * acc * g| < 2**24 (the engine's bounds). Checked once per process on
  random data against float64 (``int8_available``); off where oneDNN's quantized ops are missing or CUDA.
Every kernel returns what ``snnc.ir.chain.Synapse`` returns for the same input, in the engine's float dtype."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_INT8: dict[str, bool | None] = {"enabled": None, "works": None}  # None: decide on first use


def use_int8(enabled: bool | None) -> bool | None:
    """Turn the int8 kernels on (True, where they work), off (False) or back to automatic (None); returns the
    previous setting (benches and tests compare the paths)."""
    prev = _INT8["enabled"]
    _INT8["enabled"] = enabled
    return prev


def int8_available(dev: torch.device) -> bool:
    """Whether the int8 kernels run here (CPU with oneDNN's quantized conv/linear, exact on a random check) and
    are not turned off by ``use_int8(False)``."""
    if dev.type != "cpu" or _INT8["enabled"] is False:
        return False
    if _INT8["works"] is None:
        _INT8["works"] = _self_check()
    return bool(_INT8["works"])


def _self_check() -> bool:
    """One conv and one linear on random uint8 x int8 data equal float64 math bit for bit (scaled and not)."""
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 5, (3, 7, 6, 6), generator=g, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        m = torch.randint(-127, 128, (5, 7, 3, 3), generator=g, dtype=torch.int8)
        b = torch.randint(-2 ** 20, 2 ** 20, (5,), generator=g).double() * 4
        op = Int8Op("conv", m, 512.0, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1), tuple(x.shape),
                    b)
        ref = F.conv2d(x.double(), m.double(), None, 1, 1) * 512.0 + b[:, None, None]
        ok = torch.equal(op(x).double(), ref)
        xl = torch.randint(0, 2, (4, 33), generator=g, dtype=torch.uint8)
        ml = torch.randint(-127, 128, (6, 33), generator=g, dtype=torch.int8)
        opl = Int8Op("dense", ml, 0.5, None, tuple(xl.shape))
        return ok and torch.equal(opl(xl).double(), (xl.double() @ ml.double().T) * 0.5)
    except Exception:  # ops missing or unsupported on this CPU: the float kernels run instead
        return False


class Int8Op:
    """conv2d / linear of uint8 x (channels-last for conv) with int8 weights ``m`` (conv: (O, I/groups, kh, kw);
    dense: (O, I)), returning float32 acc * ``scale`` (+ ``bias``, one float per output channel); ``scale`` a
    power of two. Exact as the module docstring says (with a bias: when |acc * scale| and |bias| are integers
    below 2**23, their sum is below 2**24)."""

    def __init__(self, kind: str, m: torch.Tensor, scale: float, params: dict | None, x_shape: tuple,
                 bias: torch.Tensor | None = None):
        self.kind, self.params = kind, params
        o = m.shape[0]
        self.w_scale = torch.full((o,), float(scale), dtype=torch.float32)
        self.w_zp = torch.zeros(o, dtype=torch.int64)
        self.bias = None if bias is None else bias.to(torch.float32).reshape(o).contiguous()
        if kind == "conv":
            p = params
            self.args = ([int(v) for v in p["stride"]], [int(v) for v in p["padding"]],
                         [int(v) for v in p["dilation"]], int(p["groups"]))
            self.w = torch.ops.onednn.qconv_prepack(m.contiguous(memory_format=torch.channels_last), self.w_scale,
                                                    1.0, 0, *self.args, list(x_shape))
        else:
            self.w = torch.ops.onednn.qlinear_prepack(m.contiguous(), list(x_shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self.w, self.w_scale, self.w_zp, self.bias,
                                                      *self.args, 1.0, 0, torch.float32, "none", [], "")
        return torch.ops.onednn.qlinear_pointwise(x, 1.0, 0, self.w, self.w_scale, self.w_zp, self.bias, 1.0, 0,
                                                  torch.float32, "none", [], "")


def _blocks_equal(w: torch.Tensor, s: int) -> bool:
    """w (..., H, W) with H, W multiples of s is constant on every aligned s x s block: each row of a block equals
    its first row, then each column its first column (no full-size temporaries)."""
    rows = w[..., 0::s, :]
    if not all(torch.equal(rows, w[..., i::s, :]) for i in range(1, s)):
        return False
    return all(torch.equal(rows[..., 0::s], rows[..., j::s]) for j in range(1, s))


def factor_conv(w: torch.Tensor, p: dict, in_hw: tuple) -> tuple[int, torch.Tensor, dict] | None:
    """(s, W_s, params of the s-times coarser conv) when conv(x, w, p) = conv(sumpool_s(x), W_s) exactly on
    integers: groups 1, dilation 1, square stride s > 1 with kernel and padding multiples of s, input sides
    multiples of s, ``w`` constant on aligned s x s blocks; else None."""
    s = tuple(p["stride"])
    if s[0] != s[1] or s[0] < 2 or p["groups"] != 1 or tuple(p["dilation"]) != (1, 1):
        return None
    s = s[0]
    k, pad = tuple(w.shape[-2:]), tuple(p["padding"])
    if any(v % s for v in k + pad + tuple(in_hw)) or not _blocks_equal(w, s):
        return None
    ws = w[..., ::s, ::s].contiguous()
    return s, ws, dict(p, stride=(1, 1), padding=(pad[0] // s, pad[1] // s))


def factor_dense(w: torch.Tensor, src_shape: tuple) -> tuple[int, torch.Tensor] | None:
    """(s, W_s) when a dense ``w`` (O, C*H*W) over a (C, H, W) source (columns in C, H, W order) reads it through
    an s x s sum-pool: its columns are constant on aligned s x s spatial blocks, for the largest such s > 1 (a
    global pool first: s = H = W); W_s (O, C*(H/s)*(W/s)) in C, H/s, W/s order. None when no s > 1 fits."""
    if len(src_shape) != 3:
        return None
    c, h, wd = src_shape
    w4 = w.reshape((w.shape[0], c, h, wd))
    for s in sorted({d for d in range(2, min(h, wd) + 1) if h % d == 0 and wd % d == 0}, reverse=True):
        if _blocks_equal(w4, s):
            return s, w4[..., ::s, ::s].reshape(w.shape[0], -1).contiguous()
    return None


def sum_pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """s x s sum-pool with stride s of (B, C, H, W) (H, W multiples of s), same dtype: uint8 spikes summed in
    uint8 (at most s * s <= 255 per block) by strided adds over the channels-last memory (torch's reductions
    promote uint8 and ran 30x slower), float as float (exact integers)."""
    if x.dtype != torch.uint8:
        return F.avg_pool2d(x, s, s, 0, count_include_pad=True, divisor_override=1)
    y = x.permute(0, 2, 3, 1)  # (B, H, W, C) view of channels-last memory
    rows = y[:, 0::s] + y[:, 1::s]
    for i in range(2, s):
        rows += y[:, i::s]
    out = rows[:, :, 0::s] + rows[:, :, 1::s]
    for j in range(2, s):
        out += rows[:, :, j::s]
    return out.permute(0, 3, 1, 2)


def int8_weight(w: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """(m int8, g) with w = g * m and |m| <= 127, g a power of two, when one exists; else None (``w`` holds
    integers, any dtype: an integer graph's weights, checked when its synapses were built). Only the smallest
    power of two with max|w| / g <= 127 can work (a larger one divides fewer weights, a smaller one leaves
    |m| > 127), so it is the one checked, on int32 bits."""
    lo, hi = torch.aminmax(w.detach()) if w.numel() else (torch.zeros(()), torch.zeros(()))
    amax = max(float(hi), -float(lo))
    if amax == 0:
        return torch.zeros(w.shape, dtype=torch.int8), 1.0
    if not math.isfinite(amax) or amax >= 2.0 ** 31:
        return None
    k = max(0, math.ceil(math.log2(amax / 127)))
    while amax / 2.0 ** k > 127:  # guard log2 rounding
        k += 1
    wi = w.detach().cpu().to(torch.int32)
    if k and bool((wi & (2 ** k - 1)).any()):
        return None
    return (wi >> k).to(torch.int8), float(2 ** k)


@dataclass
class Weighted:
    """One weighted op of a planned connection: ``pool`` (sum-pool s x s first; 1: none), then a conv (``params``)
    or a dense over the channels-last flattened source; ``w`` in the connection's float dtype. ``int8``: the int8
    kernel that runs it on uint8 input, returning acc * ``scale`` (+ ``bias`` per output channel) where
    ``plan_int8`` set them; ``quant`` = (m, g) with w = g * m, m int8."""

    kind: str
    pool: int
    w: torch.Tensor
    params: dict | None
    int8: Int8Op | None = None
    quant: tuple | None = None
    in_shape: tuple = ()  # per sample, after the pool
    batch: int = 0  # the batch size the int8 kernel was prepared for
    scale: float = 1.0
    bias: torch.Tensor | None = None


def plan_int8(op: Weighted, in_shape: tuple, batch: int, in_max: float, scale: float = 1.0,
              bias: torch.Tensor | None = None) -> bool:
    """Put ``op`` on the int8 kernel for inputs of shape (batch, *in_shape) (after its pool) with values in
    0..``in_max``, returning acc * ``scale`` (a power of two) + ``bias``; False (op unchanged) where it does not
    apply. Called again with a new scale or bias, it re-plans the kernel."""
    if in_max > 255:
        return False
    q = op.quant if op.quant is not None else int8_weight(op.w)
    if q is None:
        return False
    m, g = q
    try:
        op.int8 = Int8Op(op.kind, m, g * scale, op.params, (batch,) + tuple(in_shape), bias)
    except Exception:  # an unsupported shape on this build: the float kernel runs it
        return False
    op.quant, op.in_shape, op.batch, op.scale, op.bias = q, tuple(in_shape), batch, float(scale), bias
    return True


def run_weighted(op: Weighted, x: torch.Tensor) -> torch.Tensor:
    """Apply one planned op to ``x``: (B, C, H, W) channels-last for a conv; for a dense, (B, C, H, W) flattened in
    (H, W, C) order after its pool, or (B, n). The float kernels return the accumulator (``scale`` 1, no bias)."""
    if op.pool > 1:
        x = sum_pool(x, op.pool)
    if op.kind == "conv":
        if op.int8 is not None:
            return op.int8(x.contiguous(memory_format=torch.channels_last))
        p = op.params
        return F.conv2d(x.contiguous(memory_format=torch.channels_last), op.w, None, stride=p["stride"],
                        padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    if x.dim() == 4:  # a channels-last state flattens for free in (H, W, C) order
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    if op.int8 is not None:
        return op.int8(x.contiguous())
    return (op.w @ x.reshape(x.shape[0], -1).T).T  # (out, in) @ x.T: the faster GEMM shape for few outputs
