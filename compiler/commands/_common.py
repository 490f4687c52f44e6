"""Arguments, loaders and checks shared by the CLI commands: model files, data sets (--calib / --data, one meaning
everywhere: snnc.dataspec), graphs (specs: snnc.argspec)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from snnc.argspec import MAX_STEPS, Cluster, DataSet, Device, InFile, Int, add, constrain
from snnc.ir.errors import DataError, GraphError, NIRFileError

DATA_FORMS = ("'digits' (built in: scikit-learn digits, fixed 1437/360 split), 'digits:train|test|all', "
              "'digits-events[:SPLIT]' (the same digits as DVS event streams, N x 30 x 2 x 10 x 10), FILE.npz "
              "(arrays x: float N,C,H,W or N,features, or sequences N,T,... decided against the graph's Input; y: "
              "integer labels) or FILE.npz:NAME (arrays x_NAME, y_NAME)")
CALIB_HELP = ("calibration data: what the compiler fits on (thresholds, quantization ranges, layer calibration, "
              "fine-tuning; --binarize holds a validation part out of all of these). Without a split: digits:train, "
              "or an .npz's x/y, else its x_train/y_train. Default: the source of --data, else digits. ")
DATA_HELP = ("evaluation data: what accuracy is reported on. Without a split: digits:test, or an .npz's x/y, else "
             "its x_test/y_test. Default: the source of --calib, else digits. ")


def add_data_args(p: argparse.ArgumentParser, calib: bool = True, data: bool = True, calib_note: str = "") -> None:
    """--calib and --data with one meaning in every command (``snnc.dataspec``)."""
    if calib:
        add(p, "--calib", spec=DataSet(), default=None, metavar="SPEC", help=CALIB_HELP + calib_note + DATA_FORMS)
    if data:
        add(p, "--data", spec=DataSet(), default=None, metavar="SPEC", help=DATA_HELP + DATA_FORMS)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def add_trust_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-pickle", action="store_true", help="allow a whole pickled nn.Module (torch.save(model)): "
                   "unpickling runs code from the file, so only for files you trust (state dicts and torch.export "
                   ".pt2 programs load without it)")


# ---- loaders: each file is read once per command, by the checks before the command and by the command itself ----
_MEMO: dict[tuple, Any] = {}


def _once(key: tuple, fn: Callable[[], Any]) -> Any:
    if key not in _MEMO:
        _MEMO[key] = fn()
    return _MEMO[key]


def forget() -> None:
    """Drop what this command loaded (the CLI calls it when a command ends)."""
    _MEMO.clear()


def load_model(path: str, model_class: str | None = None, trust_pickle: bool = False) -> Any:
    """``snnc.model_file.load_model``, once per command."""
    from snnc.model_file import load_model as load

    return _once(("model", path, model_class, trust_pickle), lambda: load(path, model_class, trust_pickle))


def load_data_args(args: argparse.Namespace, calib: bool, evaluation: bool,
                   limit: int | None = None) -> tuple[Any, Any]:
    """(calibration ``Data`` or None, evaluation ``Data`` or None) from --calib / --data (``snnc.dataspec``), each
    loaded once per command; ``limit``: the first N evaluation samples."""
    from snnc.dataspec import default_specs, load

    cs, es = default_specs(getattr(args, "calib", None), getattr(args, "data", None))
    c = _once(("data", cs, "calib"), lambda: load(cs, "calib")) if calib else None
    e = _once(("data", es, "eval"), lambda: load(es, "eval")).first(limit) if evaluation else None
    return c, e


def seen_in_calib(data: dict) -> int:
    """How many evaluation samples of a report's ``data`` object also occur in the calibration data."""
    return data["eval"]["samples"] if data.get("eval_is_calib") else data.get("eval_samples_in_calib", 0)


def warn_overlap(data: dict) -> None:
    """One stderr line when evaluation samples also occur in the calibration data (``data_report``,
    ``graph_data_report``)."""
    k = seen_in_calib(data)
    if k:
        cal = data["calib"].get("spec") or f"the {data['calib']['samples']} samples the graph was compiled with"
        print(f"snnc: warning: {k} of {data['eval']['samples']} evaluation samples ({data['eval']['spec']}) are also "
              f"in the calibration data ({cal}): accuracy is not measured on unseen data", file=sys.stderr)


def graph_to_run(args: argparse.Namespace) -> tuple[Any, Any]:
    """(graph, calibration ``Data`` or None) for a simulating command: an snnc graph is run as compiled (--calib is
    refused by ``calib_applies``); another tool's NIR graph is compiled first, default options, on --calib."""
    from snnc.ir import conventions as cv

    g = read_graph(args.graph)
    if cv.KIND in (g.metadata or {}):
        return g, None
    import snnc

    calib, _ = load_data_args(args, calib=True, evaluation=False)
    return _once(("compiled", args.graph, calib.spec), lambda: snnc.compile(g, calib.x).int_graph), calib


def calib_applies(args: argparse.Namespace) -> None:
    """--calib on a simulating command: only for a graph snnc has not compiled (it is compiled on that data)."""
    from snnc.ir import conventions as cv

    if getattr(args, "calib", None) is None:
        return
    g = read_graph(args.graph)
    if cv.KIND in (g.metadata or {}):
        raise DataError(f"--calib: {args.graph} is already compiled by snnc ({cv.graph_kind(g)} graph); calibration "
                        "data would not be used (it applies to another tool's NIR file, compiled first)")


def run_data_report(graph: Any, calib: Any, evaluation: Any) -> dict:
    """The ``data`` object of a simulating command's report (``snnc.dataspec``)."""
    from snnc.dataspec import data_report, graph_data_report

    return data_report(calib, evaluation) if calib is not None else graph_data_report(graph, evaluation)


@dataclass
class RunInputs:
    """What a simulating command runs: the graph, the evaluation ``Data``, T, and the report's ``data`` object."""

    graph: Any
    evaluation: Any  # snnc.dataspec.Data: --data, its first --samples samples
    steps: int  # T the output integrates (``run_steps``)
    data: dict | None  # ``run_data_report`` (None when not reported)


def run_inputs(args: argparse.Namespace, report: bool = True) -> RunInputs:
    """The graph (another tool's NIR graph compiled first, ``graph_to_run``), the evaluation data, T and, when
    ``report``, the ``data`` object (an overlap with the calibration data warned on stderr)."""
    g, calib = graph_to_run(args)
    _, ev = load_data_args(args, calib=False, evaluation=True, limit=args.samples)
    data = None
    if report:
        data = run_data_report(g, calib, ev)
        warn_overlap(data)
    steps, _ = run_steps(args, g, ev.x)
    return RunInputs(g, ev, steps, data)


def read_graph(path: str) -> Any:
    """The NIR graph in ``path`` (``snnc.ir.graph.read``), once per command."""
    from snnc.ir.graph import read

    return _once(("graph", path), lambda: read(path))


def data_fits_graph(labels: bool = True, integer: bool = False) -> Callable[[argparse.Namespace], None]:
    """Check for graph + --data commands: the graph reads and validates (an integer one when ``integer``), the data
    set loads and is not empty, its samples have the graph's input shape, and it has labels when ``labels``."""
    def check(args: argparse.Namespace) -> None:
        from snnc.ir import conventions as cv
        from snnc.ir.plan import build_plan
        from snnc.ir.sequence import input_series

        g = read_graph(args.graph)
        if integer and cv.graph_kind(g) != cv.INTEGER:
            raise GraphError(f"{args.graph}: is a float graph; Lava runs integer graphs (snnc compile writes one)")
        _, ev = load_data_args(args, calib=False, evaluation=True, limit=args.samples)
        try:
            plan = build_plan(g)
            input_series(plan.shapes[plan.input], ev.x, plan.input)  # a static frame or a sequence per sample
        except DataError as e:
            raise DataError(f"--data {ev.spec}: {e}") from None
        if labels:
            ev.labels()
    return check


def add_steps_arg(p: argparse.ArgumentParser, steps: int) -> None:
    """--steps T: default ``steps`` for static frames, the sequence's length for sequences (``run_steps``)."""
    add(p, "--steps", spec=Int(lo=1, hi=MAX_STEPS), default=None, help=f"input steps T the output integrates (a run "
        f"lasts T + depth steps); default {steps} for static frames, the sequence length for sequences (longer: a "
        "silent tail, shorter: the sequence cut)")
    p.set_defaults(static_steps=steps)


def run_steps(args: argparse.Namespace, graph: Any, x: np.ndarray) -> tuple[int, bool]:
    """(T, whether x is a sequence) for ``graph``: --steps when given, else the sequence's length or the command's
    static default; DataError for data that fits neither layout or T < 1."""
    from snnc.ir.plan import build_plan
    from snnc.ir.sequence import input_series

    plan = build_plan(graph)
    series = input_series(plan.shapes[plan.input], x, plan.input)
    if args.steps is not None and args.steps < 1:
        raise DataError(f"--steps must be >= 1, got {args.steps}")
    steps = args.steps if args.steps is not None else (series.steps_in if series.sequence else args.static_steps)
    return int(steps), series.sequence


def add_sim_args(p: argparse.ArgumentParser, steps: int = 32) -> None:
    """graph, --calib, --data, --steps, --samples, --batch, --device: what every simulating command takes."""
    add(p, "graph", spec=InFile(what="NIR file", error=NIRFileError),
        help="NIR file written by snnc compile (integer or float graph), or another tool's NIR file (compiled "
        "first, default options, on --calib)")
    add_data_args(p, calib_note="Only for another tool's NIR file (an snnc graph records what it was compiled "
                  "on). ")
    add_steps_arg(p, steps)
    add(p, "--samples", spec=Int(lo=1), default=None, help="use only the first N evaluation samples")
    add(p, "--batch", spec=Int(lo=1), default=360, help="samples per simulator batch")
    add(p, "--device", spec=Device(), default="cpu", help="torch device for the simulator (cpu, cuda, cuda:N, mps); "
        "one this machine lacks is a BackendError")
    constrain(p, data_fits_graph(labels=True))
    constrain(p, calib_applies)


def add_cluster_arg(p: argparse.ArgumentParser, what: str = "samples") -> None:
    """--cluster: shard the work over Ray workers (snnc.cluster; needs pip install 'snnc[cluster]')."""
    add(p, "--cluster", spec=Cluster(), metavar="SPEC", help=f"shard the {what} over Ray workers: local (one per "
        "core), local:N, or ray://HOST:PORT (an existing cluster); needs pip install 'snnc[cluster]'")


def print_spike_table(r: Any, title: str, events: bool = True) -> None:
    """Rich table of a run: per spiking layer, neurons, spikes, spikes/neuron/step (and overflow events)."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(title)
    t = Table()
    cols = ["layer", "neurons", "spikes", "spikes/neuron/step"] + (["wrap/saturation events"] if events else [])
    for col in cols:
        t.add_column(col)
    for n, s in r.spikes_per_layer.items():
        nn_ = r.neurons_per_layer[n]
        row = [n, str(nn_), str(s), f"{s / (nn_ * r.samples * r.latency_steps):.4f}"]
        if events:
            row.append(str(sum(getattr(r, "events", {}).get(n, {}).values())))
        t.add_row(*row)
    con.print(t)


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (numpy scalars/arrays converted)."""
    import numpy as np

    def conv(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    sys.stdout.write(json.dumps(obj, default=conv) + "\n")
