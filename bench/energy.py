"""Energy benchmark: the digits CNN (trained on digits:train, seed 0, 30 epochs) compiled to the integer SNN with
digits:train as calibration data, run on the 360 digits:test samples (evaluation data, never seen by training or
compile) at T in {1, 4, 8, 32}: SOPs, input MACs, neuron updates, ANN MACs (the source network's, as recorded in the
compiled graph: ``snnc.ann_macs``), energy ratio (ANN / SNN) under both energy models, accuracy; writes the four
plots. Ends with one line of key=value pairs.

    .venv/bin/python bench/energy.py [--steps 1,4,8,32] [--plots bench/out/energy] [--samples N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,4,8,32")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--plots", default="bench/out/energy")
    a = ap.parse_args()

    import snnc
    from rich.console import Console
    from rich.table import Table
    from snnc.analysis.energy import MODELS
    from snnc.analysis.plots import write_all
    from snnc.analysis.report import energy_report
    from snnc.backends.cpu.simulator import simulate
    from snnc.dataspec import data_report, load
    from snnc.train.fit import accuracy, fit
    from snnc.zoo import DigitsCNN

    t0 = time.perf_counter()
    cal, ev = load("digits", "calib"), load("digits", "eval").first(a.samples)
    (xtr, ytr), (xte, yte) = (cal.x, cal.y), (ev.x, ev.y)
    data = data_report(cal, ev)
    torch.manual_seed(0)
    model = fit(DigitsCNN(), xtr, ytr, epochs=30, seed=0)
    ann_acc = accuracy(model, xte, yte)
    c = snnc.compile(model, xtr)
    g = c.int_graph
    reps = {}
    for T in [int(t) for t in a.steps.split(",")]:
        r = simulate(g, xte, T)
        reps[T] = {m: energy_report(g, xte, r, MODELS[m], yte) for m in ("cmos45", "loihi")}
    con = Console(width=160)
    r0 = reps[next(iter(reps))]["cmos45"]
    src_macs = int(r0.macs)  # the source network's MACs, recorded at compile time (snnc.ann_macs)
    con.print(f"digits CNN: ANN accuracy {ann_acc:.4f} on {ev.spec} ({ev.samples} evaluation samples, "
              f"{data['eval_samples_in_calib']} of them in the calibration data {cal.spec}); ANN MACs/inference "
              f"{src_macs} (counted on: {r0.macs_counted_on}), {r0.macs_compiled_graph:.0f} in the fused graph "
              "(pool folded into fc)")
    t = Table(title="per inference, integer SNN (bit-accurate simulator)")
    for col in ("T", "accuracy", "spikes", "SOPs", "input MACs", "neuron updates", "SNN nJ cmos45", "ANN nJ",
                "ANN/SNN cmos45", "SNN nJ loihi", "ANN/SNN loihi"):
        t.add_column(col, justify="right")
    ann_j = r0.ann_energy_j  # = MODELS["cmos45"].ann_energy(src_macs)
    for T, d in reps.items():
        rc, rl = d["cmos45"], d["loihi"]
        t.add_row(str(T), f"{rc.accuracy:.4f}", f"{rc.spikes:.0f}", f"{rc.sops:.0f}", f"{rc.input_macs:.0f}",
                  f"{rc.neuron_updates:.0f}", f"{rc.snn_energy_j * 1e9:.1f}", f"{ann_j * 1e9:.1f}",
                  f"{ann_j / rc.snn_energy_j:.3f}", f"{rl.snn_energy_j * 1e9:.1f}", f"{ann_j / rl.snn_energy_j:.3f}")
    con.print(t)
    Tmid = 8 if 8 in reps else next(iter(reps))
    paths = write_all(reps[Tmid]["cmos45"], a.plots, [d["cmos45"] for d in reps.values()], ann_acc)
    for p in paths:
        con.print(f"wrote {p}")
    kv = [f"ann_acc={ann_acc:.4f}", f"ann_macs={src_macs}", f"eval_in_calib={data['eval_samples_in_calib']}"]
    for T, d in reps.items():
        rc = d["cmos45"]
        kv += [f"t{T}_acc={rc.accuracy:.4f}", f"t{T}_sops={rc.sops:.0f}",
               f"t{T}_ratio_cmos45={ann_j / rc.snn_energy_j:.3f}",
               f"t{T}_ratio_loihi={ann_j / d['loihi'].snn_energy_j:.3f}"]
    kv.append(f"seconds={time.perf_counter() - t0:.1f}")
    print(" ".join(kv))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
