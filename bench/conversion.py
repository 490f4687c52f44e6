"""Conversion-quality benchmark (issue 4): prints the accuracy-vs-T tables of examples/digits/qcfs.py (QCFS vs
ReLU + max / percentile, zero vs half-threshold init, layer calibration) and of examples/deep_resnet/run.py
(ResNet-110 with and without threshold tuning + residual restructuring, layer calibration), then one ``key=value``
summary line.

    python bench/conversion.py                      # digits tables (a few minutes on 2 cores)
    python bench/conversion.py --deep               # + the ResNet-110 run (train + sweep; tens of minutes on CPU)
    python bench/conversion.py --deep-json out/deep_resnet_sweep.json   # + an earlier ResNet run's table
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _table(title: str, rows: list[dict], ann: float) -> None:
    from rich.console import Console
    from rich.table import Table
    from snnc.sweep import SweepRow

    label = {id(r): SweepRow(**r).label for r in rows}
    labels = list(dict.fromkeys(label.values()))
    steps = sorted({r["steps"] for r in rows})
    t = Table(title=f"{title} (ANN {100 * ann:.2f}%; cells: float / integer SNN accuracy %)")
    t.add_column("variant")
    for s in steps:
        t.add_column(f"T={s}")
    for lab in labels:
        cells = []
        for s in steps:
            r = next((r for r in rows if label[id(r)] == lab and r["steps"] == s), None)
            cells.append("-" if r is None else f"{100 * r['float_accuracy']:.2f} / {100 * r['int_accuracy']:.2f}")
        t.add_row(lab, *cells)
    Console(width=200).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out")
    ap.add_argument("--deep", action="store_true")
    ap.add_argument("--deep-json")
    ap.add_argument("--seeds", default="1", help="comma list of training seeds for the digits QCFS run")
    args = ap.parse_args()
    from snnc.sweep import SweepRow

    from examples.digits.qcfs import main as digits_main

    summary = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        d = digits_main(["--out", args.out, "--seed", str(seed)])
        rq = [r for r in d["rows"] if r["method"] == "qcfs"]
        _table(f"digits CNN, QCFS L={d['levels']}, seed {seed}", rq, d["ann_accuracy"]["qcfs"])
        _table(f"digits CNN, ReLU, seed {seed}", [r for r in d["rows"] if r["method"] != "qcfs"],
               d["ann_accuracy"]["relu"])
        aq = d["ann_accuracy"]["qcfs"]
        for t in (4, 32):
            for floor, cal, tag in ((1.0, False, ""), (None, False, "_nofloor"), (1.0, True, "_calib")):
                r = next((r for r in rq if r["init"] == "half" and r["steps"] == t and r.get("floor", 1.0) == floor
                          and r.get("calibrate", False) == cal), None)
                if r:
                    summary[f"seed{seed}_qcfs{tag}_T{t}_int_gap_points"] = round(100 * (aq - r["int_accuracy"]), 2)
                    summary[f"seed{seed}_qcfs{tag}_T{t}_float_gap_points"] = round(100 * (aq - r["float_accuracy"]),
                                                                                  2)
    deep = None
    if args.deep:
        from examples.deep_resnet.run import main as deep_main

        deep = deep_main(["--out", args.out])
    elif args.deep_json:
        deep = json.loads(Path(args.deep_json).read_text())
    if deep:
        _table(f"ResNet ({deep['layers']} conv/linear layers)", deep["rows"], deep["ann_accuracy"])
        for r in deep["rows"]:
            lab = SweepRow(**r).label.replace("percentile+half", "resnet").replace("+", "_")
            summary[f"{lab}_T{r['steps']}_int"] = round(100 * r["int_accuracy"], 2)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
