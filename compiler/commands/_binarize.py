"""The ALBSNN options of ``snnc compile`` (--binarize, --max-drop, --storage, --finetune) and their report."""
from __future__ import annotations

import argparse
import copy
from dataclasses import replace

from snnc.argspec import MAX_STEPS, Choice, Float, Int, Text, add, constrain
from snnc.ir.errors import DataError, UsageError


def add_binarize_args(p: argparse.ArgumentParser) -> None:
    add(p, "--binarize", spec=Text(pattern=r"\s*[^,\s][^,]*(,\s*[^,\s][^,]*)*",
                                   what="none, auto, or a comma list of layer names"), default="none",
        help="binary weight layers: none | auto (chosen by accuracy-loss estimators) | comma list of layer names "
        "(torch module names)")
    add(p, "--max-drop", spec=Float(lo=0, hi=100), default=None, help="--binarize auto: accuracy budget in points "
        "(default 0.5 when no --storage is given)")
    add(p, "--storage", spec=Float(lo=0, hi=1, open_lo=True), default=None, help="--binarize auto: stop once "
        "weight bytes after / before <= this (e.g. 0.75)")
    add(p, "--finetune", spec=Int(lo=0, hi=10_000), default=0, help="epochs of straight-through fine-tuning with "
        "the binary layers (torch models only; 0 = post-training binarization)")
    p.add_argument("--allow-first-last", action="store_true", help="let --binarize auto pick the first/last layer")
    add(p, "--binary-scale", spec=Choice(choices=("channel", "layer")), default="channel",
        help="one alpha per output channel (default) or per layer")
    add(p, "--steps", spec=Int(lo=1, hi=MAX_STEPS), default=32,
        help="T used to estimate and measure accuracy for --binarize")
    p.add_argument("--no-measure", action="store_true", help="skip the per-layer integer-simulator measured drops")
    constrain(p, _binarize_inputs)


def _binarize_inputs(args: argparse.Namespace) -> None:
    """--max-drop/--storage/--finetune only with --binarize; binarization measures accuracy, so --calib needs
    labels."""
    if args.binarize == "none":
        for flag, given in (("--max-drop", args.max_drop is not None), ("--storage", args.storage is not None),
                            ("--finetune", args.finetune > 0)):
            if given:
                raise UsageError(f"{flag}: applies to --binarize (auto or a layer list); --binarize is none")
        return
    if args.binarize != "auto" and (args.max_drop is not None or args.storage is not None):
        raise UsageError("--max-drop/--storage: apply to --binarize auto, not to a layer list")
    from snnc.commands._common import load_data, need_labels

    need_labels(load_data(args.calib, "train")[1], args.calib)


def apply_binarize(args: argparse.Namespace, c):
    """(Compiled, binarization report dict or None): binarize per the options and re-quantize."""
    spec = getattr(args, "binarize", "none")
    if spec in (None, "none"):
        return c, None
    from snnc.binarize_search import auto_binarize
    from snnc.commands._common import load_data, load_model, need_labels

    xc, yc = load_data(args.calib, "train")
    xe, ye = load_data(args.calib, "test")
    yc, ye = need_labels(yc, args.calib), need_labels(ye, args.calib)
    finetune = None
    if args.finetune > 0:
        if str(args.model).endswith(".nir"):
            raise DataError(f"{args.model}: --finetune needs a torch model, not an NIR file")
        from snnc.commands.core import convert_options
        from snnc.train.binary_finetune import finetuned_float_graph
        from snnc.train.fit import fit

        model = copy.deepcopy(load_model(args.model, args.model_class, args.trust_pickle))  # trained below
        opts = convert_options(args)
        finetune = lambda labs: finetuned_float_graph(model, labs, xc, yc, args.finetune,  # noqa: E731
                                                      args.binary_scale == "channel", opts, trainer=fit)
    layers = "auto" if spec == "auto" else [s.strip() for s in spec.split(",") if s.strip()]
    o = auto_binarize(c.float_graph, c.int_graph, xc, yc, xe, ye, layers, args.max_drop, args.storage, args.steps,
                      args.binary_scale == "channel", args.allow_first_last, not args.no_measure,
                      calib_steps=args.calib_steps, weight_bits=args.bits, finetune=finetune)
    return replace(c, float_graph=o.float_graph, int_graph=o.int_graph, report=o.report), o.as_dict()


def print_binarize_table(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"binarization (T={rep['steps']}): weight bytes {rep['weight_bytes_before']} -> "
                    f"{rep['weight_bytes_after']} ({100 * (1 - rep['storage_ratio']):.1f} % less), integer accuracy "
                    f"{100 * rep['accuracy_before']:.2f} % -> {100 * rep['accuracy_after']:.2f} %")
    for col in ("layer", "binary", "eligible", "weights", "bits/weight", "bytes", "weight err", "output err",
                "est. drop (pt)", "measured drop (pt)"):
        t.add_column(col)
    for r in rep["layers"]:
        md = "-" if r["measured_drop"] is None else f"{r['measured_drop']:.2f}"
        t.add_row(r["name"], str(r["binary"]), str(r["eligible"]), str(r["weights"]), "1" if r["binary"] else "8",
                  str(r["bytes"]), f"{r['weight_error']:.3f}", f"{r['output_error']:.3f}",
                  f"{r['estimated_drop']:.2f}", md)
    Console().print(t)
