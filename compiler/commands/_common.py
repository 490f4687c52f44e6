"""Arguments, loaders and checks shared by the CLI commands: model files, data sets, graphs (specs: snnc.argspec)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import numpy as np
from snnc.argspec import MAX_STEPS, Cluster, DataSet, Device, InFile, Int, add, constrain
from snnc.ir.errors import DataError, GraphError, NIRFileError


def add_data_args(p: argparse.ArgumentParser, name: str = "--data", default: str = "digits") -> None:
    add(p, name, spec=DataSet(), default=default, help="'digits' (built in: scikit-learn digits, fixed split), "
        "'digits-events' (the same digits as DVS event streams, N x 30 x 2 x 10 x 10) or an .npz with float x "
        "(N,C,H,W or N,features; or sequences N,T,...: decided against the graph's Input) and integer y")


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


def load_data(spec: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A data set's split (``snnc.data.load_dataset``), its first ``limit`` samples; once per command."""
    from snnc.data import load_dataset

    x, y = _once(("data", spec, split), lambda: load_dataset(spec, split))
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    return x, y


def read_graph(path: str) -> Any:
    """The NIR graph in ``path`` (``snnc.ir.graph.read``), once per command."""
    from snnc.ir.graph import read

    return _once(("graph", path), lambda: read(path))


def need_labels(y: Any, spec: str) -> np.ndarray:
    if y is None:
        raise DataError(f"{spec}: has no labels 'y'; accuracy needs them")
    return y


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
        x, y = load_data(args.data, "test", args.samples)
        try:
            plan = build_plan(g)
            input_series(plan.shapes[plan.input], x, plan.input)  # a static frame or a sequence per sample
        except DataError as e:
            raise DataError(f"--data {args.data}: {e}") from None
        if labels:
            need_labels(y, args.data)
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
    """graph, --data, --steps, --samples, --batch, --device: what every simulating command takes."""
    add(p, "graph", spec=InFile(what="NIR file", error=NIRFileError),
        help="NIR file written by snnc compile (integer or float graph)")
    add_data_args(p)
    add_steps_arg(p, steps)
    add(p, "--samples", spec=Int(lo=1), default=None, help="use only the first N test samples")
    add(p, "--batch", spec=Int(lo=1), default=360, help="samples per simulator batch")
    add(p, "--device", spec=Device(), default="cpu", help="torch device for the simulator (cpu, cuda, cuda:N, mps); "
        "one this machine lacks is a BackendError")
    constrain(p, data_fits_graph(labels=True))


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
