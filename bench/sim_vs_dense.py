"""Bench: snnc's exact integer simulator vs the dense bound (T dense forward passes of the source ANN in torch).

Dense bound: the trained float32 ANN run T times on each batch (no_grad, eval): an integer-exact simulator that
does no better than dense math cannot beat it; one that skips silent inputs can. snnc runs the compiled integer
graph for T + depth steps at the same batch size. The per-layer table shows where sparsity is exploited: the
firing rate of each connection's source (the engine skips a connection's GEMM/conv in any step its whole source
layer is silent); and, for each weighted connection, one step of its dense op against an event-driven (sparse x dense)
version at the measured input density. Prints tables, then one line of key=value pairs.

    python bench/sim_vs_dense.py [--steps 32] [--batch 256] [--threads N] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_vs_torch import best_of, digits_cnn  # noqa: E402
from snnc.backends.cpu import exact_engine as ee  # noqa: E402
from snnc.backends.cpu.simulator import simulate  # noqa: E402
from snnc.data import digits  # noqa: E402
from snnc.ir.chain import Synapse
from snnc.ir.plan import build_plan  # noqa: E402


def dense_bound(model: torch.nn.Module, x: np.ndarray, steps: int, batch: int) -> float:
    """Seconds for ``steps`` forward passes of every batch of ``x``."""
    model = model.float().eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(xt), batch):
            xb = xt[i:i + batch]
            for _ in range(steps):
                model(xb)
    return time.perf_counter() - t0


def op_times(conn, density: float, batch: int, src_shape: tuple, repeats: int = 20) -> tuple[float, float]:
    """(dense, event-driven) seconds per step of one connection's weighted op (float32, after its pool if the
    engine factors one out) at input ``density``."""
    op = conn.ops[-1][1]  # kernels.Weighted
    wt = op.w.float()
    shape = tuple(src_shape) if op.pool == 1 else (src_shape[0], src_shape[1] // op.pool, src_shape[2] // op.pool)
    x = (torch.rand((batch,) + shape) < density).float()
    if op.kind == "dense":
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1).reshape(batch, -1)  # the engine's (H, W, C) column order
        dense = lambda: (wt @ x.reshape(batch, -1).T).T  # noqa: E731
        sparse = lambda: torch.sparse.mm(x.reshape(batch, -1).to_sparse(), wt.T)  # noqa: E731
    else:
        p = op.params
        kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
        dense = lambda: F.conv2d(x, wt, None, **kw)  # noqa: E731

        def sparse():  # event-driven: scatter each spike's kernel (im2col of the spikes only, as a sparse GEMM)
            cols = F.unfold(x, wt.shape[-2:], dilation=p["dilation"], padding=p["padding"], stride=p["stride"])
            B, K, L = cols.shape
            s = cols.transpose(1, 2).reshape(B * L, K).to_sparse()
            return torch.sparse.mm(s, wt.reshape(wt.shape[0], -1).T)
    out = []
    for f in (dense, sparse):
        f()
        t0 = time.perf_counter()
        for _ in range(repeats):
            f()
        out.append((time.perf_counter() - t0) / repeats)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, comp = digits_cnn()
    x, y = digits("test")
    T, N, B = args.steps, len(x), args.batch
    t_dense = t_sim = float("inf")
    for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load hits both alike
        t_dense = min(t_dense, dense_bound(model, x, T, B))
        ts, res = best_of(lambda: simulate(comp.int_graph, x, T, batch_size=B), 1)
        t_sim = min(t_sim, ts)
    ratio = t_sim / t_dense
    print(f"digits CNN, {N} test samples, T={T}, batch {B}, threads {torch.get_num_threads()}")
    print(f"{'':40s} {'seconds':>8s} {'samples/s':>10s}")
    print(f"{'dense bound: T x ANN forward (float32)':40s} {t_dense:8.3f} {N / t_dense:10.1f}")
    print(f"{'snnc exact integer simulator':40s} {t_sim:8.3f} {N / t_sim:10.1f}")
    print(f"snnc / dense bound time ratio: {ratio:.2f} (goal <= 1.5)")
    plan = build_plan(comp.int_graph)
    cpu = torch.device("cpu")
    lat = res.latency_steps
    print(f"\n{'connection':24s} {'src rate':>8s} {'dense ms':>9s} {'event ms':>9s} {'winner':>7s}")
    conns = ee.plan_connections([Synapse(comp.int_graph, plan, c, True, cpu) for c in plan.connections], plan,
                                255.0, cpu)
    event_wins = []
    for c, cp in zip(plan.connections, conns):
        if c.src == plan.input:
            rate = float((np.asarray(x) != 0).mean())
            note = " (input: graded, computed once per run)"
        else:
            rate = res.spike_counts[c.src].sum() / (res.neurons_per_layer[c.src] * N * lat)
            note = ""
        td, te = op_times(cp, max(rate, 1e-4), B, plan.shapes[c.src])
        win = "event" if te < td else "dense"
        if win == "event":
            event_wins.append(f"{c.src}->{c.dst}")
        print(f"{c.src + '->' + c.dst:24s} {rate:8.4f} {td * 1e3:9.3f} {te * 1e3:9.3f} {win:>7s}{note}")
    print(f"sim_vs_dense ratio={ratio:.3f} snnc_sps={N / t_sim:.1f} dense_sps={N / t_dense:.1f} steps={T} "
          f"batch={B} event_driven_wins={','.join(event_wins) or 'none'} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
