"""Spike statistics of a simulation run: firing rate per layer and per neuron, silent and saturated neurons.

A layer at depth d (connections from the Input) can receive signal from step d on, so its *window* is
latency_steps - d steps (= T + depth - d). Rate = spikes / (samples x window), in spikes per neuron per step;
a neuron is *silent* when its rate is 0 and *saturated* when it fired on every step of its window (rate >= 1).
The readout (an integrator that never spikes) has no spike statistics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from snnc.ir.graph import Graph
from snnc.ir.plan import Plan, build_plan

if TYPE_CHECKING:  # a run of either backend (CPU SimResult, Lava LavaResult): read only
    from snnc.backends.cpu.simulator import SimResult


@dataclass
class LayerSpikes:
    name: str
    neurons: int
    window: int  # steps in which the layer can receive signal
    spikes: int  # total over samples and steps
    spikes_per_inference: float
    rate: float  # mean over neurons and samples, spikes per neuron per step
    rates: np.ndarray  # per neuron (averaged over samples), float, layer shape
    silent: int  # neurons with rate 0
    saturated: int  # neurons firing on every step of the window

    def as_dict(self) -> dict:
        return {"name": self.name, "neurons": self.neurons, "window": self.window, "spikes": self.spikes,
                "spikes_per_inference": self.spikes_per_inference, "rate": self.rate, "silent": self.silent,
                "saturated": self.saturated}


def layer_depths(plan: Plan) -> dict[str, int]:
    """Connections on the longest path from the Input to each neuron layer."""
    depth = {plan.input: 0}
    for n in plan.neurons:
        depth[n] = max(depth.get(plan.connections[i].src, 0) + 1 for i in plan.incoming[n])
    return depth


def spike_stats(graph: Graph, result: SimResult, plan: Plan | None = None) -> dict[str, LayerSpikes]:
    """Statistics of every spiking layer (readout excluded), in topological order."""
    plan = plan or build_plan(graph)
    depth = layer_depths(plan)
    out = {}
    for n in plan.neurons:
        if n == plan.readout:
            continue
        c = result.spike_counts[n]
        window = result.latency_steps - depth[n]
        per_neuron = c.reshape(result.samples, -1).sum(0)
        rates = per_neuron / (result.samples * window)
        total = int(per_neuron.sum())
        out[n] = LayerSpikes(
            name=n, neurons=int(per_neuron.size), window=window, spikes=total,
            spikes_per_inference=total / result.samples, rate=float(rates.mean()),
            rates=rates.reshape(c.shape[1:]), silent=int((per_neuron == 0).sum()),
            saturated=int((per_neuron >= result.samples * window).sum()))
    return out
