"""Rockpool 3.1.0 <-> snnc (nox session ``frameworks``): spikes compared on the same input where a direction works.

Rockpool's torch neurons step with dt (s) and exact decays a = exp(-dt/tau):
  LIFNeuronTorch: v = a·v + x;                          LIFTorch: i = b·(i + x), v = a·v + i
then n = floor(v/θ) spikes where v >= θ, v -= n·θ (reset by subtraction, several spikes per step possible).
Its ``to_nir`` writes LIF/CubaLIF with r = tau·a/dt and no v_reset (nir 1.0.8 fills v_reset = 0, i.e. "reset to
zero"). Read with NIR's exact ("exp") discretisation, that r gives the input gain r·dt/tau = a, not Rockpool's 1
(and CubaLIF's current gain w_in·dt/tau_syn = dt/tau_syn, not Rockpool's b): measured below, and the repair
(r = tau/dt, w_in = b·tau_syn/dt, reset "subtract") makes every spike equal.
snnc delays every connection by one step; layer k is compared k steps later (``spike_compare``).
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snnc.frontend.nir_import import ImportOptions, lower, read_any
from snnc.passes.fuse_synapses import fuse_synapses
from snnc.ir.errors import NIRImportWarning
from spike_compare import compare_and_measure, measure, mismatches, snnc_rasters

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rockpool") is None,
                                reason="Rockpool 3.1.0 not installed: run `nox -s frameworks`")
DATA = Path(__file__).parent.parent / "data" / "nir_paper"
DT = 1e-3  # s, Rockpool's default step
T = 32
W1 = {False: 0.15, True: 0.04}  # weight scales keeping every layer's rate in (0.02, 0.9) and <= 1 spike per step
W2 = {False: 0.6, True: 0.25}


def _version() -> str:
    import rockpool

    return rockpool.__version__


def _net(cuba: bool):
    """8 -> 16 -> 4, bias-free, Rockpool LIFNeuronTorch (LIF) or LIFTorch (CubaLIF) layers."""
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFNeuronTorch, LIFTorch, LinearTorch

    torch.manual_seed(0)
    if cuba:
        layer = lambda n, tm: LIFTorch(n, tau_mem=tm, tau_syn=0.005, threshold=1.0, dt=DT)  # noqa: E731
    else:
        layer = lambda n, tm: LIFNeuronTorch(n, tau_mem=tm, threshold=1.0, dt=DT)  # noqa: E731
    net = Sequential(LinearTorch((8, 16), has_bias=False), layer(16, 0.01),
                     LinearTorch((16, 4), has_bias=False), layer(4, 0.02))
    with torch.no_grad():
        net[0].weight.data = net[0].weight.data.abs() * W1[cuba]
        net[2].weight.data = net[2].weight.data * W2[cuba]
    return net


def _rasters(net, x: torch.Tensor, steps: int, names: list[str]) -> dict[str, np.ndarray]:
    """Run the feed-forward chain layer by layer on x held for ``steps`` steps; spike counts of each neuron layer,
    (steps, N, n) (Rockpool may emit several per step), keyed by the NIR node name."""
    h = x[:, None, :].expand(x.shape[0], steps, x.shape[1])
    out, k = {}, 0
    with torch.no_grad():
        for m in net:
            m.reset_state()
            h = m(h)
            h = h[0] if isinstance(h, tuple) else h
            if "LIF" in type(m).__name__:
                out[names[k]] = h.numpy().transpose(1, 0, 2)
                k += 1
    return out


def _export(net) -> nir.NIRGraph:
    from rockpool.nn.modules.torch.nir import to_nir

    return to_nir(net, torch.zeros(1, 8))


def _repair(g: nir.NIRGraph) -> nir.NIRGraph:
    """Rockpool's gains as NIR writes them: r = tau_mem/dt (gain 1 into v), w_in = b·tau_syn/dt."""
    for node in g.nodes.values():
        if isinstance(node, (nir.LIF, nir.CubaLIF)):
            tm = np.asarray(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau, np.float64)
            node.r = tm / DT
            if isinstance(node, nir.CubaLIF):
                ts = np.asarray(node.tau_syn, np.float64)
                node.w_in = np.exp(-DT / ts) * ts / DT
    return g


@pytest.mark.parametrize("cuba", [False, True], ids=["LIFNeuronTorch", "LIFTorch"])
def test_rockpool_to_snnc(cuba):
    """Rockpool -> to_nir -> snnc ("exp", dt = 1e-3): as written, spikes differ (gain, reset: measured); with
    Rockpool's gains and reset by subtraction, every spike is equal."""
    net = _net(cuba)
    g = _export(net)
    neurons = [n for n, v in g.nodes.items() if isinstance(v, (nir.LIF, nir.CubaLIF))]
    assert len(neurons) == 2
    x = torch.rand(16, 8)
    ref = _rasters(net, x, T, neurons)
    assert max(float(r.max()) for r in ref.values()) <= 1  # one spike per step at most: comparable with NIR's
    kind = "CubaLIF (LIFTorch)" if cuba else "LIF (LIFNeuronTorch)"
    with pytest.warns(NIRImportWarning, match="node 'input': field 'input_type' \\[1, 8\\]"):
        as_written = fuse_synapses(lower(g, ImportOptions(dt=DT, discretisation="exp")))
    m0 = mismatches(ref, snnc_rasters(as_written, x.numpy(), T, neurons))
    measure("Rockpool", _version(), "Rockpool -> snnc", "test_rockpool_to_snnc", sum(r.size for r in ref.values()),
            sum(m0.values()), f"{kind}, read as written (gain r·dt/tau = exp(-dt/tau), v_reset = 0)")
    assert sum(m0.values()) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRImportWarning)
        repaired = fuse_synapses(lower(_repair(_export(net)),
                                       ImportOptions(dt=DT, discretisation="exp", reset="subtract")))
    mism = compare_and_measure("Rockpool", _version(), "Rockpool -> snnc", "test_rockpool_to_snnc", ref,
                               snnc_rasters(repaired, x.numpy(), T, neurons),
                               f"{kind}, Rockpool's gains (r = tau/dt, w_in = b·tau_syn/dt), reset subtract")
    assert mism == {n: 0 for n in neurons}


def test_rockpool_cannot_read_snnc_or_paper_graphs():
    """Rockpool 3.1.0's from_nir: no IF (snnc's converted graphs), and its LIF reader asks LIF for ``tau_mem``
    (the NIR paper's lif_rockpool.nir, written by Rockpool itself, does not open). Measured; fails when fixed."""
    from rockpool.nn.modules.torch.nir import from_nir

    import snnc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16, bias=False), torch.nn.ReLU(), torch.nn.Linear(16, 4, bias=False))
    c = snnc.compile(model, np.random.default_rng(0).random((16, 8)), v_init=0.0, bias_onset=False, v_floor=None)
    with pytest.raises(NotImplementedError, match="Cannot convert .*IF"):
        from_nir(c.float_graph)
    measure("Rockpool", _version(), "snnc -> Rockpool", "test_rockpool_cannot_read_snnc_or_paper_graphs", 0, 0,
            "from_nir: NotImplementedError for nir.IF")
    with pytest.raises(ValueError, match="Type inference error"):
        nir.read(DATA / "lif_rockpool.nir")  # nir 1.0.8: Output type [1, 1, 1] after LIF(1)
    with pytest.raises(AttributeError, match="tau_mem"):
        from_nir(read_any(DATA / "lif_rockpool.nir"))  # snnc reads it (tests/test_nir_paper_graphs.py)
    measure("Rockpool", _version(), "paper lif_rockpool.nir -> Rockpool", "test_rockpool_cannot_read_snnc_or_paper_graphs",
            0, 0, "nir.read: type inference error (Output [1,1,1]); read by snnc, from_nir: LIF has no tau_mem")
