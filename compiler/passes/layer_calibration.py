"""Pass: calibrate each IF layer of a fused float graph on its own SNN output: threshold factor + bias shift.

The analytic tuning (threshold_tuning.py) models clipping and quantization only. In deep nets the larger error is
the deviation (TTRBR): a layer's input is itself an uneven, late-starting spike train, and the error of each
layer feeds the next. This pass measures it instead. Layer by layer in topological order, on calibration
samples, it runs the float IF dynamics of the compiled graph (the same update as the simulator: bias from step
0, the bias-onset pre-charge, the floor, reset by subtraction) on the spike trains of the already calibrated
layers before it, and reads the layer's output over its readout window (steps depth .. depth + T - 1) as
count * theta / T, the activation it passes on. Then:
  - threshold: theta' = k * theta, k from a grid, minimising the mean squared error against the layer's ANN
    activations (v_init, the floor and every outgoing weight scale with k, so a spike still stands for theta');
  - bias (Li et al. 2021, "bias correction"): per channel, the mean error of the clipped target min(a, theta')
    is added to the layer's bias per step (an IF neuron's output moves by about its bias change), ``rounds`` times.
Relays (frontend/residual.py) copy spikes and are left alone; the readout is not changed. The window is exact
for paths of equal delay (after restructuring); an unbalanced shortcut reaches the readout earlier than the window
assumes. Cost: one IF run per grid value and round per layer, on ``x`` for depth + T steps (ResNet-110, 128
samples, T=32: about 40 s on one thread).
Event streams: ``x`` may be sequences (N, T_in, *input), slice t at step t (``snnc.ir.sequence``); the ANN
activations are then those of the sequences' time-average (the pipeline's ``calib_sequence``), so the pass corrects
what a layer's spikes lose or gain to the stream's fluctuations (an IF neuron counts the running maximum of its
summed input, not its mean).
Units: float graph, threshold (activation) units; bias per step. Records ``snnc.threshold_factor``,
``snnc.bias_shift`` and ``snnc.calibration_mse`` (activation units squared) on each calibrated layer.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse
from snnc.ir.errors import GraphError
from snnc.ir.graph import Graph, copy_graph, validate
from snnc.ir.neuron import fire, step_float
from snnc.ir.plan import build_plan
from snnc.passes.bias_onset import onset_start
from snnc.passes.quantize import synapse_of
from snnc.passes.threshold_tuning import scale_threshold

GRID = tuple(np.round(np.arange(0.5, 1.5001, 0.05), 4))
SKIP_METHODS = ("relay",)


def _run_if(a: torch.Tensor, bias: torch.Tensor, v0: torch.Tensor, vth: torch.Tensor,
            vmin: torch.Tensor | None) -> torch.Tensor:
    """IF with subtractive reset (``snnc.ir.neuron``'s float kernel): input a (L, N, *shape) (a[0] = 0: nothing
    arrives at step 0), K threshold variants at once (v0, vth, vmin: (K, 1 or N, *shape)); bool spikes
    (L, K, N, *shape), float64."""
    v = v0.expand((v0.shape[0],) + tuple(a.shape[1:])).clone()
    s = torch.empty((a.shape[0],) + tuple(v.shape), dtype=torch.bool)
    for t in range(a.shape[0]):
        v, s[t] = fire(step_float(v, a[t], bias, 1.0), vth, vmin, "subtract")
    return s


def calibrate_layers(graph: Graph, x: np.ndarray, acts: dict[str, np.ndarray], steps: int,
                     grid: tuple = GRID, rounds: int = 2, bias_onset: bool = True) -> Graph:
    """Per IF layer (topological order): threshold factor k in ``grid`` and per-channel bias shift that bring its
    SNN output over the T-step window closest to its ANN activations ``acts`` (keyed by ``snnc.source``, each
    (N, *shape) or flat, N = len(x)); float fused graph in, float graph out (see module docstring)."""
    if cv.graph_kind(graph) == cv.INTEGER:
        raise GraphError("calibrate_layers works on float graphs (before quantize)")
    if steps < 1:
        raise ValueError("calibrate_layers: steps must be >= 1")
    from snnc.ir.sequence import input_series

    plan = build_plan(graph)
    g = copy_graph(graph)
    dev = torch.device("cpu")
    series = input_series(plan.shapes[plan.input], x, plan.input)
    xb = torch.as_tensor(series.x, dtype=torch.float64)
    shown = series.presented(steps)  # -1: a static frame on every step
    N = xb.shape[0]
    L = plan.depth + steps
    syn = [Synapse(g, plan, c, False, dev) for c in plan.connections]
    scale: dict[str, float] = {}  # neuron -> k (its outgoing weights are multiplied by k)
    spikes: dict[str, torch.Tensor] = {}  # neuron -> bool (L, N, *shape)
    pos = {n: k for k, n in enumerate(plan.neurons)}
    last_use = {n: max((pos[c.dst] for c in plan.connections if c.src == n), default=-1) for n in plan.neurons}
    grid_t = torch.as_tensor(grid, dtype=torch.float64)
    for n in plan.neurons:
        node = g.nodes[n]
        if isinstance(node, nir.I) or cv.meta(node, cv.READOUT, False):
            continue
        if not isinstance(node, nir.IF) or cv.reset_mode(node) != "subtract":
            raise GraphError(f"layer {n!r}: layer calibration runs IF layers with reset 'subtract', got "
                             f"{type(node).__name__} / {cv.reset_mode(node)!r}")
        shape = tuple(plan.shapes[n])
        a = torch.zeros((L, N) + shape, dtype=torch.float64)
        bias = np.zeros(shape)
        for i in plan.incoming[n]:
            c = plan.connections[i]
            bias = bias + syn[i].bias
            if c.src == plan.input and shown < 0:
                a[1:] += syn[i].linear(xb)
            elif c.src == plan.input:  # slice t arrives at step t + 1
                a[1:shown + 1] += syn[i].linear(xb[:, :shown].transpose(0, 1).flatten(0, 1)).reshape(
                    (shown, N) + shape)
            else:
                s = spikes[c.src][:-1].to(torch.float64).flatten(0, 1)
                a[1:] += scale[c.src] * syn[i].linear(s).reshape((L - 1, N) + shape)
        d = plan.depths[n]
        th = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape)
        v_init = cv.v_init(node, shape)
        vmin = cv.v_min(node, shape)
        src = cv.meta(node, cv.SOURCE, n)
        tune = cv.meta(node, cv.THRESHOLD_METHOD) not in SKIP_METHODS and src in acts
        shift = np.zeros(shape[:1] + (1,) * (len(shape) - 1))
        k_best = 1.0

        def run(ks: torch.Tensor, b: np.ndarray) -> torch.Tensor:
            kk = ks.reshape((-1,) + (1,) * (1 + len(shape)))
            bb = np.broadcast_to(b, shape)
            v0s, vms = [], []
            for k in ks.tolist():
                v0, vm = onset_start(k * v_init, bb, d, k * th, None if vmin is None else k * vmin) if bias_onset \
                    else (k * v_init, None if vmin is None else k * vmin)
                v0s.append(np.broadcast_to(v0, shape))
                vms.append(None if vm is None else np.broadcast_to(vm, shape))
            v0t = torch.as_tensor(np.stack(v0s))[:, None]
            vmt = None if vmin is None else torch.as_tensor(np.stack(vms))[:, None]
            return _run_if(a, torch.as_tensor(np.array(bb)), v0t, kk * torch.as_tensor(np.array(th)), vmt)

        if tune:
            target = torch.as_tensor(np.asarray(acts[src], dtype=np.float64).reshape((N,) + shape))
            theta = torch.as_tensor(np.array(th))

            def outputs(s: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
                cnt = s[d:d + steps].sum(0).to(torch.float64)  # (K, N, *shape)
                return cnt * ks.reshape((-1,) + (1,) * (1 + len(shape))) * theta / steps

            out = outputs(run(grid_t, bias), grid_t)
            err = ((out - target) ** 2).flatten(1).mean(1)
            k_best = float(grid_t[int(torch.argmin(err))])
            kt = torch.tensor([k_best], dtype=torch.float64)
            for _ in range(rounds):
                out = outputs(run(kt, bias + shift), kt)[0]
                e = torch.minimum(target, k_best * theta) - out  # (N, *shape)
                per_ch = e.transpose(0, 1).reshape(shape[0], -1).mean(1).numpy()
                shift = shift + per_ch.reshape(shift.shape)
            s = run(kt, bias + shift)
            mse = float(((outputs(s, kt)[0] - target) ** 2).mean())
            s = s[:, 0]
        else:
            s = run(torch.tensor([1.0], dtype=torch.float64), bias)[:, 0]
        spikes[n] = s
        scale[n] = k_best
        if tune:
            scale_threshold(node, k_best)
            node.metadata[cv.THRESHOLD_FACTOR] = float(node.metadata.get(cv.THRESHOLD_FACTOR, 1.0)) * k_best
            node.metadata[cv.BIAS_SHIFT] = shift.ravel().tolist()
            node.metadata[cv.CALIBRATION_MSE] = mse
            first = synapse_of(g, plan.connections[plan.incoming[n][0]].ops)
            fb = g.nodes[first]
            if getattr(fb, "bias", None) is None:
                raise GraphError(f"synapse {first!r} into layer {n!r} has no bias field to take the bias shift "
                                 "(fuse_synapses gives every synapse an Affine/Conv2d bias)")
            fb.bias = np.asarray(fb.bias, dtype=np.float64) + (shift.ravel() if isinstance(fb, nir.Conv2d)
                                                                else shift.reshape(-1))
            for c in plan.connections:
                if c.src == n:
                    w = g.nodes[synapse_of(g, c.ops)]
                    w.weight = np.asarray(w.weight, dtype=np.float64) * k_best
        for m in [m for m in spikes if last_use[m] <= pos[n]]:  # spike trains no later layer reads
            del spikes[m]
    g.metadata = dict(g.metadata or {})
    g.metadata[cv.CALIBRATED_FOR_STEPS] = int(steps)
    validate(g)
    return g
