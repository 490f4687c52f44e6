"""snnc compile / simulate / inspect: the spine commands."""
from __future__ import annotations

import argparse
import time

import nir
import numpy as np
from snnc.commands._common import (
    add_cluster_arg,
    add_data_args,
    add_json,
    add_sim_args,
    load_data,
    load_model,
    need_labels,
    print_spike_table,
)
from snnc.ir import conventions as cv
from snnc.ir.errors import DataError


def convert_options(args: argparse.Namespace) -> "ConvertOptions":  # noqa: F821
    """ConvertOptions from the compile arguments (--method, --percentile, --v-init, --reset, --v-floor)."""
    from snnc.frontend.convert import ConvertOptions

    kw = {}
    if args.v_floor != "default":
        if args.v_floor == "none":
            kw["v_floor"] = None
        else:
            try:
                kw["v_floor"] = float(args.v_floor)
            except ValueError:
                raise DataError(f"--v-floor: expected a number, 'none' or 'default', got {args.v_floor!r}") \
                    from None
    return ConvertOptions(method=args.method, percentile=args.percentile,
                          v_init=args.v_init if args.v_init is not None else 0.5, reset=args.reset, **kw)


def _compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model.pt (torch.save(model); loaded with pickle: only trusted files) or a state "
                   "dict with --model-class, or an NIR file (.nir) from another tool")
    p.add_argument("-o", "--output", required=True, help="output NIR file (HDF5), written atomically")
    p.add_argument("--model-class", help="package.module:Class for a state-dict model.pt")
    add_data_args(p, "--calib")
    p.add_argument("--method", default="percentile", help="threshold balancing: max | percentile | qcfs")
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--v-init", type=float, default=None, help="initial potential as a fraction of the "
                   "threshold (default 0.5, Bu et al. 2022; 0 = start at rest)")
    p.add_argument("--reset", choices=["subtract", "zero"], default="subtract")
    p.add_argument("--v-floor", default="default", help="potential floor v >= -F*theta: F (a fraction of the "
                   "threshold, 1 = Sinabs' IAF floor), 'none', or 'default' (ConvertOptions' default)")
    p.add_argument("--no-bias-onset", action="store_true", help="keep Lava's bias-from-step-0 transient (by "
                   "default initial potentials are pre-charged so each layer's bias starts with its input)")
    p.add_argument("--bits", type=int, default=8, help="weight bits 1..8 (Loihi: 8-bit mantissa + exponent)")
    p.add_argument("--calib-steps", type=int, default=64, help="steps of the float run that measures potential "
                   "ranges (use the largest T you will run)")
    p.add_argument("--calibrate", type=int, default=None, metavar="T", help="layer calibration for T steps: per "
                   "layer a threshold factor and per-channel bias shift measured on the SNN against the ANN")
    p.add_argument("--calibrate-samples", type=int, default=128, help="calibration samples used by --calibrate")
    p.add_argument("--float-output", help="also write the float (unquantized) graph here")
    from snnc.commands._binarize import add_binarize_args

    add_binarize_args(p)
    add_json(p)


def compile_any(args: argparse.Namespace):
    """Model file or NIR file -> ``snnc.compile`` (float graph, integer graph, report)."""
    from snnc.pipeline import CompileOptions, compile

    xc, _ = load_data(args.calib, "train")
    if args.calibrate is not None and (args.calibrate < 1 or args.calibrate_samples < 1):
        raise DataError(f"--calibrate T and --calibrate-samples N must be >= 1, got T={args.calibrate}, "
                        f"N={args.calibrate_samples}")
    opts = CompileOptions(convert_options(args), weight_bits=args.bits, calib_steps=args.calib_steps,
                          bias_onset=not args.no_bias_onset, calibrate_steps=args.calibrate,
                          calibrate_samples=args.calibrate_samples)
    if str(args.model).endswith(".nir"):
        if args.calibrate is not None:
            raise DataError(f"--calibrate: {args.model} is an NIR graph; layer calibration compares against the "
                            "ANN's activations and needs the torch model")
        return compile(args.model, xc, opts)
    return compile(load_model(args.model, args.model_class), xc, opts)


def run_compile(args: argparse.Namespace) -> int:
    from snnc.ir.graph import write

    t0 = time.perf_counter()
    c = compile_any(args)
    from snnc.commands._binarize import apply_binarize, print_binarize_table

    c, bin_rep = apply_binarize(args, c)  # bin_rep: weight bytes/accuracy before/after, per-layer binarization
    write(c.int_graph, args.output)
    if args.float_output:
        write(c.float_graph, args.float_output)
    secs = time.perf_counter() - t0
    layers = [{"name": lq.name, "scale": lq.scale, "vth": lq.vth, "limit": lq.limit,
               "max_rel_weight_error": lq.max_rel_error(), "synapses": lq.synapses} for lq in c.report.layers]
    if args.json:
        from snnc.commands._common import print_json

        out = {"output": str(args.output), "seconds": secs, "stages": c.seconds,
               "input_scale": c.report.input_scale, "layers": layers}
        if bin_rep is not None:  # "layers" become the binarization rows; the quantization rows move
            out.update({"quant_layers": layers, **bin_rep})
        print_json(out)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"compiled {args.model} -> {args.output} in {secs:.2f} s")
    for col in ("layer", "scale (a_in/unit)", "vth", "set by", "synapse: exp, bits, max rel. weight error"):
        t.add_column(col)
    for lq in c.report.layers:
        syn = "; ".join(f"{k}: {v['weight_exp']}, {v['bits']}b, {v['max_rel_error']:.4f}" for k, v in lq.synapses.items())
        t.add_row(lq.name, f"{lq.scale:.2f}", str(lq.vth if lq.vth is not None else "-"), lq.limit, syn)
    Console().print(t)
    if bin_rep is not None:
        print_binarize_table(bin_rep)
    return 0


def _sim_args(p: argparse.ArgumentParser) -> None:
    add_sim_args(p, steps=32)
    p.add_argument("--strict", action="store_true", help="any wrap/saturation event is an error")
    add_cluster_arg(p)
    add_json(p)


def run_simulate(args: argparse.Namespace) -> int:
    from snnc.backends.cpu.simulator import simulate
    from snnc.ir.graph import read

    g = read(args.graph)
    x, y = load_data(args.data, "test", args.samples)
    y = need_labels(y, args.data)
    if args.steps < 1:
        raise DataError("--steps must be >= 1")
    if args.cluster:
        from snnc import cluster

        r = cluster.simulate(g, x, args.steps, args.cluster, batch_size=args.batch, device=args.device,
                             strict=args.strict, progress=not args.json)
    else:
        r = simulate(g, x, args.steps, batch_size=args.batch, device=args.device, strict=args.strict)
    acc = r.accuracy(y)
    out = {"accuracy": acc, "steps": r.steps, "latency_steps": r.latency_steps, "samples": r.samples,
           "kind": r.kind, "spikes_per_layer": r.spikes_per_layer, "samples_per_s": r.samples_per_s,
           "seconds": r.seconds, "events": {k: v for k, v in r.events.items() if sum(v.values())}}
    if args.json:
        from snnc.commands._common import print_json

        print_json(out)
        return 0
    print_spike_table(r, f"[bold]{args.graph}[/] ({r.kind} graph) on {args.data}: accuracy {acc:.4f} over "
                      f"{r.samples} samples, T={r.steps} (run lasts {r.latency_steps} steps), "
                      f"{r.samples_per_s:.1f} samples/s")
    return 0


def describe_node(name: str, node, shape: tuple) -> dict:
    """One row of ``snnc inspect``: type, shape, threshold, bits, exponent, reset, initial potential."""
    row = {"name": name, "type": type(node).__name__, "shape": list(shape)}
    if hasattr(node, "v_threshold"):
        th = np.asarray(node.v_threshold, dtype=np.float64)
        row["threshold"] = float(th.max()) if th.size else None
    if cv.is_neuron(node):
        row["reset"] = cv.reset_mode(node)
        vi = cv.meta(node, cv.V_INIT, 0.0)
        row["v_init"] = float(np.max(vi)) if vi is not None else 0.0
        if cv.meta(node, cv.READOUT, False) or isinstance(node, nir.I):
            row["readout"] = True
    if hasattr(node, "weight"):
        w = np.asarray(node.weight)
        row["weights"] = int(w.size)
        row["weight_bits"] = cv.meta(node, cv.WEIGHT_BITS)
        row["weight_exp"] = cv.meta(node, cv.WEIGHT_EXP)
        row["binary"] = bool(cv.meta(node, cv.BINARY, False))
    return row


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("graph", help="any NIR file")
    add_json(p)


def run_inspect(args: argparse.Namespace) -> int:
    from snnc.ir.graph import infer_shapes, read, topo_order

    g = read(args.graph)
    shapes = infer_shapes(g)
    rows = [describe_node(n, g.nodes[n], shapes[n]) for n in topo_order(g)]
    kind = cv.graph_kind(g)
    info = {"file": str(args.graph), "kind": kind, "nodes": rows, "edges": [list(e) for e in g.edges],
            "input_scale": cv.meta(g, cv.INPUT_SCALE)}
    try:
        from snnc.frontend.nir_import import deployability

        info["deployable"] = deployability(g)
    except ImportError:
        pass
    if args.json:
        from snnc.commands._common import print_json

        print_json(info)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{args.graph}: {kind} graph, {len(rows)} nodes, {len(g.edges)} edges")
    cols = ("name", "type", "shape", "threshold", "reset", "v_init", "weights", "weight_bits", "weight_exp")
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[("-" if r.get(c) is None else (f"{r[c]:g}" if isinstance(r.get(c), float) else str(r[c])))
                    for c in cols])
    Console().print(t)
    return 0


COMMANDS = [
    ("compile", "torch model (or NIR file) -> converted, quantized integer SNN as an NIR file", _compile_args,
     run_compile),
    ("simulate", "run an NIR graph on the bit-accurate CPU simulator: accuracy, spikes per layer", _sim_args,
     run_simulate),
    ("inspect", "table of an NIR file's nodes, shapes, thresholds and bit widths", _inspect_args, run_inspect),
]
