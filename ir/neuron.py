"""The neuron update of snnc graphs, one kernel per arithmetic, on torch tensors. Every engine (the reference and
the exact simulator), the calibration runs and the trainable SNN call these; they differ only in scheduling.

Integer (Lava 0.10.0 fixed point, per neuron layer and step; from lava/proc/lif/models.py):
  u = decay(u, du + 1) + a * 64, wrapped once into (-2**23, 2**23]            (u: 24-bit signed, wraps)
  v = clip(decay(v, dv) + u + bias6, -(2**23 - 1), 2**23 - 1)                (v: 24-bit signed, saturates)
  then ``fire``: v = max(v, vmin6); s = v > vth6; v -= vth6 * s ("subtract") or v = 0 where s ("zero")
  Reset timing (``snnc.reset_timing``): "immediate" is the above; "delayed" (``fire_delayed``, snnTorch's
  reset_delay=True) resets with the previous step's spikes s' instead: v = max(v - vth6 * s', -(2**23 - 1))
  ("subtract") or v = 0 where s' ("zero"), then v = max(v, vmin6); s = v > vth6, and v keeps its value;
  "guarded" (``fire``'s ``guard``, snnTorch's reset_delay=False) is immediate, but where the potential stored
  before this update was still above the threshold, s = v - vth6 > vth6
  decay(x, d) = sign(x * (4096 - d)) * (|x * (4096 - d)| >> 12)
  (bias6 = bias << 6, vth6 = vth << 6, vmin6 = round(v_min * 64)). The integer kernel runs on int64 tensors, or
  on float32/float64 tensors whose values are exact integers (the exact engine proves when that holds).
Float (threshold units):
  IF/I:            v = v + bias * r + a * r
  LIF/LI/CubaLIF:  u = alpha * u + g_u * a;  v = beta * v + g_v * bias + g_v * (u, or a without a current)
  then the same ``fire`` (the readout never fires).
Wraps of u and saturations of v are counted per layer by an ``EventCounter``."""
from __future__ import annotations

import math
from typing import Callable

import torch
from snnc.ir import conventions as cv

V_LIM = cv.V_MAX  # v saturates at +-(2**23 - 1) (ints: int64 tensors stay int64)
U_MAX = 2 ** 23  # u wraps into (-2**23, 2**23]
SpikeFn = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]


class EventCounter:
    """Counts values outside a range (overflow events). CPU: exact host ints after one min/max pass, which also
    tells the caller the tensor's max/min (``last_max``/``last_min``); CUDA: device tensors, no host sync."""

    def __init__(self, dev: torch.device = torch.device("cpu")):
        self.sync_free = dev.type != "cpu"
        self.host: dict[tuple, int] = {}
        self.dev_counts: dict[tuple, torch.Tensor] = {}
        self.last_max = math.inf  # CPU: max of the tensor last checked (clamped to hi); inf when unknown
        self.last_min = -math.inf  # CPU: its min (before clamping); -inf when unknown

    def out_of_range(self, key: tuple, x: torch.Tensor, lo: float, hi: float, times: int = 1) -> bool | None:
        """Count elements of x outside [lo, hi] (``times`` over); whether any (CPU), None (CUDA: unknown)."""
        if self.sync_free:
            c = ((x < lo) | (x > hi)).sum() * times
            self.dev_counts[key] = self.dev_counts[key] + c if key in self.dev_counts else c
            self.last_max, self.last_min = math.inf, -math.inf
            return None
        if x.dim() == 4 and not x.is_contiguous():  # channels-last: reduce over the memory-order view, no copy
            x = x.permute(0, 2, 3, 1)
        mn, mx = torch.aminmax(x)
        self.last_max, self.last_min = float(mx), float(mn)
        under, over = float(mn) < lo, self.last_max > hi
        if not (under or over):
            return False
        c = int(torch.count_nonzero(x < lo)) if under else 0
        c += int(torch.count_nonzero(x > hi)) if over else 0
        self.host[key] = self.host.get(key, 0) + c * times
        self.last_max = min(self.last_max, hi)
        return True

    def totals(self) -> dict[tuple, int]:
        """(name, kind) -> count over everything counted so far."""
        t = dict(self.host)
        for k, c in self.dev_counts.items():
            t[k] = t.get(k, 0) + int(c)
        return t


# ---------------------------------------------------------------------------------------------- integer
def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """Lava's decay sign(x (4096 - d)) * (|x (4096 - d)| >> 12), rounding toward zero; exact on int64 and on
    float64 integers below 2**24 (the product stays below 2**36)."""
    if d == 0:
        return x
    if d >= cv.DECAY_UNITY:
        return torch.zeros_like(x)
    if x.is_floating_point():
        return torch.trunc(x * ((cv.DECAY_UNITY - d) / cv.DECAY_UNITY))
    p = x * (cv.DECAY_UNITY - d)
    return torch.sign(p) * (p.abs() >> 12)


def wrap_current(u: torch.Tensor, counter: EventCounter, name: str) -> torch.Tensor:
    """u wrapped once into (-2**23, 2**23] (Lava's 24-bit current), each wrap counted as (name, "u_wrap")."""
    if counter.out_of_range((name, "u_wrap"), u, -U_MAX + 1, U_MAX) is False:
        return u
    return torch.where(u > U_MAX, u - 2 * U_MAX, torch.where(u <= -U_MAX, u + 2 * U_MAX, u))


def integrate(v: torch.Tensor, u: torch.Tensor | None, bias6: torch.Tensor | None, dv: int, counter: EventCounter,
              name: str) -> torch.Tensor:
    """v = clip(decay(v, dv) + u + bias6, +-(2**23 - 1)), each saturation counted as (name, "v_saturate")."""
    v = decay(v, dv)
    if u is not None:
        v = v + u
    if bias6 is not None:
        v = v + bias6
    if counter.out_of_range((name, "v_saturate"), v, -V_LIM, V_LIM) is False:
        return v
    return v.clamp(-V_LIM, V_LIM)


def step_integer(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, du: int, dv: int,
                 bias6: torch.Tensor | None, counter: EventCounter, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Lava's current and potential (before ``fire``): (u, v) -> (u, v)."""
    u = decay(u, du + 1)
    if a is not None:
        u = u + a * 64
    u = wrap_current(u, counter, name)
    return u, integrate(v, u, bias6, dv, counter, name)


# ---------------------------------------------------------------------------------------------- float
def step_float(v: torch.Tensor, a: torch.Tensor | None, bias_r: torch.Tensor | float, r: torch.Tensor | float
               ) -> torch.Tensor:
    """IF/I: v + bias * r + a * r (``bias_r`` = bias * r), in this order."""
    v = v + bias_r
    return v if a is None else v + a * r


def step_leaky(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, alpha: torch.Tensor | None,
               gain_u: torch.Tensor | None, beta: torch.Tensor, gain_v: torch.Tensor, bias: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF/LI (``alpha`` None: no current) and CubaLIF in canonical discrete time: (u, v) -> (u, v)."""
    drive = a
    if alpha is not None:
        u = alpha * u + (a * gain_u if a is not None else 0.0)
        drive = u
    v = beta * v + gain_v * bias
    return u, (v if drive is None else v + gain_v * drive)


# ---------------------------------------------------------------------------------------------- both
def fire(v: torch.Tensor, vth: torch.Tensor | float, vmin: torch.Tensor | float | None, reset: str,
         spike: SpikeFn | None = None, guard: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Floor, threshold, reset: v = max(v, vmin); s = v > vth; v - vth * s ("subtract") or v * (1 - s) ("zero").
    ``guard`` (bool, reset timing "guarded"): where True the test is v - vth > vth (the reset is still vth).

    Same in both arithmetics (integer: v units, vth6/vmin6; float: threshold units; an infinite threshold never
    fires). ``spike(v, vth)`` replaces the comparison by a surrogate-gradient spike (float 0/1, finite vth) for
    training; the reset is then v - vth * s or v * (1 - s), equal for s in {0, 1}. Returns (v, s), s bool (or
    ``spike``'s dtype)."""
    if vmin is not None:
        v = torch.maximum(v, vmin) if isinstance(vmin, torch.Tensor) else v.clamp(min=vmin)
    if spike is not None:
        s = spike(v, vth)
        return (v - s * vth if reset == "subtract" else v * (1 - s)), s
    s = v > vth if guard is None else torch.where(guard, v - vth, v) > vth
    return torch.where(s, v - vth if reset == "subtract" else torch.zeros_like(v), v), s


def fire_delayed(v: torch.Tensor, vth: torch.Tensor | float, vmin: torch.Tensor | float | None, reset: str,
                 s_prev: torch.Tensor | None, lo: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reset timing "delayed" (snnTorch's reset_delay=True): the previous step's spikes ``s_prev`` (bool, or None
    before the first step) reset v now, undecayed: v - vth * s' ("subtract", then clipped at ``lo`` when given:
    the integer potential's 24 bits) or 0 where s' ("zero"); then the floor and the threshold test; v is not
    reset for this step's spikes. Returns (v, s), s bool."""
    if s_prev is not None:
        if reset == "subtract":
            v = torch.where(s_prev, v - vth, v)
            if lo is not None:
                v = v.clamp(min=lo)
        else:
            v = torch.where(s_prev, torch.zeros_like(v), v)
    if vmin is not None:
        v = torch.maximum(v, vmin) if isinstance(vmin, torch.Tensor) else v.clamp(min=vmin)
    return v, v > vth


def fire_(v: torch.Tensor, vth: torch.Tensor | float, reset_zero: bool, out: torch.Tensor) -> torch.Tensor:
    """``fire`` in place on exact float tensors (v, and ``out``: float 0/1 spikes), without the floor (the caller
    applies it); the exact engine's form."""
    torch.gt(v, vth, out=out)
    if reset_zero:
        v.mul_(1.0 - out)
    elif isinstance(vth, float):
        v.sub_(out, alpha=vth)
    else:
        v.addcmul_(out.to(v.dtype), vth, value=-1)
    return out
