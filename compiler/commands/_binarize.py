"""The ALBSNN options of ``snnc compile`` (--binarize, --max-drop, --storage, --finetune, --estimator,
--val-fraction) and their report."""
from __future__ import annotations

import argparse
from typing import Any

from snnc.argspec import MAX_STEPS, Choice, Float, Int, Text, add, constrain
from snnc.ir.errors import UsageError


def add_binarize_args(p: argparse.ArgumentParser) -> None:
    add(p, "--binarize", spec=Text(pattern=r"\s*[^,\s][^,]*(,\s*[^,\s][^,]*)*",
                                   what="none, auto, or a comma list of layer names"), default="none",
        help="binary weight layers: none | auto (chosen by accuracy-loss estimators on a validation part of --calib) "
        "| comma list of layer names (torch module names)")
    add(p, "--max-drop", spec=Float(lo=0, hi=100), default=None, help="--binarize auto: accuracy budget in points "
        "(default 0.5 when no --storage is given)")
    add(p, "--storage", spec=Float(lo=0, hi=1, open_lo=True), default=None, help="--binarize auto: stop once "
        "weight bytes after / before <= this (e.g. 0.75)")
    add(p, "--estimator", spec=Choice(choices=("disagreement", "float_drop")), default="disagreement",
        help="--binarize auto: the estimate the budget is held with, on the validation part: disagreement (percent "
        "of predictions that change; label-free) or float_drop (accuracy drop)")
    add(p, "--val-fraction", spec=Float(lo=0, hi=0.9, open_lo=True), default=0.5, help="--binarize: fraction of "
        "--calib held out as the validation part the estimators run on (nothing is fitted on it)")
    add(p, "--finetune", spec=Int(lo=0, hi=10_000), default=0, help="epochs of straight-through fine-tuning with "
        "the binary layers, on the fit part of --calib (torch models only; 0 = post-training binarization)")
    p.add_argument("--allow-first-last", action="store_true", help="let --binarize auto pick the first/last layer")
    add(p, "--binary-scale", spec=Choice(choices=("channel", "layer")), default="channel",
        help="one alpha per output channel (default) or per layer")
    add(p, "--steps", spec=Int(lo=1, hi=MAX_STEPS), default=32,
        help="T used to estimate and measure accuracy for --binarize")
    p.add_argument("--no-measure", action="store_true", help="skip the per-layer integer-simulator measured drops")
    constrain(p, _binarize_inputs)


def _binarize_inputs(args: argparse.Namespace) -> None:
    """--max-drop/--storage/--finetune/--estimator/--val-fraction only with --binarize; binarization measures
    accuracy, so --calib (its validation part) and --data need labels."""
    if args.binarize == "none":
        for flag, given in (("--max-drop", args.max_drop is not None), ("--storage", args.storage is not None),
                            ("--finetune", args.finetune > 0)):
            if given:
                raise UsageError(f"{flag}: applies to --binarize (auto or a layer list); --binarize is none")
        return
    if args.binarize != "auto" and (args.max_drop is not None or args.storage is not None):
        raise UsageError("--max-drop/--storage: apply to --binarize auto, not to a layer list")
    from snnc.commands._common import load_data_args

    calib, ev = load_data_args(args, calib=True, evaluation=True)
    calib.labels()
    ev.labels()


def wants_binarize(args: argparse.Namespace) -> bool:
    return getattr(args, "binarize", "none") not in (None, "none")


def binarize_options(args: argparse.Namespace) -> Any:
    """``BinarizeOptions`` from the arguments."""
    from snnc.binarize_search import BinarizeOptions

    spec = args.binarize
    layers = "auto" if spec == "auto" else [s.strip() for s in spec.split(",") if s.strip()]
    return BinarizeOptions(layers=layers, max_drop=args.max_drop, storage=args.storage, steps=args.steps,
                           per_channel=args.binary_scale == "channel", allow_first_last=args.allow_first_last,
                           estimator=args.estimator, val_fraction=args.val_fraction, measure=not args.no_measure,
                           finetune_epochs=args.finetune)


def print_binarize_table(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    d = rep["data"]
    seen = d.get("eval_samples_in_calib", 0)
    acc = "-" if rep["accuracy_before"] is None else \
        f"{100 * rep['accuracy_before']:.2f} % -> {100 * rep['accuracy_after']:.2f} %"
    t = Table(title=f"binarization (T={rep['steps']}): weight bytes {rep['weight_bytes_before']} -> "
                    f"{rep['weight_bytes_after']} ({100 * (1 - rep['storage_ratio']):.1f} % less); integer accuracy "
                    f"{acc} on {d['eval']['spec']} ({d['eval']['samples']} evaluation samples"
                    f"{f', {seen} also in the calibration data' if seen else ''}); estimators on "
                    f"{d['validation']['spec']}, fitted on {d['fit']['spec']}; budget held with "
                    f"{rep['estimator']}: chosen set {rep['combined_estimate']:.2f}")
    for col in ("layer", "binary", "eligible", "weights", "bits/weight", "bytes", "weight err", "output err (val)",
                "float drop (pt, val)", "disagree (%, val)", "KL (val)", "measured drop (pt, eval)"):
        t.add_column(col)
    for r in rep["layers"]:
        md = "-" if r["measured_drop"] is None else f"{r['measured_drop']:.2f}"
        t.add_row(r["name"], str(r["binary"]), str(r["eligible"]), str(r["weights"]), "1" if r["binary"] else "8",
                  str(r["bytes"]), f"{r['weight_error']:.3f}", f"{r['output_error']:.3f}",
                  f"{r['float_drop']:.2f}", f"{r['disagreement']:.2f}", f"{r['output_kl']:.4f}", md)
    Console().print(t)
