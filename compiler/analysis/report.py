"""The energy report of one run: per neuron layer and total, per inference, SNN (counted) vs ANN (MACs).

A row belongs to a neuron layer L and holds: L's own spikes and rate; the SOPs / input MACs of the connections
*into* L (the work of L's synapses, fan-in summed); L's neuron updates; the ANN MACs of the same connections, as the
source network computes them (``snnc.ann_macs``, counted before fusing; ``macs.layer_ann_macs``) — every energy
ratio uses these. ``macs_counted_on`` says what they were counted on; ``macs_compiled_graph`` is the count of the
fused graph itself, for comparison. All counts are per inference (mean over samples); ``*_total`` fields are exact
integers over all samples.
Sequences and recurrent graphs: the ANN baseline is the same network without spikes stepped once per input step
(an RNN for a recurrent graph): its MACs are the per-step MACs times T (``ann_steps``); a static frame through a
feed-forward graph is one ANN pass. A constant drive (``snnc.drive``) costs the ANN nothing (a bias)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from snnc.ir.graph import Graph
from snnc.ir.plan import build_plan

from .energy import EnergyModel, get_model
from .macs import COUNTED_ON, connection_macs, layer_ann_macs
from .sops import ConnectionOps, count_ops, neuron_updates
from .spike_stats import LayerSpikes, spike_stats

if TYPE_CHECKING:  # a run of either backend (CPU SimResult, Lava LavaResult): read only
    from snnc.backends.cpu.simulator import SimResult


@dataclass
class LayerRow:
    name: str
    neurons: int
    spikes: float  # per inference (0 for the readout)
    rate: float | None  # spikes per neuron per step of the layer's window; None for the readout
    silent: int | None
    saturated: int | None
    sops: float  # per inference, into this layer
    input_macs: float  # per inference, graded input into this layer
    neuron_updates: float  # per inference
    macs: float  # ANN MACs per inference of the same connections
    snn_energy_j: float
    ann_energy_j: float


@dataclass
class EnergyReport:
    steps: int
    latency_steps: int
    samples: int
    accuracy: float | None
    model: EnergyModel
    layers: list[LayerRow]
    connections: list[ConnectionOps]
    stats: dict[str, LayerSpikes] = field(repr=False, default_factory=dict)
    sops_total: int = 0
    input_macs_total: int = 0
    neuron_updates_total: int = 0
    sequence: bool = False
    input_steps: int | None = None
    input_binary: bool = False
    ann_steps: int = 1
    macs_counted_on: str = "torch"  # a COUNTED_ON key: what the ANN MACs were counted on
    macs_compiled_graph: float = 0.0  # MACs per inference of the graph as given (fused), for comparison

    @property
    def sops(self) -> float:
        return self.sops_total / self.samples

    @property
    def input_macs(self) -> float:
        return self.input_macs_total / self.samples

    @property
    def neuron_updates(self) -> float:
        return self.neuron_updates_total / self.samples

    @property
    def macs(self) -> float:
        return float(sum(r.macs for r in self.layers))

    @property
    def snn_energy_j(self) -> float:
        return self.model.snn_energy(self.sops, self.input_macs, self.neuron_updates)

    @property
    def ann_energy_j(self) -> float:
        return self.model.ann_energy(self.macs)

    @property
    def spikes(self) -> float:
        return float(sum(r.spikes for r in self.layers))

    def as_dict(self) -> dict:
        """The JSON object of ``snnc energy --json`` (per inference unless named *_total)."""
        snn, ann = self.snn_energy_j, self.ann_energy_j
        return {"steps": self.steps, "latency_steps": self.latency_steps, "samples": self.samples,
                "accuracy": self.accuracy, "energy_model": self.model.as_dict(), "spikes": self.spikes,
                "sops": self.sops, "input_macs": self.input_macs, "neuron_updates": self.neuron_updates,
                "macs": self.macs, "ann_macs_counted_on": self.macs_counted_on,
                "ann_macs_counted_on_text": COUNTED_ON[self.macs_counted_on],
                "macs_compiled_graph": self.macs_compiled_graph, "snn_energy_j": snn, "ann_energy_j": ann,
                "energy_ratio_ann_over_snn": ann / snn if snn > 0 else None,
                "sops_total": self.sops_total, "input_macs_total": self.input_macs_total,
                "neuron_updates_total": self.neuron_updates_total,
                "sequence": self.sequence, "input_steps": self.input_steps, "input_binary": self.input_binary,
                "ann_steps": self.ann_steps,
                "layers": [asdict(r) for r in self.layers],
                "connections": [asdict(c) for c in self.connections]}


def energy_report(graph: Graph, x: np.ndarray, result: SimResult, model: EnergyModel | str = "cmos45",
                  labels: np.ndarray | None = None) -> EnergyReport:
    """Count SOPs, input MACs, neuron updates and ANN MACs of the run ``result`` on inputs ``x``; price them."""
    model = get_model(model) if isinstance(model, str) else model
    plan = build_plan(graph)
    conns = count_ops(graph, result, x, plan)
    ann_steps = result.steps if (getattr(result, "sequence", False) or plan.recurrent) else 1
    gmacs = connection_macs(graph, plan)
    lmacs, counted_on = layer_ann_macs(graph, plan)
    upd = neuron_updates(result)
    stats = spike_stats(graph, result, plan)
    N = result.samples
    rows = []
    for n in plan.neurons:
        inc = [c for c in conns if c.dst == n]
        sops = sum(c.ops for c in inc if not c.graded) / N
        imacs = sum(c.ops for c in inc if c.graded) / N
        macs = float(lmacs[n] * ann_steps)
        nu = upd[n] / N
        st = stats.get(n)
        rows.append(LayerRow(
            name=n, neurons=result.neurons_per_layer[n], spikes=st.spikes_per_inference if st else 0.0,
            rate=st.rate if st else None, silent=st.silent if st else None, saturated=st.saturated if st else None,
            sops=sops, input_macs=imacs, neuron_updates=nu, macs=macs,
            snn_energy_j=model.snn_energy(sops, imacs, nu), ann_energy_j=model.ann_energy(macs)))
    acc = result.accuracy(labels) if labels is not None else None
    return EnergyReport(
        steps=result.steps, latency_steps=result.latency_steps, samples=N, accuracy=acc, model=model, layers=rows,
        connections=conns, stats=stats, sops_total=sum(c.ops for c in conns if not c.graded),
        input_macs_total=sum(c.ops for c in conns if c.graded), neuron_updates_total=sum(upd.values()),
        sequence=bool(getattr(result, "sequence", False)), input_steps=getattr(result, "input_steps", None),
        input_binary=any(c.src == plan.input and not c.graded and c.synapses for c in conns), ann_steps=ann_steps,
        macs_counted_on=counted_on, macs_compiled_graph=float(sum(gmacs.values())) * ann_steps)


def energy(graph: Graph, x: np.ndarray, steps: int | None = 8, labels: np.ndarray | None = None,
           model: EnergyModel | str = "cmos45", batch_size: int = 256, device: str = "cpu") -> EnergyReport:
    """Simulate ``graph`` on ``x`` for ``steps`` (CPU backend; a sequence x with steps None runs its length) and
    report its energy against the ANN's MACs."""
    from snnc.backends.cpu.simulator import simulate

    return energy_report(graph, x, simulate(graph, x, steps, batch_size=batch_size, device=device), model, labels)
