"""IIR-SNN few/one-step fine-tuning (Chowdhury et al.): retrain a converted float SNN at T, then T-1, ..., 1.

``SpikingGraph`` is a differentiable torch module that runs exactly the float dynamics of
``backends/cpu/simulator.py`` on a fused float graph: every connection delivers at step t what its source emitted
at t-1; IF: v += r*(bias + a), spike when v > theta (surrogate gradient: triangle of half-width theta), reset by
subtraction (or to zero); the I readout integrates; logits = readout potential gained over the last T of the
T + depth steps, divided by T. Weights and biases (Affine/Linear/Conv2d), thresholds and initial potentials
(``snnc.v_init``, which already holds the bias-onset pre-charge) are trainable. ``finetune_few_steps`` trains at
each T in turn, each initialised from the previous one, and writes the parameters back into graph copies (units as
the float graph: threshold units). The written v_init is the trained one, marked ``snnc.bias_onset`` so the
onset pass never pre-charges it twice; quantize it with ``snnc.pipeline.quantize`` as usual."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import nir
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse
from snnc.ir.errors import DataError, GraphError, UnsupportedLayerError
from snnc.ir.graph import Graph, copy_graph
from snnc.ir.neuron import fire, step_float
from snnc.ir.plan import Plan, build_plan, fan_in


class _TriangleSpike(torch.autograd.Function):
    """Heaviside(z) forward; d/dz = max(0, 1 - |z|) backward (z = (v - theta) / theta)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return g * torch.clamp(1.0 - z.abs(), min=0.0)


def _triangle(v: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
    """The surrogate spike of ``snnc.ir.neuron.fire``: Heaviside(v - th) with a triangle gradient of half-width th."""
    return _TriangleSpike.apply((v - th) / th)


def _pname(node: str) -> str:
    return node.replace(".", "__")


class SpikingGraph(nn.Module):
    """The simulator's float dynamics of a fused float NIR graph as a trainable torch module (float64 parameters).

    ``forward(x, steps)`` -> logits (B, n_out) in ANN logit units, exactly ``simulate(graph, x, steps).logits``
    (to float rounding) while the parameters hold the graph's values: the same connections (``snnc.ir.chain``)
    and the same neuron kernel (``snnc.ir.neuron``), with a surrogate-gradient spike."""

    def __init__(self, graph: Graph, train_v_init: bool = True) -> None:
        super().__init__()
        if cv.graph_kind(graph) != cv.FLOAT:
            raise GraphError("graph metadata 'snnc.kind': IIR fine-tuning needs the float graph "
                             "(Compiled.float_graph), got an integer graph")
        self.graph = graph
        self.plan: Plan = build_plan(graph)
        p = self.plan
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.thresholds = nn.ParameterDict()
        self.v_inits = nn.ParameterDict()
        self._consts: dict[str, torch.Tensor] = {}
        params: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for c in p.connections:
            for n in c.ops:
                node = graph.nodes[n]
                if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)) and n not in params:
                    key = _pname(n)
                    w = np.asarray(node.weight, dtype=np.float64)
                    self.weights[key] = nn.Parameter(torch.as_tensor(w.copy()))
                    b = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64) * np.ones(w.shape[0])
                    self.biases[key] = nn.Parameter(torch.as_tensor(b.copy()),
                                                    requires_grad=not isinstance(node, nir.Linear))
                    params[n] = (self.weights[key], self.biases[key])
                elif not isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.SumPool2d,
                                           nir.AvgPool2d, nir.Scale)):
                    raise UnsupportedLayerError(f"node {n!r}: {type(node).__name__} inside a connection is not "
                                                "supported by IIR fine-tuning")
        self._syn = [Synapse(graph, p, c, False, torch.device("cpu"), params=params) for c in p.connections]
        self.readout_layers: set[str] = set()
        self.resets: dict[str, str] = {}
        for n in p.neurons:
            node, key, shape = graph.nodes[n], _pname(n), p.shapes[n]
            if not isinstance(node, (nir.IF, nir.I)):
                raise UnsupportedLayerError(f"node {n!r}: IIR fine-tuning runs IF and I neurons, not "
                                            f"{type(node).__name__}")
            r = np.broadcast_to(np.asarray(node.r, dtype=np.float64), shape)
            self._consts["r:" + key] = torch.as_tensor(np.array(r))
            self.resets[n] = cv.reset_mode(node)
            if isinstance(node, nir.I) or bool(cv.meta(node, cv.READOUT, False)):
                self.readout_layers.add(n)
            else:
                th = np.asarray(node.v_threshold, dtype=np.float64)
                self.thresholds[key] = nn.Parameter(torch.as_tensor(th.copy()))
                vm = cv.v_min(node, shape)
                if vm is not None:  # the potential floor is a constant (absolute units), as in the simulator
                    self._consts["vmin:" + key] = torch.as_tensor(vm)
            self.v_inits[key] = nn.Parameter(torch.as_tensor(cv.v_init(node, shape)), requires_grad=train_v_init)

    def forward(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """x: (B, *input_shape) analog input presented every step, or a sequence (B, T_in, *input_shape), slice t at
        step t (``snnc.ir.sequence``); runs steps + depth steps; -> (B, n_out)."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        p = self.plan
        dt = next(iter(self.weights.values())).dtype if len(self.weights) else torch.float64
        x = x.to(dt)
        B = x.shape[0]
        shown = min(steps, x.shape[1]) if x.dim() == len(p.shapes[p.input]) + 2 else -1
        conn_bias = [syn(torch.zeros((1,) + tuple(p.shapes[c.src]), dtype=dt))[0]
                     for syn, c in zip(self._syn, p.connections)]
        bias = {n: sum((conn_bias[i] for i in p.incoming[n]), torch.zeros(p.shapes[n], dtype=dt))
                for n in p.neurons}
        v = {n: self.v_inits[_pname(n)].to(dt).expand((B,) + tuple(p.shapes[n])) for n in p.neurons}
        spikes: dict[str, torch.Tensor | None] = {n: None for n in p.neurons}
        buf: list[torch.Tensor | None] = [None] * len(p.connections)
        v_before = v[p.readout]
        for t in range(steps + p.depth):
            for n in p.neurons:
                key = _pname(n)
                r = self._consts["r:" + key].to(dt)
                a = fan_in(buf, p.incoming[n])
                vv = step_float(v[n], a, bias[n] * r, r)
                if n in self.readout_layers:
                    v[n], spikes[n] = vv, None
                    continue
                vmin = self._consts.get("vmin:" + key)
                v[n], spikes[n] = fire(vv, self.thresholds[key], None if vmin is None else vmin.to(dt),
                                       self.resets[n], spike=_triangle)
            if t == p.depth - 1:
                v_before = v[p.readout]
            xt = x if shown < 0 else (x[:, t] if t < shown else None)
            for i, c in enumerate(p.connections):
                src = xt if c.src == p.input else spikes[c.src]
                buf[i] = None if src is None else self._syn[i](src) - conn_bias[i]
        return ((v[p.readout] - v_before) / steps).reshape(B, -1)

    def clamp_thresholds(self, floor: float = 1e-3) -> None:
        """Keep every threshold positive (>= floor)."""
        with torch.no_grad():
            for th in self.thresholds.values():
                th.clamp_(min=floor)

    def to_graph(self) -> Graph:
        """A copy of the graph holding the current parameters (float64), v_init marked as onset-compensated."""
        g = copy_graph(self.graph)
        for n, node in g.nodes.items():
            key = _pname(n)
            if key in self.weights:
                node.weight = self.weights[key].detach().double().numpy().copy()
                if not isinstance(node, nir.Linear):
                    node.bias = self.biases[key].detach().double().numpy().copy()
            if key in self.thresholds:
                node.v_threshold = self.thresholds[key].detach().double().numpy().copy()
            if key in self.v_inits and n in self.plan.neurons:
                node.metadata = dict(node.metadata or {})
                node.metadata[cv.V_INIT] = self.v_inits[key].detach().double().numpy().tolist()
                node.metadata[cv.BIAS_ONSET] = True
        return g


@dataclass
class FinetuneLog:
    """Per T: training loss per epoch and training-set accuracy of the last epoch (fractions)."""

    loss: dict[int, list[float]] = field(default_factory=dict)
    train_accuracy: dict[int, float] = field(default_factory=dict)


def finetune_few_steps(graph: Graph, x: np.ndarray, y: np.ndarray, steps: Sequence[int] = (4, 3, 2, 1),
                       epochs: int = 10, lr: float = 1e-3, batch: int = 128, seed: int = 0,
                       dtype: torch.dtype = torch.float32, train_v_init: bool = True,
                       log: Callable[[int, int, float, float], None] | None = None,
                       record: FinetuneLog | None = None) -> dict[int, Graph]:
    """Fine-tune the float ``graph`` at each T in ``steps`` (in order, each starting from the previous T's
    parameters; Adam + cross-entropy + cosine schedule, ``epochs`` per T); -> {T: trained float graph}.

    x: (N, *input_shape) training inputs, or sequences (N, T_in, *input_shape) (BPTT through the event streams),
    y: (N,) int labels. ``log(T, epoch, loss, train_acc)`` per epoch."""
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"training data: {len(x)} inputs and {len(y)} labels (need the same, non-zero count)")
    if any(int(t) < 1 for t in steps):
        raise DataError(f"steps: every T must be >= 1, got {list(steps)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SpikingGraph(graph, train_v_init=train_v_init).to(dtype)
    xt, yt = torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=torch.long)
    out: dict[int, Graph] = {}
    for T in steps:
        T = int(T)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
        for ep in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            tot, correct = 0.0, 0
            for i in range(0, len(xt), batch):
                idx = perm[i:i + batch]
                logits = model(xt[idx], T)
                loss = F.cross_entropy(logits, yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                model.clamp_thresholds()
                tot += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yt[idx]).sum())
            sched.step()
            if record is not None:
                record.loss.setdefault(T, []).append(tot / len(xt))
                record.train_accuracy[T] = correct / len(xt)
            if log is not None:
                log(T, ep, tot / len(xt), correct / len(xt))
            if not math.isfinite(tot):
                raise GraphError(f"IIR fine-tuning at T={T}: the loss diverged (lower lr)")
        out[T] = model.to_graph()
    return out


def spiking_module(graph: Graph) -> SpikingGraph:
    """The float64 ``SpikingGraph`` of ``graph`` (for checks against the simulator)."""
    return SpikingGraph(copy.deepcopy(graph))
