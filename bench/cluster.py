"""``--cluster local:N`` (Ray, N workers) against one process on the digits CNN at T=32.

Uses an integer NIR file when given (``--model``, or ``out/digits.nir`` from ``make demo``); otherwise trains the
digits CNN briefly and compiles it. Measures, on the same graph and samples:
- simulate, all 360 test samples: one process with torch's default threads (the same total threads as N
  one-thread workers) and with one thread, best of ``--repeat``; the cluster cold (first job: workers start and
  import torch/snnc) and warm (best of ``--repeat``);
- verify (Lava vs simulator, spike for spike), the first ``--verify-samples`` samples: one process, then the
  cluster (warm workers; each task starts its own Lava runtime), one run each;
- Ray's start-up, the object-store payload (pickled graph, data) and the result bytes per sample.
``identical=1`` when every sharded result equals the single-process one (timing fields aside). Ends with one line:
``cluster speedup_simulate=... speedup_verify=... identical=... workers=... speedup_simulate_vs_1thread=...``
"""
from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_vs_lava import demo_graph  # noqa: E402


def _same_sim(a, b) -> bool:
    return (a.samples == b.samples and np.array_equal(a.logits, b.logits) and np.array_equal(a.potentials,
            b.potentials) and a.spikes_per_layer == b.spikes_per_layer and a.events == b.events
            and all(np.array_equal(a.spike_counts[n], b.spike_counts[n]) for n in a.spike_counts))


def _report(rep) -> dict:
    d = rep.as_dict()
    for k in ("lava_samples_per_s", "sim_samples_per_s", "lava_compile_s"):
        d.pop(k)
    return d


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (Lava's runtime processes)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="integer NIR file (default out/digits.nir, else train one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--verify-samples", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10, help="training epochs when no NIR file exists")
    args = ap.parse_args(argv)

    import torch
    from snnc import cluster
    from snnc.backends.cpu.simulator import simulate
    from snnc.backends.lava import verify
    from snnc.data import digits

    spec = f"local:{args.workers}"
    g, origin = demo_graph(args.model, args.epochs)
    x, _ = digits("test")
    threads = torch.get_num_threads()
    print(f"graph: {origin}; {len(x)} test samples, T={args.steps}; torch threads {threads}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    # one process: torch's default threads (= the cluster's total) and one thread
    t_sim1, ref = _best(lambda: simulate(g, x, args.steps, batch_size=len(x)), args.repeat)
    torch.set_num_threads(1)
    t_sim1_1t, _ = _best(lambda: simulate(g, x, args.steps, batch_size=len(x)), args.repeat)
    torch.set_num_threads(threads)

    t0 = time.perf_counter()
    cluster.connect(spec)
    t_start = time.perf_counter() - t0
    shards: list = []
    t0 = time.perf_counter()
    cold = cluster.simulate(g, x, args.steps, spec, batch_size=len(x), progress=False)
    t_cold = time.perf_counter() - t0
    t_warm, got = _best(lambda: cluster.simulate(g, x, args.steps, spec, batch_size=len(x), progress=False,
                                                 on_shard=shards.append), args.repeat)
    t_tiny, _ = _best(lambda: cluster.simulate(g, x[:args.workers], args.steps, spec, shard_size=1, progress=False),
                      args.repeat)  # one sample per worker: the fixed cost of a job
    same_sim = _same_sim(ref, cold) and _same_sim(ref, got)
    shard_s = sorted(s.seconds for s in shards[-len({s.index for s in shards}):])
    print(f"simulate {len(x)} samples: one process {t_sim1:.3f} s ({threads} threads), {t_sim1_1t:.3f} s (1 thread); "
          f"{spec}: cold {t_cold:.3f} s, warm {t_warm:.3f} s (shards {shard_s[0]:.3f}..{shard_s[-1]:.3f} s); "
          f"job of {args.workers} one-sample shards {t_tiny:.3f} s; Ray start {t_start:.2f} s; identical {same_sim}", flush=True)

    xv = x[:args.verify_samples]
    t0, c0 = time.perf_counter(), _cpu_s()
    rep1 = verify(g, xv, args.steps, progress=False)
    t_ver1 = time.perf_counter() - t0
    cores = (_cpu_s() - c0) / t_ver1
    vshards: list = []
    t0 = time.perf_counter()
    rep2 = cluster.verify(g, xv, args.steps, spec, progress=False, on_shard=vshards.append)
    t_ver2 = time.perf_counter() - t0
    same_ver = _report(rep1) == _report(rep2) and rep1.ok
    print(f"verify {len(xv)} samples: one process {t_ver1:.2f} s (Lava {rep1.lava_samples_per_s:.2f} samples/s, "
          f"compile {rep1.lava_compile_s:.2f} s, {cores:.2f} cores busy); {spec}: {t_ver2:.2f} s (per worker Lava "
          f"{rep2.lava_samples_per_s:.2f} samples/s; shards " + ", ".join(f"{s.seconds:.2f}" for s in
                                                                          sorted(vshards, key=lambda s: s.index))
          + f" s); identical {same_ver}", flush=True)

    per_sample = sum(a.nbytes for a in got.spike_counts.values()) / got.samples \
        + (got.logits.nbytes + got.potentials.nbytes) / got.samples
    print(f"object store: graph {len(pickle.dumps(g)) / 1e3:.1f} kB pickled, data {x.nbytes / 1e3:.1f} kB; "
          f"result {per_sample:.0f} B per sample (spike counts, logits, potentials)", flush=True)
    cluster.shutdown()
    identical = int(same_sim and same_ver)
    print(f"cluster speedup_simulate={t_sim1 / t_warm:.3f} speedup_verify={t_ver1 / t_ver2:.3f} "
          f"identical={identical} workers={args.workers} speedup_simulate_vs_1thread={t_sim1_1t / t_warm:.3f} "
          f"simulate_cold_speedup={t_sim1 / t_cold:.3f} ray_start_s={t_start:.2f} load={os.getloadavg()[0]:.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
