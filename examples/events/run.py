"""Event streams: a CNN trained as an ANN on accumulated event frames, converted, run on the event stream.

As the NIR paper's N-MNIST CNN was pre-trained: the ANN sees each ``digits-events`` sample as its time-average (the
ON/OFF event rate per pixel and step). snnc converts it with the event sequences as calibration data (the ANN
stages see their time-average; the range run and the input scale see the events: 1-bit input, spikes in Lava),
without a potential floor (a floor at -theta clips the negative excursions of a bursty input and makes neurons
fire more than its mean says), once plainly and once with layer calibration run on the streams (per layer a
threshold factor and a bias shift that bring its spike counts on the events to the ANN's activations on the mean
frames). The SNN then runs on the event streams themselves, one slice per step. T is the stream's length: 30 steps
is one round of the three saccades, 60, 90 and 150 two, three and five rounds
(``snnc.data.digits_events(split, steps)``). Prints the ANN's accuracy on the mean frames and float-SNN and
integer-SNN accuracy on the 360 test streams per T (with the integer graphs' potential saturations: the 24-bit
v clamped, ``SimResult.events``), and Lava's agreement with the integer simulator (spike for
spike) on the first ``--lava-samples`` test streams (T = 30). Writes out/events_cnn.pt, out/events.nir (the
calibrated integer graph) and out/events_test.npz (x: (360, 30, 2, 10, 10), y) for the CLI."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--json", help="also write the results as one JSON object here")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--model", help="a trained EventsCNN (torch.save) instead of training one")
    ap.add_argument("--steps", default="30,60,90,150", help="stream lengths T")
    ap.add_argument("--calibrate-samples", type=int, default=256, help="training streams for layer calibration")
    ap.add_argument("--lava-samples", type=int, default=10, help="test streams verified on Lava (T = 30); 0: none")
    args = ap.parse_args(argv)
    import snnc
    from rich.console import Console
    from rich.table import Table
    from snnc.backends.cpu.simulator import simulate
    from snnc.data import EVENT_STEPS, digits_events
    from snnc.ir import write
    from snnc.train.fit import accuracy, fit
    from snnc.zoo import EventsCNN

    con = Console(width=140)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = digits_events("train")
    xte, yte = digits_events("test")
    con.print(f"digits-events: train {xtr.shape}, test {xte.shape}; {xte.sum((1, 2, 3, 4)).mean():.1f} events per "
              f"test stream ({xte.mean():.4f} per pixel, polarity and step)")
    t0 = time.perf_counter()
    if args.model:
        model = torch.load(args.model, weights_only=False).eval()
    else:
        torch.manual_seed(0)
        model = fit(EventsCNN(), xtr.mean(1), ytr, epochs=args.epochs)
    t_train = time.perf_counter() - t0
    torch.save(model, out / "events_cnn.pt")
    t0 = time.perf_counter()
    plain = snnc.compile(model, xtr, calib_sequence=True, v_floor=None)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    c = snnc.compile(model, xtr, calib_sequence=True, v_floor=None, calibrate_steps=EVENT_STEPS,
                     calibrate_samples=args.calibrate_samples)
    t_calibrated = time.perf_counter() - t0
    write(c.int_graph, out / "events.nir")
    np.savez(out / "events_test.npz", x=xte, y=yte)
    con.print(f"trained EventsCNN in {t_train:.1f} s; compiled in {t_compile:.1f} s, with layer calibration on the "
              f"streams in {t_calibrated:.1f} s (input: {snnc.ir.conventions.meta(c.int_graph, 'snnc.input_bits')}"
              f"-bit events) -> {out / 'events.nir'}")
    table = Table(title=f"digits-events CNN, {len(yte)} test streams")
    for col in ("T (steps)", "latency steps", "ANN (mean frame)", "float SNN", "integer SNN",
                "float SNN, calibrated", "integer SNN, calibrated", "integer v saturations per stream"):
        table.add_column(col, justify="right")
    rows = []
    for T in [int(s) for s in args.steps.split(",")]:
        x = xte if T == EVENT_STEPS else digits_events("test", steps=T)[0]
        ann = accuracy(model, x.mean(1), yte)
        acc, sat = {}, {}
        for label, g in (("float", plain.float_graph), ("int", plain.int_graph), ("float_cal", c.float_graph),
                         ("int_cal", c.int_graph)):
            r = simulate(g, x, None, batch_size=len(x))
            acc[label] = r.accuracy(yte)
            sat[label] = r.total_events()
        rows.append({"steps": T, "latency_steps": r.latency_steps, "ann_accuracy": ann,
                     **{f"{k}_accuracy": v for k, v in acc.items()},
                     "int_saturation_events": sat["int"], "int_cal_saturation_events": sat["int_cal"]})
        table.add_row(str(T), str(r.latency_steps), f"{ann:.4f}", f"{acc['float']:.4f}", f"{acc['int']:.4f}",
                      f"{acc['float_cal']:.4f}", f"{acc['int_cal']:.4f}",
                      f"{sat['int'] / len(x):.0f}, {sat['int_cal'] / len(x):.0f}")
    con.print(table)
    lava = None
    if args.lava_samples > 0:
        from snnc.backends.lava import verify

        rep = verify(c.int_graph, xte[:args.lava_samples], None, progress=False, timeout_s=1800)
        lava = rep.as_dict()
        con.print(f"Lava vs integer simulator (calibrated graph), {rep.samples} test streams of {EVENT_STEPS} steps: "
                  f"spikes compared "
                  f"{rep.spikes_compared}, differing {rep.spikes_differ}; output potentials differing "
                  f"{rep.potentials_differ}; final u/v differing {rep.state_differ} ({'OK' if rep.ok else 'MISMATCH'})")
    res = {"rows": rows, "lava": lava, "train_s": t_train, "compile_s": t_compile, "calibrated_s": t_calibrated}
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
