"""QCFS on the digits CNN: train with ClipFloor(L) instead of ReLU, convert with theta = lambda and v0 = theta/2,
and compare against plain ReLU training converted with max / percentile balancing, with and without the
half-threshold initial potential, and with layer calibration. Accuracy on the fixed 360-sample test split, float and
integer simulation.

Writes out/digits_qcfs.pt, out/digits_relu.pt, out/digits_conversion.json and out/digits_conversion.png."""
from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--levels", type=int, default=4,
                    help="QCFS quantization levels L (4: closest at T=4; L=8 lost 1.7-3.3 points there on seeds 2, 3)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", default="1,2,4,8,16,32,64")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from snnc.data import digits
    from snnc.sweep import plot, sweep
    from snnc.train import ClipFloor
    from snnc.train.fit import accuracy, fit
    from snnc.zoo import DigitsCNN

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = digits("train")
    xte, yte = digits("test")
    steps = [int(s) for s in args.steps.split(",")]
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)  # the initial weights too: the same models every run
    relu = fit(DigitsCNN(), xtr, ytr, epochs=args.epochs, seed=args.seed)
    torch.manual_seed(args.seed)
    qcfs = fit(DigitsCNN(act=functools.partial(ClipFloor, args.levels, 2.0)), xtr, ytr, epochs=args.epochs,
                 seed=args.seed)
    print(f"trained ReLU and QCFS (L={args.levels}) CNNs in {time.perf_counter() - t0:.0f} s", flush=True)
    torch.save(relu, out / "digits_relu.pt")
    torch.save(qcfs, out / "digits_qcfs.pt")
    ann = {"relu": accuracy(relu, xte, yte), "qcfs": accuracy(qcfs, xte, yte)}
    print(f"ANN test accuracy: ReLU {100 * ann['relu']:.2f}%, QCFS {100 * ann['qcfs']:.2f}%", flush=True)

    def log(r):
        print(f"{r.label:16s} T={r.steps:3d} float {100 * r.float_accuracy:6.2f}%  integer "
              f"{100 * r.int_accuracy:6.2f}%", flush=True)

    # QCFS with and without the potential floor (-theta, the default); ReLU nets with the default floor
    rows = sweep(qcfs, xtr, xte, yte, steps, ["qcfs"], ["zero", "half"], calib_steps=max(steps), log=log,
                 floors=[None, 1.0])
    rows += sweep(relu, xtr, xte, yte, steps, ["max", "percentile"], ["zero", "half"], calib_steps=max(steps),
                  log=log)
    # layer calibration per T (threshold factor + bias shift measured on the SNN, 128 training samples)
    rows += sweep(qcfs, xtr, xte, yte, steps, ["qcfs"], ["half"], calib_steps=max(steps), log=log, calibrate=True)
    rows += sweep(relu, xtr, xte, yte, steps, ["percentile"], ["half"], calib_steps=max(steps), log=log,
                  calibrate=True)
    plot(rows, ann["qcfs"], str(out / "digits_conversion.png"), "digits CNN: SNN accuracy vs T (integer)")
    res = {"levels": args.levels, "ann_accuracy": ann, "rows": [asdict(r) for r in rows]}
    (out / "digits_conversion.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
