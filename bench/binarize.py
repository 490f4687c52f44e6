"""ALBSNN binarization on the digits CNN and a deeper 6-layer CNN: storage, accuracy (integer simulator, test
split) and each estimator's rank correlation with the measured per-layer drop.

Usage: .venv/bin/python bench/binarize.py [--steps 32] [--finetune 8] [--epochs 30]
Prints markdown tables, then one key=value line."""
from __future__ import annotations

import argparse
import time

import snnc
import torch
import torch.nn as nn
from snnc.binarize_search import ESTIMATORS, auto_binarize
from snnc.data import digits
from snnc.train.binary_finetune import finetuned_float_graph
from snnc.train.fit import fit
from snnc.zoo import DigitsCNN


class DeepCNN(nn.Module):
    """Five 3x3 conv+BN+ReLU layers (16, 32, 32/stride 2, 64, 64 channels), global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        chans = [(1, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
        layers = []
        for i, (ci, co, s) in enumerate(chans, 1):
            layers += [nn.Conv2d(ci, co, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


def run(name: str, model: nn.Module, data, steps: int, ft: int, allow_first_last: bool, measure: bool,
        finetune: bool):
    (xtr, ytr), (xte, yte) = data
    c = snnc.compile(model, xtr)
    f = (lambda labs: finetuned_float_graph(model, labs, xtr, ytr, ft)) if finetune else None
    t0 = time.perf_counter()
    o = auto_binarize(c.float_graph, c.int_graph, xtr, ytr, xte, yte, "auto", 0.5, None, steps,
                      allow_first_last=allow_first_last, measure=measure, cal_samples=512, finetune=f)
    d = o.as_dict()
    d["config"] = (f"{name}, {'first/last allowed' if allow_first_last else 'first/last excluded'}, "
                   f"{f'STE fine-tune {ft} ep' if finetune else 'post-training'}")
    d["seconds"] = time.perf_counter() - t0
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--finetune", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args()
    data = digits("train"), digits("test")
    (xtr, ytr), _ = data
    nets = {"digits CNN": fit(DigitsCNN(), xtr, ytr, epochs=a.epochs, seed=0),
            "deep CNN (6 layers)": fit(DeepCNN(), xtr, ytr, epochs=a.epochs, seed=0)}
    rows = []
    for name, m in nets.items():
        rows.append(run(name, m, data, a.steps, a.finetune, False, True, False))
        rows.append(run(name, m, data, a.steps, a.finetune, False, False, True))
        if name == "digits CNN":
            rows.append(run(name, m, data, a.steps, a.finetune, True, False, True))
    print(f"\n### Storage and integer accuracy (T={a.steps}, test split, budget --max-drop 0.5)\n")
    print("| config | binary layers | weight bytes before -> after | reduction | int acc before -> after | drop (pt) |")
    print("|---|---|---|---|---|---|")
    for d in rows:
        red = 100 * (1 - d["storage_ratio"])
        print(f"| {d['config']} | {', '.join(d['binary_layers']) or '-'} | {d['weight_bytes_before']} -> "
              f"{d['weight_bytes_after']} | {red:.1f} % | {100 * d['accuracy_before']:.2f} -> "
              f"{100 * d['accuracy_after']:.2f} % | {100 * (d['accuracy_before'] - d['accuracy_after']):.2f} |")
    print("\n### Per-layer estimators vs measured drop (each layer binarized alone, post-training)\n")
    print("| net | layer | weights | weight err | output err | float drop (pt, cal.) | measured int drop (pt, test) |")
    print("|---|---|---|---|---|---|---|")
    for d in rows:
        if not d["rank_correlation"]:
            continue
        for r in d["layers"]:
            print(f"| {d['config'].split(',')[0]} | {r['name']} | {r['weights']} | {r['weight_error']:.3f} | "
                  f"{r['output_error']:.3f} | {r['float_drop']:.2f} | {r['measured_drop']:.2f} |")
    print("\n### Spearman rank correlation of each estimator with the measured drop\n")
    print("| net | " + " | ".join(ESTIMATORS) + " |")
    print("|---|" + "---|" * len(ESTIMATORS))
    for d in rows:
        if d["rank_correlation"]:
            rc = d["rank_correlation"]
            print(f"| {d['config'].split(',')[0]} | " + " | ".join("n/a" if rc[k] is None else f"{rc[k]:.2f}"
                                                                  for k in ESTIMATORS) + " |")
    ft = [d for d in rows if "fine-tune" in d["config"] and "excluded" in d["config"]]
    deep = ft[-1]
    print(f"deep_reduction_pct={100 * (1 - deep['storage_ratio']):.1f} "
          f"deep_drop_pt={100 * (deep['accuracy_before'] - deep['accuracy_after']):.2f} "
          f"digits_reduction_pct={100 * (1 - ft[0]['storage_ratio']):.1f} "
          f"digits_drop_pt={100 * (ft[0]['accuracy_before'] - ft[0]['accuracy_after']):.2f}")


if __name__ == "__main__":
    main()
