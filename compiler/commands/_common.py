"""Arguments and loaders shared by the CLI commands: model files, data sets, graphs."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from snnc.ir.errors import DataError, UnsupportedLayerError


def add_data_args(p: argparse.ArgumentParser, name: str = "--data", default: str = "digits") -> None:
    p.add_argument(name, default=default, help="'digits' (built in: scikit-learn digits, fixed split) or an .npz "
                   "with float x (N,C,H,W or N,features) and integer y")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def load_model(path: str, model_class: str | None = None) -> Any:
    """A whole module saved with torch.save(model), or a state dict plus ``package.module:Class``.

    Loading uses pickle (weights_only=False): only load files you trust."""
    import torch

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such model file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataError(f"{p}: not a loadable torch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        if not model_class:
            raise DataError(f"{p}: holds a state dict; pass --model-class package.module:Class to build the model")
        mod_name, _, cls_name = model_class.partition(":")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as e:
            raise DataError(f"--model-class {model_class!r}: cannot import ({e})") from None
        model = cls()
        try:
            model.load_state_dict(obj)
        except Exception as e:
            raise DataError(f"{p}: state dict does not fit {model_class}: {e}") from None
        return model.eval()
    raise UnsupportedLayerError(f"{p}: holds a {type(obj).__name__}, expected an nn.Module or a state dict")


def load_data(spec: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    from snnc.data import load_dataset

    x, y = load_dataset(spec, split)
    if limit is not None:
        x, y = x[:limit], (y[:limit] if y is not None else None)
    return x, y


def need_labels(y: Any, spec: str) -> np.ndarray:
    if y is None:
        raise DataError(f"{spec}: has no labels 'y'; accuracy needs them")
    return y



def add_sim_args(p: argparse.ArgumentParser, steps: int = 32) -> None:
    """graph, --data, --steps, --samples, --batch, --device: what every simulating command takes."""
    p.add_argument("graph", help="NIR file written by snnc compile (integer or float graph)")
    add_data_args(p)
    p.add_argument("--steps", type=int, default=steps, help="input steps T the output integrates "
                   "(a run lasts T + depth steps)")
    p.add_argument("--samples", type=int, default=None, help="use only the first N test samples")
    p.add_argument("--batch", type=int, default=360, help="samples per simulator batch")
    p.add_argument("--device", default="cpu", help="torch device for the simulator (cpu, cuda)")


def add_cluster_arg(p: argparse.ArgumentParser, what: str = "samples") -> None:
    """--cluster: shard the work over Ray workers (snnc.cluster; needs pip install 'snnc[cluster]')."""
    p.add_argument("--cluster", metavar="SPEC", help=f"shard the {what} over Ray workers: local (one per core), "
                   "local:N, or ray://HOST:PORT (an existing cluster); needs pip install 'snnc[cluster]'")


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
