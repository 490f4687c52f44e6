"""The digits demo (``make demo``): train the digits CNN, compile it to an integer SNN in NIR, simulate it.

Prints ANN accuracy, float-SNN and integer-SNN accuracy for T in {1, 2, 4, 8, 16, 32, 64} on the fixed
360-sample test split, and writes out/digits_cnn.pt (pickled module), out/digits_cnn.pt2 (torch.export program,
loads safely: ``snnc compile out/digits_cnn.pt2 ...``), out/digits.nir and out/digits_accuracy_vs_T.png."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", default="1,2,4,8,16,32,64")
    ap.add_argument("--v-init", type=float, default=0.5, help="initial potential, fraction of threshold")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    import snnc
    from rich.console import Console
    from rich.table import Table
    from snnc.backends.cpu.simulator import simulate
    from snnc.data import digits
    from snnc.frontend.convert import ConvertOptions
    from snnc.ir import write
    from snnc.train.fit import accuracy, fit
    from snnc.zoo import DigitsCNN

    con = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = digits("train")
    xte, yte = digits("test")
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the initial weights too: the whole demo is deterministic
    model = fit(DigitsCNN(), xtr, ytr, epochs=args.epochs)
    t_train = time.perf_counter() - t0
    ann = accuracy(model, xte, yte)
    torch.save(model, out / "digits_cnn.pt")  # a whole pickled module: snnc compile needs --trust-pickle for it
    # the same model as a torch.export program, which snnc loads without running pickle code
    torch.export.save(torch.export.export(model.eval(), (torch.as_tensor(xtr[:2]),)), out / "digits_cnn.pt2")
    con.print(f"trained DigitsCNN in {t_train:.1f} s: ANN test accuracy {ann:.4f}")
    t0 = time.perf_counter()
    c = snnc.compile(model, xtr, ConvertOptions(v_init=args.v_init))
    write(c.int_graph, out / "digits.nir")
    t_compile = time.perf_counter() - t0
    con.print(f"compiled to {out / 'digits.nir'} in {t_compile:.2f} s (stages: "
              + ", ".join(f"{k} {v:.2f}s" for k, v in c.seconds.items()) + ")")
    steps = [int(s) for s in args.steps.split(",")]
    table = Table(title=f"digits CNN, {len(yte)} test samples (ANN {ann:.4f})")
    for col in ("T", "latency steps", "float SNN", "integer SNN", "int samples/s", "overflow events"):
        table.add_column(col, justify="right")
    rows = []
    for T in steps:
        rf = simulate(c.float_graph, xte, T, batch_size=len(xte))
        ri = simulate(c.int_graph, xte, T, batch_size=len(xte))
        rows.append({"steps": T, "float_accuracy": rf.accuracy(yte), "int_accuracy": ri.accuracy(yte),
                     "samples_per_s": ri.samples_per_s, "latency_steps": ri.latency_steps})
        table.add_row(str(T), str(ri.latency_steps), f"{rf.accuracy(yte):.4f}", f"{ri.accuracy(yte):.4f}",
                      f"{ri.samples_per_s:.0f}", str(ri.total_events()))
    con.print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(ann, color="k", ls="--", label="ANN")
    ax.plot(steps, [r["float_accuracy"] for r in rows], "o-", label="float SNN")
    ax.plot(steps, [r["int_accuracy"] for r in rows], "s-", label="integer SNN (Lava fixed point)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time-steps T")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits CNN: ANN-to-SNN conversion")
    ax.legend()
    fig.tight_layout()
    png = out / "digits_accuracy_vs_T.png"
    fig.savefig(png, dpi=120)
    con.print(f"NIR file: {out / 'digits.nir'}   plot: {png}   model: {out / 'digits_cnn.pt2'}")
    return {"ann_accuracy": ann, "rows": rows, "compile_s": t_compile, "train_s": t_train}


if __name__ == "__main__":
    main()
