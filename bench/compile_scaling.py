"""Bench: compile time (trace, fold BN, fuse, quantize, write NIR) and peak memory of CIFAR-style ResNets vs depth.

Depths 10, 20, 56, 110 (weighted layers = 2 + 2 x blocks, three stages of width w, 2w, 4w; 20/56/110 are
compiler/zoo_resnet.DigitsResNet n = 3/9/18, 10 is blocks (2, 1, 1)) on 8x8 digits inputs, untrained (compile
time does not depend on training). Each depth is compiled in a fresh subprocess (peak RSS = ru_maxrss).
Quantize runs a float simulation of the network on calibration data for T + depth steps (the observed potential
ranges, backends/cpu/simulator.calibration_ranges), so its cost grows as depth x (T + depth): the bench times the
default calibration (256 samples, 64 steps) and a reduced one (--calib-samples, --calib-steps). Prints a table,
then one line of key=value pairs.

    python bench/compile_scaling.py [--depths 10,20,56,110] [--calib-samples 32] [--calib-steps 8] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def resnet(depth: int, width: int = 4) -> nn.Module:
    """CIFAR-layout ResNet with ``depth`` = 2 + 2 x blocks weighted layers on (N, 1, 8, 8) inputs."""
    from snnc.zoo import BasicBlock, DigitsResNet

    nb = (depth - 2) // 2
    if depth < 8 or (depth - 2) % 2:
        raise ValueError(f"depth must be even and >= 8, got {depth}")
    per = [nb // 3 + (1 if i < nb % 3 else 0) for i in range(3)]
    m = DigitsResNet(n=1, width=width)
    blocks, c = [], width
    for stage, (cw, k) in enumerate(zip((width, 2 * width, 4 * width), per)):
        for i in range(k):
            blocks.append(BasicBlock(c, cw, 2 if stage > 0 and i == 0 else 1))
            c = cw
    m.blocks = nn.Sequential(*blocks)
    m.fc = nn.Linear(c, 10)
    return m.eval()


def one(depth: int, calib_samples: int, calib_steps: int) -> dict:
    """Compile one depth in this process; returns stage seconds and peak RSS."""
    import resource

    import snnc
    from snnc.data import digits
    from snnc.ir.graph import write

    torch.manual_seed(0)
    x, _ = digits("train")
    model = resnet(depth)
    t0 = time.perf_counter()
    c = snnc.compile(model, x[:max(calib_samples, 1)], calib_steps=calib_steps)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write(c.int_graph, Path(d) / "net.nir")
    t2 = time.perf_counter()
    neurons = sum(1 for n in c.int_graph.nodes.values() if type(n).__name__ in ("IF", "I"))
    return {"depth": depth, "neuron_layers": neurons, **{k: round(v, 4) for k, v in c.seconds.items()},
            "write_nir": round(t2 - t1, 4), "total": round(t2 - t0, 4),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="10,20,56,110")
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--calib-steps", type=int, default=8)
    ap.add_argument("--default-calib-max-depth", type=int, default=56,
                    help="also time the default calibration (256 samples x 64 steps) up to this depth")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.calib_samples, args.calib_steps)))
        return
    depths = [int(d) for d in args.depths.split(",")]
    runs = []
    for d in depths:
        for samples, steps in [(args.calib_samples, args.calib_steps)] + \
                ([(256, 64)] if d <= args.default_calib_max_depth else []):
            cmd = [sys.executable, __file__, "--one", str(d), "--calib-samples", str(samples), "--calib-steps",
                   str(steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["calib"] = f"{samples}x{steps}"
            runs.append(r)
    print(f"ResNet compile on 8x8 digits, threads {torch.get_num_threads() if not args.threads else args.threads}")
    print(f"{'depth':>5s} {'layers':>6s} {'calib':>7s} {'convert':>8s} {'fold':>6s} {'fuse':>6s} {'quantize':>8s} "
          f"{'write':>6s} {'total s':>8s} {'peak MB':>8s}")
    for r in runs:
        print(f"{r['depth']:5d} {r['neuron_layers']:6d} {r['calib']:>7s} {r['convert']:8.3f} {r['fold_batchnorm']:6.3f} "
              f"{r['fuse_synapses']:6.3f} {r['quantize']:8.3f} {r['write_nir']:6.3f} {r['total']:8.3f} "
              f"{r['peak_mb']:8.1f}")
    red = [r for r in runs if r["calib"] == f"{args.calib_samples}x{args.calib_steps}"]
    d = np.array([r["depth"] for r in red], dtype=float)
    t = np.array([r["total"] for r in red])
    nq = np.array([r["total"] - r["quantize"] for r in red])
    slope, icpt = np.polyfit(d, t, 1)
    r2 = 1 - ((t - (slope * d + icpt)) ** 2).sum() / max(((t - t.mean()) ** 2).sum(), 1e-12)
    deepest = red[-1]
    print(f"linear fit of total vs depth (calib {args.calib_samples}x{args.calib_steps}): {slope * 1e3:.1f} ms/layer, "
          f"R^2 = {r2:.3f}; without quantize: {nq[-1] / d[-1] * 1e3:.1f} ms/layer at depth {int(d[-1])}")
    print(f"compile_scaling depth{deepest['depth']}_s={deepest['total']:.2f} "
          f"depth{deepest['depth']}_peak_mb={deepest['peak_mb']:.0f} ms_per_layer={slope * 1e3:.1f} r2={r2:.3f} "
          f"calib={args.calib_samples}x{args.calib_steps} under_5s={int(deepest['total'] < 5)}")


if __name__ == "__main__":
    main()
