"""The potential floor ``snnc.v_min`` (v = max(v, v_min) after the update, before the spike test): carried by the
converter and the passes, honoured identically by the float simulator, both integer engines and Lava's SubtractLIF,
and rejected by name where it cannot be honoured."""
from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
from snnc.backends.cpu.simulator import simulate
from snnc.ir import conventions as cv
from snnc.ir import validate
from snnc.ir.errors import BackendError, GraphError
from test_lava_backend import (
    _compare,
    _graph,
    _if,
    _inputs,
    _readout,
    cnn_graph,
    mlp_graph,
    needs_lava,
)


def _dense(w: list, bias: list | None = None) -> nir.Affine:
    """Integer Dense, 8-bit mantissas (even values up to 254), exponent 0."""
    w = np.asarray(w, dtype=np.float64)
    node = nir.Affine(weight=w, bias=np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64))
    node.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    return node


def inhibit_then_excite_graph(floor: float | None) -> nir.NIRGraph:
    """h1 neuron A fires its 20 thresholds of initial potential in the first steps, then falls silent; neuron B
    fires steadily at a rate set by the input. h2 = -A + B is driven far negative first, then positive: without a
    floor it stays silent for a long time, with ``floor`` (a_in units) it recovers within a few steps."""
    h1 = _if((2,), [10, 1000], "subtract", 4095, 0)
    h1.metadata[cv.V_INIT] = [200.0, 0.0]
    h2 = _if((1,), 500, "subtract", 4095, 0)
    if floor is not None:
        h2.metadata[cv.V_MIN] = floor
    nodes = {"fc1": _dense([[0, 0], [0, 2]]), "h1": h1, "fc2": _dense([[-254, 254]]), "h2": h2,
             "fc3": _dense([[2]]), "out": _readout(1)}
    edges = [("input", "fc1"), ("fc1", "h1"), ("h1", "fc2"), ("fc2", "h2"), ("h2", "fc3"), ("fc3", "out"),
             ("out", "output")]
    return _graph(nodes, edges, (2,), 1)


X_STEER = np.array([[0, v] for v in (10.0, 20.0, 30.0, 40.0, 50.0, 63.0)])  # input_scale 0.5: 20..126


def _floored(g: nir.NIRGraph, floors: dict) -> nir.NIRGraph:
    """A copy of ``g`` with ``snnc.v_min`` set on the named layers (value: scalar or per neuron, a_in units)."""
    g = copy.deepcopy(g)
    for n, f in floors.items():
        g.nodes[n].metadata[cv.V_MIN] = f
    return g


def _mlp_floors(g: nir.NIRGraph) -> dict:
    vth = np.asarray(g.nodes["h1"].v_threshold, dtype=np.float64)
    return {"h1": (-0.75 * vth).round(3).tolist(), "h2": -300.0, "h3": -0.5}


def _final_v_min(r, layer: str) -> float:
    return float(r.final_state[layer]["v"].min())


def _fast_equals_reference(g: nir.NIRGraph, x: np.ndarray, steps: int):
    fast = simulate(g, x, steps, engine="fast", rasters=True)
    ref = simulate(g, x, steps, record_final=True, engine="reference", rasters=True)
    for n in fast.rasters:
        np.testing.assert_array_equal(fast.rasters[n], ref.rasters[n], err_msg=n)
    np.testing.assert_array_equal(fast.potentials, ref.potentials)
    assert fast.events == ref.events
    return ref


def test_floor_lets_a_neuron_recover_and_engines_agree() -> None:
    """Inhibition first, excitation later: the floored neuron fires again sooner, and never goes below the floor;
    the fast engine equals the int64 reference spike for spike."""
    validate(inhibit_then_excite_graph(-500.0))
    plain = _fast_equals_reference(inhibit_then_excite_graph(None), X_STEER, 60)
    floored = _fast_equals_reference(inhibit_then_excite_graph(-500.0), X_STEER, 60)
    assert _final_v_min(plain, "h2") < -500 * 64 or plain.spike_counts["h2"].sum() == 0
    assert np.all(floored.spike_counts["h2"] >= plain.spike_counts["h2"])
    assert floored.spike_counts["h2"].sum() > plain.spike_counts["h2"].sum() + len(X_STEER)
    assert _final_v_min(floored, "h2") >= -500 * 64


def test_floor_on_the_random_mlp_engines_agree() -> None:
    """Per-neuron and scalar floors on layers with and without current/voltage decay: fast == reference; the
    floor removes h1's downward saturations."""
    g = mlp_graph(1, "subtract")
    gf = _floored(g, _mlp_floors(g))
    validate(gf)
    x = _inputs(1, (24,), 6)
    plain = simulate(g, x, 60, record_final=True, engine="reference")
    ref = _fast_equals_reference(gf, x, 60)
    assert _final_v_min(plain, "h1") < float(np.min(_mlp_floors(g)["h1"])) * 64 <= _final_v_min(ref, "h1")
    assert ref.events["h1"]["v_saturate"] < plain.events["h1"]["v_saturate"]


def test_float_floor_bounds_the_potential() -> None:
    """Float graphs: the floor holds v at -F*theta for a neuron driven negative, which then recovers at once."""
    import torch
    from snnc.frontend.convert import ConvertOptions, convert

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1))
    with torch.no_grad():
        m[0].weight[:] = torch.tensor([[1.0, 1.0]])
        m[0].bias.zero_()
        m[2].weight.fill_(1.0)
        m[2].bias.zero_()
    calib = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    g = convert(m, calib, options=ConvertOptions(method="max", v_init=0.0, v_floor=1.0))
    layer = next(n for n, nd in g.nodes.items() if isinstance(nd, nir.IF))
    theta = float(np.max(g.nodes[layer].v_threshold))
    assert cv.meta(g.nodes[layer], cv.V_MIN) == pytest.approx(-theta)
    r = simulate(g, np.array([[-50.0, 0.0]], dtype=np.float32), 8, record_final=True)
    assert float(r.final_state[layer]["v"].min()) == pytest.approx(-theta)


@needs_lava
def test_floored_neuron_sim_equals_lava() -> None:
    _compare(inhibit_then_excite_graph(-500.0), X_STEER, 60)


@needs_lava
def test_floored_mlp_sim_equals_lava() -> None:
    g = mlp_graph(1, "subtract")
    rates, events = _compare(_floored(g, _mlp_floors(g)), _inputs(1, (24,), 3))
    assert 0.005 < rates["h1"] < 0.95


@needs_lava
def test_floored_cnn_sim_equals_lava() -> None:
    g = cnn_graph(2, "subtract")
    per_neuron = -np.linspace(100, 4000, 4 * 9 * 5).reshape(4, 9, 5)
    rates, _ = _compare(_floored(g, {"c1": per_neuron.tolist(), "c2": -200.0, "c3": -1.0}), _inputs(2, (2, 9, 7), 3))
    assert 0.005 < rates["c1"] < 0.95


def test_floor_errors_name_the_node_and_field() -> None:
    g = mlp_graph(1, "subtract")
    with pytest.raises(GraphError, match=r"'h2'.*snnc.v_min"):
        validate(_floored(g, {"h2": 5.0}))  # a floor above 0
    with pytest.raises(GraphError, match=r"'out'.*snnc.v_min"):
        validate(_floored(g, {"out": -1.0}))  # the readout integrates: no floor
    with pytest.raises(GraphError, match=r"'h2'.*snnc.v_min"):
        validate(_floored(g, {"h2": [-1.0, -2.0]}))  # wrong per-neuron shape


@needs_lava
def test_floor_with_reset_to_zero_is_a_backend_error() -> None:
    from snnc.backends.lava.emit import emit

    with pytest.raises(BackendError, match=r"'h1'.*snnc.v_min"):
        emit(_floored(mlp_graph(1, "zero"), {"h1": -100.0}))


def test_bias_onset_lowers_the_floor_instead_of_cutting_the_precharge() -> None:
    """Positive biases on a deep layer: the onset pre-charge starts far below -theta. The pass lowers those
    neurons' floor under the trajectory, so a net whose neurons are never driven negative runs exactly as
    without a floor (float and integer)."""
    import snnc
    import torch
    from snnc.ir import graphs_equal
    from snnc.passes.bias_onset import compensate_bias_onset

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6), torch.nn.ReLU(),
                            torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        for lin in (m[0], m[2], m[4]):
            lin.weight.abs_()
        m[4].bias.fill_(5.0)  # large positive bias at depth 3
    x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
    a = snnc.compile(m, x, v_floor=None)
    b = snnc.compile(m, x, v_floor=1.0)
    node = next(nd for n, nd in b.float_graph.nodes.items() if cv.meta(nd, "snnc.source") == "_5")
    theta = float(np.max(node.v_threshold))
    assert float(np.min(cv.meta(node, cv.V_MIN))) < -theta  # lowered below -theta for the pre-charge
    for ga, gb in ((a.float_graph, b.float_graph), (a.int_graph, b.int_graph)):
        np.testing.assert_array_equal(simulate(ga, x, 6).logits, simulate(gb, x, 6).logits)
    # with the floor left at -theta it would cut the pre-charge, and the output would change
    cut = copy.deepcopy(b.float_graph)
    next(nd for nd in cut.nodes.values() if cv.meta(nd, "snnc.source") == "_5").metadata[cv.V_MIN] = -theta
    assert not np.array_equal(simulate(cut, x, 6).logits, simulate(b.float_graph, x, 6).logits)
    assert graphs_equal(compensate_bias_onset(b.float_graph), b.float_graph)  # marked: a second run is a no-op
