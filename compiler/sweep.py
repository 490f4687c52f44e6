"""Sweep: ANN vs converted SNN accuracy (float and integer simulation) over time-steps T, per method.

Methods: ``max`` / ``percentile`` threshold balancing (ReLU models) and ``qcfs`` (ClipFloor models: theta =
trained lambda). ``--init half`` starts every neuron at theta/2 (Bu et al. 2022); ``--tune`` scales thresholds
per layer for each T (passes/threshold_tuning.py); ``--restructure`` balances residual shortcut delays with IF
relays (frontend/residual.py); ``--calibrate`` measures each layer's SNN output against the ANN and sets a
threshold factor and bias shift per layer for each T (passes/layer_calibration.py). ``plot`` draws accuracy vs T,
one line per variant; ``snnc sweep`` prints the rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from snnc.ir.errors import UnsupportedLayerError

METHODS = ("max", "percentile", "qcfs")
INITS = {"zero": 0.0, "half": 0.5}


@dataclass
class SweepRow:
    """Accuracy (fraction of the test split) of one conversion variant at ``steps`` time-steps."""

    method: str
    init: str
    steps: int
    float_accuracy: float
    int_accuracy: float | None
    tune: bool = False
    restructure: bool = False
    floor: float | None = 1.0  # potential floor as a fraction of the threshold (None: no floor)
    calibrate: bool = False  # layer calibration (threshold factor + bias shift measured on the SNN at this T)

    @property
    def label(self) -> str:
        return self.method + ("+half" if self.init == "half" else "") + ("+tune" if self.tune else "") + \
            ("+restructure" if self.restructure else "") + ("+calib" if self.calibrate else "") + (
            "+nofloor" if self.floor is None else "" if self.floor == 1.0 else f"+floor{self.floor:g}")


def compile_variant(model: torch.nn.Module, calib: np.ndarray, method: str, v_init: float = 0.0,
                    tune_steps: int | None = None, restructure: bool = False, percentile: float = 99.99,
                    weight_bits: int = 8, calib_steps: int = 64, v_floor: float | None = 1.0,
                    calibrate_steps: int | None = None, calibrate_samples: int = 128):
    """``snnc.compile`` of one variant: threshold balancing ``method`` (qcfs: the trained lambda), initial potential,
    floor, threshold tuning for ``tune_steps``, delay balancing, layer calibration for ``calibrate_steps``."""
    from snnc.frontend.convert import ConvertOptions
    from snnc.pipeline import CompileOptions, compile
    from snnc.train.clip_floor import ClipFloor

    if method == "qcfs" and not any(isinstance(m, ClipFloor) for m in model.modules()):
        raise UnsupportedLayerError(f"--method qcfs needs a model trained with ClipFloor activations "
                                    f"({type(model).__name__} has none; see snnc.train.swap_relu)")
    conv = ConvertOptions(method="max" if method == "qcfs" else method, percentile=percentile, v_init=v_init,
                          v_floor=v_floor)
    return compile(model, calib, CompileOptions(conv, weight_bits=weight_bits, calib_steps=calib_steps,
                                                tune_steps=tune_steps, restructure=restructure,
                                                calibrate_steps=calibrate_steps, calibrate_samples=calibrate_samples))


@dataclass(frozen=True)
class SweepOptions:
    """What every grid point of one sweep shares (see ``sweep``); ``calib_steps`` is the quantize range run's T."""

    tune: bool = False
    restructure: bool = False
    integer: bool = True
    percentile: float = 99.99
    calib_steps: int = 64
    calibrate: bool = False


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: a conversion variant at ``steps`` time-steps. ``compile_steps`` is the T its compile is
    specialised for (threshold tuning / layer calibration), None when one compile serves every T."""

    method: str
    init: str
    floor: float | None
    steps: int
    compile_steps: int | None

    @property
    def compile_key(self) -> tuple:
        """Points with the same key share one compile."""
        return self.method, self.init, self.floor, self.compile_steps


def grid(steps: list[int], methods: list[str], inits: list[str], floors: Sequence[float | None],
         opts: SweepOptions) -> list[SweepPoint]:
    """The sweep's grid points in the order ``sweep`` reports its rows (method, init, floor, then T)."""
    per_t = opts.tune or opts.calibrate
    return [SweepPoint(m, i, f, t, t if per_t else None) for m in methods for i in inits for f in floors
            for t in steps]


def compile_point(model: torch.nn.Module, xcal: np.ndarray, p: SweepPoint, opts: SweepOptions):
    """Compile the variant of grid point ``p`` (one ``snnc.compile``)."""
    return compile_variant(model, xcal, p.method, INITS[p.init], p.compile_steps if opts.tune else None,
                           opts.restructure, opts.percentile, calib_steps=opts.calib_steps, v_floor=p.floor,
                           calibrate_steps=p.compile_steps if opts.calibrate else None)


def evaluate_point(c, x: np.ndarray, y: np.ndarray, p: SweepPoint, opts: SweepOptions) -> SweepRow:
    """Float (and integer) SNN accuracy of the compiled variant ``c`` at grid point ``p``."""
    from snnc.backends.cpu.simulator import simulate

    fa = simulate(c.float_graph, x, steps=p.steps).accuracy(y)
    ia = simulate(c.int_graph, x, steps=p.steps).accuracy(y) if opts.integer else None
    return SweepRow(p.method, p.init, p.steps, fa, ia, opts.tune, opts.restructure, p.floor, opts.calibrate)


def sweep(model: torch.nn.Module, xcal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
          methods: list[str], inits: list[str], tune: bool = False, restructure: bool = False,
          integer: bool = True, percentile: float = 99.99, calib_steps: int | None = None,
          log: Callable[[SweepRow], None] | None = None, floors: Sequence[float | None] = (1.0,),
          calibrate: bool = False) -> list[SweepRow]:
    """Accuracy rows for every (method, init, floor, T); compiles once per variant (once per T with ``tune`` or
    ``calibrate``). ``snnc.cluster.sweep`` spreads the same grid over Ray workers."""
    opts = SweepOptions(tune, restructure, integer, percentile, calib_steps or max(steps), calibrate)
    rows = []
    key, c = None, None
    for p in grid(steps, methods, inits, floors, opts):
        if p.compile_key != key:
            key, c = p.compile_key, compile_point(model, xcal, p, opts)
        row = evaluate_point(c, x, y, p, opts)
        rows.append(row)
        if log:
            log(row)
    return rows


def plot(rows: list[SweepRow], ann: float, path: str, title: str = "") -> None:
    """Accuracy vs T (log2 axis), one line per variant (integer accuracy; float dashed when no integer run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = list(dict.fromkeys(r.label for r in rows))
    for lab in labels:
        rs = [r for r in rows if r.label == lab]
        ts = [r.steps for r in rs]
        if rs[0].int_accuracy is not None:
            ax.plot(ts, [100 * r.int_accuracy for r in rs], "o-", label=f"{lab} (integer)")
        else:
            ax.plot(ts, [100 * r.float_accuracy for r in rs], "o--", label=f"{lab} (float)")
    ax.axhline(100 * ann, color="k", lw=0.8, ls=":", label=f"ANN {100 * ann:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time-steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "SNN accuracy vs T")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    from snnc.analysis.plots import save_figure

    save_figure(fig, path)
