"""A recurrent SNN trained in snnTorch on event streams, exported to NIR, compiled by snnc, run on the simulator and
Lava.

Task: ``digits-events`` (the digits as ON/OFF DVS streams, 30 steps of 2 x 10 x 10 events, flattened to 200 inputs
per step). Network, in snnTorch 1.0.0: Linear(200, 64) -> RLeaky(64, all-to-all recurrent Linear) -> Linear(64, 10)
-> Leaky(10), per-neuron beta 0.9, threshold 1, ``reset_delay=False``, trained with BPTT on the output spike count
(cross-entropy of the counts). ``snntorch.export_nir.export_to_nir`` writes the graph (the RLeaky as a recurrent
subgraph lif -> w_rec -> lif, biases on every Linear). snnc reads it twice: with the immediate reset NIR's equations
say (snnc's default, Lava's LIF) and with ``reset_timing="guarded"`` (what snnTorch's reset_delay=False computes:
``snnc.ir.neuron``); the biases into the LIF layers become constant-drive inputs, the recurrent Linear a
recurrent connection (one step, as in snnTorch). Each is compiled to integer (8-bit weights, the training streams as
calibration data) and run on the 360 test streams: snnTorch, snnc float and integer accuracy, snnTorch vs snnc float
spike for spike, and Lava vs the integer simulator spike for spike on the first ``--lava-samples`` streams.
Writes out/recurrent.nir (snnTorch's export), out/recurrent_int.nir (the guarded integer graph) and
out/recurrent_test.npz (x: (360, 30, 200), y)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

HIDDEN = 64


def build(seed: int = 0) -> torch.nn.Sequential:
    """The snnTorch network (per-neuron parameters: snnTorch 1.0.0 exports those to nir 1.0.8)."""
    import snntorch as snn

    torch.manual_seed(seed)
    full = lambda n, v: torch.full((n,), v)  # noqa: E731
    return torch.nn.Sequential(
        torch.nn.Linear(200, HIDDEN),
        snn.RLeaky(beta=full(HIDDEN, 0.9), threshold=full(HIDDEN, 1.0), linear_features=HIDDEN, init_hidden=True,
                   reset_delay=False),
        torch.nn.Linear(HIDDEN, 10),
        snn.Leaky(beta=full(10, 0.9), threshold=full(10, 1.0), init_hidden=True, reset_delay=False, output=True))


def run_snntorch(net: torch.nn.Sequential, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Output spike counts (N, 10) and the spikes of both neuron layers, (T, N, n) bool, keyed by NIR node name."""
    from snntorch import utils

    utils.reset(net)
    xt = torch.as_tensor(x, dtype=torch.float32)
    s1, s2 = [], []
    with torch.no_grad():
        for t in range(xt.shape[1]):
            h = net[1](net[0](xt[:, t]))
            s1.append(h.numpy() > 0)
            spk, _ = net[3](net[2](h))
            s2.append(spk.numpy() > 0)
    r2 = np.stack(s2)
    return r2.sum(0), {"1.lif": np.stack(s1), "3": r2}


def train(net: torch.nn.Sequential, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> None:
    """BPTT on cross-entropy of the output spike counts (snnTorch's fast-sigmoid surrogate), Adam."""
    from snntorch import utils

    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            utils.reset(net)
            counts = 0
            for t in range(xt.shape[1]):
                spk, _ = net(xt[idx, t])
                counts = counts + spk
            loss = torch.nn.functional.cross_entropy(counts, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--json", help="also write the results as one JSON object here")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lava-samples", type=int, default=10, help="test streams verified on Lava; 0: none")
    args = ap.parse_args(argv)
    import nir
    import snnc
    from rich.console import Console
    from rich.table import Table
    from snnc.backends.cpu.simulator import simulate
    from snnc.data import digits_events
    from snnc.frontend.nir_import import ImportOptions, read_any
    from snnc.ir import write
    from snnc.ir.plan import build_plan
    from snntorch.export_nir import export_to_nir

    con = Console(width=160)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = digits_events("train")
    xte, yte = digits_events("test")
    xtr, xte = xtr.reshape(len(xtr), xtr.shape[1], -1), xte.reshape(len(xte), xte.shape[1], -1)
    T = xte.shape[1]
    t0 = time.perf_counter()
    net = build()
    train(net, xtr, ytr, args.epochs)
    t_train = time.perf_counter() - t0
    counts, ref = run_snntorch(net, xte)
    acc_torch = float((counts.argmax(1) == yte).mean())
    con.print(f"trained in snnTorch ({args.epochs} epochs, {t_train:.1f} s): test accuracy {acc_torch:.4f} (spike "
              f"counts; ties go to the lowest class)")
    graph = export_to_nir(net, torch.zeros(1, 200), ignore_dims=[0])
    nir.write(out / "recurrent.nir", graph)
    np.savez(out / "recurrent_test.npz", x=xte, y=yte)
    raw = read_any(out / "recurrent.nir")
    table = Table(title=f"snnTorch RLeaky on digits-events, {len(yte)} test streams of {T} steps "
                        f"(snnTorch {acc_torch:.4f})")
    for col in ("snnc reading", "float SNN", "integer SNN", "snnTorch vs float: spikes differing",
                "integer vs float: output argmax agree", "Lava vs integer: spikes differing"):
        table.add_column(col, justify="right")
    rows = []
    for label, timing in (("immediate reset (NIR, Lava LIF)", None), ("guarded (snnTorch reset_delay=False)",
                                                                      "guarded")):
        t0 = time.perf_counter()
        c = snnc.compile(raw, xtr[:256], import_options=ImportOptions(reset="subtract", reset_timing=timing))
        t_compile = time.perf_counter() - t0
        if timing:
            write(c.int_graph, out / "recurrent_int.nir")
        plan = build_plan(c.float_graph)
        rf = simulate(c.float_graph, xte, None, rasters=True)
        ri = simulate(c.int_graph, xte, None)
        differ = {k: int((rf.rasters[k][plan.depths[k]:plan.depths[k] + T] != r).sum()) for k, r in ref.items()}
        compared = sum(r.size for r in ref.values())
        agree = float((rf.logits.argmax(1) == ri.logits.argmax(1)).mean())
        lava = None
        if args.lava_samples > 0:
            from snnc.backends.lava import verify

            lava = verify(c.int_graph, xte[:args.lava_samples], None, progress=False, timeout_s=1800).as_dict()
        rows.append({"reading": label, "float_accuracy": rf.accuracy(yte), "int_accuracy": ri.accuracy(yte),
                     "snntorch_spikes_compared": compared, "snntorch_spikes_differ": differ,
                     "int_float_argmax_agree": agree, "lava": lava, "compile_s": t_compile})
        table.add_row(label, f"{rf.accuracy(yte):.4f}", f"{ri.accuracy(yte):.4f}",
                      f"{sum(differ.values())} of {compared}", f"{agree:.4f}",
                      "-" if lava is None else f"{lava['spikes_differ']} of {lava['spikes_compared']} "
                                               f"({lava['samples']} streams)")
    con.print(table)
    res = {"snntorch_accuracy": acc_torch, "rows": rows, "train_s": t_train}
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
