"""ALBSNN layer selection (a search that runs the simulator, so not a pass): estimate each layer's accuracy loss if binarized alone, then pick layers greedily.

Estimators (per weighted synapse, binarized alone, everything else unchanged):
  weight_error  ||W - alpha sign W|| / ||W||                       (data-free)
  output_error  ||f(W) - f(alpha sign W)|| / ||f(W)||, f = the synapse (weights + bias) applied to the layer's
                input firing rates of the float SNN on calibration data (x itself for the first layer)
  float_drop    accuracy of the float SNN on calibration data at T steps, minus the same with the layer binarized
                (points, i.e. percent); this one is in accuracy units and drives the budget
Measured drop (the truth the estimators are ranked against): integer-simulator accuracy on evaluation data, base
integer graph minus the integer graph with that one layer binarized (points).
Policy: eligible layers (never the first or last unless allowed) in ascending estimated drop (ties: larger saving
first) are added while the summed estimated drop (negative estimates count 0) stays <= max_drop and until the
storage target (weight bytes after / before) is met; the combined choice is then re-measured on the float SNN
(calibration data) and the last-added layer dropped while that exceeds max_drop."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from snnc.analysis.weight_storage import binary_bytes, layer_storage, total_bytes
from snnc.backends.cpu.simulator import simulate
from snnc.ir.chain import Synapse
from snnc.ir.errors import DataError
from snnc.ir.graph import Graph
from snnc.ir.plan import build_plan
from snnc.passes.binarize import (
    binarize,
    binary_weight,
    resolve_layers,
    weighted_layers,
)
from snnc.passes.quantize import QuantReport
from snnc.pipeline import quantize

ESTIMATORS = ("weight_error", "output_error", "float_drop")


@dataclass
class LayerEstimate:
    """One weighted layer: its estimators, measured drop (points) and storage (bytes, 8-bit vs binary)."""

    name: str  # label (torch module name)
    node: str  # synapse node name in the graph
    weights: int
    eligible: bool
    bytes_before: int
    bytes_binary: int
    weight_error: float = math.nan
    output_error: float = math.nan
    float_drop: float = math.nan  # points, calibration data, float SNN
    measured_drop: float | None = None  # points, evaluation data, integer simulator
    binary: bool = False

    @property
    def estimated_drop(self) -> float:
        return self.float_drop


@dataclass
class BinarizeOutcome:
    """Result of ``auto_binarize``: the graphs, per-layer estimates and the before/after numbers."""

    float_graph: Graph
    int_graph: Graph
    report: QuantReport
    layers: list[LayerEstimate]
    chosen: list[str]
    steps: int
    accuracy_before: float
    accuracy_after: float
    weight_bytes_before: int
    weight_bytes_after: int
    combined_float_drop: float
    rank_correlation: dict[str, float | None] = field(default_factory=dict)
    finetuned: bool = False

    def as_dict(self) -> dict:
        layers = []
        for e in self.layers:
            d = asdict(e)
            d["estimated_drop"] = e.estimated_drop
            d["bytes"] = e.bytes_binary if e.binary else e.bytes_before
            layers.append(d)
        return {"weight_bytes_before": self.weight_bytes_before, "weight_bytes_after": self.weight_bytes_after,
                "storage_ratio": self.weight_bytes_after / max(self.weight_bytes_before, 1),
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after,
                "steps": self.steps, "binary_layers": self.chosen, "combined_float_drop": self.combined_float_drop,
                "rank_correlation": self.rank_correlation, "finetuned": self.finetuned, "layers": layers}


def end_layers(graph: Graph) -> set[str]:
    """Synapse nodes fed by the Input (first layers) or feeding the readout (last layers)."""
    plan = build_plan(graph)
    syn = {n for _, n in weighted_layers(graph)}
    return {o for c in plan.connections if c.src == plan.input or c.dst == plan.readout for o in c.ops if o in syn}


def _rates(graph: Graph, x: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    r = simulate(graph, x, steps)
    plan = build_plan(graph)
    out = {plan.input: np.asarray(x, dtype=np.float64)}
    out.update({n: np.asarray(c, dtype=np.float64) / steps for n, c in r.spike_counts.items()})
    return out


def output_error(graph: Graph, node: str, rates: dict[str, np.ndarray], per_channel: bool = True) -> float:
    """||f(W) - f(alpha sign W)|| / ||f(W)|| of the connection through ``node`` on the given input rates."""
    plan = build_plan(graph)
    conn = next(c for c in plan.connections if node in c.ops)
    gb = binarize(graph, [node], per_channel)
    dev = torch.device("cpu")
    x = torch.as_tensor(rates[conn.src], dtype=torch.float64)
    fa = Synapse(graph, plan, conn, integer=False, dev=dev)(x)
    fb = Synapse(gb, build_plan(gb), conn, integer=False, dev=dev)(x)
    den = float(torch.linalg.vector_norm(fa))
    return float(torch.linalg.vector_norm(fa - fb)) / den if den > 0 else math.inf


def _acc(graph: Graph, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    return simulate(graph, x, steps).accuracy(y)


def estimate_layers(graph: Graph, x_cal: np.ndarray, y_cal: np.ndarray, steps: int, per_channel: bool = True,
                    allow_first_last: bool = False, only: list[str] | None = None) -> tuple[list[LayerEstimate], float]:
    """All estimators for every weighted layer of a float graph (``only``: layer subset); also the base float
    accuracy on (x_cal, y_cal) at ``steps``."""
    if len(x_cal) == 0 or y_cal is None:
        raise DataError("binarization estimators need labelled calibration data")
    ends = end_layers(graph)
    rates = _rates(graph, x_cal, steps)
    base = _acc(graph, x_cal, y_cal, steps)
    keep = set(resolve_layers(graph, only)) if only is not None else None
    out = []
    for label, node in weighted_layers(graph):
        if keep is not None and node not in keep:
            continue
        w = np.asarray(graph.nodes[node].weight, dtype=np.float64)
        wb, _ = binary_weight(w, per_channel)
        e = LayerEstimate(label, node, int(w.size), allow_first_last or node not in ends,
                          layer_storage(node, graph.nodes[node]).bytes,
                          binary_bytes(int(w.size), w.shape[0] if per_channel else 1))
        e.weight_error = float(np.linalg.norm(w - wb) / max(np.linalg.norm(w), 1e-300))
        e.output_error = output_error(graph, node, rates, per_channel)
        e.float_drop = 100.0 * (base - _acc(binarize(graph, [node], per_channel), x_cal, y_cal, steps))
        out.append(e)
    return out, base


def select_layers(estimates: list[LayerEstimate], max_drop: float | None = 0.5, storage: float | None = None,
                  total_before: int | None = None) -> list[str]:
    """Greedy choice (module docstring): node names, in the order they were added."""
    total = total_before if total_before is not None else sum(e.bytes_before for e in estimates)
    cands = sorted((e for e in estimates if e.eligible),
                   key=lambda e: (e.estimated_drop, -(e.bytes_before - e.bytes_binary)))
    chosen, pred, now = [], 0.0, total
    for e in cands:
        if storage is not None and now / total <= storage:
            break
        d = max(e.estimated_drop, 0.0)
        if max_drop is not None and pred + d > max_drop:
            continue
        chosen.append(e.node)
        pred += d
        now -= e.bytes_before - e.bytes_binary
    return chosen


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant or < 3 points."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def measure_drops(graph: Graph, estimates: list[LayerEstimate], base_acc: float, x_cal: np.ndarray,
                  x_eval: np.ndarray, y_eval: np.ndarray, steps: int, per_channel: bool = True,
                  calib_steps: int = 64, weight_bits: int = 8) -> None:
    """Fill ``measured_drop``: integer simulator on (x_eval, y_eval) with each layer binarized alone (points)."""
    for e in estimates:
        gi = quantize(binarize(graph, [e.node], per_channel), x_cal, weight_bits=weight_bits,
                      calib_steps=calib_steps).int_graph
        e.measured_drop = 100.0 * (base_acc - _acc(gi, x_eval, y_eval, steps))


def auto_binarize(float_graph: Graph, int_graph: Graph, x_cal: np.ndarray, y_cal: np.ndarray, x_eval: np.ndarray,
                  y_eval: np.ndarray, layers: str | list[str] = "auto", max_drop: float | None = 0.5,
                  storage: float | None = None, steps: int = 32, per_channel: bool = True,
                  allow_first_last: bool = False, measure: bool = True, cal_samples: int = 512,
                  calib_steps: int = 64, weight_bits: int = 8,
                  finetune: Callable[[list[str]], Graph] | None = None) -> BinarizeOutcome:
    """Estimate, select (``layers="auto"``) or take the given layers, binarize, quantize, and measure.

    x_cal/y_cal: calibration data (training split; the first ``cal_samples`` drive the estimators)
    x_eval/y_eval: evaluation data for the integer accuracies and measured drops (points)
    finetune: optional callable (chosen layer labels) -> new fused float graph (e.g. after STE fine-tuning)."""
    xc, yc = x_cal[:cal_samples], (y_cal[:cal_samples] if y_cal is not None else None)
    ests, base_f = estimate_layers(float_graph, xc, yc, steps, per_channel, allow_first_last)
    if max_drop is None and storage is None:
        max_drop = 0.5
    labels = {e.node: e.name for e in ests}
    src = float_graph
    if layers == "auto" and finetune is None:
        chosen = select_layers(ests, max_drop, storage, total_bytes(float_graph))
        while chosen:
            drop = 100.0 * (base_f - _acc(binarize(float_graph, chosen, per_channel), xc, yc, steps))
            if max_drop is None or drop <= max_drop:
                break
            chosen = chosen[:-1]
    elif layers == "auto":
        # with fine-tuning, a layer is kept when the fine-tuned float SNN stays within the budget (ascending estimate)
        chosen, total = [], total_bytes(float_graph)
        now = total
        for e in sorted((e for e in ests if e.eligible), key=lambda e: (e.estimated_drop, -e.bytes_before)):
            if storage is not None and now / total <= storage:
                break
            g = finetune([labels[n] for n in chosen + [e.node]])
            drop = 100.0 * (base_f - _acc(binarize(g, chosen + [e.node], per_channel), xc, yc, steps))
            if max_drop is None or drop <= max_drop:
                chosen, src, now = chosen + [e.node], g, now - (e.bytes_before - e.bytes_binary)
    else:
        chosen = resolve_layers(float_graph, layers)
        if finetune is not None and chosen:
            src = finetune([labels[n] for n in chosen])
    combined = 100.0 * (base_f - _acc(binarize(src, chosen, per_channel), xc, yc, steps)) if chosen else 0.0
    base_i = _acc(int_graph, x_eval, y_eval, steps)
    if measure:
        measure_drops(float_graph, ests, base_i, x_cal, x_eval, y_eval, steps, per_channel, calib_steps, weight_bits)
    fg = binarize(src, chosen, per_channel)
    q = quantize(fg, x_cal, weight_bits=weight_bits, calib_steps=calib_steps)
    gi, rep = q.int_graph, q.report
    for e in ests:
        e.binary = e.node in chosen
    corr = {k: spearman([getattr(e, k) for e in ests], [e.measured_drop for e in ests]) for k in ESTIMATORS} \
        if measure else {}
    return BinarizeOutcome(fg, gi, rep, ests, [labels[n] for n in chosen], steps, base_i,
                           _acc(gi, x_eval, y_eval, steps), total_bytes(int_graph), total_bytes(gi), combined,
                           corr, finetune is not None and bool(chosen))
