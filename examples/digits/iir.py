"""IIR-SNN few/one-step fine-tuning on digits: convert the digits CNN (percentile balancing, v0 = theta/2, bias
onset), fine-tune the float SNN at T = 4, 3, 2, 1 (each from the previous), quantize each, and print float and
integer SNN accuracy on the fixed 360-sample test split before and after fine-tuning.

    python examples/digits/iir.py [--model out/digits_cnn.pt] [--epochs 8] [--json]

Writes out/digits_iir_T{T}.nir (integer graphs) and out/digits_iir.json."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out")
    ap.add_argument("--model", help="a trained DigitsCNN model.pt (trained here when absent)")
    ap.add_argument("--train-epochs", type=int, default=30, help="ANN epochs when training here")
    ap.add_argument("--steps", default="4,3,2,1", help="fine-tuning schedule, each T starts from the previous")
    ap.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs per T")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--v-init", type=float, default=0.5, help="initial potential of the conversion, fraction of theta")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import snnc
    from snnc.backends.cpu.simulator import simulate
    from snnc.data import digits
    from snnc.frontend.convert import ConvertOptions
    from snnc.ir import write
    from snnc.pipeline import quantize
    from snnc.train.fit import accuracy, fit
    from snnc.train.iir import finetune_few_steps
    from snnc.zoo import DigitsCNN

    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = digits("train")
    xte, yte = digits("test")
    if args.model:
        model = torch.load(args.model, weights_only=False).eval()
    else:
        model = fit(DigitsCNN(), xtr, ytr, epochs=args.train_epochs)
    ann = accuracy(model, xte, yte)
    c = snnc.compile(model, xtr, ConvertOptions(v_init=args.v_init))
    steps = [int(s) for s in args.steps.split(",")]
    say(f"ANN test accuracy {100 * ann:.2f}%")
    rows = []
    for T in sorted(steps):
        rows.append({"steps": T, "float_before": simulate(c.float_graph, xte, T).accuracy(yte),
                     "int_before": simulate(c.int_graph, xte, T).accuracy(yte)})
    t0 = time.perf_counter()
    tuned = finetune_few_steps(c.float_graph, xtr, ytr, steps=steps, epochs=args.epochs, lr=args.lr,
                               log=lambda T, ep, loss, acc: say(f"  T={T} epoch {ep + 1}: loss {loss:.4f} "
                                                                f"train acc {100 * acc:.2f}%"))
    secs = time.perf_counter() - t0
    say(f"fine-tuned T={steps} in {secs:.0f} s")
    for r in rows:
        T = r["steps"]
        g = tuned[T]
        gi = quantize(g, xtr, calib_steps=T, bias_onset=False).int_graph
        write(gi, out / f"digits_iir_T{T}.nir")
        r["float_after"] = simulate(g, xte, T).accuracy(yte)
        r["int_after"] = simulate(gi, xte, T).accuracy(yte)
    res = {"ann_accuracy": ann, "finetune_seconds": secs, "epochs_per_T": args.epochs, "schedule": steps,
           "test_samples": int(len(yte)), "rows": rows}
    (out / "digits_iir.json").write_text(json.dumps(res, indent=1))
    if args.json:
        from snnc.commands._common import print_json

        print_json(res)
        return res
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"digits CNN, IIR fine-tuning ({len(yte)} test samples, ANN {100 * ann:.2f}%; "
                      f"{args.epochs} epochs per T, {secs:.0f} s)")
    for col in ("T", "float before %", "float after %", "integer before %", "integer after %"):
        tab.add_column(col, justify="right")
    for r in rows:
        tab.add_row(str(r["steps"]), f"{100 * r['float_before']:.2f}", f"{100 * r['float_after']:.2f}",
                    f"{100 * r['int_before']:.2f}", f"{100 * r['int_after']:.2f}")
    Console(width=120).print(tab)
    return res


if __name__ == "__main__":
    main()
