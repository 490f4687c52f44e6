"""Bench (accelerator): snnc's exact integer engine on ``--device`` against the CPU run (bit for bit), a float32
torch SNN of the unfused network on the same device, and T dense forwards of the ANN on the same device.

Networks as in bench/scale.py (VGG-16 and ResNet-18 for 3x32x32, random weights, 256 random calibration images),
compiled on the CPU. Per net: one warm-up, then --repeats timed runs of each (best): snnc ``simulate(...,
device=dev)`` (exact mode: no TF32, no cuDNN: im2col + GEMM, events counted on the device), the torch SNN
(bench/sim_vs_torch.TorchSNN, channels-last, cuDNN and TF32 as the device defaults them), the ANN T times
(channels-last). Bit-exactness: the first --check samples of the device run against ``simulate`` on the CPU
(spike counts of every layer, readout potentials, logits, overflow events). bench/gpu.sh runs it on a GPU
machine; ``--device cpu`` runs the same code path here (the dry run). Ends with one line of key=value pairs.

    python bench/gpu.py [--device cuda] [--nets vgg16,resnet18] [--batch 256] [--steps 32] [--check 32]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import build, calib  # noqa: E402
from sim_vs_torch import TorchSNN  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev: torch.device, repeats: int) -> tuple[float, object]:
    out, best = None, float("inf")
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        out = fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best, out


def one(name: str, dev: torch.device, batch: int, steps: int, check: int, repeats: int) -> dict:
    import snnc
    from snnc.backends.cpu.simulator import simulate
    from snnc.frontend.convert import convert
    from snnc.passes.fold_batchnorm import fold_batchnorm

    depth = 16 if name == "vgg16" else 18
    model, xc = build("vgg" if name == "vgg16" else "resnet", depth, 32), calib(32)
    t0 = time.perf_counter()
    comp = snnc.compile(model, xc)
    compile_s = time.perf_counter() - t0
    x = calib(32, batch, seed=1)
    simulate(comp.int_graph, x[:4], 2, batch_size=4, device=str(dev))  # warm-up: kernels, allocator
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_snnc, res = timed(lambda: simulate(comp.int_graph, x, steps, batch_size=batch, device=str(dev)), dev, repeats)
    mem = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else float("nan")
    ref = simulate(comp.int_graph, x[:check], steps, batch_size=check, device="cpu")
    differ = sum(int(np.abs(res.spike_counts[n][:check].astype(np.int64) - ref.spike_counts[n]).sum())
                 for n in ref.spike_counts)
    exact = differ == 0 and np.array_equal(res.potentials[:check], ref.potentials) and \
        np.array_equal(res.logits[:check], ref.logits)
    snn = TorchSNN(fold_batchnorm(convert(model, xc)), dev, channels_last=True)
    snn.run(x[:4], 2, 4)
    t_snn, _ = timed(lambda: snn.run(x, steps, batch), dev, repeats)
    ann = copy.deepcopy(model).to(dev).to(memory_format=torch.channels_last).eval()
    xt = torch.as_tensor(x, device=dev).contiguous(memory_format=torch.channels_last)

    def dense() -> None:
        with torch.no_grad():
            for _ in range(steps):
                ann(xt)
    dense()
    t_dense, _ = timed(dense, dev, repeats)
    return {"net": name, "device": str(dev), "batch": batch, "steps": steps, "latency": res.latency_steps,
            "compile_s": round(compile_s, 2), "snnc_s": round(t_snnc, 4), "torch_snn_s": round(t_snn, 4),
            "dense_s": round(t_dense, 4), "snnc_sps": round(batch / t_snnc, 1),
            "torch_snn_sps": round(batch / t_snn, 1),
            "dense_sps": round(batch / t_dense, 1), "sim_over_torch_snn": round(t_snnc / t_snn, 3),
            "sim_over_dense": round(t_snnc / t_dense, 3), "exact_vs_cpu": bool(exact), "checked": check,
            "spikes_differ": differ, "events": res.total_events(), "peak_mem_mb": round(mem, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--nets", default="vgg16,resnet18")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--check", type=int, default=32, help="samples compared with the CPU run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    out = {}
    for name in args.nets.split(","):
        r = one(name, dev, args.batch, args.steps, min(args.check, args.batch), args.repeats)
        print(f"{name} on {r['device']}, batch {r['batch']}, T={r['steps']} ({r['latency']} steps run): snnc "
              f"{r['snnc_sps']} samples/s, torch SNN {r['torch_snn_sps']}, dense x T {r['dense_sps']}; snnc / torch "
              f"SNN time {r['sim_over_torch_snn']}, snnc / dense {r['sim_over_dense']}; bit-exact with the CPU run on "
              f"{r['checked']} samples: {r['exact_vs_cpu']} ({r['spikes_differ']} differing spike counts); peak "
              f"device memory {r['peak_mem_mb']} MiB; compile {r['compile_s']} s (CPU)", flush=True)
        for k in ("snnc_sps", "torch_snn_sps", "dense_sps", "sim_over_torch_snn", "sim_over_dense", "exact_vs_cpu"):
            out[f"{name}_{k}"] = r[k]
    print("gpu " + " ".join(f"{k}={v}" for k, v in out.items()) + f" device={args.device} batch={args.batch} "
          f"steps={args.steps}")


if __name__ == "__main__":
    main()
