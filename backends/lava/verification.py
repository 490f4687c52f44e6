"""Verify the bit-accurate CPU simulator against Lava: every spike of every layer, final u/v, output potentials."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from snnc.backends.cpu.simulator import SimResult, simulate
from snnc.backends.lava.runner import LavaResult, run_lava
from snnc.ir.graph import Graph


@dataclass
class Divergence:
    """The first spike that differs, ordered by (sample, step, layer order); ``neuron`` is a NIR index."""

    layer: str
    neuron: tuple
    sample: int
    step: int
    sim: bool
    lava: bool


@dataclass
class LayerDiff:
    """Per neuron layer: spike entries (step x sample x neuron) compared/differing, final u/v entries differing,
    and the spikes Lava emitted (activity: a silent layer compares little)."""

    spikes_compared: int
    spikes_differ: int
    u_differ: int
    v_differ: int
    lava_spikes: int = 0


@dataclass
class VerifyReport:
    """Lava vs simulator over ``samples`` samples of ``steps`` (+ depth) steps.

    Spikes and output potentials are those of the engine ``simulate`` runs by default (``engine``: "fast" for
    integer IF/I graphs, else "reference"); the final u and v come from the reference engine (the fast one keeps
    no u). ``reference_spikes_differ`` counts the reference engine's spikes that differ from Lava's.
    potentials_differ counts (sample, output neuron) whose final readout potential (24-bit v) differs;
    state_differ counts final u/v entries of any layer that differ."""

    samples: int
    steps: int
    spikes_compared: int
    spikes_differ: int
    potentials_differ: int
    state_differ: int
    layers: dict[str, LayerDiff]
    first_divergence: Divergence | None
    lava_samples_per_s: float
    sim_samples_per_s: float
    lava_compile_s: float
    engine: str = "reference"
    reference_spikes_differ: int = 0
    sequence: bool = False
    input_steps: int | None = None

    @property
    def ok(self) -> bool:
        return self.spikes_differ == 0 and self.potentials_differ == 0 and self.state_differ == 0 \
            and self.reference_spikes_differ == 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def compare(sim: SimResult, lava: LavaResult, order: list[str], final: SimResult | None = None) -> VerifyReport:
    """Compare two runs of the same graph on the same samples (``order``: neuron layers in plan order); final u/v
    from ``final`` when given (a reference-engine run), else from ``sim``."""
    final = sim if final is None else final
    layers: dict[str, LayerDiff] = {}
    first: tuple | None = None
    for li, n in enumerate(order):
        rs, rl = sim.rasters[n], lava.rasters[n]
        if rs.shape != rl.shape:
            raise ValueError(f"layer {n!r}: raster shapes differ (simulator {rs.shape}, Lava {rl.shape})")
        diff = rs != rl
        nd = int(diff.sum())
        if nd:
            i, t, *idx = np.argwhere(np.swapaxes(diff, 0, 1))[0]  # first by sample, then step
            key = (int(i), int(t), li)  # (sample, step, layer)
            if first is None or key < first[0]:
                first = (key, Divergence(n, tuple(int(k) for k in idx), int(i), int(t),
                                         bool(rs[(t, i, *idx)]), bool(rl[(t, i, *idx)])))
        fs, fl = final.final_state[n], lava.final_state[n]
        spiking = n in sim.spikes_per_layer
        layers[n] = LayerDiff(spikes_compared=int(diff.size) if spiking else 0, spikes_differ=nd,
                              u_differ=int((fs["u"] != fl["u"]).sum()), v_differ=int((fs["v"] != fl["v"]).sum()),
                              lava_spikes=int(rl.sum()))
    return VerifyReport(
        samples=sim.samples, steps=sim.steps,
        spikes_compared=sum(d.spikes_compared for d in layers.values()),
        spikes_differ=sum(d.spikes_differ for d in layers.values()),
        potentials_differ=int((np.asarray(sim.potentials) != np.asarray(lava.potentials)).sum()),
        state_differ=sum(d.u_differ + d.v_differ for d in layers.values()),
        layers=layers, first_divergence=first[1] if first else None,
        lava_samples_per_s=lava.samples_per_s, sim_samples_per_s=sim.samples_per_s,
        lava_compile_s=lava.compile_seconds, sequence=bool(sim.sequence), input_steps=sim.input_steps)


def verify(graph: Graph, x: np.ndarray, steps: int | None = None, progress: bool = True,
           timeout_s: float | None = None) -> VerifyReport:
    """Run the same samples on Lava and on the CPU simulator and compare them spike for spike (x static or a
    sequence, ``snnc.ir.sequence``; steps None: the sequence's length)."""
    from snnc.ir.plan import build_plan

    order = build_plan(graph).neurons
    lava = run_lava(graph, x, steps, rasters=True, record_final=True, progress=progress, timeout_s=timeout_s)
    ref = simulate(graph, x, steps, rasters=True, record_final=True)  # record_final: the int64 reference engine
    sim = simulate(graph, x, steps, rasters=True)  # what users run: the fast engine where it applies
    rep = compare(sim, lava, order, final=ref)
    rep.engine = "fast" if sim.engine == "fast" else "reference"
    rep.reference_spikes_differ = sum(int((ref.rasters[n] != lava.rasters[n]).sum()) for n in order)
    return rep
