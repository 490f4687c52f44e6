"""snnc sweep: the CLI of ``snnc.sweep`` (accuracy vs T per conversion variant: table, JSON, PNG)."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from snnc.commands._common import (
    add_cluster_arg,
    add_data_args,
    add_json,
    load_data,
    load_model,
    need_labels,
    print_json,
)
from snnc.ir.errors import DataError
from snnc.sweep import INITS, METHODS, plot, sweep


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
    add_cluster_arg(p, "grid points")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from snnc.train.fit import accuracy

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
    if args.cluster:
        from snnc import cluster

        rows = cluster.sweep(model, xcal, x, y, steps, methods, inits, args.tune, args.restructure, not args.no_int,
                             args.percentile, floors=floors, calibrate=args.calibrate, cluster=args.cluster,
                             progress=not args.json)
    else:
        rows = sweep(model, xcal, x, y, steps, methods, inits, args.tune, args.restructure, not args.no_int,
                     args.percentile, floors=floors, calibrate=args.calibrate)
    secs = time.perf_counter() - t0
    plot(rows, ann, args.plot, f"{args.model}: SNN accuracy vs T")
    if args.json:
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
