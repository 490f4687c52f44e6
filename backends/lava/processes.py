"""snnc's Lava neuron process: Lava's fixed-point LIF with reset by subtraction, or a non-spiking integrator.

``SubtractLIF`` is what a Loihi 2 microcode neuron for a converted (rate-coded) network computes. Its process
model subclasses Lava's own ``AbstractPyLifModelFixed`` so the arithmetic is Lava's, line for line:

  u = wrap24(dec(u, du + 1) + (a_in << 6))           u: 24-bit signed, wraps once into (-2**23, 2**23]
  v = clip(dec(v, dv) + u + (bias_mant << bias_exp), +-(2**23 - 1))     v: 24-bit signed, saturates
  v = max(v, v_min)                                    v_min: 24-bit signed floor (default -(2**23 - 1): none)
  s = v > vth << 6                                     vth: 17-bit unsigned, per neuron
  v -= vth << 6 where s                                (Lava's LIF sets v = 0 instead)

With ``reset_zero=1`` the reset sets v = 0 (Lava's LIF), for the reset timings Lava's LIF does not have
(``snnc.reset_timing``, ``snnc.ir.neuron``): ``timing=1`` "delayed": the previous step's spikes s' reset v right
after the update (v -= vth << 6 where s', kept within 24 bits, or v = 0 where s'), before the floor, and this step's
spikes do not reset; ``timing=2`` "guarded": where v was above vth << 6 before the update, the spike test is
v - (vth << 6) > vth << 6.
With ``spiking=0`` the neuron never spikes: it only integrates (the readout layer of a network).

Samples: with ``sample_steps=P > 0`` the neuron starts a new sample every P steps (steps 0, P, 2P, ...): u is set
to 0, v to its initial value, and the a_in received on that step is dropped. That input is what the incoming
Dense/Conv buffered from the previous sample's last step, so dropping it equals zeroing their buffers; the
network then runs each sample exactly as from a fresh start, without set() calls between samples.

This module imports lava at import time; import it only where lava is needed (``snnc.backends.lava`` does so
lazily). Imports are absolute because Lava's model discovery re-executes the modules of this directory.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed
from lava.proc.lif.process import AbstractLIF


class SubtractLIF(AbstractLIF):
    """LIF neurons with reset by subtraction (``spiking=1``) or a non-spiking integrator (``spiking=0``).

    Parameters are Lava's LIF parameters in Lava's fixed-point units: ``u``, ``v`` (24-bit), ``du``, ``dv``
    (12-bit), ``bias_mant`` (13-bit signed), ``bias_exp`` (3-bit), and ``vth`` (17-bit unsigned, one per
    neuron or a scalar), ``v_min`` (24-bit signed potential floor, per neuron or a scalar). ``spiking=0``: never
    spike; ``sample_steps=P``: restart every P steps; ``reset_zero``, ``timing`` (0 immediate, 1 delayed,
    2 guarded): the reset (module doc)."""

    def __init__(self, *, shape: ty.Tuple[int, ...],
                 u: ty.Union[int, np.ndarray] = 0, v: ty.Union[int, np.ndarray] = 0,
                 du: int = 4095, dv: int = 0,
                 bias_mant: ty.Union[int, np.ndarray] = 0, bias_exp: ty.Union[int, np.ndarray] = 0,
                 vth: ty.Union[int, np.ndarray] = 10, spiking: int = 1, sample_steps: int = 0,
                 v_min: ty.Union[int, np.ndarray] = -(2 ** 23 - 1), reset_zero: int = 0, timing: int = 0,
                 name: ty.Optional[str] = None, **kwargs: ty.Any) -> None:
        super().__init__(shape=shape, u=u, v=v, du=du, dv=dv, bias_mant=bias_mant, bias_exp=bias_exp,
                         name=name, log_config=None, spiking=int(spiking), sample_steps=int(sample_steps),
                         reset_zero=int(reset_zero), timing=int(timing), **kwargs)
        self.vth = Var(shape=shape, init=vth)
        self.v_min = Var(shape=shape, init=v_min)


@implements(proc=SubtractLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySubtractLIFModelFixed(AbstractPyLifModelFixed):
    """Bit-accurate fixed-point model of ``SubtractLIF``: Lava's ``PyLifModelBitAcc`` with a subtractive reset."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    v_min: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params: ty.Any) -> None:
        super().__init__(proc_params)
        self.spiking = bool(self.proc_params.get("spiking", 1))
        self.sample_steps = int(self.proc_params.get("sample_steps", 0))
        self.reset_zero = bool(self.proc_params.get("reset_zero", 0))
        self.timing = int(self.proc_params.get("timing", 0))
        self.effective_vth = 0
        self._v0: ty.Optional[np.ndarray] = None
        self._boundary = False
        self._s_prev: ty.Optional[np.ndarray] = None  # "delayed": the previous step's spikes
        self._guard: ty.Optional[np.ndarray] = None  # "guarded": v above threshold before this update

    def run_spk(self) -> None:
        """Lava's LIF step; on a sample boundary first restore u = 0, v = v0 and drop that step's a_in."""
        if self._v0 is None:
            self._v0 = self.v.copy()  # v's initial value (the first step sees the Var's init)
        self._boundary = self.sample_steps > 0 and (self.time_step - 1) % self.sample_steps == 0
        if self._boundary:
            self.u[:] = 0
            self.v[:] = self._v0
            self._s_prev = None
        super().run_spk()

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        """Lava's fixed-point u/v update; a_in counts as 0 on a sample boundary."""
        if self._boundary:
            activation_in = np.zeros_like(activation_in)
        if self.timing == 2:
            self._guard = self.v > self.effective_vth
        super().subthr_dynamics(activation_in)
        if self.timing == 1 and self._s_prev is not None:
            if self.reset_zero:
                self.v[self._s_prev] = 0
            else:
                vth = np.broadcast_to(self.effective_vth, self.v.shape)
                self.v[:] = np.maximum(self.v.astype(np.int64) - np.where(self._s_prev, vth, 0), -(2 ** 23 - 1))
        np.maximum(self.v, self.v_min, out=self.v)  # the potential floor (no-op at the default -(2**23 - 1))

    def scale_threshold(self) -> None:
        """vth << 6, MSB-aligned with v as Lava's LIF does (read once, on the first step)."""
        self.effective_vth = np.left_shift(self.vth.astype(np.int32), self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self) -> np.ndarray:
        """Spike where v > vth << 6; the non-spiking readout never spikes."""
        if not self.spiking:
            return np.zeros(self.v.shape, dtype=bool)
        if self.timing == 2:
            return np.where(self._guard, self.v.astype(np.int64) - self.effective_vth, self.v) > self.effective_vth
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        """Reset by subtraction: v -= vth << 6 where the neuron spiked (v stays within 24 bits), or to zero;
        "delayed": remember the spikes for the next update instead."""
        if self.timing == 1:
            self._s_prev = np.asarray(spike_vector, dtype=bool).copy()
            return
        if self.reset_zero:
            self.v[spike_vector] = 0
            return
        self.v[spike_vector] -= np.broadcast_to(self.effective_vth, self.v.shape)[spike_vector]
