"""Bench: CIFAR-sized networks (3x32x32): compile time, simulator speed against the dense bound and a torch SNN,
spike-exactness, peak memory; and the default calibration's accuracy on digits against the full range run.

Networks (random weights, BatchNorm statistics drawn at random: compile and simulation cost do not depend on
training): VGG-16 (13 conv + BN + ReLU, 5 AvgPool2d(2), fc 512 -> 512 -> 10) and ResNet-18 (CIFAR stem: 3x3 conv,
four stages of two basic blocks, 64..512 channels, global average pool, fc 512 -> 10). Calibration: 256 images
drawn from N(0, 1) (the default calib_samples), the default options otherwise.

Parts (``--parts``, comma-separated; each in fresh subprocesses where it measures time or memory):
  compile  snnc.compile + snnc.write of each net (wall and process CPU seconds); then VGG-11/13/16/19 and
           ResNet-10/18/26/34 at 32x32 (depth), VGG-16 at 32, 64, 96 and ResNet-18 at 16, 32, 64 pixels a side:
           linear fits of CPU seconds against depth and against pixels (R^2)
  sim      one thread, batch --batch, T = --steps: snnc's exact integer engine, T dense forwards of the ANN
           (float32, the faster of NCHW and channels-last), a float32 torch SNN of the unfused network (bench/
           sim_vs_torch.TorchSNN, channels-last), interleaved, best of --repeats; spike-exactness against the
           int64 reference engine on --check samples
  memory   peak RSS (VmHWM) of one simulate call: VGG-16 at batch 256 for T = 8 and 32 (and batch 64 at T = 32),
           ResNet-18 at batch 256, T = 32
  digits   digits CNN (5 seeds) and ResNet-8 (3 seeds): accuracy at T = 4..64 with ranges="run" (the full float
           range run, 256 x 64) and the default (ranges="ann": ANN pre-activations + a 2 x 8 probe), compile s
Ends with one line of key=value pairs.

    OMP_NUM_THREADS=1 python bench/scale.py [--parts compile,sim,memory,digits] [--batch 64] [--steps 32]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from snnc.zoo import randomize_batchnorm

HERE = Path(__file__).resolve().parent
VGG = {11: (64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
       13: (64, 64, "P", 128, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"),
       16: (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"),
       19: (64, 64, "P", 128, 128, "P", 256, 256, 256, 256, "P", 512, 512, 512, 512, "P", 512, 512, 512, 512, "P")}
RESNET = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 26: (3, 3, 3, 3), 34: (3, 4, 6, 3)}


def vgg(depth: int = 16, pixels: int = 32, classes: int = 10, seed: int = 0) -> nn.Module:
    """VGG-``depth`` for 3 x pixels x pixels: 3x3 conv + BN + ReLU blocks, AvgPool2d(2), fc 512 -> 512 -> classes."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c, hw = 3, pixels
    for v in VGG[depth]:
        if v == "P":
            layers.append(nn.AvgPool2d(2))
            hw //= 2
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
    layers += [nn.Flatten(), nn.Linear(c * hw * hw, 512), nn.ReLU(), nn.Linear(512, classes)]
    return randomize_batchnorm(nn.Sequential(*layers), seed)


class ResNet(nn.Module):
    """CIFAR ResNet-(2 + 2 x blocks): 3x3 stem, four stages of basic blocks (64, 128, 256, 512 channels; stride 2
    from the second), global average pool, fc."""

    def __init__(self, blocks: tuple = (2, 2, 2, 2), classes: int = 10, width: int = 64):
        super().__init__()
        from snnc.zoo import BasicBlock

        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        seq, c = [], width
        for stage, k in enumerate(blocks):
            cw = width * 2 ** stage
            for i in range(k):
                seq.append(BasicBlock(c, cw, 2 if stage > 0 and i == 0 else 1))
                c = cw
        self.blocks = nn.Sequential(*seq)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.blocks(self.relu(self.bn(self.stem(x)))))))


def resnet(depth: int = 18, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(ResNet(RESNET[depth]), seed)


def build(name: str, depth: int, pixels: int) -> nn.Module:
    return vgg(depth, pixels) if name == "vgg" else resnet(depth)


def calib(pixels: int, n: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, pixels, pixels)).astype(np.float32)


def hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM), MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sub(args: list[str]) -> dict:
    """Run this file with ``args`` in a fresh process; its last stdout line is JSON."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(Path(__file__).resolve())] + args, capture_output=True, text=True,
                         env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- compile
def one_compile(name: str, depth: int, pixels: int) -> dict:
    import snnc

    torch.set_num_threads(1)
    model, x = build(name, depth, pixels), calib(pixels)
    c0, t0 = time.process_time(), time.perf_counter()
    c = snnc.compile(model, x)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        snnc.write(c.int_graph, Path(d) / "net.nir")
        size = os.path.getsize(Path(d) / "net.nir")
    t2, c2 = time.perf_counter(), time.process_time()
    macs = sum(m.weight.numel() * np.prod(o) for m, o in _conv_outputs(model, pixels))
    return {"name": name, "depth": depth, "pixels": pixels, **{k: round(v, 3) for k, v in c.seconds.items()},
            "write": round(t2 - t1, 3), "total": round(t2 - t0, 3),
            "cpu_total": round(c2 - c0, 3), "file_mb": round(size / 2 ** 20, 1),
            "ann_gmac": round(macs / 1e9, 3), "peak_mb": round(hwm_mb()),
            "limits": sorted({L.limit for L in c.report.layers})}


def _conv_outputs(model: nn.Module, pixels: int) -> list:
    """(weighted module, output positions) of every Conv2d/Linear on one input: the ANN's MACs."""
    out = []
    hooks = [m.register_forward_hook(lambda m, i, o: out.append((m, o.shape[2:] if o.dim() == 4 else (1,))))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, pixels, pixels))
    for h in hooks:
        h.remove()
    return out


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares y = a + b x: (a, b, R^2)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (a + b * x)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
    return float(a), float(b), float(r2)


def part_compile(out: dict) -> None:
    runs = {}
    plan = [("vgg", 16, 32), ("resnet", 18, 32)] + [("vgg", d, 32) for d in (11, 13, 19)] + \
        [("resnet", d, 32) for d in (10, 26, 34)] + [("vgg", 16, p) for p in (64, 96)] + \
        [("resnet", 18, p) for p in (16, 64)]
    for name, depth, pixels in plan:
        r = _sub(["--one-compile", name, str(depth), str(pixels)])
        runs[(name, depth, pixels)] = r
        print(f"  {name}-{depth} {pixels}px: total {r['total']:.2f} s, {r['cpu_total']:.2f} CPU s (" +
              ", ".join(f"{k} {r[k]:.2f}" for k in ("convert", "fold_batchnorm", "fuse_synapses", "ranges",
                                                    "quantize", "bias_onset", "write")) +
              f"), file {r['file_mb']} MiB, peak {r['peak_mb']} MiB, ANN {r['ann_gmac']} GMAC/sample", flush=True)
    for name, label, key, d0 in (("vgg", "VGG", "vgg16", 16), ("resnet", "ResNet", "resnet18", 18)):
        r = runs[(name, d0, 32)]
        out[f"{key}_compile_s"] = r["total"]
        out[f"{key}_compile_cpu_s"] = r["cpu_total"]
        out[f"{key}_compile_peak_mb"] = r["peak_mb"]
        ds = sorted(d for (n, d, p) in runs if n == name and p == 32)
        a, b, r2 = fit(ds, [runs[(name, d, 32)]["cpu_total"] for d in ds])
        print(f"{label}-{ds} at 32x32: CPU seconds = {a:.2f} + {b:.3f} x depth, R^2 = {r2:.3f}; per ANN GMAC: " +
              ", ".join(f"{runs[(name, d, 32)]['cpu_total'] / runs[(name, d, 32)]['ann_gmac']:.1f}" for d in ds))
        out[f"{key}_depth_r2"] = round(r2, 3)
        ps = sorted(p for (n, d, p) in runs if n == name and d == d0)
        a, b, r2 = fit([p * p for p in ps], [runs[(name, d0, p)]["cpu_total"] for p in ps])
        print(f"{label}-{d0} at {ps} pixels a side: CPU seconds = {a:.2f} + {b * 1024:.3f} x (pixels / 32x32), "
              f"R^2 = {r2:.3f}")
        out[f"{key}_pixels_r2"] = round(r2, 3)


# ----------------------------------------------------------------------------------------------------- sim
def one_sim(name: str, batch: int, steps: int, repeats: int, check: int) -> dict:
    import snnc
    from sim_vs_torch import TorchSNN
    from snnc.backends.cpu import kernels as kn
    from snnc.backends.cpu.simulator import simulate
    from snnc.frontend.convert import convert
    from snnc.passes.fold_batchnorm import fold_batchnorm

    torch.set_num_threads(1)
    depth = 16 if name == "vgg" else 18
    model, xc = build(name, depth, 32), calib(32)
    comp = snnc.compile(model, xc)
    x = calib(32, batch, seed=1)
    unfused = fold_batchnorm(convert(model, xc))  # the torch SNN runs the network as written: pool, then conv
    snn = TorchSNN(unfused, torch.device("cpu"), channels_last=True)
    model_cl = __import__("copy").deepcopy(model).to(memory_format=torch.channels_last)
    xt = torch.as_tensor(x)

    def dense(m: nn.Module, xb: torch.Tensor) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(steps):
                m(xb)
        return time.perf_counter() - t0

    t = {"snnc": [], "snnc_float32": [], "dense": [], "dense_cl": [], "torch_snn": []}
    cpu = {k: [] for k in t}  # process CPU seconds too: on a shared machine, the closer to an idle one's wall time
    res = None

    def run(key: str, fn) -> object:
        w0, c0 = time.perf_counter(), time.process_time()
        r = fn()
        t[key].append(time.perf_counter() - w0)
        cpu[key].append(time.process_time() - c0)
        return r

    xcl = xt.contiguous(memory_format=torch.channels_last)
    for _ in range(repeats):  # interleaved: a shared machine's load hits all alike
        res = run("snnc", lambda: simulate(comp.int_graph, x, steps, batch_size=batch))
        run("dense", lambda: dense(model, xt))
        run("dense_cl", lambda: dense(model_cl, xcl))
        run("torch_snn", lambda: snn.run(x, steps, batch))
    prev = kn.use_int8(False)  # the same engine with float32 kernels only: what the int8 kernels buy
    r32 = run("snnc_float32", lambda: simulate(comp.int_graph, x, steps, batch_size=batch))
    kn.use_int8(prev)
    same32 = all(np.array_equal(r32.spike_counts[n], res.spike_counts[n]) for n in res.spike_counts)
    xs = x[:check]
    fast = simulate(comp.int_graph, xs, steps, batch_size=check)
    ref = simulate(comp.int_graph, xs, steps, batch_size=check, engine="reference")
    differ = sum(int(np.abs(fast.spike_counts[n].astype(np.int64) - ref.spike_counts[n]).sum())
                 for n in ref.spike_counts)
    exact = differ == 0 and np.array_equal(fast.potentials, ref.potentials) and \
        fast.events == ref.events
    b = {k: min(v) for k, v in t.items()}
    c = {k: min(v) for k, v in cpu.items()}
    dense_s = min(b["dense"], b["dense_cl"])
    rates = {n: float(c.sum()) / (c.size * res.latency_steps) for n, c in res.spike_counts.items()}
    return {"name": name, "batch": batch, "steps": steps, "latency": res.latency_steps, "depth": res.latency_steps -
            steps, **{f"{k}_s": round(v, 3) for k, v in b.items()}, "sim_over_dense": round(b["snnc"] / dense_s, 3),
            "sim_over_torch_snn": round(b["snnc"] / b["torch_snn"], 3),
            "int8_speedup": round(b["snnc_float32"] / b["snnc"], 2), "float32_kernels_same": same32,
            "cpu_sim_over_dense": round(c["snnc"] / min(c["dense"], c["dense_cl"]), 3),
            "cpu_sim_over_torch_snn": round(c["snnc"] / c["torch_snn"], 3),
            "exact": bool(exact), "checked_samples": check, "spikes_differ": differ,
            "events": res.total_events(), "mean_rate": round(float(np.mean(list(rates.values()))), 4),
            "samples_per_s": round(batch / b["snnc"], 2)}


def part_sim(out: dict, args) -> None:
    for name, key in (("vgg", "vgg16"), ("resnet", "resnet18")):
        r = _sub(["--one-sim", name, str(args.batch), str(args.steps), str(args.repeats), str(args.check)])
        print(f"  {key}: batch {r['batch']}, T={r['steps']} (+{r['depth']} steps of depth), one thread, best of "
              f"{args.repeats}: snnc {r['snnc_s']:.2f} s ({r['samples_per_s']} samples/s), dense x T "
              f"{min(r['dense_s'], r['dense_cl_s']):.2f} s (NCHW {r['dense_s']:.2f}, channels-last "
              f"{r['dense_cl_s']:.2f}), torch SNN {r['torch_snn_s']:.2f} s; snnc / dense {r['sim_over_dense']}, "
              f"snnc / torch SNN {r['sim_over_torch_snn']}; float32-kernel engine {r['snnc_float32_s']:.2f} s "
              f"(int8 kernels {r['int8_speedup']}x, same spikes {r['float32_kernels_same']}); exact vs int64 "
              f"reference on {r['checked_samples']} samples: {r['exact']}; mean spike rate {r['mean_rate']}; "
              f"in process CPU seconds: snnc / dense {r['cpu_sim_over_dense']}, snnc / torch SNN "
              f"{r['cpu_sim_over_torch_snn']}", flush=True)
        for k in ("sim_over_dense", "sim_over_torch_snn", "exact", "int8_speedup", "samples_per_s",
                  "cpu_sim_over_dense", "cpu_sim_over_torch_snn"):
            out[f"{key}_{k}"] = r[k]


# -------------------------------------------------------------------------------------------------- memory
def one_memory(batch: int, steps: int, name: str = "vgg") -> dict:
    import snnc
    from snnc.backends.cpu.simulator import simulate

    torch.set_num_threads(1)
    model, xc = build(name, 16 if name == "vgg" else 18, 32), calib(32)
    comp = snnc.compile(model, xc)
    del model
    x = calib(32, batch, seed=1)
    simulate(comp.int_graph, x[:2], 1, batch_size=2)  # imports, allocator pools
    base = hwm_mb()
    t0 = time.perf_counter()
    simulate(comp.int_graph, x, steps, batch_size=batch)
    return {"name": name, "batch": batch, "steps": steps, "peak_mb": round(hwm_mb()),
            "growth_mb": round(hwm_mb() - base),
            "base_mb": round(base), "seconds": round(time.perf_counter() - t0, 2)}


def part_memory(out: dict) -> None:
    from snnc.ir.plan import build_plan
    import snnc

    g = snnc.compile(vgg(16, 32), calib(32, 16)).int_graph
    neurons = sum(int(np.prod(s)) for n, s in build_plan(g).shapes.items() if n in build_plan(g).neurons)
    rows = [_sub(["--one-memory", str(b), str(s), n]) for n, b, s in
            (("vgg", 256, 32), ("vgg", 256, 8), ("vgg", 64, 32), ("resnet", 256, 32))]
    for r in rows:
        print(f"  {'VGG-16' if r['name'] == 'vgg' else 'ResNet-18'} batch {r['batch']}, T={r['steps']}: peak RSS "
              f"{r['peak_mb']} MiB (the simulate call added {r['growth_mb']} MiB to {r['base_mb']}; {r['seconds']} s)")
    per = rows[0]["growth_mb"] * 2 ** 20 / (256 * neurons)
    print(f"  VGG-16: {neurons} neurons per sample: the growth is {per:.1f} "
          "bytes per neuron and sample at batch 256")
    out["vgg16_peak_rss_mb"] = rows[0]["peak_mb"]
    out["vgg16_peak_rss_mb_T8"] = rows[1]["peak_mb"]
    out["vgg16_peak_rss_mb_b64"] = rows[2]["peak_mb"]
    out["resnet18_peak_rss_mb"] = rows[3]["peak_mb"]


# -------------------------------------------------------------------------------------------------- digits
def part_digits(out: dict) -> None:
    import snnc
    from snnc.backends.cpu.simulator import simulate
    from snnc.data import digits
    from snnc.train.fit import fit as train
    from snnc.zoo import DigitsCNN, DigitsResNet

    torch.set_num_threads(1)
    (xtr, ytr), (xte, yte) = digits("train"), digits("test")
    steps = (4, 8, 16, 32, 64)
    acc: dict = {}
    secs: dict = {}
    for arch, seeds in (("cnn", range(5)), ("resnet8", range(3))):
        for seed in seeds:
            torch.manual_seed(seed)
            m = train(DigitsCNN() if arch == "cnn" else DigitsResNet(n=1, width=8), xtr, ytr, epochs=30, seed=seed)
            for mode in ("run", "ann"):
                c = snnc.compile(m, xtr, ranges=mode)
                secs.setdefault((arch, mode), []).append(sum(c.seconds.values()))
                acc.setdefault((arch, mode), []).append([simulate(c.int_graph, xte, T).accuracy(yte) for T in steps])
    print(f"  {'net':8s} {'ranges':6s} {'compile s':>9s} " + " ".join(f"{'T=' + str(T):>7s}" for T in steps))
    for (arch, mode), a in acc.items():
        m = np.mean(a, 0)
        print(f"  {arch:8s} {mode:6s} {np.mean(secs[(arch, mode)]):9.2f} " + " ".join(f"{v:7.4f}" for v in m))
    for arch in ("cnn", "resnet8"):
        d = np.mean(acc[(arch, "ann")], 0) - np.mean(acc[(arch, "run")], 0)
        out[f"digits_{arch}_acc_delta_min"] = round(float(d.min()), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="compile,sim,memory,digits")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", type=int, default=4, help="samples compared with the int64 reference engine")
    ap.add_argument("--one-compile", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--one-sim", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--one-memory", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if args.one_compile:
        n, d, p = args.one_compile
        print(json.dumps(one_compile(n, int(d), int(p))))
        return
    if args.one_sim:
        n, b, s, r, c = args.one_sim
        print(json.dumps(one_sim(n, int(b), int(s), int(r), int(c))))
        return
    if args.one_memory:
        print(json.dumps(one_memory(int(args.one_memory[0]), int(args.one_memory[1]), *args.one_memory[2:])))
        return
    out: dict = {}
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average {load:.1f} at start")
    for part in args.parts.split(","):
        print(f"== {part}", flush=True)
        {"compile": lambda: part_compile(out), "sim": lambda: part_sim(out, args),
         "memory": lambda: part_memory(out), "digits": lambda: part_digits(out)}[part]()
    out["load_start"] = round(load, 1)
    out["load_end"] = round(os.getloadavg()[0], 1)
    keys = ["vgg16_compile_s", "resnet18_compile_s", "vgg16_compile_cpu_s", "resnet18_compile_cpu_s",
            "vgg16_sim_over_dense", "resnet18_sim_over_dense", "vgg16_sim_over_torch_snn",
            "resnet18_sim_over_torch_snn", "vgg16_peak_rss_mb", "resnet18_peak_rss_mb"]
    first = [k for k in keys if k in out]
    print("scale " + " ".join(f"{k}={out[k]}" for k in first + [k for k in out if k not in first]))


if __name__ == "__main__":
    main()
