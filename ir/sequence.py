"""Time-varying input: whether data is one frame per sample or a sequence, decided against the graph's Input.

The rule (``input_series``), for a graph whose Input has shape S (no batch axis):
  x.shape == (N, *S)        static: the same frame is presented on every step of the run
  x.shape == (N, T_in, *S)  sequence: slice t is presented at step t (binary events or graded values)
  x.shape == S              one static sample (a batch axis is added)
anything else is a ``DataError`` naming both layouts. The two layouts cannot both fit (they differ in rank), so
the rule is never ambiguous; a single sequence is written (1, T_in, *S).

Steps (``InputSeries.run_steps``): a run integrates T steps at the readout and lasts T + depth steps
(``latency_steps``; depth = connections on the longest forward path to the readout). Static input: T is the
caller's ``steps``. Sequence: T = ``steps`` when given, else T_in; slices t < min(T, T_in) are presented at steps
t, every later step gets no input (zeros: no events), so a shorter T cuts the sequence and a longer one adds a
silent tail. Each connection delays by one step, so the slice of step t reaches a layer at depth d at step t + d
and the readout window (steps depth .. T + depth - 1) holds exactly the responses to slices 0 .. T - 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from snnc.ir.errors import DataError


@dataclass
class InputSeries:
    """Input data in one of the two layouts (module docstring).

    x: (N, *S) static or (N, T_in, *S) sequence, the caller's values (float, or quantized integers)
    sequence: whether x has a time axis"""

    x: np.ndarray
    sequence: bool

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps_in(self) -> int | None:
        """T_in, the sequence's length; None for static input."""
        return int(self.x.shape[1]) if self.sequence else None

    def run_steps(self, steps: int | None) -> int:
        """T: ``steps``, or for a sequence without ``steps`` its length; DataError when neither says."""
        if steps is None:
            if not self.sequence:
                raise DataError("static input (one frame per sample) needs the number of steps T to run")
            return int(self.x.shape[1])
        if int(steps) < 1:
            raise DataError(f"steps must be >= 1, got {steps}")
        return int(steps)

    def presented(self, steps: int) -> int:
        """Sequence: how many slices a run of T = ``steps`` presents (min(T, T_in)); static: -1 (every step)."""
        return min(int(steps), int(self.x.shape[1])) if self.sequence else -1

    def map(self, fn) -> "InputSeries":
        """The same layout with ``fn`` applied to the values (e.g. quantization)."""
        return InputSeries(fn(self.x), self.sequence)


def input_series(in_shape: tuple, x: np.ndarray, input_node: str = "input") -> InputSeries:
    """``x`` as an ``InputSeries`` for a graph whose Input node ``input_node`` has shape ``in_shape``; no samples,
    non-numeric or NaN/inf values are a DataError (``snnc.ir.chain.check_samples``)."""
    from snnc.ir.chain import check_samples

    x = np.asarray(x)
    s = tuple(int(d) for d in in_shape)
    if x.shape == s and x.ndim > 0:
        return InputSeries(check_samples(x[None]), False)
    if x.ndim == len(s) + 1 and tuple(x.shape[1:]) == s:
        return InputSeries(check_samples(x), False)
    if x.ndim == len(s) + 2 and tuple(x.shape[2:]) == s:
        if x.shape[1] < 1:
            raise DataError(f"input data is a sequence of 0 steps (shape {x.shape})")
        return InputSeries(check_samples(x), True)
    raise DataError(f"input data of shape {tuple(x.shape)} has per-sample shape {tuple(x.shape[1:])}; the graph's "
                    f"Input node {input_node!r} expects {s}, "
                    f"so x must be (N, {', '.join(map(str, s))}) (static: one frame per sample, presented every "
                    f"step) or (N, T, {', '.join(map(str, s))}) (a sequence: one slice per step)")


def window_events(x_nonzero: np.ndarray, sequence: bool, steps: int, latency: int) -> np.ndarray:
    """Per sample and input element, how many steps of a run present a non-zero value: static input ``latency``
    times its indicator; a sequence the count over its presented slices (t < min(T, T_in)).
    x_nonzero: bool/int (N, *S) or (N, T_in, *S)."""
    ev = np.asarray(x_nonzero).astype(np.int64)
    if not sequence:
        return ev * latency
    return ev[:, :min(steps, ev.shape[1])].sum(1)
