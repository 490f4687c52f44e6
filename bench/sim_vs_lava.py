"""Lava (fixed-point CPU models) vs the bit-accurate CPU simulator on the digits CNN at T=32, same samples.

Uses an integer NIR file when given (``--model``, or ``out/digits.nir`` from ``make demo``); otherwise trains the
digits CNN briefly and compiles it with snnc's pipeline (soft reset, half-threshold initial potential).

Two measurements in one run, on the same network, inputs and T:
- spike for spike: the first ``--samples`` test samples on both backends with full rasters and final u/v
  (what ``snnc verify`` does); the run fails (exit 1) unless every spike, potential and state agrees;
- throughput: the first ``--throughput-samples`` test samples (default all 360) on Lava (counts only, compile
  time excluded) and on the simulator (one batch, torch threads 1 and the machine's default); their output
  potentials must be equal too. Lava runs samples one after another, so its samples/s does not depend on how many
  it runs; the simulator batches them. Ends with one line:
``sim_vs_lava speedup=... lava_samples_per_s=... sim_samples_per_s=... spikes_differ=...``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def demo_graph(model: str | None, epochs: int):
    """(integer graph, where it came from): ``model`` (an NIR file), else ``out/digits.nir`` from ``make demo``,
    else the digits CNN trained here for ``epochs`` epochs (seeded) and compiled with the default options."""
    from snnc.ir.graph import read

    path = Path(model) if model else Path("out/digits.nir")
    if path.exists():
        return read(path), str(path)
    if model:
        from snnc.ir.errors import DataError

        raise DataError(f"{path}: no such NIR file")
    import snnc
    import torch
    from snnc.data import digits
    from snnc.train.fit import fit
    from snnc.zoo import DigitsCNN

    xtr, ytr = digits("train")
    torch.manual_seed(0)
    net = fit(DigitsCNN(), xtr, ytr, epochs=epochs, seed=0)
    return snnc.compile(net, xtr).int_graph, f"digits CNN trained {epochs} epochs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="integer NIR file (default out/digits.nir, else train one)")
    ap.add_argument("--samples", type=int, default=20, help="samples compared spike for spike")
    ap.add_argument("--throughput-samples", type=int, default=360, help="samples timed on both backends")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10, help="training epochs when no NIR file exists")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table
    from snnc.backends.cpu.simulator import simulate
    from snnc.backends.lava.runner import run_lava
    from snnc.backends.lava.verification import compare
    from snnc.data import digits
    from snnc.ir.plan import build_plan

    con = Console()
    g, origin = demo_graph(args.model, args.epochs)
    x_all, y_all = digits("test")
    x, y = x_all[:args.samples], y_all[:args.samples]
    # throughput of each backend alone on the same samples: Lava without compile, the simulator without rasters
    # (its normal mode), best of 3, with one torch thread and with the default. The simulator is timed first:
    # after a Lava run the machine measured 30-40 % slower for a while (Lava's runtime processes winding down)
    xt, yt = x_all[:args.throughput_samples], y_all[:args.throughput_samples]
    default_threads = torch.get_num_threads()
    sim_sps, fast = {}, None
    for th in sorted({1, default_threads}):
        torch.set_num_threads(th)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fast = simulate(g, xt, args.steps, batch_size=len(xt))
            best = min(best, time.perf_counter() - t0)
        sim_sps[th] = len(xt) / best
    torch.set_num_threads(default_threads)
    lava = run_lava(g, x, args.steps, rasters=True, record_final=True, progress=False, timeout_s=args.timeout)
    t0 = time.perf_counter()
    sim = simulate(g, x, args.steps, rasters=True, record_final=True)
    sim_wall = time.perf_counter() - t0
    rep = compare(sim, lava, build_plan(g).neurons)
    lava_run = run_lava(g, xt, args.steps, rasters=False, record_final=False, progress=False, timeout_s=args.timeout)
    lava_sps = lava_run.samples_per_s
    logits_equal = bool(np.array_equal(lava_run.logits, fast.logits))
    speedup = sim_sps[default_threads] / lava_sps

    t = Table(title=f"{origin}: T={args.steps} ({lava.latency_steps} steps per sample)")
    for col in ("backend", "samples", "samples/s", "seconds", "accuracy", "note"):
        t.add_column(col, justify="right")
    t.add_row("Lava fixed_pt (counts only)", str(len(xt)), f"{lava_sps:.2f}", f"{lava_run.seconds:.2f}",
              f"{lava_run.accuracy(yt):.4f}", f"+{lava_run.compile_seconds:.1f} s compile")
    for th, sps in sim_sps.items():
        t.add_row(f"CPU simulator, one batch, {th} thread(s)", str(len(xt)), f"{sps:.1f}", f"{len(xt) / sps:.3f}",
                  f"{fast.accuracy(yt):.4f}", f"{sps / lava_sps:.0f}x Lava")
    t.add_row("Lava fixed_pt (+ rasters, final u/v)", str(len(x)), f"{lava.samples_per_s:.2f}", f"{lava.seconds:.2f}",
              f"{lava.accuracy(y):.4f}", "what verify runs")
    t.add_row("CPU simulator (+ rasters, final u/v)", str(len(x)), f"{len(x) / sim_wall:.1f}", f"{sim_wall:.3f}",
              f"{sim.accuracy(y):.4f}", "")
    con.print(t)
    con.print(f"throughput run: output potentials of all {len(xt)} samples equal: {logits_equal}")
    con.print(f"spikes compared {rep.spikes_compared}, differing {rep.spikes_differ}; output potentials differing "
              f"{rep.potentials_differ}; final u/v differing {rep.state_differ}")
    print(f"sim_vs_lava speedup={speedup:.1f} speedup_1thread={sim_sps[1] / lava_sps:.1f} "
          f"lava_samples_per_s={lava_sps:.3f} sim_samples_per_s={sim_sps[default_threads]:.1f} "
          f"sim_threads={default_threads} samples={len(xt)} spikes_differ={rep.spikes_differ} "
          f"logits_equal={logits_equal}")
    return 0 if rep.ok and logits_equal else 1


if __name__ == "__main__":
    sys.exit(main())
