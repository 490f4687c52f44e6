"""The compile pipeline: one ordered list of stages, one timing loop, for torch models and NIR graphs alike.

  convert | import    torch.nn.Module -> float NIR graph (frontend/convert.py) | any NIR graph (frontend/nir_import)
  ann_macs            the source network's MACs per neuron layer, before anything fuses (analysis/macs.py), and
                      a fingerprint of the calibration data, recorded in the graph's metadata
  tune                threshold tuning for T steps (passes/threshold_tuning.py)           torch models, optional
  restructure         residual delay balancing with IF relays (frontend/residual.py)       optional
  fold_batchnorm      BatchNorm affines into the neighbouring synapses
  fuse_synapses       one synapse node per connection
  calibrate           layer calibration for T steps (passes/layer_calibration.py)        torch models, optional
  binarize            alpha * sign(W) in the chosen layers (passes/binarize.py)            optional
  ranges              the float graph run on calibration data: per-layer ranges (CPU backend, for quantize)
  quantize            integer graph in Lava's fixed point (passes/quantize.py)
  bias_onset          pre-charge so each layer's bias starts with its input (passes/bias_onset.py), both graphs

``compile`` runs them all; ``run_stages`` runs a slice (``start``/``stop`` stage names) on a graph already at that
point: binarization search re-quantizes from ``binarize``, fine-tuning re-converts up to ``fuse_synapses``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import nir
import numpy as np
from snnc.frontend.convert import ConvertOptions
from snnc.frontend.nir_import import ImportOptions
from snnc.ir.errors import DataError
from snnc.ir.graph import Graph
from snnc.passes.quantize import QuantReport


@dataclass
class CompileOptions:
    """Everything a compile takes beyond the model and the calibration data.

    convert: conversion options (torch models); import_options: NIR graphs (dt, discretisation, reset)
    weight_bits: 1..8 for every synapse, or {synapse name: bits}; input_bits: bits of the graded input spikes
        (1..16; 1 with non-negative data sends binary events; None, the default: 1 when every calibration value is
        0 or 1 -- events -- else 8)
    calib_steps / calib_samples: the ranges that size the integer potentials are those of a calib_steps-step run
        (on at most calib_samples samples; a calibration sequence's run lasts its own T)
    ranges: how the ranges stage gets them. "run": the float range run of the graph on calib_samples samples for
        calib_steps steps (cost samples x (steps + depth) x MACs in float64: minutes for VGG-16 at 256 x 64).
        "ann": the ANN's pre-activations over all calibration data (recorded by the convert stage's one forward
        pass) plus a probe, the float range run on probe_samples samples for probe_steps steps (ranges.py,
        ``estimate_ranges``; torch sources with frame calibration data only). "auto" (default): "ann" where the
        convert stage ran on frames and no binarized synapse changed the weights the ANN saw, else "run"
    bias_onset: pre-charge initial potentials so each layer's bias starts with its first input
    tune_steps: analytic threshold tuning for this T (None: off); restructure: balance residual delays
    calibrate_steps / calibrate_samples: layer calibration for this T (None: off) on that many samples
    binarize: synapse node names of the fused graph to make alpha * sign(W); binary_per_channel: one alpha per
        output channel (else per layer)
    calib_sequence: torch models only: the calibration data is (N, T, *input) sequences; the ANN stages (convert,
        tune, layer calibration) see their time-average over T, the range run and quantize the sequences. (NIR
        graphs decide it against the graph's Input shape, ``snnc.ir.sequence``.) A sequence range run lasts the
        sequences' T (``calib_steps`` is for static data)."""

    convert: ConvertOptions = field(default_factory=ConvertOptions)
    import_options: ImportOptions = field(default_factory=ImportOptions)
    weight_bits: int | dict = 8
    input_bits: int | None = None
    calib_steps: int = 64
    calib_samples: int = 256
    ranges: str = "auto"
    probe_samples: int = 2
    probe_steps: int = 8
    bias_onset: bool = True
    tune_steps: int | None = None
    restructure: bool = False
    calibrate_steps: int | None = None
    calibrate_samples: int = 128
    binarize: tuple[str, ...] = ()
    binary_per_channel: bool = True
    calib_sequence: bool = False

    @classmethod
    def of(cls, options: "CompileOptions | ConvertOptions | None" = None, **kw: Any) -> "CompileOptions":
        """Options from a CompileOptions or a ConvertOptions, with keyword overrides of either's fields."""
        o = options if isinstance(options, CompileOptions) else cls(
            convert=options if isinstance(options, ConvertOptions) else ConvertOptions())
        mine = {f.name for f in fields(cls)}
        conv = {f.name for f in fields(ConvertOptions)}
        unknown = [k for k in kw if k not in mine and k not in conv]
        if unknown:
            raise TypeError(f"compile() got unknown option(s) {unknown}")
        o = replace(o, **{k: v for k, v in kw.items() if k in mine})
        ck = {k: v for k, v in kw.items() if k in conv and k not in mine}
        return replace(o, convert=replace(o.convert, **ck)) if ck else o


@dataclass
class Compiled:
    """One compile: ``float_graph`` (fused, real-valued), ``int_graph`` (Lava fixed point), the quantization report,
    seconds per stage."""

    float_graph: Graph
    int_graph: Graph
    report: QuantReport
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    """What the stages read: the source (torch model or NIR graph/path), calibration data, options; and what they
    leave for later stages (ANN activations, ranges, the integer graph and its report)."""

    source: Any
    calib: np.ndarray
    options: CompileOptions
    int_graph: Graph | None = None
    report: QuantReport | None = None
    ranges: dict | None = None
    ann: Any = None  # snnc.frontend.convert.AnnStats of the convert stage's ANN pass (torch sources)
    _acts: dict | None = None

    def __post_init__(self) -> None:
        from snnc.frontend.exported import as_module

        self.source = as_module(self.source)  # a torch.export program: the module of standard layers it holds

    @property
    def is_nir(self) -> bool:
        return isinstance(self.source, (nir.NIRGraph, str, os.PathLike))

    @property
    def ann_calib(self) -> np.ndarray:
        """What the ANN stages see: the calibration data, or the time-average of sequences (``calib_sequence``)."""
        if self.options.calib_sequence and not self.is_nir:
            if self.calib.ndim < 3:
                raise DataError(f"calib_sequence: calibration data must be (N, T, *input), got shape "
                                f"{self.calib.shape}")
            return self.calib.mean(axis=1)
        return self.calib

    def activations(self, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """ANN activations of every ReLU-like layer (keyed by fx node name) on ``x`` (default: all calib data)."""
        from snnc.passes.threshold_tuning import layer_activations

        if x is not None:
            return layer_activations(self.source, x)
        if self._acts is None:
            self._acts = self.ann.acts if self.ann is not None else layer_activations(self.source, self.ann_calib)
        return self._acts


def _convert(ctx: Context, g: Graph | None) -> Graph:
    if ctx.is_nir:
        from snnc.frontend.nir_import import import_graph

        return import_graph(ctx.source, ctx.options.import_options)
    from snnc.frontend.convert import calibration_stats, convert, trace

    # one ANN pass over the calibration data: thresholds here, activations for tuning and layer calibration, and
    # the pre-activation ranges the ranges stage starts from
    ctx.ann = calibration_stats(trace(ctx.source.eval()), np.asarray(ctx.ann_calib, dtype=np.float32),
                                ctx.options.convert.calib_batch)
    return convert(ctx.source, ctx.ann_calib, ctx.options.convert, stats=ctx.ann)


def _ann_macs(ctx: Context, g: Graph) -> Graph:
    from snnc.analysis.macs import source_macs
    from snnc.dataspec import fingerprint
    from snnc.ir import conventions as cv

    g.metadata = dict(g.metadata or {})
    g.metadata[cv.ANN_MACS] = source_macs(g)
    g.metadata[cv.ANN_MACS_COUNTED_ON] = "nir" if ctx.is_nir else "torch"
    g.metadata[cv.CALIB_SAMPLES] = int(len(ctx.calib))
    g.metadata[cv.CALIB_SHA256] = fingerprint(ctx.calib)
    return g


def _tune(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.threshold_tuning import tune_thresholds

    return tune_thresholds(g, ctx.activations(), ctx.options.tune_steps)


def _restructure(ctx: Context, g: Graph) -> Graph:
    from snnc.frontend.residual import balance_residual_delays

    return balance_residual_delays(g)


def _fold(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.fold_batchnorm import fold_batchnorm

    return fold_batchnorm(g)


def _fuse(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.fuse_synapses import fuse_synapses

    g = fuse_synapses(g)
    if ctx.is_nir:
        from snnc.frontend.nir_import import check_cuba_bias

        check_cuba_bias(g)
    return g


def _calibrate(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.layer_calibration import calibrate_layers

    n = ctx.options.calibrate_samples
    xa = np.asarray(ctx.ann_calib[:n])  # the ANN's targets; the SNN runs the calibration data (sequences or frames)
    return calibrate_layers(g, np.asarray(ctx.calib[:n]), ctx.activations(xa), ctx.options.calibrate_steps)


def _binarize(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.binarize import binarize

    return binarize(g, list(ctx.options.binarize), ctx.options.binary_per_channel)


def _ranges(ctx: Context, g: Graph) -> Graph:
    from snnc.backends.cpu.ranges import calibration_ranges, estimate_ranges

    from snnc.ir.plan import build_plan
    from snnc.ir.sequence import input_series

    o = ctx.options
    if o.ranges not in ("auto", "ann", "run"):
        raise DataError(f"option ranges must be 'auto', 'ann' or 'run', got {o.ranges!r}")
    plan = build_plan(g)
    x = np.asarray(ctx.calib[:o.calib_samples], dtype=np.float64)
    series = input_series(plan.shapes[plan.input], x, plan.input)  # a sequence's run lasts its T
    ann = ctx.ann is not None and not o.binarize and not series.sequence
    if o.ranges == "ann" and not ann:
        raise DataError("ranges='ann' needs the ANN's activations: a torch model compiled from the convert stage "
                        "on frame calibration data (not sequences), without binarized synapses")
    if ann and o.ranges != "run":
        ctx.ranges = estimate_ranges(g, x, o.calib_steps, ctx.ann.pre_absmax, ctx.ann.OUTPUT, o.probe_samples,
                                     o.probe_steps, plan=plan)
    else:
        ctx.ranges = calibration_ranges(g, x, None if series.sequence else o.calib_steps, plan=plan)
    return g


def _quantize(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.quantize import quantize_with_report

    ctx.int_graph, ctx.report = quantize_with_report(g, ctx.options.weight_bits, ctx.calib, ctx.ranges,
                                                     input_bits=ctx.options.input_bits)
    return g


def _bias_onset(ctx: Context, g: Graph) -> Graph:
    from snnc.passes.bias_onset import compensate_bias_onset

    ctx.int_graph = compensate_bias_onset(ctx.int_graph)
    return compensate_bias_onset(g)


def _refuse_for_nir(what: str) -> Callable[[Context], bool]:
    def when(ctx: Context) -> bool:
        if ctx.is_nir:
            raise DataError(f"{what}: the source is an NIR graph; it compares against the ANN's activations and "
                            "needs the torch model")
        return True
    return when


# (name, stage, runs when): the one order of compilation
STAGES: list[tuple[str, Callable[[Context, Graph | None], Graph], Callable[[Context], bool]]] = [
    ("convert", _convert, lambda c: True),
    ("ann_macs", _ann_macs, lambda c: True),
    ("tune", _tune, lambda c: bool(c.options.tune_steps) and _refuse_for_nir("threshold tuning")(c)),
    ("restructure", _restructure, lambda c: c.options.restructure),
    ("fold_batchnorm", _fold, lambda c: True),
    ("fuse_synapses", _fuse, lambda c: True),
    ("calibrate", _calibrate, lambda c: bool(c.options.calibrate_steps) and _refuse_for_nir("layer calibration")(c)),
    ("binarize", _binarize, lambda c: bool(c.options.binarize)),
    ("ranges", _ranges, lambda c: True),
    ("quantize", _quantize, lambda c: True),
    ("bias_onset", _bias_onset, lambda c: c.options.bias_onset),
]
STAGE_NAMES = [s[0] for s in STAGES]


def run_stages(ctx: Context, graph: Graph | None = None, start: str = "convert", stop: str | None = None,
               seconds: dict[str, float] | None = None) -> Graph:
    """Run the stages from ``start`` through ``stop`` (inclusive; None: to the end) on ``graph``, timing each."""
    for name in (start, stop):
        if name is not None and name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; stages: {STAGE_NAMES}")
    i0 = STAGE_NAMES.index(start)
    i1 = len(STAGES) if stop is None else STAGE_NAMES.index(stop) + 1
    t = seconds if seconds is not None else {}
    g = graph
    for name, stage, when in STAGES[i0:i1]:
        if when(ctx):
            t0 = time.perf_counter()
            g = stage(ctx, g)
            t[name] = time.perf_counter() - t0
    return g


def _check_calib(calib: Any) -> np.ndarray:
    from snnc.ir.chain import check_samples

    x = check_samples(calib, "calibration data")
    if x.ndim < 2:
        raise DataError(f"calibration data must be (N, ...) with N >= 1 samples, got shape {x.shape}")
    return x


def compile(source: Any, calib: np.ndarray, options: CompileOptions | ConvertOptions | None = None,
            **kw: Any) -> Compiled:
    """Compile a trained ``torch.nn.Module`` or an NIR graph (``nir.NIRGraph`` or a path to an NIR file) into a
    fused float graph and an integer graph for Lava (every stage of the module docstring).

    calib: float inputs (N, *input_shape), normalised as the model expects: thresholds, ranges, input scale.
    Keyword arguments override ``CompileOptions`` or ``ConvertOptions`` fields (weight_bits=, calibrate_steps=,
    v_init=, method=, ...)."""
    ctx = Context(source, _check_calib(calib), CompileOptions.of(options, **kw))
    t: dict[str, float] = {}
    g = run_stages(ctx, None, seconds=t)
    return Compiled(g, ctx.int_graph, ctx.report, t)


def quantize(graph: Graph, calib: np.ndarray, options: CompileOptions | None = None, **kw: Any) -> Compiled:
    """A fused float graph from ``binarize`` on: binarize (if asked), ranges, quantize, bias onset."""
    ctx = Context(graph, _check_calib(calib), CompileOptions.of(options, **kw))
    t: dict[str, float] = {}
    g = run_stages(ctx, graph, start="binarize", seconds=t)
    return Compiled(g, ctx.int_graph, ctx.report, t)


def float_graph(model: Any, calib: np.ndarray, options: CompileOptions | ConvertOptions | None = None,
                **kw: Any) -> Graph:
    """A torch model's fused float graph (the stages up to ``fuse_synapses``)."""
    ctx = Context(model, _check_calib(calib), CompileOptions.of(options, **kw))
    return run_stages(ctx, None, stop="fuse_synapses")
