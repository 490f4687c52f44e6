"""Deep residual conversion: ResNet-110 (6n+2 layers, n=18) on the 8x8 digits, converted with and without TTRBR-style
threshold tuning + residual delay restructuring, and with layer calibration (threshold factor + bias shift per
layer, measured on the SNN); accuracy vs T (float and integer simulation, fixed test split).

CPU default: width 4, 30 epochs at batch 256 with one torch thread (a few minutes on 2 cores); --cuda trains on a
GPU when one is present. Writes out/deep_resnet.pt, out/deep_resnet_sweep.json and out/deep_resnet_accuracy.png."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

# name -> (analytic threshold tuning, relay restructuring, floor, layer calibration). "nofloor": the unbounded
# potential of the literature's IF; the others keep the default floor -theta.
VARIANTS = {"nofloor": (False, False, None, False), "floor": (False, False, 1.0, False),
            "tune": (True, False, 1.0, False), "tune+restructure": (True, True, 1.0, False),
            "calib": (False, False, 1.0, True), "restructure+calib": (False, True, 1.0, True)}


def train_resnet(n: int, width: int, epochs: int, device: str = "cpu") -> torch.nn.Module:
    from snnc.data import digits
    from snnc.train.fit import fit
    from snnc.zoo import DigitsResNet

    xtr, ytr = digits("train")
    torch.manual_seed(0)  # the initial weights too: the same model every run
    if device == "cpu":
        # torch 2.13 CPU: oneDNN conv backward on these 4-channel maps corrupts the heap (glibc abort in Adam)
        torch.backends.mkldnn.enabled = False
        return fit(DigitsResNet(n=n, width=width), xtr, ytr, epochs=epochs, batch=256)
    m = DigitsResNet(n=n, width=width).to(device)  # same recipe on the GPU
    xt, yt = torch.as_tensor(xtr, device=device), torch.as_tensor(ytr, device=device)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        m.train()
        perm = torch.randperm(len(xt), device=device)
        for i in range(0, len(xt), 256):
            idx = perm[i:i + 256]
            xb = torch.roll(xt[idx], shifts=tuple(torch.randint(-1, 2, (2,)).tolist()), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(m(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return m.cpu().eval()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--blocks", type=int, default=18, help="blocks per stage n (6n+2 layers; 18 = ResNet-110)")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", default="16,32,64,128")
    ap.add_argument("--method", default="percentile")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny convs)")
    ap.add_argument("--cuda", action="store_true", help="train on CUDA when available")
    ap.add_argument("--model", help="reuse a trained model.pt instead of training")
    ap.add_argument("--limit", type=int, default=None, help="evaluate on the first N test samples only")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma list of conversion variants from {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from snnc.data import digits
    from snnc.frontend.convert import convert
    from snnc.frontend.residual import delay_imbalance
    from snnc.sweep import plot, sweep
    from snnc.train.fit import accuracy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, _ = digits("train")
    xte, yte = digits("test")
    t0 = time.perf_counter()
    if args.model:
        model = torch.load(args.model, weights_only=False).eval()
    else:
        dev = "cuda" if args.cuda and torch.cuda.is_available() else "cpu"
        model = train_resnet(args.blocks, args.width, args.epochs, dev)
        torch.save(model, out / "deep_resnet.pt")
    t_train = time.perf_counter() - t0
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())
    ann = accuracy(model, xte[:args.limit or len(yte)], yte[:args.limit or len(yte)])
    print(f"ResNet: {layers} conv/linear layers, ANN test accuracy {100 * ann:.2f}% (trained in {t_train:.0f} s)",
          flush=True)
    g = convert(model, xtr[:256], method=args.method, v_init=0.5)
    print(f"fan-in layers with unequal delays before restructuring: {len(delay_imbalance(g))}", flush=True)
    steps = [int(s) for s in args.steps.split(",")]
    lim = args.limit or len(yte)
    rows = []
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"--variants: unknown variant {v!r} (choose from {', '.join(VARIANTS)})")
        tune, restructure, floor, calibrate = VARIANTS[v]
        rows += sweep(model, xtr, xte[:lim], yte[:lim], steps, [args.method], ["half"], tune=tune,
                      restructure=restructure, floors=[floor], calib_steps=32, calibrate=calibrate,
                      log=lambda r: print(f"{r.label:32s} T={r.steps:4d} float {100 * r.float_accuracy:6.2f}%  "
                                          f"integer {100 * r.int_accuracy:6.2f}%", flush=True))
    plot(rows, ann, str(out / "deep_resnet_accuracy.png"), f"ResNet-{layers - 2}: SNN accuracy vs T")
    res = {"layers": layers, "ann_accuracy": ann, "train_seconds": t_train, "test_samples": lim,
           "rows": [asdict(r) for r in rows]}
    (out / "deep_resnet_sweep.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
