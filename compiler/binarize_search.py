"""ALBSNN layer selection (a search that runs the simulator, so not a pass): estimate each layer's accuracy loss if
binarized alone, then pick layers greedily within an accuracy budget that has to hold on data never seen.

Data (``snnc.dataspec``): the calibration data is split into a *fit* part — everything the compiler fits is fitted
on it: thresholds, quantization ranges, layer calibration, STE fine-tuning — and a *validation* part (a seeded,
label-stratified fraction, default one half) that nothing is fitted on; every estimator is computed on the
validation part. Accuracies before/after and the measured drops are on the evaluation data (``--data``).

Estimators (per weighted synapse, binarized alone, everything else unchanged; float SNN at T steps, compared with
the unbinarized float SNN on the same validation samples):
  weight_error  ||W - alpha sign W|| / ||W||                       (data-free)
  output_error  ||f(W) - f(alpha sign W)|| / ||f(W)||, f = the synapse (weights + bias) applied to the layer's
                input firing rates on the validation part (x itself for the first layer)
  float_drop    accuracy drop on the validation part (points, i.e. percent; needs labels)
  disagreement  percent of validation samples whose predicted class changes (label-free). It bounds the accuracy
                change on those samples from above (|drop| <= disagreement) and still moves when the network is
                100 % right on them, where float_drop is 0 whatever the layer does
  output_kl     mean KL divergence (nats) of the softmax of the binarized network's output from the unbinarized
                one's (label-free, continuous: breaks ties between layers that flip no prediction)
``estimator`` (``disagreement`` by default, or ``float_drop``) is the one in accuracy units that drives the budget.
Measured drop (the truth the estimators are ranked against): integer-simulator accuracy on evaluation data, base
integer graph minus the integer graph with that one layer binarized (points).
Policy: eligible layers (never the first or last unless allowed) in ascending estimate (ties: lower output_kl,
then larger saving) are added while the summed estimate (negative estimates count 0) stays <= max_drop and until
the storage target (weight bytes after / before) is met; the combined choice is then re-estimated on the
validation part and the last-added layer dropped while that exceeds max_drop. With fine-tuning, each candidate
set is fine-tuned on the fit part and kept only when its validation estimate is within max_drop."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from snnc.analysis.weight_storage import binary_bytes, layer_storage, total_bytes
from snnc.backends.cpu.simulator import simulate
from snnc.dataspec import Data, data_report, holdout
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
from snnc.pipeline import CompileOptions, compile, quantize

ESTIMATORS = ("weight_error", "output_error", "float_drop", "disagreement", "output_kl")
BUDGET_ESTIMATORS = ("disagreement", "float_drop")  # in accuracy points: the ones a budget can be held with
# which data each number of the report is measured on (keys of the report's "data" object)
MEASURED_ON = {"accuracy_before": "eval", "accuracy_after": "eval", "measured_drop": "eval",
               "estimated_drop": "validation", "float_drop": "validation", "disagreement": "validation",
               "output_kl": "validation", "output_error": "validation", "combined_estimate": "validation",
               "weight_error": "weights"}


@dataclass
class BinarizeOptions:
    """How ``compile_binarized`` chooses binary layers.

    layers: "auto" or layer names; max_drop: budget in accuracy points (None with a storage target: no budget);
    storage: stop once weight bytes after / before <= this; steps: T of the estimators and the reported accuracies;
    per_channel: one alpha per output channel (else per layer); allow_first_last: let "auto" pick the end layers;
    estimator: "disagreement" (label-free) or "float_drop" drives the budget; val_fraction / val_seed: the held-out
    validation part of the calibration data; measure: also measure each layer's integer drop on evaluation data;
    finetune_epochs: STE fine-tuning of each candidate set on the fit part (torch models only)."""

    layers: str | list[str] = "auto"
    max_drop: float | None = 0.5
    storage: float | None = None
    steps: int = 32
    per_channel: bool = True
    allow_first_last: bool = False
    estimator: str = "disagreement"
    val_fraction: float = 0.5
    val_seed: int = 0
    measure: bool = True
    finetune_epochs: int = 0

    def __post_init__(self) -> None:
        if self.estimator not in BUDGET_ESTIMATORS:
            raise DataError(f"binarization estimator {self.estimator!r} is not known; choose one of "
                            f"{', '.join(BUDGET_ESTIMATORS)}")
        if self.steps < 1:
            raise DataError(f"binarization steps must be >= 1, got {self.steps}")
        if self.max_drop is not None and not self.max_drop >= 0:
            raise DataError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if self.storage is not None and not 0 < self.storage <= 1:
            raise DataError(f"--storage must be in (0, 1], got {self.storage}")
        if self.finetune_epochs < 0:
            raise DataError(f"--finetune must be >= 0 epochs, got {self.finetune_epochs}")


@dataclass
class LayerEstimate:
    """One weighted layer: its estimators (validation part), measured drop (points, evaluation data) and storage
    (bytes, 8-bit vs binary)."""

    name: str  # label (torch module name)
    node: str  # synapse node name in the graph
    weights: int
    eligible: bool
    bytes_before: int
    bytes_binary: int
    weight_error: float = math.nan
    output_error: float = math.nan
    float_drop: float = math.nan  # points, validation part, float SNN (nan without labels)
    disagreement: float = math.nan  # percent of validation samples whose prediction changes
    output_kl: float = math.nan  # nats, mean over validation samples
    estimated_drop: float = math.nan  # the budget estimator's value (points)
    measured_drop: float | None = None  # points, evaluation data, integer simulator
    binary: bool = False


@dataclass
class Validation:
    """The unbinarized float SNN on the validation part: inputs, labels (or None), logits, accuracy, T."""

    x: np.ndarray
    y: np.ndarray | None
    logits: np.ndarray
    steps: int

    @property
    def accuracy(self) -> float | None:
        return None if self.y is None else float((self.logits.argmax(1) == self.y).mean())

    def compare(self, logits: np.ndarray) -> dict[str, float]:
        """float_drop (points; nan without labels), disagreement (percent) and output_kl (nats) of ``logits``
        against the unbinarized network's."""
        ref, new = self.logits.argmax(1), logits.argmax(1)
        lp = torch.log_softmax(torch.as_tensor(self.logits, dtype=torch.float64), 1)
        lq = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), 1)
        kl = float((lp.exp() * (lp - lq)).sum(1).mean())
        drop = math.nan if self.y is None else 100.0 * float((ref == self.y).mean() - (new == self.y).mean())
        return {"float_drop": drop, "disagreement": 100.0 * float((ref != new).mean()), "output_kl": kl}

    def estimate(self, graph: Graph, estimator: str) -> tuple[float, dict[str, float]]:
        """(the estimator's value, all three comparisons) for a binarized float graph."""
        cmp = self.compare(simulate(graph, self.x, self.steps).logits)
        return cmp[estimator], cmp


@dataclass
class BinarizeOutcome:
    """Result of ``auto_binarize``: the graphs, per-layer estimates and the before/after numbers."""

    float_graph: Graph
    int_graph: Graph
    report: QuantReport
    layers: list[LayerEstimate]
    chosen: list[str]
    steps: int
    estimator: str
    accuracy_before: float | None  # integer SNN, evaluation data
    accuracy_after: float | None
    weight_bytes_before: int
    weight_bytes_after: int
    combined_estimate: float  # the estimator for the chosen set, validation part (points)
    validation_accuracy: float | None  # unbinarized float SNN on the validation part
    data: dict = field(default_factory=dict)
    rank_correlation: dict[str, float | None] = field(default_factory=dict)
    finetuned: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        layers = []
        for e in self.layers:
            d = asdict(e)
            d["bytes"] = e.bytes_binary if e.binary else e.bytes_before
            layers.append(d)
        drop = None if self.accuracy_before is None or self.accuracy_after is None else \
            100.0 * (self.accuracy_before - self.accuracy_after)
        return {"weight_bytes_before": self.weight_bytes_before, "weight_bytes_after": self.weight_bytes_after,
                "storage_ratio": self.weight_bytes_after / max(self.weight_bytes_before, 1),
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after,
                "measured_drop": drop, "steps": self.steps, "estimator": self.estimator,
                "binary_layers": self.chosen, "combined_estimate": self.combined_estimate,
                "validation_accuracy": self.validation_accuracy, "rank_correlation": self.rank_correlation,
                "finetuned": self.finetuned, "data": self.data, "measured_on": MEASURED_ON, "layers": layers}


def end_layers(graph: Graph) -> set[str]:
    """Synapse nodes fed by the Input (first layers) or feeding the readout (last layers)."""
    plan = build_plan(graph)
    syn = {n for _, n in weighted_layers(graph)}
    return {o for c in plan.connections if c.src == plan.input or c.dst == plan.readout for o in c.ops if o in syn}


def _rates(graph: Graph, x: np.ndarray, steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(input rates of every neuron layer's connections, logits) of one float run."""
    r = simulate(graph, x, steps)
    plan = build_plan(graph)
    out = {plan.input: np.asarray(x, dtype=np.float64)}
    out.update({n: np.asarray(c, dtype=np.float64) / steps for n, c in r.spike_counts.items()})
    return out, r.logits


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


def estimate_layers(graph: Graph, x_val: np.ndarray, y_val: np.ndarray | None, steps: int, per_channel: bool = True,
                    allow_first_last: bool = False, only: list[str] | None = None,
                    estimator: str = "disagreement") -> tuple[list[LayerEstimate], Validation]:
    """All estimators for every weighted layer of a float graph (``only``: layer subset), on validation data
    (x_val, y_val; y_val None: the label-free ones only); also the unbinarized network on that data."""
    if len(x_val) == 0:
        raise DataError("binarization estimators need validation samples (a part of the calibration data)")
    if y_val is None and estimator == "float_drop":
        raise DataError("binarization estimator 'float_drop' needs labelled calibration data; 'disagreement' "
                        "does not")
    ends = end_layers(graph)
    rates, logits = _rates(graph, x_val, steps)
    val = Validation(np.asarray(x_val), None if y_val is None else np.asarray(y_val), logits, steps)
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
        e.estimated_drop, cmp = val.estimate(binarize(graph, [node], per_channel), estimator)
        e.float_drop, e.disagreement, e.output_kl = cmp["float_drop"], cmp["disagreement"], cmp["output_kl"]
        out.append(e)
    return out, val


def select_layers(estimates: list[LayerEstimate], max_drop: float | None = 0.5, storage: float | None = None,
                  total_before: int | None = None) -> list[str]:
    """Greedy choice (module docstring): node names, in the order they were added."""
    total = total_before if total_before is not None else sum(e.bytes_before for e in estimates)
    cands = sorted((e for e in estimates if e.eligible),
                   key=lambda e: (e.estimated_drop, e.output_kl if np.isfinite(e.output_kl) else 0.0,
                                  -(e.bytes_before - e.bytes_binary)))
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


def measure_drops(graph: Graph, estimates: list[LayerEstimate], base_acc: float, x_fit: np.ndarray,
                  x_eval: np.ndarray, y_eval: np.ndarray, steps: int, per_channel: bool = True,
                  options: CompileOptions | None = None) -> None:
    """Fill ``measured_drop``: integer simulator on (x_eval, y_eval) with each layer binarized alone (points);
    quantized on the fit part with the compile's options."""
    for e in estimates:
        gi = quantize(binarize(graph, [e.node], per_channel), x_fit, options).int_graph
        e.measured_drop = 100.0 * (base_acc - _acc(gi, x_eval, y_eval, steps))


def choose_layers(float_graph: Graph, ests: list[LayerEstimate], val: Validation, options: BinarizeOptions,
                  finetune: Callable[[list[str]], Graph] | None = None) -> tuple[list[str], Graph, float]:
    """(chosen synapse nodes, the float graph to binarize them in — fine-tuned or not —, the budget estimator for
    the chosen set on the validation part): the policy of the module docstring."""
    o = options
    max_drop = o.max_drop if (o.max_drop is not None or o.storage is not None) else 0.5
    labels = {e.node: e.name for e in ests}
    src = float_graph
    if o.layers == "auto" and finetune is None:
        chosen = select_layers(ests, max_drop, o.storage, total_bytes(float_graph))
        while chosen:
            est, _ = val.estimate(binarize(float_graph, chosen, o.per_channel), o.estimator)
            if max_drop is None or est <= max_drop:
                break
            chosen = chosen[:-1]
    elif o.layers == "auto":
        # with fine-tuning, a layer is kept when the fine-tuned float SNN stays within the budget on the
        # validation part (candidates in ascending estimate)
        chosen, total = [], total_bytes(float_graph)
        now = total
        for e in sorted((e for e in ests if e.eligible), key=lambda e: (e.estimated_drop, e.output_kl,
                                                                         -e.bytes_before)):
            if o.storage is not None and now / total <= o.storage:
                break
            g = finetune([labels[n] for n in chosen + [e.node]])
            est, _ = val.estimate(binarize(g, chosen + [e.node], o.per_channel), o.estimator)
            if max_drop is None or est <= max_drop:
                chosen, src, now = chosen + [e.node], g, now - (e.bytes_before - e.bytes_binary)
    else:
        chosen = resolve_layers(float_graph, o.layers)
        if finetune is not None and chosen:
            src = finetune([labels[n] for n in chosen])
    combined = val.estimate(binarize(src, chosen, o.per_channel), o.estimator)[0] if chosen else 0.0
    return chosen, src, combined


def auto_binarize(float_graph: Graph, int_graph: Graph, fit: Data, validation: Data, evaluation: Data | None,
                  options: BinarizeOptions | None = None, compile_options: CompileOptions | None = None,
                  finetune: Callable[[list[str]], Graph] | None = None,
                  int_report: QuantReport | None = None) -> BinarizeOutcome:
    """Estimate (on ``validation``), select (``options.layers == "auto"``) or take the given layers, binarize,
    quantize (on ``fit``: the graphs must have been compiled on it), and measure on ``evaluation``.

    finetune: optional callable (chosen layer labels) -> new fused float graph (STE fine-tuning on the fit part).
    int_report: the quantization report of ``int_graph``, reused when no layer is chosen."""
    import time

    o = options or BinarizeOptions()
    co = compile_options or CompileOptions()
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    ests, val = estimate_layers(float_graph, validation.x, validation.y, o.steps, o.per_channel,
                                o.allow_first_last, estimator=o.estimator)
    secs["estimate"] = time.perf_counter() - t0
    labels = {e.node: e.name for e in ests}
    t0 = time.perf_counter()
    chosen, src, combined = choose_layers(float_graph, ests, val, o, finetune)
    secs["select"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if chosen or int_report is None:
        fg = binarize(src, chosen, o.per_channel)
        q = quantize(fg, fit.x, co)
        gi, rep = q.int_graph, q.report
    else:
        fg, gi, rep = float_graph, int_graph, int_report
    for e in ests:
        e.binary = e.node in chosen
    base_i = after_i = None
    corr: dict[str, float | None] = {}
    if evaluation is not None:
        ye = evaluation.labels()
        base_i = _acc(int_graph, evaluation.x, ye, o.steps)
        after_i = _acc(gi, evaluation.x, ye, o.steps) if gi is not int_graph else base_i
        if o.measure:
            measure_drops(float_graph, ests, base_i, fit.x, evaluation.x, ye, o.steps, o.per_channel, co)
            corr = {k: spearman([getattr(e, k) for e in ests], [e.measured_drop for e in ests]) for k in ESTIMATORS}
    secs["quantize_measure"] = time.perf_counter() - t0
    return BinarizeOutcome(fg, gi, rep, ests, [labels[n] for n in chosen], o.steps, o.estimator, base_i, after_i,
                           total_bytes(int_graph), total_bytes(gi), combined, val.accuracy, {}, corr,
                           finetune is not None and bool(chosen), secs)


def compile_binarized(source: Any, calib: Data, evaluation: Data | None, options: BinarizeOptions | None = None,
                      compile_options: CompileOptions | None = None,
                      trainer: Callable[..., Any] | None = None) -> BinarizeOutcome:
    """Hold a validation part out of ``calib``, compile ``source`` (torch model or NIR graph/path) on the fit part,
    then ``auto_binarize``. ``trainer``: the STE fine-tuning trainer (``snnc.train.fit.fit`` by default), used when
    ``options.finetune_epochs`` > 0 (torch models only). The outcome's ``data`` says which data each part was."""
    o = options or BinarizeOptions()
    co = compile_options or CompileOptions()
    fit, val = holdout(calib, o.val_fraction, o.val_seed)
    c = compile(source, fit.x, co)
    finetune = None
    if o.finetune_epochs > 0:
        import torch.nn as nn

        if not isinstance(source, nn.Module):
            raise DataError("--finetune needs a torch model (the source is an NIR graph)")
        from snnc.train.binary_finetune import finetuned_float_graph
        from snnc.train.fit import fit as default_trainer

        xf, yf = fit.x, fit.labels()
        finetune = lambda labs: finetuned_float_graph(  # noqa: E731
            source, labs, xf, yf, o.finetune_epochs, o.per_channel, co.convert, trainer=trainer or default_trainer)
    out = auto_binarize(c.float_graph, c.int_graph, fit, val, evaluation, o, co, finetune, c.report)
    out.data = data_report(calib, evaluation, fit=fit, validation=val)
    out.seconds = {**{f"compile_{k}": v for k, v in c.seconds.items()}, **out.seconds}
    return out
