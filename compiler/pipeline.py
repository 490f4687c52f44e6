"""The end-to-end compile: torch model -> float NIR (convert) -> fold BN -> fuse synapses -> quantize."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from snnc.compiler.frontend.convert import ConvertOptions, convert
from snnc.compiler.passes.bias_onset import compensate_bias_onset
from snnc.compiler.passes.fold_batchnorm import fold_batchnorm
from snnc.compiler.passes.fuse_synapses import fuse_synapses
from snnc.compiler.passes.quantize import QuantReport, quantize_with_report
from snnc.ir.graph import Graph


@dataclass
class Compiled:
    """Both graphs of one compile: ``float_graph`` (fused, real-valued) and ``int_graph`` (Lava fixed point)."""

    float_graph: Graph
    int_graph: Graph
    report: QuantReport
    seconds: dict[str, float] = field(default_factory=dict)


def _run_passes(g: Graph, passes: Sequence[Callable[[Graph], Graph]], t: dict[str, float]) -> Graph:
    """Apply ``passes`` in order, timing each under its name (a functools.partial under its function's)."""
    for p in passes:
        t0 = time.perf_counter()
        g = p(g)
        t[getattr(p, "__name__", None) or getattr(getattr(p, "func", None), "__name__", "pass")] = \
            time.perf_counter() - t0
    return g


def compile_model(model: torch.nn.Module, calib: np.ndarray, options: ConvertOptions | None = None,
                  weight_bits: int | dict = 8, calib_steps: int = 64,
                  float_passes: Sequence[Callable[[Graph], Graph]] = (), bias_onset: bool = True,
                  fused_passes: Sequence[Callable[[Graph], Graph]] = (), calibrate_steps: int | None = None,
                  calibrate_samples: int = 128, **convert_kw) -> Compiled:
    """Convert, run ``float_passes`` (e.g. threshold tuning, residual delay balancing) on the converted graph,
    fold BatchNorm, fuse synapses, run ``fused_passes`` and (``calibrate_steps``) layer calibration, quantize,
    and (``bias_onset``) pre-charge initial potentials so each layer's bias starts with its first input, in both
    graphs; times each stage (seconds)."""
    t = {}
    t0 = time.perf_counter()
    g = convert(model, calib, options, **convert_kw)
    t["convert"] = time.perf_counter() - t0
    g = _run_passes(g, float_passes, t)
    t0 = time.perf_counter()
    g = fold_batchnorm(g)
    t["fold_batchnorm"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = fuse_synapses(g)
    t["fuse_synapses"] = time.perf_counter() - t0
    if calibrate_steps:  # layer calibration for T = calibrate_steps on the first calibrate_samples samples
        from snnc.compiler.passes.layer_calibration import calibrate_layers
        from snnc.compiler.passes.threshold_tuning import layer_activations

        xc = np.asarray(calib[:calibrate_samples])
        fused_passes = [*fused_passes, functools.partial(calibrate_layers, x=xc, acts=layer_activations(model, xc),
                                                         steps=calibrate_steps)]
    g = _run_passes(g, fused_passes, t)
    t0 = time.perf_counter()
    gi, rep = quantize_with_report(g, weight_bits=weight_bits, calib=calib, calib_steps=calib_steps)
    t["quantize"] = time.perf_counter() - t0
    if bias_onset:
        t0 = time.perf_counter()
        g, gi = compensate_bias_onset(g), compensate_bias_onset(gi)
        t["bias_onset"] = time.perf_counter() - t0
    return Compiled(g, gi, rep, t)
