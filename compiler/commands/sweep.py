"""snnc sweep: the CLI of ``snnc.sweep`` (accuracy vs T per conversion variant: table, JSON, PNG)."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np

from snnc.argspec import MAX_STEPS, Choice, Float, InFile, Int, List, Literal, OneOf, OutFile, add, constrain
from snnc.commands._common import (
    add_cluster_arg,
    add_data_args,
    add_json,
    add_trust_pickle,
    load_data_args,
    load_model,
    print_json,
    warn_overlap,
)
from snnc.commands.core import MODEL_CLASS
from snnc.sweep import INITS, METHODS, plot, sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    add(p, "model", spec=InFile(what="model file"), help="a state dict with --model-class, a torch.export program "
        "(.pt2), or a whole pickled module (needs --trust-pickle)")
    add(p, "--model-class", spec=MODEL_CLASS, help="package.module:Class for a state-dict model.pt")
    add_trust_pickle(p)
    add_data_args(p)
    add(p, "--steps", spec=List(item=Int(lo=1, hi=MAX_STEPS)), default="1,2,4,8,16,32,64",
        help="comma-separated T values")
    add(p, "--method", spec=List(item=Choice(choices=tuple(METHODS))), default="percentile",
        help="max | percentile | qcfs, or a comma list")
    add(p, "--init", spec=List(item=Choice(choices=tuple(INITS))), default="zero",
        help="zero | half (v0 = theta/2), or a comma list")
    add(p, "--floor", spec=List(item=OneOf(specs=(Literal(word="none", value=None), Float(lo=0)))), default="1",
        help="potential floor v >= -F*theta: F (default 1, as Sinabs' IAF) or 'none', or a comma list (e.g. none,1)")
    p.add_argument("--tune", action="store_true", help="per-layer threshold tuning for each T (TTRBR-style)")
    p.add_argument("--restructure", action="store_true", help="balance residual shortcut delays with IF relays")
    p.add_argument("--calibrate", action="store_true", help="layer calibration for each T: per-layer threshold "
                   "factor and per-channel bias shift measured on the SNN against the ANN (128 calibration samples)")
    add(p, "--percentile", spec=Float(lo=0, hi=100, open_lo=True), default=99.99)
    p.add_argument("--no-int", action="store_true", help="float simulation only")
    add(p, "--limit", spec=Int(lo=1), help="evaluate on the first N evaluation samples only")
    add(p, "--plot", spec=OutFile(what="plot file", suffixes=(".png", ".pdf", ".svg")), default="sweep_accuracy.png",
        help="the accuracy-vs-T plot (.png, .pdf or .svg), written atomically")
    add_cluster_arg(p, "grid points")
    add_json(p)
    constrain(p, _sweep_inputs)


def _sweep_inputs(args: argparse.Namespace) -> None:
    """Before sweeping: the model loads (safely), the calibration and evaluation data load and fit it, and the
    evaluation data has labels."""
    from snnc.train.fit import accuracy

    model = load_model(args.model, args.model_class, args.trust_pickle)
    cal, ev = load_data_args(args, calib=True, evaluation=True, limit=args.limit)
    accuracy(model, cal.x[:2], np.zeros(len(cal.x[:2]), dtype=np.int64))  # calibration data fits the model
    accuracy(model, ev.x[:2], ev.labels()[:2])


def run(args: argparse.Namespace) -> int:
    from snnc.train.fit import accuracy

    steps, methods, inits, floors = args.steps, args.method, args.init, args.floor
    model = load_model(args.model, args.model_class, args.trust_pickle)
    from snnc.dataspec import data_report

    cal, ev = load_data_args(args, calib=True, evaluation=True, limit=args.limit)
    xcal, x, y = cal.x, ev.x, ev.labels()
    data = data_report(cal, ev)
    warn_overlap(data)
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
        print_json({"ann_accuracy": ann, "rows": [asdict(r) for r in rows], "plot": args.plot, "seconds": secs,
                    "data": data, "measured_on": {"ann_accuracy": "eval", "float_accuracy": "eval",
                                                  "int_accuracy": "eval"}})
        return 0
    from rich.console import Console
    from rich.table import Table

    seen = data["eval_samples_in_calib"]
    tab = Table(title=f"{args.model}: accuracies on {ev.spec} ({len(y)} evaluation samples"
                      f"{f', {seen} also in the calibration data' if seen else ''}), compiled on {cal.spec} "
                      f"({cal.samples} samples): ANN {100 * ann:.2f}% ({secs:.1f} s)")
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
