"""Pass: scale each IF layer's threshold by a tuning factor estimated from calibration data (TTRBR-style).

A layer with threshold theta, initial potential f*theta and T steps passes an ANN activation a >= 0 (float,
activation units) on as q(a) = clip(floor(a*T/theta + f), 0, T) * theta/T. Raising theta lowers the clipping
error, lowering it lowers the quantization error (and the deviation error of deep layers, whose inputs are
uneven spike trains, grows with theta/T too). The factor k is chosen per layer on the layer's ANN activations
over calibration data to minimise E[(a - q(a))^2] with theta' = k*theta, over a grid of k in (0, 1.25]. The
threshold, the Scale(theta) after the IF and the initial potential are all scaled by k (float graph, before
fuse_synapses). QCFS (trained lambda) and relay layers are left as they are.
"""
from __future__ import annotations

import nir
import numpy as np
import torch.nn as nn
from snnc.ir import conventions as cv
from snnc.ir.graph import Graph, copy_graph, successors, validate

GRID = tuple(np.round(np.arange(0.10, 1.2501, 0.025), 4))
SKIP_METHODS = ("qcfs", "relay")


def layer_activations(model: nn.Module, calib: np.ndarray, batch: int = 512) -> dict[str, np.ndarray]:
    """ANN activations (float, flattened) of every ReLU-like layer on ``calib``, keyed by the fx node name."""
    from snnc.frontend.convert import calibrate, trace

    return calibrate(trace(model.eval()), np.asarray(calib, dtype=np.float32), batch)[1]


def tuning_factor(acts: np.ndarray, theta: float, steps: int, v_frac: float = 0.0,
                  grid: tuple = GRID, max_samples: int = 200_000) -> tuple[float, float]:
    """(k, error at k / error at 1): the threshold factor minimising the expected clip + quantization error."""
    a = np.asarray(acts, dtype=np.float64).ravel()
    if a.size > max_samples:
        a = a[np.random.default_rng(0).choice(a.size, max_samples, replace=False)]
    if a.size == 0 or theta <= 0:
        return 1.0, 1.0

    def err(k: float) -> float:
        th = k * theta
        q = np.clip(np.floor(a * steps / th + v_frac), 0, steps) * th / steps
        return float(np.mean((a - q) ** 2))

    errs = {k: err(k) for k in grid}
    best = min(errs, key=errs.get)
    base = err(1.0)
    return float(best), (errs[best] / base if base > 0 else 1.0)


def scale_threshold(node: nir.IF, k: float) -> None:
    """In place: the IF node's threshold, initial potential and floor (all threshold units) times k."""
    node.v_threshold = np.asarray(node.v_threshold, dtype=np.float64) * k
    node.metadata = dict(node.metadata or {})
    for key in (cv.V_INIT, cv.V_MIN):
        if key in node.metadata:
            v = np.asarray(cv.meta(node, key), dtype=np.float64) * k
            node.metadata[key] = v.tolist() if v.ndim else float(v)


def tune_thresholds(graph: Graph, acts: dict[str, np.ndarray], steps: int, grid: tuple = GRID) -> Graph:
    """Scale each IF layer's threshold (and its output Scale, v_init and v_min) by its calibrated tuning factor."""
    if steps < 1:
        raise ValueError("tune_thresholds: steps must be >= 1")
    g = copy_graph(graph)
    for name, node in g.nodes.items():
        if not isinstance(node, nir.IF) or cv.meta(node, cv.THRESHOLD_METHOD) in SKIP_METHODS:
            continue
        src = cv.meta(node, cv.SOURCE, name)
        if src not in acts:
            continue
        th = np.asarray(node.v_threshold, dtype=np.float64)
        theta = float(th.max())
        v0 = np.asarray(cv.meta(node, cv.V_INIT, 0.0), dtype=np.float64)
        frac = float(v0.max()) / theta if theta > 0 else 0.0
        k, _ = tuning_factor(acts[src], theta, steps, frac, grid)
        scale_threshold(node, k)
        node.metadata[cv.THRESHOLD_FACTOR] = k
        for s in successors(g, name):
            sn = g.nodes[s]
            if isinstance(sn, nir.Scale) and np.allclose(np.asarray(sn.scale, dtype=np.float64), theta):
                sn.scale = np.asarray(sn.scale, dtype=np.float64) * k
    g.metadata = dict(g.metadata or {})
    g.metadata[cv.TUNED_FOR_STEPS] = int(steps)
    validate(g)
    return g
