"""ALBSNN binarization study: does the chosen set of binary layers hold its accuracy budget on data never seen?

For each seed, the 1797 digits are split (stratified, seeded) into train 847 / calibration 500 / test 450. Each
model (the digits CNN, the 6-layer deep CNN, the 4-layer BN CNN) is trained on the train part only. The calibration part is split by ``snnc.dataspec.holdout`` into a fit part (thresholds, ranges) and a
validation part (estimators) — exactly what ``snnc compile --binarize auto`` does. The test part is used only to
measure: integer-SNN accuracy before/after, and each layer's drop when binarized alone.

Selection policies compared (the same estimates, the same greedy policy and combined re-check as the CLI,
``snnc.binarize_search.choose_layers``):
  fit/float_drop      the old policy: float-SNN accuracy drop on the calibration samples the compile fitted on
  val/float_drop      accuracy drop on the held-out validation part
  val/disagreement    percent of validation predictions that change (label-free; the CLI default)
each with the first/last layers excluded (the default) and allowed (``--allow-first-last``).

Usage: .venv/bin/python bench/binarize.py [--seeds 0,1,2] [--models digits,deep,bncnn] [--steps 32]
                                          [--epochs 30] [--max-drop 0.5,1,2] [--json out/binarize_study.json]
Prints markdown tables, then one key=value line (``--from-json FILE``: the tables of a finished or partial run).
       .venv/bin/python bench/binarize.py --export DIR [--seeds 0] [--models ...]
writes, per seed, DIR/A<seed>.npz (the calibration part: x, y), DIR/B<seed>.npz (the test part) and the trained
models as state dicts DIR/<model><seed>.pt (``snnc.zoo`` classes), for the same study from the CLI:
``snnc compile DIR/bncnn0.pt --model-class snnc.zoo:DigitsBNCNN --calib DIR/A0.npz --data DIR/B0.npz ...``."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import snnc
import torch
from snnc.analysis.weight_storage import total_bytes
from snnc.binarize_search import (
    BinarizeOptions,
    choose_layers,
    end_layers,
    estimate_layers,
    measure_drops,
    spearman,
)
from snnc.dataspec import Data, holdout
from snnc.passes.binarize import binarize
from snnc.pipeline import CompileOptions, quantize
from snnc.train.fit import accuracy, fit
from snnc.zoo import DeepCNN, DigitsBNCNN, DigitsCNN

CLASSES = {"digits": "DigitsCNN", "deep": "DeepCNN", "bncnn": "DigitsBNCNN"}
MODELS = {"digits": ("digits CNN", DigitsCNN), "deep": ("deep CNN (6 layers)", DeepCNN),
          "bncnn": ("BN CNN (4 layers)", DigitsBNCNN)}
POLICIES = (("fit", "float_drop"), ("val", "float_drop"), ("val", "disagreement"))


def split(seed: int) -> tuple[Data, Data, Data]:
    """train 847 / calibration 500 / test 450 of the 1797 digits, stratified, seeded."""
    from sklearn.model_selection import train_test_split
    from snnc.data import digits

    x, y = digits("all")
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=450, random_state=seed, stratify=y)
    train, cal = train_test_split(rest, test_size=500, random_state=seed, stratify=y[rest])
    mk = lambda i, name, role: Data(x[np.sort(i)], y[np.sort(i)], "digits", f"{name}{seed}", role)  # noqa: E731
    return mk(train, "train", "calib"), mk(cal, "calib", "calib"), mk(test, "test", "eval")


def export(seed: int, keys: list[str], a: argparse.Namespace) -> None:
    """The seed's calibration and test parts as .npz files and its trained models as state dicts in ``a.export``."""
    train, cal, test = split(seed)
    d = Path(a.export)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / f"A{seed}.npz", x=cal.x, y=cal.y)
    np.savez(d / f"B{seed}.npz", x=test.x, y=test.y)
    for key in keys:
        torch.manual_seed(seed)
        model = fit(MODELS[key][1](), train.x, train.y, epochs=a.epochs, seed=seed)
        torch.save(model.state_dict(), d / f"{key}{seed}.pt")
        print(f"{d / f'{key}{seed}.pt'}: --model-class snnc.zoo:{CLASSES[key]}, ANN "
              f"{100 * accuracy(model, test.x, test.y):.2f} % on B{seed}.npz", flush=True)


def study(key: str, seed: int, data: tuple[Data, Data, Data], a: argparse.Namespace) -> dict:
    """One model and seed: per-layer estimates and measured drops, and every policy's chosen set."""
    name, cls = MODELS[key]
    train, cal, test = data
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    saved = Path(a.models_dir or "/nonexistent") / f"{key}{seed}.pt"
    if saved.exists():  # trained by --export with the same split, seed and epochs
        model = cls()
        model.load_state_dict(torch.load(saved, weights_only=True))
        model.eval()
    else:
        model = fit(cls(), train.x, train.y, epochs=a.epochs, seed=seed)
    fitp, valp = holdout(cal, a.val_fraction, 0)
    co = CompileOptions()
    c = snnc.compile(model, fitp.x, co)
    yt = test.labels()
    base = snnc.simulate(c.int_graph, test.x, a.steps).accuracy(yt)
    ests, val = estimate_layers(c.float_graph, valp.x, valp.y, a.steps, allow_first_last=True)
    ests_fit, val_fit = estimate_layers(c.float_graph, fitp.x, fitp.y, a.steps, allow_first_last=True)
    measure_drops(c.float_graph, ests, base, fitp.x, test.x, yt, a.steps, options=co)
    fit_drop = {e.node: e.float_drop for e in ests_fit}
    ends = end_layers(c.float_graph)
    layers = [{"model": name, "seed": seed, "layer": e.name, "end": e.node in ends, "weights": e.weights,
               "fit_float_drop": fit_drop[e.node], "val_float_drop": e.float_drop, "disagreement": e.disagreement,
               "output_kl": e.output_kl, "measured_drop": e.measured_drop} for e in ests]
    cache: dict[tuple, tuple[float, int]] = {}
    runs = []
    for budget, allow in [(b, al) for b in a.budgets for al in (False, True)]:
        for where, est in POLICIES:
            o = BinarizeOptions(max_drop=budget, steps=a.steps, allow_first_last=allow, estimator=est)
            src, v = (ests_fit, val_fit) if where == "fit" else (ests, val)
            cand = [replace(e, eligible=allow or e.node not in ends, estimated_drop=getattr(e, est)) for e in src]
            chosen, _, combined = choose_layers(c.float_graph, cand, v, o)
            k = tuple(sorted(chosen))
            if k not in cache:
                if chosen:
                    gi = quantize(binarize(c.float_graph, chosen), fitp.x, co).int_graph
                    acc = snnc.simulate(gi, test.x, a.steps).accuracy(yt)
                else:
                    gi, acc = c.int_graph, base
                cache[k] = (acc, total_bytes(gi))
            acc, nbytes = cache[k]
            before = total_bytes(c.int_graph)
            drop = 100.0 * (base - acc)
            runs.append({"model": name, "seed": seed, "budget": budget, "first_last": allow,
                         "policy": f"{where}/{est}", "chosen": [next(e.name for e in ests if e.node == n) for n in chosen],
                         "estimate": combined, "measured_drop": drop, "within": drop <= budget + 1e-9,
                         "bytes_before": before, "bytes_after": nbytes, "reduction_pct": 100 * (1 - nbytes / before),
                         "acc_before": base, "acc_after": acc})
    return {"model": name, "seed": seed, "ann_test": accuracy(model, test.x, yt), "int_test": base,
            "val_float": val.accuracy, "fit_float": val_fit.accuracy, "layers": layers, "runs": runs,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="digits,deep,bncnn")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--max-drop", default="0.5,1,2", help="comma list of budgets (points)")
    ap.add_argument("--val-fraction", type=float, default=0.5)
    ap.add_argument("--json", default="out/binarize_study.json")
    ap.add_argument("--from-json", default=None, metavar="FILE", help="print the tables of a study's --json file "
                    "(the models and seeds it holds; --max-drop must list budgets it ran)")
    ap.add_argument("--models-dir", default=None, metavar="DIR", help="use the models --export wrote there "
                    "(<model><seed>.pt) instead of training them again")
    ap.add_argument("--export", default=None, metavar="DIR", help="write the data parts and trained models, no study")
    a = ap.parse_args()
    if a.export:
        for seed in [int(s) for s in a.seeds.split(",")]:
            export(seed, a.models.split(","), a)
        return
    a.budgets = [float(b) for b in a.max_drop.split(",")]
    t0 = time.perf_counter()
    if a.from_json:
        report(json.loads(Path(a.from_json).read_text()), a, t0)
        return
    res = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        data = split(seed)
        for key in a.models.split(","):
            r = study(key, seed, data, a)
            res.append(r)
            print(f"# {r['model']} seed {seed}: ANN {100 * r['ann_test']:.2f} %, integer SNN "
                  f"{100 * r['int_test']:.2f} % (test), {r['seconds']:.0f} s", flush=True)
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=1))
    report(res, a, t0)


def report(res: list[dict], a: argparse.Namespace, t0: float) -> None:
    """The markdown tables and the key=value line of a study's results."""
    layers = [x for r in res for x in r["layers"]]
    runs = [x for r in res for x in r["runs"]]
    print(f"\n### Per layer, binarized alone (T={a.steps}): estimates vs the drop measured on the test split\n")
    print("| model | seed | layer | end | float drop, fit part (pt) | float drop, validation (pt) | "
          "disagreement, validation (%) | KL, validation | measured int. drop, test (pt) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in layers:
        print(f"| {x['model']} | {x['seed']} | {x['layer']} | {'yes' if x['end'] else 'no'} | "
              f"{x['fit_float_drop']:.2f} | {x['val_float_drop']:.2f} | {x['disagreement']:.2f} | "
              f"{x['output_kl']:.4f} | {x['measured_drop']:.2f} |")
    print("\n### Chosen sets: estimate (validation part) vs measured test drop, per budget --max-drop\n")
    print("| model | seed | budget | first/last | policy | binary layers | estimate (pt) | measured test drop (pt) | "
          "within | weight bytes | reduction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in runs:
        print(f"| {x['model']} | {x['seed']} | {x['budget']:g} | {'allowed' if x['first_last'] else 'excluded'} | "
              f"{x['policy']} | {', '.join(x['chosen']) or '-'} | {x['estimate']:.2f} | {x['measured_drop']:.2f} | "
              f"{'yes' if x['within'] else '**no**'} | {x['bytes_before']} -> {x['bytes_after']} | "
              f"{x['reduction_pct']:.1f} % |")
    print("\n### Per policy and budget: how often the chosen set stays within the budget on the test split\n")
    print("| budget | policy | runs | within budget | non-empty choices | within budget (non-empty) | mean reduction | "
          "mean measured drop (pt) | worst measured drop (pt) |")
    print("|---|---|---|---|---|---|---|---|---|")
    kv = {}
    for budget in a.budgets:
        for where, est in POLICIES:
            p = f"{where}/{est}"
            rs = [x for x in runs if x["policy"] == p and x["budget"] == budget]
            ne = [x for x in rs if x["chosen"]]
            w, wn = sum(x["within"] for x in rs), sum(x["within"] for x in ne)
            red = np.mean([x["reduction_pct"] for x in rs])
            print(f"| {budget:g} | {p} | {len(rs)} | {w}/{len(rs)} | {len(ne)} | {wn}/{len(ne)} | {red:.1f} % | "
                  f"{np.mean([x['measured_drop'] for x in rs]):.2f} | {max(x['measured_drop'] for x in rs):.2f} |")
            tag = f"b{budget:g}_" + p.replace("/", "_")
            kv[f"{tag}_within"] = f"{w}/{len(rs)}"
            kv[f"{tag}_mean_reduction_pct"] = f"{red:.1f}"
    print("\n### Spearman rank correlation with the measured per-layer drop (all models and seeds pooled)\n")
    print("| estimator | Spearman |")
    print("|---|---|")
    md = [x["measured_drop"] for x in layers]
    for k in ("fit_float_drop", "val_float_drop", "disagreement", "output_kl"):
        rho = spearman([x[k] for x in layers], md)
        print(f"| {k} | {'n/a' if rho is None else f'{rho:.2f}'} |")
        kv[f"spearman_{k}"] = "nan" if rho is None else f"{rho:.2f}"
    kv["runs"] = len(runs)
    kv["seconds"] = f"{time.perf_counter() - t0:.0f}"
    print(" ".join(f"{k}={v}" for k, v in kv.items()))


if __name__ == "__main__":
    main()
