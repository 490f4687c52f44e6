"""snnc compile / simulate / inspect: the spine commands."""
from __future__ import annotations

import argparse
import time
from typing import Any

import nir
import numpy as np
from snnc.argspec import MAX_STEPS, Choice, Float, InFile, Int, Literal, OneOf, OutFile, Text, add, constrain
from snnc.commands._common import (
    add_cluster_arg,
    add_data_args,
    add_json,
    add_sim_args,
    add_trust_pickle,
    load_data_args,
    load_model,
    print_spike_table,
    read_graph,
    run_inputs,
    seen_in_calib,
    warn_overlap,
)
from snnc.ir import conventions as cv
from snnc.ir.errors import DataError, GraphError, NIRFileError, UsageError

MODEL_CLASS = Text(pattern=r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", what="package.module:Class")
TIMING = r"(immediate|delayed|guarded)"
RESET_TIMING = Text(pattern=rf"{TIMING}|[^=,\s]+={TIMING}(,[^=,\s]+={TIMING})*", what="TIMING or NODE=TIMING,...")
V_FLOOR = OneOf(specs=(Literal(word="default", value="default"), Literal(word="none", value=None), Float(lo=0)))


def convert_options(args: argparse.Namespace) -> "ConvertOptions":  # noqa: F821
    """ConvertOptions from the compile arguments (--method, --percentile, --v-init, --reset, --v-floor)."""
    from snnc.frontend.convert import ConvertOptions

    kw = {} if args.v_floor == "default" else {"v_floor": args.v_floor}
    return ConvertOptions(method=args.method, percentile=args.percentile,
                          v_init=args.v_init if args.v_init is not None else 0.5, reset=args.reset, **kw)


def _compile_args(p: argparse.ArgumentParser) -> None:
    add(p, "model", spec=InFile(what="model file"), help="a state dict with --model-class, a torch.export program "
        "(.pt2), a whole pickled module (torch.save(model); needs --trust-pickle), or an NIR file (.nir) from "
        "another tool")
    add(p, "-o", "--output", spec=OutFile(what="NIR file", error=NIRFileError), required=True,
        help="output NIR file (HDF5), written atomically")
    add(p, "--model-class", spec=MODEL_CLASS, help="package.module:Class for a state-dict model.pt")
    add_trust_pickle(p)
    add_data_args(p)
    add(p, "--method", spec=Choice(choices=("max", "percentile", "qcfs")), default="percentile",
        help="threshold balancing: max | percentile | qcfs (ClipFloor models)")
    add(p, "--percentile", spec=Float(lo=0, hi=100, open_lo=True), default=99.99)
    add(p, "--v-init", spec=Float(lo=0, hi=1), default=None, help="initial potential as a fraction of the "
        "threshold (default 0.5, Bu et al. 2022; 0 = start at rest)")
    add(p, "--reset", spec=Choice(choices=("subtract", "zero")), default="subtract")
    add(p, "--v-floor", spec=V_FLOOR, default="default", help="potential floor v >= -F*theta: F >= 0 (a fraction "
        "of the threshold, 1 = Sinabs' IAF floor), 'none', or 'default' (ConvertOptions' default)")
    p.add_argument("--no-bias-onset", action="store_true", help="keep Lava's bias-from-step-0 transient (by "
                   "default initial potentials are pre-charged so each layer's bias starts with its input)")
    add(p, "--bits", spec=Int(lo=1, hi=8), default=8, help="weight bits 1..8 (Loihi: 8-bit mantissa + exponent)")
    add(p, "--calib-steps", spec=Int(lo=1, hi=MAX_STEPS), default=64, help="steps of the float run that measures "
        "potential ranges (use the largest T you will run)")
    add(p, "--calibrate", spec=Int(lo=1, hi=MAX_STEPS), default=None, metavar="T", help="layer calibration for T "
        "steps: per layer a threshold factor and per-channel bias shift measured on the SNN against the ANN")
    add(p, "--calibrate-samples", spec=Int(lo=1), default=128, help="calibration samples used by --calibrate")
    p.add_argument("--calib-sequence", action="store_true", help="torch models: the --calib data are sequences "
                   "(N, T, ...) (implied by --calib digits-events): the ANN is calibrated on their time-average, the "
                   "range run and the input scale use the sequences (NIR graphs decide it by their Input shape)")
    add(p, "--float-output", spec=OutFile(what="NIR file", error=NIRFileError),
        help="also write the float (unquantized) graph here")
    add(p, "--nir-reset", spec=Choice(choices=("file", "subtract", "zero")), default="file", help="NIR graphs: "
        "every spiking node's reset (default: as the file says)")
    add(p, "--reset-timing", spec=RESET_TIMING, default=None, metavar="TIMING|NODE=TIMING,...", help="NIR graphs: "
        "when a spike resets: immediate (default: NIR, Lava), delayed (snnTorch reset_delay=True and its "
        "RSynaptic), guarded (snnTorch reset_delay=False); one for all or per node")
    add(p, "--loops", spec=Choice(choices=("exact", "per_connection")), default="exact", help="NIR graphs: refuse a "
        "recurrent loop through more than one neuron layer (exact: a framework takes one step around it, snnc one "
        "per connection) or accept it with one step per connection")
    from snnc.commands._binarize import add_binarize_args

    add_binarize_args(p)
    add_json(p)
    constrain(p, _compile_inputs)


def _compile_inputs(args: argparse.Namespace) -> None:
    """Before compiling: the calibration data loads, and the model loads (safely) or is a float NIR graph."""
    from snnc.ir import conventions as cv

    calib, ev = load_data_args(args, calib=True, evaluation=args.data is not None)  # --data: with --binarize
    lead = 2 if (args.calib_sequence or calib_source(args) == "digits-events") else 1  # sequences: any length T
    if ev is not None and ev.x.shape[lead:] != calib.x.shape[lead:]:
        raise DataError(f"--data {ev.spec}: samples of shape {tuple(ev.x.shape[1:])} do not match the calibration "
                        f"data's {tuple(calib.x.shape[1:])} (--calib {calib.spec}): both go into the same model")
    if args.calibrate and args.reset == "zero":
        raise UsageError("--calibrate: layer calibration runs IF layers with subtractive reset; --reset is zero")
    if str(args.model).endswith(".nir"):
        for flag, val in (("--calibrate", args.calibrate), ("--finetune", args.finetune)):
            if val:
                raise DataError(f"{flag}: {args.model} is an NIR graph; it compares against (or trains) the torch "
                                "model and needs it")
        if cv.graph_kind(read_graph(args.model)) == cv.INTEGER:
            raise GraphError(f"{args.model}: is already an integer graph; snnc compile takes a torch model or a "
                             "float NIR graph")
    else:
        load_model(args.model, args.model_class, args.trust_pickle)


def import_options(args: argparse.Namespace) -> "ImportOptions":  # noqa: F821
    """ImportOptions from --nir-reset, --reset-timing (TIMING or NODE=TIMING,...) and --loops."""
    from snnc.frontend.nir_import import ImportOptions

    timing = args.reset_timing
    if timing is not None and "=" in timing:
        pairs = [t.split("=", 1) for t in timing.split(",") if t.strip()]
        if any(len(pr) != 2 for pr in pairs):
            raise DataError(f"--reset-timing: expected TIMING or NODE=TIMING,..., got {args.reset_timing!r}")
        timing = {k.strip(): v.strip() for k, v in pairs}
    return ImportOptions(reset=None if args.nir_reset == "file" else args.nir_reset, reset_timing=timing,
                         loops=args.loops)


def calib_source(args: argparse.Namespace) -> str:
    """The data set --calib names (``snnc.dataspec``: the source of --data when --calib is absent)."""
    from snnc.dataspec import default_specs, parse_spec

    return parse_spec(default_specs(args.calib, args.data)[0])[0]


def compile_options(args: argparse.Namespace) -> "CompileOptions":  # noqa: F821
    """CompileOptions from the compile arguments."""
    from snnc.pipeline import CompileOptions

    return CompileOptions(convert_options(args), weight_bits=args.bits, calib_steps=args.calib_steps,
                          bias_onset=not args.no_bias_onset, calibrate_steps=args.calibrate,
                          calibrate_samples=args.calibrate_samples,
                          calib_sequence=bool(args.calib_sequence or calib_source(args) == "digits-events"),
                          import_options=import_options(args))


def compile_source(args: argparse.Namespace) -> Any:
    """The torch model (loaded safely) or the NIR graph to compile (``_compile_inputs`` refused --calibrate and
    --finetune for NIR graphs)."""
    if str(args.model).endswith(".nir"):
        return read_graph(args.model)
    return load_model(args.model, args.model_class, args.trust_pickle)


def run_compile(args: argparse.Namespace) -> int:
    from snnc.commands._binarize import binarize_options, print_binarize_table, wants_binarize
    from snnc.dataspec import data_report
    from snnc.ir.graph import write
    from snnc.pipeline import Compiled, compile

    t0 = time.perf_counter()
    opts = compile_options(args)
    binarizing = wants_binarize(args)
    bopts = binarize_options(args) if binarizing else None
    source = compile_source(args)
    calib, ev = load_data_args(args, calib=True, evaluation=binarizing)
    bin_rep = None
    if binarizing:
        from snnc.binarize_search import compile_binarized

        o = compile_binarized(source, calib, ev, bopts, opts)
        c = Compiled(o.float_graph, o.int_graph, o.report, o.seconds)
        bin_rep = o.as_dict()  # weight bytes/accuracy before/after, per-layer estimators, which data
        data = bin_rep["data"]
        warn_overlap(data)
    else:
        c = compile(source, calib.x, opts)
        data = data_report(calib)
    write(c.int_graph, args.output)
    if args.float_output:
        write(c.float_graph, args.float_output)
    secs = time.perf_counter() - t0
    layers = [{"name": lq.name, "scale": lq.scale, "vth": lq.vth, "limit": lq.limit,
               "max_rel_weight_error": lq.max_rel_error(), "synapses": lq.synapses} for lq in c.report.layers]
    if args.json:
        from snnc.commands._common import print_json

        out = {"output": str(args.output), "seconds": secs, "stages": c.seconds,
               "input_scale": c.report.input_scale, "layers": layers, "data": data}
        if bin_rep is not None:  # "layers" become the binarization rows; the quantization rows move
            out.update({"quant_layers": layers, **bin_rep})
        print_json(out)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"compiled {args.model} -> {args.output} in {secs:.2f} s (calibration data "
                    f"{data.get('fit', data['calib'])['spec']}, {data.get('fit', data['calib'])['samples']} samples)")
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

    ri = run_inputs(args)
    g, ev, steps, data = ri.graph, ri.evaluation, ri.steps, ri.data
    x, y = ev.x, ev.labels()
    if args.cluster:
        from snnc import cluster

        r = cluster.simulate(g, x, steps, args.cluster, batch_size=args.batch, device=args.device,
                             strict=args.strict, progress=not args.json)
    else:
        r = simulate(g, x, steps, batch_size=args.batch, device=args.device, strict=args.strict)
    acc = r.accuracy(y)
    out = {"accuracy": acc, "steps": r.steps, "latency_steps": r.latency_steps, "samples": r.samples,
           "kind": r.kind, "sequence": r.sequence, "input_steps": r.input_steps,
           "spikes_per_layer": r.spikes_per_layer, "samples_per_s": r.samples_per_s,
           "seconds": r.seconds, "events": {k: v for k, v in r.events.items() if sum(v.values())},
           "data": data, "measured_on": {"accuracy": "eval"}}
    if args.json:
        from snnc.commands._common import print_json

        print_json(out)
        return 0
    what = f"sequences of {r.input_steps} steps" if r.sequence else "static frames"
    print_spike_table(r, f"[bold]{args.graph}[/] ({r.kind} graph): accuracy {acc:.4f} on {ev.spec} ({r.samples} "
                      f"evaluation samples, {what}{_seen_note(data)}), T={r.steps} (run lasts {r.latency_steps} "
                      f"steps), {r.samples_per_s:.1f} samples/s")
    return 0


def _seen_note(data: dict) -> str:
    """', N also in the calibration data' (or nothing) for table titles."""
    k = seen_in_calib(data)
    return f", {k} of them also in the calibration data" if k else ""


def describe_node(name: str, node, shape: tuple) -> dict:
    """One row of ``snnc inspect``: type, shape, threshold, bits, exponent, reset, initial potential."""
    row = {"name": name, "type": type(node).__name__, "shape": list(shape)}
    if hasattr(node, "v_threshold"):
        th = np.asarray(node.v_threshold, dtype=np.float64)
        row["threshold"] = float(th.max()) if th.size else None
    if cv.is_neuron(node):
        row["reset"] = cv.reset_mode(node)
        if cv.reset_timing(node) != "immediate":
            row["reset_timing"] = cv.reset_timing(node)
        if cv.meta(node, cv.DRIVE, False):
            row["drive"] = True
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


def _loops(g) -> list[dict]:
    """Recurrent loops through neuron layers, each with the steps it takes (one per connection); [] when the graph
    is feed-forward or cannot be planned (a foreign graph: see ``deployable``)."""
    from snnc.ir.errors import SnncError
    from snnc.ir.plan import build_plan

    try:
        return [{"layers": lp, "steps": len(lp)} for lp in build_plan(g).loops]
    except SnncError:
        return []


def _inspect_args(p: argparse.ArgumentParser) -> None:
    add(p, "graph", spec=InFile(what="NIR file", error=NIRFileError), help="any NIR file")
    add_json(p)


def run_inspect(args: argparse.Namespace) -> int:
    from snnc.ir.graph import infer_shapes, topo_order

    from snnc.ir.graph import back_edges

    g = read_graph(args.graph)
    shapes = infer_shapes(g)
    rows = [describe_node(n, g.nodes[n], shapes[n]) for n in topo_order(g)]
    kind = cv.graph_kind(g)
    info = {"file": str(args.graph), "kind": kind, "nodes": rows, "edges": [list(e) for e in g.edges],
            "input_scale": cv.meta(g, cv.INPUT_SCALE), "recurrent_edges": [list(e) for e in back_edges(g)],
            "loops": _loops(g)}
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
    for lp in info["loops"]:
        t.caption = (t.caption + "; " if t.caption else "") + (
            f"recurrent loop {' -> '.join(lp['layers'] + lp['layers'][:1])}: {lp['steps']} step(s) around")
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
