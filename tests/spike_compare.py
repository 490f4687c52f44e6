"""Spike-for-spike comparison of another simulator's rasters with snnc's float simulation, and MEASURE records.

snnc (like Lava) delays every connection by one step, so a layer ``k`` connections from the Input spikes ``k``
steps after the same layer in a framework that does not delay (``build_plan(graph).depths``).
A comparison says something only where the layers are active: ``require_activity`` asks every compared layer's
spike rate to lie in (0.02, 0.9).
A ``MEASURE`` record (printed, and appended as one JSON line to ``$SNNC_MEASURE_FILE`` when set; the interop nox
sessions set it) is one row of the interop table in docs/interop.md.
``converted_mlp`` is the snnc graph the frameworks' readers are given.
(Imported as a top-level module: pytest puts ``tests/`` on sys.path for its conftest.)
"""
from __future__ import annotations

import json
import os

import nir
import numpy as np

RATE_RANGE = (0.02, 0.9)


def require_activity(rasters: dict[str, np.ndarray]) -> None:
    """Every layer's spike rate (spikes per neuron per step) in RATE_RANGE, else the comparison is vacuous."""
    rates = {k: float(np.mean(r)) for k, r in rasters.items()}
    assert rasters and all(RATE_RANGE[0] < r < RATE_RANGE[1] for r in rates.values()), rates


def snnc_rasters(graph: nir.NIRGraph, x: np.ndarray, steps: int, names: list[str] | None = None
                 ) -> dict[str, np.ndarray]:
    """snnc's float (or integer) simulation of ``graph`` on the static input ``x``: per spiking layer the
    ``steps`` steps from the one its first input arrives, (steps, N, *shape) bool."""
    from snnc.ir.plan import build_plan
    from snnc.backends.cpu.simulator import simulate

    depth = build_plan(graph).depths
    res = simulate(graph, np.asarray(x, np.float64), steps, rasters=True)
    keys = names if names is not None else [k for k in res.rasters if np.any(res.rasters[k])]
    return {k: res.rasters[k][depth[k]:depth[k] + steps] for k in keys}


def mismatches(ref: dict[str, np.ndarray], mine: dict[str, np.ndarray]) -> dict[str, int]:
    """Per layer, how many (step, sample, neuron) spike entries differ; shapes must agree up to a reshape."""
    out = {}
    for k, r in ref.items():
        assert k in mine, f"snnc has no layer {k!r} (has {sorted(mine)})"
        assert mine[k].size == r.size, (k, mine[k].shape, r.shape)
        out[k] = int((mine[k].reshape(r.shape) != r).sum())
    return out


def measure(framework: str, version: str, direction: str, test: str, compared: int, differing: int,
            note: str = "") -> dict:
    """Print (and record) one row of the interop table."""
    row = {"framework": framework, "version": version, "direction": direction, "compared": int(compared),
           "differing": int(differing), "test": test, "note": note}
    print("MEASURE", json.dumps(row))
    path = os.environ.get("SNNC_MEASURE_FILE")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return row


def compare_and_measure(framework: str, version: str, direction: str, test: str,
                        ref: dict[str, np.ndarray], mine: dict[str, np.ndarray], note: str = "") -> dict[str, int]:
    """require_activity on the reference, mismatches, one MEASURE row; returns the per-layer mismatches."""
    require_activity(ref)
    mism = mismatches(ref, mine)
    measure(framework, version, direction, test, sum(r.size for r in ref.values()), sum(mism.values()), note)
    return mism


def converted_mlp(reset: str):
    """(snnc.compile result, its 16 x 8 calibration inputs) of a bias-free 8 -> 24 -> 16 -> 4 MLP converted by snnc,
    starting at rest, no bias onset, no floor (the frameworks' neurons start at 0 and are not floored)."""
    import snnc
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 24, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(24, 16, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4, bias=False))
    x = np.random.default_rng(0).random((16, 8))
    return snnc.compile(model, x, v_init=0.0, bias_onset=False, v_floor=None, reset=reset), x
