"""The NIR paper's graphs on random event sequences: the tables of docs/events.md.

Braille nets (snnTorch, recurrent CubaLIF), each read with the reset it was made for: snnc's float simulation in
two modes -- immediate reset (snnc's default; Lava's LIF) and snnTorch 1.0.0's reset timings (RSynaptic "delayed",
Synaptic "guarded") -- against three readings: "a" (NIR's equations, current then potential with the new current,
immediate reset; tests/recurrent_reference.py), "b" snnTorch 1.0.0 itself, "c" the paper's numpy reference
(explicit Euler: the potential takes the previous current). Then each mode compiled to integer: integer vs float,
and Lava vs the integer simulator spike for spike. cnn_sinabs.nir (Sinabs, IF): float vs integer, Lava vs integer,
and -- when Sinabs is importable (it pins nir <= 1.0.4) -- Sinabs vs snnc float, Sinabs in float32 (as it runs)
and in float64.

    python bench/nir_paper_sequences.py [--steps 150] [--samples 6] [--lava-samples 2] [--json out.json]
Ends with one ``key=value`` line."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT / "tests" / "data" / "nir_paper"
BRAILLE = {"braille_noDelay_bias_zero": "zero", "braille_noDelay_noBias_subtract": "subtract"}
SNNTORCH_TIMING = {"lif1.lif": "delayed", "lif2": "guarded"}


def events(n: int, steps: int, shape: tuple, seed: int, p: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, steps) + shape) < p).astype(np.float64)


def braille(name: str, reset: str, steps: int, samples: int, lava_samples: int) -> dict:
    import snnc
    from recurrent_reference import run_cuba_reading, shifted, snntorch_braille
    from snnc.backends.cpu.simulator import simulate
    from snnc.frontend.nir_import import ImportOptions, read_any
    from snnc.ir.plan import build_plan

    raw = read_any(DATA / f"{name}.nir")
    x = events(samples, steps, (12,), 0)
    refs = {"a": run_cuba_reading(raw, x, "a", reset), "b": snntorch_braille(raw, x, reset),
            "c": run_cuba_reading(raw, x, "c", reset)}
    out = {"file": name, "reset": reset, "steps": steps, "samples": samples,
           "spikes_compared": {k: int(r.size) for k, r in refs["a"].items()},
           "reference_spikes": {reading: {k: int(r.sum()) for k, r in ref.items()} for reading, ref in refs.items()},
           "modes": {}}
    for mode, timing in (("immediate", None), ("snntorch", SNNTORCH_TIMING)):
        opts = ImportOptions(reset=reset, reset_timing=timing)
        c = snnc.compile(raw, events(64, steps, (12,), 1), import_options=opts)
        fl = simulate(c.float_graph, x, None, rasters=True)
        it = simulate(c.int_graph, x, None, rasters=True)
        mine = shifted(fl.rasters, build_plan(c.float_graph).depths, steps)
        row = {"float_vs": {reading: {k: int((mine[k] != r).sum()) for k, r in ref.items()}
                            for reading, ref in refs.items()},
               "int_vs_float_spikes_differ": {k: int((fl.rasters[k] != it.rasters[k]).sum()) for k in refs["a"]},
               "float_spikes": {k: int(fl.rasters[k].sum()) for k in refs["a"]},
               "int_spikes": {k: int(it.rasters[k].sum()) for k in refs["a"]},
               "int_float_argmax_agree": float((fl.logits.argmax(1) == it.logits.argmax(1)).mean()),
               "layers": {lq.name: {"scale": lq.scale, "vth": lq.vth, "limit": lq.limit} for lq in c.report.layers}}
        if lava_samples:
            row["lava"] = lava_row(c.int_graph, x[:lava_samples])
        out["modes"][mode] = row
    return out


def lava_row(g, x: np.ndarray) -> dict:
    """Lava vs the integer simulator on the sequences x (``snnc.verify``): counts and seconds."""
    from snnc.backends.lava import verify

    t0 = time.perf_counter()
    rep = verify(g, x, None, progress=False, timeout_s=3600)
    return {"samples": rep.samples, "spikes_compared": rep.spikes_compared, "spikes_differ": rep.spikes_differ,
            "potentials_differ": rep.potentials_differ, "state_differ": rep.state_differ,
            "seconds": time.perf_counter() - t0}


def cnn(steps: int, samples: int, lava_samples: int) -> dict:
    import snnc
    from snnc.backends.cpu.simulator import simulate

    x = events(samples, steps, (2, 34, 34), 4)
    c = snnc.compile(DATA / "cnn_sinabs.nir", events(8, steps, (2, 34, 34), 3), calib_samples=8)
    fl, it = simulate(c.float_graph, x, None, rasters=True), simulate(c.int_graph, x, None, rasters=True)
    out = {"file": "cnn_sinabs", "steps": steps, "samples": samples,
           "float_spikes": dict(fl.spikes_per_layer), "int_spikes": dict(it.spikes_per_layer),
           "int_vs_float_spikes_differ": {k: int((fl.rasters[k] != it.rasters[k]).sum()) for k in fl.spikes_per_layer},
           "spikes_compared": {k: int(fl.rasters[k].size) for k in fl.spikes_per_layer},
           "int_float_argmax_agree": float((fl.logits.argmax(1) == it.logits.argmax(1)).mean())}
    if lava_samples:
        out["lava"] = lava_row(c.int_graph, x[:lava_samples])
    if importlib.util.find_spec("sinabs") is not None:
        out["sinabs"] = sinabs_vs_snnc(x, fl)
    return out


def sinabs_event_rasters(x: np.ndarray, dtype) -> dict[str, np.ndarray]:
    """Spikes (T, N, ...) of every IAF layer of sinabs.from_nir(cnn_sinabs.nir) as NIR's IF (SingleSpike,
    min_v_mem=None) on sequences x (N, T, ...), run in torch ``dtype`` (Sinabs' float32 spikes cast for the next
    layer)."""
    import nir
    import sinabs.layers as sl
    import torch
    from sinabs.activation import SingleSpike
    from sinabs.nir import from_nir

    n, steps = x.shape[:2]
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        net = from_nir(nir.read(DATA / "cnn_sinabs.nir"), batch_size=n).to(dtype)
        rec: dict = {}
        for k, m in net.named_modules():
            if isinstance(m, sl.IAFSqueeze):
                m.spike_fn, m.min_v_mem, m.batch_size, m.num_timesteps = SingleSpike, None, n, -1
                m.register_forward_hook(lambda mod, i, o, k=k: (rec.__setitem__(k, o.detach().clone()),
                                                                o.to(dtype))[1])
            if hasattr(m, "reset_states"):
                m.reset_states()
        with torch.no_grad():
            net(torch.as_tensor(x, dtype=dtype).reshape((n * steps,) + x.shape[2:]))
    finally:
        torch.set_default_dtype(old)
    return {k: v.reshape((n, steps) + v.shape[1:]).transpose(0, 1).numpy() > 0 for k, v in rec.items()}


def sinabs_vs_snnc(x: np.ndarray, fl) -> dict:
    """``sinabs_event_rasters`` in float32 (as Sinabs runs) and float64 against snnc's float rasters shifted by
    depth."""
    import sinabs
    import torch
    from snnc.frontend.nir_import import import_graph
    from snnc.ir.plan import build_plan

    depths = build_plan(import_graph(DATA / "cnn_sinabs.nir")).depths
    steps = x.shape[1]
    res = {"version": sinabs.__version__}
    for dtype in (torch.float32, torch.float64):
        ref = sinabs_event_rasters(x, dtype)
        res[str(dtype).replace("torch.", "")] = {
            k: {"compared": int(r.size), "differ": int((fl.rasters[k][depths[k]:depths[k] + steps] != r).sum()),
                "rate": float(r.mean())} for k, r in ref.items()}
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--cnn-steps", type=int, default=120)
    ap.add_argument("--cnn-samples", type=int, default=4)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("--only", choices=("braille", "cnn"), default=None)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    out: dict = {}
    if args.only in (None, "braille"):
        out["braille"] = [braille(n, r, args.steps, args.samples, args.lava_samples) for n, r in BRAILLE.items()]
    if args.only in (None, "cnn"):
        out["cnn"] = cnn(args.cnn_steps, args.cnn_samples, min(args.lava_samples, 1))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    lava_ok = all(m.get("lava", {}).get("spikes_differ", 0) == 0 for b in out.get("braille", [])
                  for m in b["modes"].values()) and out.get("cnn", {}).get("lava", {}).get("spikes_differ", 0) == 0
    a0 = all(sum(b["modes"]["immediate"]["float_vs"]["a"].values()) == 0 for b in out.get("braille", []))
    b0 = all(sum(b["modes"]["snntorch"]["float_vs"]["b"].values()) == 0 for b in out.get("braille", []))
    print(f"nir_paper_sequences immediate_vs_a_zero={a0} snntorch_mode_vs_snntorch_zero={b0} lava_equal={lava_ok}")
    return out


if __name__ == "__main__":
    main()
