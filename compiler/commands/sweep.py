"""snnc sweep: ANN vs converted SNN accuracy (float and integer simulation) over time-steps T, per method.

Methods: ``max`` / ``percentile`` threshold balancing (ReLU models) and ``qcfs`` (ClipFloor models: theta =
trained lambda). ``--init half`` starts every neuron at theta/2 (Bu et al. 2022); ``--tune`` scales thresholds
per layer for each T (passes/threshold_tuning.py); ``--restructure`` balances residual shortcut delays with IF
relays (frontend/residual.py); ``--calibrate`` measures each layer's SNN output against the ANN and sets a
threshold factor and bias shift per layer for each T (passes/layer_calibration.py). Prints a table, writes a PNG
(accuracy vs T, one line per variant)."""
from __future__ import annotations

import argparse
import functools
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from snnc.compiler.commands._common import add_data_args, add_json, load_data, load_model, need_labels
from snnc.ir.errors import DataError, UnsupportedLayerError

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
                    weight_bits: int = 8, calib_steps: int = 64, acts: dict | None = None,
                    v_floor: float | None = 1.0, calibrate_steps: int | None = None, calibrate_samples: int = 128):
    """compile_model with the conversion-quality passes: threshold tuning for ``tune_steps``, delay balancing,
    layer calibration (threshold factor + bias shift measured on the SNN) for ``calibrate_steps``."""
    from snnc.compiler.frontend.convert import ConvertOptions
    from snnc.compiler.frontend.residual import balance_residual_delays
    from snnc.compiler.passes.threshold_tuning import layer_activations, tune_thresholds
    from snnc.compiler.pipeline import compile_model
    from snnc.compiler.train.clip_floor import ClipFloor

    has_cf = any(isinstance(m, ClipFloor) for m in model.modules())
    if method == "qcfs" and not has_cf:
        raise UnsupportedLayerError(f"--method qcfs needs a model trained with ClipFloor activations "
                                    f"({type(model).__name__} has none; see snnc.compiler.train.swap_relu)")
    passes = []
    if tune_steps:
        acts = acts if acts is not None else layer_activations(model, calib)
        passes.append(functools.partial(tune_thresholds, acts=acts, steps=tune_steps))
    if restructure:
        passes.append(balance_residual_delays)
    opts = ConvertOptions(method="max" if method == "qcfs" else method, percentile=percentile, v_init=v_init,
                          v_floor=v_floor)
    return compile_model(model, calib, opts, weight_bits=weight_bits, calib_steps=calib_steps, float_passes=passes,
                         calibrate_steps=calibrate_steps, calibrate_samples=calibrate_samples)


def sweep(model: torch.nn.Module, xcal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
          methods: list[str], inits: list[str], tune: bool = False, restructure: bool = False,
          integer: bool = True, percentile: float = 99.99, calib_steps: int | None = None,
          log=None, floors: Sequence[float | None] = (1.0,), calibrate: bool = False) -> list[SweepRow]:
    """Accuracy rows for every (method, init, floor, T); compiles once per variant (once per T with ``tune`` or
    ``calibrate``)."""
    from snnc.backends.cpu.simulator import simulate
    from snnc.compiler.passes.threshold_tuning import layer_activations

    rows = []
    acts = layer_activations(model, xcal) if tune else None
    cs = calib_steps or max(steps)
    for method in methods:
        for init in inits:
            for floor in floors:
                c = None
                for t in steps:
                    if c is None or tune or calibrate:
                        c = compile_variant(model, xcal, method, INITS[init], t if tune else None, restructure,
                                            percentile, calib_steps=cs, acts=acts, v_floor=floor,
                                            calibrate_steps=t if calibrate else None)
                    fa = simulate(c.float_graph, x, steps=t).accuracy(y)
                    ia = simulate(c.int_graph, x, steps=t).accuracy(y) if integer else None
                    row = SweepRow(method, init, t, fa, ia, tune, restructure, floor, calibrate)
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_list(s: str, name: str, allowed=None, kind=str) -> list:
    try:
        vals = [kind(v.strip()) for v in s.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"{name}: expected a comma-separated list, got {s!r}") from None
    if not vals:
        raise DataError(f"{name}: empty list")
    if allowed is not None:
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise DataError(f"{name}: unknown value(s) {bad} (choose from {', '.join(allowed)})")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model.pt (torch.save(model); pickle: only trusted files)")
    p.add_argument("--model-class", help="package.module:Class for a state-dict model.pt")
    add_data_args(p)
    p.add_argument("--steps", default="1,2,4,8,16,32,64", help="comma-separated T values")
    p.add_argument("--method", default="percentile", help="max | percentile | qcfs, or a comma list")
    p.add_argument("--init", default="zero", help="zero | half (v0 = theta/2), or a comma list")
    p.add_argument("--floor", default="1", help="potential floor v >= -F*theta: F (default 1, as Sinabs' IAF) or "
                   "'none', or a comma list (e.g. none,1)")
    p.add_argument("--tune", action="store_true", help="per-layer threshold tuning for each T (TTRBR-style)")
    p.add_argument("--restructure", action="store_true", help="balance residual shortcut delays with IF relays")
    p.add_argument("--calibrate", action="store_true", help="layer calibration for each T: per-layer threshold "
                   "factor and per-channel bias shift measured on the SNN against the ANN (128 training samples)")
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--no-int", action="store_true", help="float simulation only")
    p.add_argument("--limit", type=int, help="evaluate on the first N test samples only")
    p.add_argument("--plot", default="sweep_accuracy.png", help="PNG written here")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from snnc.compiler.zoo import accuracy

    steps = _parse_list(args.steps, "--steps", kind=int)
    if any(t < 1 for t in steps):
        raise DataError(f"--steps: every T must be >= 1, got {steps}")
    methods = _parse_list(args.method, "--method", METHODS)
    inits = _parse_list(args.init, "--init", tuple(INITS))
    floors = [None if f == "none" else _parse_list(f, "--floor", kind=float)[0]
              for f in _parse_list(args.floor, "--floor")]
    if any(f is not None and not f >= 0 for f in floors):
        raise DataError(f"--floor: each F must be 'none' or a number >= 0, got {args.floor!r}")
    model = load_model(args.model, args.model_class)
    xcal, _ = load_data(args.data, "train")
    x, y = load_data(args.data, "test", args.limit)
    y = need_labels(y, args.data)
    ann = accuracy(model, x, y)
    t0 = time.perf_counter()
    rows = sweep(model, xcal, x, y, steps, methods, inits, args.tune, args.restructure, not args.no_int,
                 args.percentile, floors=floors, calibrate=args.calibrate)
    secs = time.perf_counter() - t0
    plot(rows, ann, args.plot, f"{args.model}: SNN accuracy vs T")
    if args.json:
        from snnc.compiler.cli import print_json

        print_json({"ann_accuracy": ann, "rows": [asdict(r) for r in rows], "plot": args.plot, "seconds": secs})
        return 0
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"{args.model}: ANN {100 * ann:.2f}% on {len(y)} test samples ({secs:.1f} s)")
    for col in ("method", "init", "floor", "tune", "restructure", "calibrate", "T", "SNN float %", "SNN integer %"):
        tab.add_column(col)
    for r in rows:
        tab.add_row(r.method, r.init, "none" if r.floor is None else f"-{r.floor:g}θ", "yes" if r.tune else "no",
                    "yes" if r.restructure else "no", "yes" if r.calibrate else "no", str(r.steps),
                    f"{100 * r.float_accuracy:.2f}",
                    "-" if r.int_accuracy is None else f"{100 * r.int_accuracy:.2f}")
    Console().print(tab)
    print(f"plot: {args.plot}")
    return 0


COMMANDS = [("sweep", "accuracy vs time-steps per conversion method (table + PNG)", add_arguments, run)]
