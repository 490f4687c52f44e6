"""NIR interoperability: snnTorch / Sinabs graphs compile with snnc and behave the same; snnc graphs open in Sinabs.

Every connection adds one step in snnc (as in Lava), so layer k's raster is the framework's raster shifted by k
steps (k = connections from the Input). The networks are bias-free: snnc/Lava add a neuron's bias from step 0,
the frameworks add it together with the (undelayed) input, so biased graphs differ during the first k steps.
Spike mismatch counts are printed with ``-s`` (``MEASURE`` lines) for the README table.
"""
from __future__ import annotations

import importlib.util

import nir
import numpy as np
import pytest
import snnc
import torch
from snnc.backends.cpu.simulator import simulate
from snnc.frontend.nir_import import ImportOptions, deployability, lower
from snnc.ir import make_graph, nir_compat
from snnc.ir.errors import GraphError, QuantizationError, UnsupportedLayerError
from snnc.passes.fuse_synapses import fuse_synapses

HAS_SNNTORCH = importlib.util.find_spec("snntorch") is not None and importlib.util.find_spec("nirtorch") is not None
NO_SNNTORCH = ("snnTorch 1.0.0's export_to_nir needs nirtorch and nir >= 1.0.6 (it passes v_reset); installed: "
               f"snntorch {HAS_SNNTORCH}, nir {nir.version}")
HAS_SNNTORCH = HAS_SNNTORCH and nir_compat.HAS_V_RESET
HAS_SINABS = importlib.util.find_spec("sinabs") is not None
HAS_LAVA = importlib.util.find_spec("lava") is not None
T = 24


# ------------------------------------------------------------------------------------------- snnTorch
def _snntorch_export(net: torch.nn.Module, sample: torch.Tensor) -> nir.NIRGraph:
    """snnTorch 1.0.0's own export_to_nir, unpatched (it needs nir >= 1.0.6 through nirtorch 2.6)."""
    from snntorch.export_nir import export_to_nir

    return export_to_nir(net, sample, ignore_dims=[0])


def _per_neuron(n: tuple | int, value: float) -> torch.Tensor:
    """snnTorch 1.0.0 exports a scalar beta/threshold as a 0-d NIR parameter, which nir >= 1.0.5's type inference
    refuses inside export_to_nir; per-neuron parameters (NIR's convention) export."""
    return torch.full((n,) if isinstance(n, int) else n, value)


def _snntorch_rasters(net: torch.nn.Sequential, x: torch.Tensor, steps: int) -> dict[str, np.ndarray]:
    """Spikes of every snnTorch neuron module, keyed by its Sequential index, (steps, N, ...) bool."""
    import snntorch as snn
    from snntorch import utils

    utils.reset(net)
    out: dict[str, list] = {}
    with torch.no_grad():
        for _ in range(steps):
            h = x
            for i, m in enumerate(net):
                h = m(h)
                if isinstance(h, tuple):
                    h = h[0]
                if isinstance(m, snn.SpikingNeuron):
                    out.setdefault(str(i), []).append(h.clone())
    return {k: torch.stack(v).numpy() > 0 for k, v in out.items()}


def _compare(ref: dict[str, np.ndarray], graph: nir.NIRGraph, x: np.ndarray, steps: int) -> dict[str, int]:
    """Spike mismatches per layer between framework rasters and snnc's float simulation shifted by depth."""
    from snnc.ir.plan import build_plan

    depth = build_plan(graph).depths
    res = simulate(graph, x, steps, rasters=True)
    out = {}
    for k, r in ref.items():
        mine = res.rasters[k][depth[k]:depth[k] + steps].reshape(r.shape)
        out[k] = int((mine != r).sum())
    return out


def _measured_mismatches(label: str, ref: dict[str, np.ndarray], graph: nir.NIRGraph, x: torch.Tensor) -> dict:
    """``_compare`` over T steps after checking that every reference layer is active (0.02 < rate < 0.9, else
    the comparison says little); prints a ``MEASURE`` line."""
    assert all(0.02 < r.mean() < 0.9 for r in ref.values()), {k: r.mean() for k, r in ref.items()}
    mism = _compare(ref, graph, x.numpy().astype(np.float64), T)
    print("MEASURE", label, "mismatches", mism, "of", {k: r.size for k, r in ref.items()})
    return mism


def _leaky_mlp(reset_delay: bool, seed: int = 0, gain2: float = 1.0, reset: str = "subtract") -> torch.nn.Sequential:
    """8 -> Leaky(16) -> Leaky(4); ``gain2`` scales the second weights (2: one step's input can exceed 2 θ)."""
    import snntorch as snn

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16, bias=False),
        snn.Leaky(beta=_per_neuron(16, 0.9), threshold=_per_neuron(16, 1.0), init_hidden=True,
                  reset_delay=reset_delay, reset_mechanism=reset),
        torch.nn.Linear(16, 4, bias=False),
        snn.Leaky(beta=_per_neuron(4, 0.8), threshold=_per_neuron(4, 1.0), init_hidden=True, output=True,
                  reset_delay=reset_delay, reset_mechanism=reset))
    with torch.no_grad():
        net[0].weight *= 3
        net[2].weight *= gain2
    return net


@pytest.mark.skipif(not HAS_SNNTORCH, reason=NO_SNNTORCH)
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_snntorch_leaky_mlp_spikes_equal(tmp_path, reset):
    """snnTorch Leaky (reset_delay=False: NIR's immediate reset) -> export_to_nir -> file -> snnc: every spike equal.

    snnTorch 1.0.0 writes v_reset = 0 whatever its reset_mechanism, so on nir >= 1.0.5 the file says "reset to
    zero": a net trained with reset by subtraction (snnTorch's default) needs ImportOptions(reset="subtract"),
    and read as the file says it differs (measured)."""
    net = _leaky_mlp(reset_delay=False, reset=reset)
    g = _snntorch_export(net, torch.randn(1, 8))
    nir.write(tmp_path / "snntorch.nir", g)
    from snnc.frontend.nir_import import read_any

    raw = read_any(tmp_path / "snntorch.nir")
    assert raw.nodes["1"].metadata["snnc.reset"] == "zero"  # v_reset stored: nir >= 1.0.5 semantics
    lg = fuse_synapses(lower(raw, ImportOptions(reset=None if reset == "zero" else "subtract")))
    assert lg.metadata["snnc.nir_dt"] == pytest.approx(1e-4)  # inferred from r = tau / dt
    x = torch.rand(16, 8)
    ref = _snntorch_rasters(net, x, T)
    mism = _measured_mismatches(f"snntorch Leaky MLP reset_delay=False reset={reset}", ref, lg, x)
    assert mism == {"1": 0, "3": 0}
    if reset == "subtract":
        as_file = _compare(ref, fuse_synapses(lower(raw)), x.numpy().astype(np.float64), T)
        print("MEASURE snntorch subtract-reset MLP read as its file says (reset to zero): mismatches", as_file)
        assert as_file["1"] > 0
        # where one step's input exceeds 2 θ the post-reset potential stays above θ, and snnTorch (reset_delay=False)
        # then tests the next step's spike on v - θ: a documented divergence from NIR's LIF, only in that layer
        net2 = _leaky_mlp(reset_delay=False, gain2=2.0)
        m2 = _compare(_snntorch_rasters(net2, x, T),
                      fuse_synapses(lower(_snntorch_export(net2, torch.randn(1, 8)), ImportOptions(reset="subtract"))),
                      x.numpy().astype(np.float64), T)
        print("MEASURE snntorch Leaky MLP reset_delay=False, input > 2 theta, mismatches", m2)
        assert m2["1"] == 0


@pytest.mark.skipif(not HAS_SNNTORCH, reason=NO_SNNTORCH)
def test_snntorch_default_reset_delay_differs():
    """snnTorch's default reset_delay=True subtracts the threshold one step late and undecayed: not NIR's LIF."""
    net = _leaky_mlp(reset_delay=True)
    g = _snntorch_export(net, torch.randn(1, 8))
    x = torch.rand(16, 8)
    mism = _compare(_snntorch_rasters(net, x, T), fuse_synapses(lower(g, ImportOptions(reset="subtract"))),
                    x.numpy().astype(np.float64), T)
    print("MEASURE snntorch Leaky MLP reset_delay=True (default) mismatches", mism)
    assert sum(mism.values()) > 0


@pytest.mark.skipif(not HAS_SNNTORCH, reason=NO_SNNTORCH)
def test_snntorch_synaptic_conv_spikes_equal():
    """Conv2d -> Synaptic (CubaLIF) -> Flatten -> Linear -> Leaky: every spike equal in float mode."""
    import snntorch as snn

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, bias=False),
        snn.Synaptic(alpha=_per_neuron((3, 6, 6), 0.5), beta=_per_neuron((3, 6, 6), 0.9),
                     threshold=_per_neuron((3, 6, 6), 1.0), init_hidden=True, reset_delay=False),
        torch.nn.Flatten(), torch.nn.Linear(108, 5, bias=False),
        snn.Leaky(beta=_per_neuron(5, 0.8), threshold=_per_neuron(5, 1.0), init_hidden=True, output=True,
                  reset_delay=False))
    with torch.no_grad():
        net[3].weight *= 3
    g = _snntorch_export(net, torch.rand(1, 1, 8, 8))
    lg = fuse_synapses(lower(g, ImportOptions(reset="subtract")))
    assert isinstance(lg.nodes["1"], nir.CubaLIF)
    x = torch.rand(8, 1, 8, 8)
    ref = _snntorch_rasters(net, x, T)
    mism = _measured_mismatches("snntorch Conv2d+Synaptic+Leaky", ref, lg, x)
    assert mism == {"1": 0, "4": 0}


@pytest.mark.skipif(not HAS_SNNTORCH, reason=NO_SNNTORCH)
def test_snntorch_graph_compiles_to_integer_and_lava(tmp_path):
    """snnc.compile of an snnTorch file: quantized LIF layers (du/dv from the time constants) run in the integer
    simulator; per layer and neuron, the integer spike counts track the float run's (both layers active); Lava
    matches the simulator (the engine users run) spike for spike on 8 samples x 32 steps."""
    net = _leaky_mlp(reset_delay=False, reset="zero")
    g = _snntorch_export(net, torch.randn(1, 8))
    nir.write(tmp_path / "m.nir", g)
    x = np.random.default_rng(0).random((32, 8))
    c = snnc.compile(tmp_path / "m.nir", x)
    n1 = c.int_graph.nodes["1"]
    assert (n1.metadata["snnc.du"], n1.metadata["snnc.dv"]) == (4095, round(4096 * 0.1))
    assert c.int_graph.nodes["3"].metadata["snnc.dv"] == round(4096 * 0.2)
    fl = simulate(c.float_graph, x, T)
    it = simulate(c.int_graph, x, T)
    window = T + 2  # latency steps of this two-connection net
    for n in ("1", "3"):
        f, i = fl.spike_counts[n].astype(float), it.spike_counts[n].astype(float)
        assert 0.02 < f.mean() / window < 0.9, (n, f.mean() / window)  # the layer is active, not saturated
        per_neuron = np.abs(i - f).mean() / f.mean()
        print("MEASURE snntorch MLP integer vs float mean per-neuron spike-count difference, layer", n, per_neuron)
        assert per_neuron < 0.05, (n, per_neuron)
    if HAS_LAVA:
        from snnc.backends.lava import run_lava

        lav = run_lava(c.int_graph, x[:8], 32, rasters=True, progress=False, timeout_s=300)
        sim = simulate(c.int_graph, x[:8], 32, rasters=True)
        for n in ("1", "3"):
            assert 0.02 < lav.rasters[n].mean() < 0.9, n
            assert np.array_equal(sim.rasters[n], lav.rasters[n]), n
        np.testing.assert_array_equal(sim.potentials, lav.potentials)


@pytest.mark.skipif(not HAS_SNNTORCH, reason=NO_SNNTORCH)
def test_recurrent_rleaky_refused_by_name():
    import snntorch as snn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.RLeaky(beta=_per_neuron(3, 0.9), threshold=_per_neuron(3, 1.0),
                                                                linear_features=3, init_hidden=True, output=True))
    g = _snntorch_export(net, torch.randn(1, 4))
    with pytest.raises(GraphError, match=r"recurrent edge: cycle .*1\.lif"):
        lower(g)
    rows = {r["name"]: r for r in deployability(g)}
    assert not rows["1.lif"]["deployable"] and "recurrent" in rows["1.lif"]["reason"]
    assert rows["0"]["deployable"]


# ------------------------------------------------------------------------------------------- Sinabs
def _sinabs_cnn(seed: int = 0):
    import sinabs.layers as sl
    from sinabs.activation import SingleSpike

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, bias=False), sl.IAFSqueeze(batch_size=1, spike_fn=SingleSpike), sl.SumPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(36, 5, bias=False), sl.IAFSqueeze(batch_size=1, spike_fn=SingleSpike))
    with torch.no_grad():
        net[4].weight *= 2
    return net


def _sinabs_rasters(net, x: torch.Tensor, steps: int) -> dict[str, np.ndarray]:
    """Run a Squeeze-layer sinabs net on x repeated for ``steps`` steps; spikes per IAF layer (steps, N, ...)."""
    import sinabs.layers as sl

    n = x.shape[0]
    rec: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: rec.__setitem__(k, o.detach().clone()))
             for k, m in net.named_modules() if isinstance(m, (sl.IAFSqueeze, sl.IAF))]
    for m in net.modules():
        if isinstance(m, (sl.IAFSqueeze,)):
            m.batch_size, m.num_timesteps = n, -1
        if hasattr(m, "reset_states"):
            m.reset_states()
    xs = x.unsqueeze(1).expand(n, steps, *x.shape[1:]).reshape(n * steps, *x.shape[1:])
    with torch.no_grad():
        net(xs)
    for h in hooks:
        h.remove()
    return {k: v.reshape(n, steps, *v.shape[1:]).transpose(0, 1).numpy() > 0 for k, v in rec.items()}


@pytest.mark.skipif(not HAS_SINABS, reason="sinabs not installed")
def test_sinabs_iaf_cnn_spikes_equal():
    """Sinabs IAFSqueeze CNN -> sinabs.to_nir -> snnc: every spike equal (snnc float mode, shifted by depth)."""
    from sinabs.nir import to_nir

    net = _sinabs_cnn()
    g = to_nir(net, torch.rand(1, 1, 8, 8))
    lg = fuse_synapses(lower(g))
    x = torch.rand(8, 1, 8, 8)
    ref = _sinabs_rasters(net, x, T)
    mism = _measured_mismatches("sinabs IAF CNN -> snnc", ref, lg, x)
    assert mism == {"1": 0, "5": 0}


@pytest.mark.skipif(not HAS_SINABS, reason="sinabs not installed")
def test_snnc_graph_opens_in_sinabs():
    """A converted snnc float graph -> to_framework(..., "sinabs") -> sinabs.from_nir: same spikes, same readout
    potential once sinabs' layers are single-spike. from_nir reads nir.IF as a MultiSpike IAF floored at
    -threshold: that floor is snnc's default potential floor (v_min = -theta); a graph converted without a floor
    matches sinabs with min_v_mem=None. The readout (an IF with threshold 1e30 for sinabs) needs min_v_mem=None. The mismatches of the MultiSpike reading are measured and printed."""
    import sinabs.layers as sl
    import snnc
    from sinabs.activation import MultiSpike, SingleSpike
    from sinabs.nir import from_nir
    from snnc.frontend.nir_export import to_framework
    from snnc.ir.plan import build_plan

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(144, 10, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(10, 3, bias=False))
    x = np.random.default_rng(0).random((8, 1, 8, 8))
    xt = torch.as_tensor(x, dtype=torch.float32)
    out = {}
    for snnc_floor, spike_fn, keep_floor in ((1.0, MultiSpike, True), (1.0, SingleSpike, True),
                                             (None, SingleSpike, False)):
        # sinabs' IAF starts at rest and adds the bias from step 0
        c = snnc.compile(model, x, v_init=0.0, bias_onset=False, v_floor=snnc_floor)
        sg = to_framework(c.float_graph, "sinabs")
        net = from_nir(sg, batch_size=8)
        mods = {n: m for n, m in net.named_modules() if isinstance(m, sl.IAFSqueeze)}
        assert set(mods) == {n for n, v in sg.nodes.items() if isinstance(v, nir.IF)}
        ro = sg.metadata["snnc.readout_node"]
        for n, m in mods.items():
            m.spike_fn = spike_fn
            if not keep_floor or n == ro:  # the readout integrates: no floor (from_nir's floor binds on it)
                m.min_v_mem = None
        res = simulate(c.float_graph, x, T)
        ref = _sinabs_rasters(net, xt, T)
        spiking = {k: v for k, v in ref.items() if k != ro}
        mism = _compare(spiking, c.float_graph, x, T)
        v_sinabs = mods[ro].v_mem.detach().reshape(8, -1).numpy().astype(np.float64)
        # snnc's readout after T + depth steps has integrated the same spikes as sinabs' after T steps
        diff = float(np.abs(res.potentials - v_sinabs).max())
        key = (snnc_floor, spike_fn.__name__, keep_floor)
        out[key] = (mism, diff)
        print("MEASURE snnc -> sinabs: snnc floor", snnc_floor, "sinabs", spike_fn.__name__,
              "min_v_mem=-threshold" if keep_floor else "min_v_mem=None", "spike mismatches", mism, "of",
              sum(v.size for v in spiking.values()), "readout max abs diff", diff)
    for key in ((1.0, "SingleSpike", True), (None, "SingleSpike", False)):
        mism, diff = out[key]
        assert all(v == 0 for v in mism.values()), key
        assert diff < 1e-4, key  # sinabs runs float32
    assert build_plan(c.float_graph).depth == 3


# ------------------------------------------------------------------------------------------- errors, inspect
def _tiny(neuron) -> nir.NIRGraph:
    return make_graph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                               "fc": nir.Linear(weight=np.eye(3)), "n": neuron,
                               "out": nir.Output(output_type={"output": np.array([3])})},
                        edges=[("in", "fc"), ("fc", "n"), ("n", "out")])


def test_v_leak_refused_by_name():
    g = _tiny(nir.LIF(tau=np.ones(3) * 10, r=np.ones(3) * 10, v_leak=np.ones(3), v_threshold=np.ones(3)))
    with pytest.raises(UnsupportedLayerError, match=r"node 'n': field 'v_leak'"):
        lower(g)


def test_euler_tau_shorter_than_dt_refused():
    g = _tiny(nir.LIF(tau=np.ones(3) * 0.5, r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)))
    with pytest.raises(UnsupportedLayerError, match=r"node 'n': field 'tau'"):
        lower(g, ImportOptions(dt=1.0))
    lower(g, ImportOptions(dt=1.0, discretisation="exp"))  # exp(-2) is a valid decay


def test_threshold_runs_float_but_not_integer():
    g = _tiny(nir.Threshold(threshold=np.full(3, 0.5)))
    x = np.array([[0.2, 0.7, 1.0]])
    res = simulate(fuse_synapses(lower(g)), x, 4, rasters=True)
    assert res.rasters["n"][1:5].tolist() == [[[False, True, True]]] * 4
    with pytest.raises(QuantizationError, match=r"layer 'n': field 'tau' = 1 steps needs dv = 4096"):
        snnc.compile(g, x)
    row = [r for r in deployability(g) if r["name"] == "n"][0]
    assert row["deployable"] is False and "dv = 4096" in row["reason"]


def test_delay_becomes_relay_layers():
    """IF -> Delay(2) -> Linear -> IF: the second layer fires exactly 2 steps later than without the delay."""
    def graph(delay: int | None):
        nodes = {"in": nir.Input(input_type={"input": np.array([2])}), "fc0": nir.Linear(weight=np.eye(2)),
                 "a": nir.IF(r=np.ones(2), v_threshold=np.full(2, 0.5)),
                 "fc1": nir.Linear(weight=np.eye(2)), "b": nir.IF(r=np.ones(2), v_threshold=np.full(2, 0.5)),
                 "out": nir.Output(output_type={"output": np.array([2])})}
        edges = [("in", "fc0"), ("fc0", "a"), ("fc1", "b"), ("b", "out")]
        if delay is None:
            edges.append(("a", "fc1"))
        else:
            nodes["d"] = nir.Delay(delay=np.full(2, float(delay)))
            edges += [("a", "d"), ("d", "fc1")]
        return make_graph(nodes=nodes, edges=edges)

    x = np.array([[1.0, 0.3]])
    r0 = simulate(fuse_synapses(lower(graph(None))), x, 10, rasters=True).rasters["b"]
    r2 = simulate(fuse_synapses(lower(graph(2))), x, 10, rasters=True).rasters["b"]
    assert r0[:, 0, 0].any()
    assert np.array_equal(r2[2:], r0[:len(r2) - 2])
    with pytest.raises(UnsupportedLayerError, match=r"node 'd': field 'delay' differs"):
        g = graph(2)
        g.nodes["d"] = nir.Delay(delay=np.array([1.0, 2.0]))
        lower(g)


def test_conv1d_lowered_exactly():
    """Conv1d -> IF: the dense lowering spikes like torch's conv1d driving the same IF."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, 3))
    g = make_graph(nodes={"in": nir.Input(input_type={"input": np.array([2, 10])}),
                            "c": nir.Conv1d(input_shape=10, weight=w, stride=1, padding=1, dilation=1, groups=1,
                                            bias=np.zeros(3)),
                            "n": nir.IF(r=np.ones((3, 10)), v_threshold=np.ones((3, 10)),
                                        metadata={"snnc.reset": "subtract"}),
                            "out": nir.Output(output_type={"output": np.array([3, 10])})},
                     edges=[("in", "c"), ("c", "n"), ("n", "out")])
    x = rng.random((4, 2, 10))
    res = simulate(fuse_synapses(lower(g)), x, 6, rasters=True)
    cur = torch.nn.functional.conv1d(torch.as_tensor(x), torch.as_tensor(w), padding=1).numpy().reshape(4, -1)
    v, ref = np.zeros_like(cur), []
    for _ in range(6):
        v = v + cur
        s = v > 1
        v = v - s
        ref.append(s)
    assert np.array_equal(res.rasters["n"][1:7], np.stack(ref))


def test_roundtrip_is_identity(tmp_path):
    """snnc -> NIR file -> snnc: nodes, edges, arrays and metadata of float and integer graphs unchanged."""
    import snnc
    from snnc.ir.graph import read, write
    from snnc.ir.nirfile import graphs_equal

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(36, 3))
    x = np.random.default_rng(0).random((16, 1, 8, 8))
    c = snnc.compile(model, x)
    for g in (c.float_graph, c.int_graph):
        write(g, tmp_path / "g.nir")
        assert graphs_equal(read(tmp_path / "g.nir"), g)
    # and the importer leaves an snnc graph's neurons as they are
    lg = lower(read(tmp_path / "g.nir"))
    assert {n for n, v in lg.nodes.items() if isinstance(v, (nir.IF, nir.I))} == \
        {n for n, v in c.int_graph.nodes.items() if isinstance(v, (nir.IF, nir.I))}


def test_deployability_rows():
    g = _tiny(nir.LIF(tau=np.ones(3) * 10, r=np.ones(3) * 10, v_leak=np.zeros(3), v_threshold=np.ones(3)))
    rows = deployability(g)
    assert [r["name"] for r in rows] == list(g.nodes)
    assert all(r["deployable"] for r in rows), rows
    assert set(rows[0]) == {"name", "type", "deployable", "reason"}
