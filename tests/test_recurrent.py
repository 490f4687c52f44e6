"""Recurrent graphs (cycles through neuron layers), constant drives for leaky biases, and reset timings.

Every connection delays by one step (``snnc.ir.plan``), so a loop through k layers takes k steps; the float and
integer simulators and Lava run such graphs spike for spike; the NIR import keeps a framework's timing for loops
through one layer and refuses longer ones by name (``RecurrentTimingError``)."""
from __future__ import annotations

import importlib.util

import nir
import numpy as np
import pytest
from snnc.backends.cpu.simulator import simulate
from snnc.frontend.nir_import import ImportOptions, deployability, lower
from snnc.ir import conventions as cv
from snnc.ir import make_graph, nir_compat
from snnc.ir.errors import GraphError, RecurrentTimingError
from snnc.ir.graph import back_edges, topo_order
from snnc.ir.plan import build_plan

HAS_LAVA = importlib.util.find_spec("lava") is not None
HAS_SNNTORCH = importlib.util.find_spec("snntorch") is not None and importlib.util.find_spec("nirtorch") is not None


def _float_loop(two_layer: bool = False, bias: float = 0.0) -> nir.NIRGraph:
    """input(3) -> a: IF(4) with a self-connection (or a -> b -> a when ``two_layer``) -> readout I(2); weights are
    multiples of 1/16 (sums exact in any order)."""
    gen = np.random.default_rng(0)

    class rng:  # noqa: N801 - normal() on a 1/16 grid
        normal = staticmethod(lambda *a: np.round(gen.normal(*a) * 16) / 16)

    nodes = {"input": nir.Input(input_type={"input": np.array([3])}),
             "w_in": nir.Affine(weight=rng.normal(0, 1, (4, 3)), bias=np.full(4, bias)),
             "a": nir.IF(r=np.ones(4), v_threshold=np.ones(4), metadata={cv.RESET: "subtract"}),
             "w_out": nir.Linear(weight=rng.normal(0, 1, (2, 4))),
             "ro": nir.I(r=np.ones(2), metadata={cv.READOUT: True}),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "w_in"), ("w_in", "a"), ("a", "w_out"), ("w_out", "ro"), ("ro", "output")]
    if two_layer:
        nodes.update({"w_ab": nir.Linear(weight=rng.normal(0, 1, (4, 4))),
                      "b": nir.IF(r=np.ones(4), v_threshold=np.ones(4), metadata={cv.RESET: "subtract"}),
                      "w_ba": nir.Linear(weight=rng.normal(0, 1, (4, 4)))})
        edges += [("a", "w_ab"), ("w_ab", "b"), ("b", "w_ba"), ("w_ba", "a")]
    else:
        nodes["w_rec"] = nir.Linear(weight=rng.normal(0, 0.7, (4, 4)))
        edges += [("a", "w_rec"), ("w_rec", "a")]
    return make_graph(nodes, edges)


def test_plan_of_a_loop():
    g = _float_loop()
    assert back_edges(g) == [("w_rec", "a")] and topo_order(g).index("a") < topo_order(g).index("w_rec")
    p = build_plan(g)
    assert p.loops == [["a"]] and p.recurrent and p.depths == {"input": 0, "a": 1, "ro": 2} and p.depth == 2
    assert [(c.src, c.dst, c.recurrent) for c in p.connections if c.recurrent] == [("a", "a", True)]
    p2 = build_plan(_float_loop(two_layer=True))
    assert p2.loops == [["a", "b"]] and p2.depths["b"] == 2


def test_float_loop_equals_numpy():
    """An IF layer with a self-connection: its spikes reach it again one step later."""
    g = _float_loop()
    x = np.round(np.random.default_rng(1).random((5, 3)) * 32) / 16
    r = simulate(g, x, 20, rasters=True)
    w_in, w_rec = g.nodes["w_in"].weight, g.nodes["w_rec"].weight
    v, s = np.zeros((5, 4)), np.zeros((5, 4), bool)
    for t in range(22):
        a = (x @ w_in.T if t >= 1 else 0) + s @ w_rec.T
        v = v + a
        s = v > 1
        v = np.where(s, v - 1, v)
        assert np.array_equal(r.rasters["a"][t], s), t
    assert r.spikes_per_layer["a"] > 0


def test_algebraic_loop_and_only_recurrent_input_are_named():
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}), "l1": nir.Linear(weight=np.eye(2)),
             "l2": nir.Linear(weight=np.eye(2)), "a": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    g = make_graph(nodes, [("input", "a"), ("a", "l1"), ("l1", "l2"), ("l2", "l1"), ("l1", "output")])
    with pytest.raises(GraphError, match="no neuron layer"):
        build_plan(g)


def test_import_keeps_one_layer_loops_and_refuses_longer_ones_by_name():
    g = _float_loop(two_layer=True)
    with pytest.raises(RecurrentTimingError, match=r"recurrent loop a -> b -> a goes through 2 neuron layers"):
        lower(g)
    low = lower(g, ImportOptions(loops="per_connection"))
    assert build_plan(low).loops == [["a", "b"]]
    rows = {r["name"]: r for r in deployability(g)}
    assert not rows["b"]["deployable"] and "RecurrentTimingError" in rows["b"]["reason"]
    assert rows["w_in"]["deployable"]
    assert build_plan(lower(_float_loop())).loops == [["a"]]


def test_quantize_and_inspect_understand_loops(tmp_path, capsys):
    import json

    import snnc
    from snnc.cli import main

    x = np.random.default_rng(2).random((32, 3)) * 2
    c = snnc.compile(_float_loop(), x, calib_steps=16)
    assert [lq.name for lq in c.report.layers] == ["a", "ro"]
    fl, it = simulate(c.float_graph, x, 16), simulate(c.int_graph, x, 16)
    assert abs(fl.spikes_per_layer["a"] - it.spikes_per_layer["a"]) <= 0.05 * fl.spikes_per_layer["a"]
    snnc.write(c.int_graph, tmp_path / "loop.nir")
    assert main(["inspect", str(tmp_path / "loop.nir"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["loops"] == [{"layers": ["a"], "steps": 1}] and info["recurrent_edges"] == [["w_rec", "a"]]


# ---------------------------------------------------------------------------------------- constant drive
def test_leaky_bias_becomes_an_exact_constant_drive():
    """A bias into a CubaLIF (NIR filters it through the current, from the layer's onset): lowered to a drive neuron
    that fires from step depth - 1; the float run equals stepping NIR's equations with the bias in the input."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(0, 0.5, (4, 3)), rng.normal(0.3, 0.2, 4)
    w2, b2 = rng.normal(0, 0.5, (2, 4)), np.array([0.4, -0.1])
    cuba = lambda n: nir.CubaLIF(tau_syn=np.full(n, 2.0), tau_mem=np.full(n, 4.0), r=np.full(n, 4.0),  # noqa: E731
                                 v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.full(n, 2.0))
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}), "fc1": nir.Affine(weight=w1, bias=b1),
             "c1": cuba(4), "fc2": nir.Affine(weight=w2, bias=b2), "c2": cuba(2),
             "output": nir.Output(output_type={"output": np.array([2])})}
    g = make_graph(nodes, [("input", "fc1"), ("fc1", "c1"), ("c1", "fc2"), ("fc2", "c2"), ("c2", "output")])
    low = lower(g, ImportOptions(dt=1.0, reset="subtract"))
    p = build_plan(low)
    assert {n for n in p.neurons if cv.meta(low.nodes[n], cv.DRIVE, False)} == {"c1.drive", "c2.drive"}
    assert p.depths["c1"] == 1 and p.depths["c2"] == 2 and p.depths["c1.drive"] == 0
    x = rng.random((4, 30, 3))
    r = simulate(low, x, None, rasters=True)
    # c1's drive fires from step 0 (c1 at depth 1 gets it from step 1), c2's from step 1
    assert r.rasters["c1.drive"].all() and not r.rasters["c2.drive"][0].any() and r.rasters["c2.drive"][1:].all()
    i1, v1, i2, v2 = np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 2)), np.zeros((4, 2))
    for t in range(30):  # frameworks' timing: no delays; snnc's layer at depth d is d steps later
        i1 = 0.5 * i1 + (x[:, t] @ w1.T + b1)
        v1 = 0.75 * v1 + i1
        s1 = v1 > 1
        v1 = v1 - s1
        i2 = 0.5 * i2 + (s1 @ w2.T + b2)
        v2 = 0.75 * v2 + i2
        s2 = v2 > 1
        v2 = v2 - s2
        assert np.array_equal(r.rasters["c1"][t + 1], s1) and np.array_equal(r.rasters["c2"][t + 2], s2), t
    assert r.spikes_per_layer["c1"] > 0 and r.spikes_per_layer["c2"] > 0


# ---------------------------------------------------------------------------------------- Lava
def _int_graph(reset: str, timing: str) -> nir.NIRGraph:
    """Integer graph: input(6) -> a(8, self-loop, du/dv leaky) <-> b(5) (a 2-layer loop) -> readout."""
    rng = np.random.default_rng(4)

    def dense(o, i, exp=0):
        w = rng.integers(-60, 80, (o, i)).astype(np.float64) * 2 ** (1 + exp)
        w[rng.random((o, i)) < 0.3] = 0
        return nir.Affine(weight=w, bias=rng.integers(-20, 40, o).astype(np.float64),
                          metadata={cv.WEIGHT_EXP: exp, cv.WEIGHT_BITS: 8})

    def neuron(n, du, dv):
        md = {cv.RESET: reset, cv.DU: du, cv.DV: dv}
        if timing != "immediate":
            md[cv.RESET_TIMING] = timing
        return nir.CubaLIF(tau_syn=np.ones(n), tau_mem=np.ones(n), r=np.ones(n), v_leak=np.zeros(n),
                           v_threshold=np.full(n, 300.0), w_in=np.ones(n), metadata=md)

    nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "w_in": dense(8, 6), "a": neuron(8, 1000, 300),
             "w_aa": dense(8, 8, -1), "w_ab": dense(5, 8), "b": neuron(5, 4095, 100), "w_ba": dense(8, 5, -1),
             "w_out": dense(3, 5), "ro": nir.I(r=np.ones(3), metadata={cv.READOUT: True, cv.SCALE: 2.0}),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "w_in"), ("w_in", "a"), ("a", "w_aa"), ("w_aa", "a"), ("a", "w_ab"), ("w_ab", "b"),
             ("b", "w_ba"), ("w_ba", "a"), ("b", "w_out"), ("w_out", "ro"), ("ro", "output")]
    g = make_graph(nodes, edges)
    g.metadata = {cv.KIND: cv.INTEGER, cv.INPUT_SCALE: 1.0, cv.INPUT_BITS: 1, cv.INPUT_SIGNED: False}
    return g


@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc not installed")
@pytest.mark.parametrize("reset,timing", [("zero", "immediate"), ("subtract", "delayed"), ("zero", "delayed"),
                                          ("subtract", "guarded")])
def test_recurrent_integer_graph_equals_lava(reset, timing):
    """Self-loop and 2-layer loop, leaky current and potential, biases, binary event sequences: every spike, final
    u and v and output potential equal (stock LIF for immediate zero reset, SubtractLIF otherwise)."""
    from snnc.backends.lava import verify

    g = _int_graph(reset, timing)
    x = (np.random.default_rng(5).random((2, 40, 6)) < 0.4).astype(np.float64)
    rep = verify(g, x, None, progress=False, timeout_s=300)
    assert rep.ok and rep.spikes_compared > 0, rep.as_dict()
    r = simulate(g, x, None)
    assert 0 < r.spikes_per_layer["a"] < 0.9 * 2 * 42 * 8 and r.spikes_per_layer["b"] > 0


def test_reset_timings_differ_and_engines_agree():
    """The three timings give different spikes on the same integer graph; the reference engine runs them (the fast
    engine takes immediate resets only, and agrees with the reference there)."""
    x = (np.random.default_rng(6).random((3, 40, 6)) < 0.4).astype(np.float64)
    runs = {t: simulate(_int_graph("subtract", t), x, None, rasters=True) for t in ("immediate", "delayed", "guarded")}
    assert not np.array_equal(runs["immediate"].rasters["a"], runs["delayed"].rasters["a"])
    ref = simulate(_int_graph("subtract", "immediate"), x, None, engine="reference")
    assert np.array_equal(ref.logits, runs["immediate"].logits)


# ---------------------------------------------------------------------------------------- snnTorch
@pytest.mark.skipif(not (HAS_SNNTORCH and nir_compat.HAS_V_RESET),
                    reason=f"snnTorch / nirtorch not installed, or nir {nir.version} has no v_reset (nir <= 1.0.5; "
                    "snnTorch 1.0.0's export_to_nir passes v_reset)")
@pytest.mark.parametrize("reset_delay,timing", [(True, "delayed"), (False, "guarded")])
def test_snntorch_rleaky_spikes_equal_with_its_reset_timing(reset_delay, timing):
    """snnTorch RLeaky (biases, recurrent Linear) -> export_to_nir -> snnc float with the matching reset timing:
    every spike equal on inputs strong enough to leave v above the threshold after a reset."""
    import snntorch as snn
    import torch
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    full = lambda n, v: torch.full((n,), v)  # noqa: E731
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 12), snn.RLeaky(beta=full(12, 0.8), threshold=full(12, 1.0), linear_features=12,
                                           init_hidden=True, reset_delay=reset_delay, reset_mechanism="subtract"),
        torch.nn.Linear(12, 3), snn.Leaky(beta=full(3, 0.9), threshold=full(3, 1.0), init_hidden=True,
                                          reset_delay=reset_delay, output=True, reset_mechanism="subtract"))
    with torch.no_grad():
        net[0].weight *= 4
        net[2].weight *= 4
    x = (np.random.default_rng(7).random((4, 40, 5)) < 0.5).astype(np.float32)
    utils.reset(net)
    s1, s2 = [], []
    with torch.no_grad():
        for t in range(40):
            h = net[1](net[0](torch.as_tensor(x[:, t])))
            s1.append(h.numpy() > 0)
            s2.append(net[3](net[2](h))[0].numpy() > 0)
    g = lower(export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0]),
              ImportOptions(reset="subtract", reset_timing=timing))
    p = build_plan(g)
    r = simulate(g, x.astype(np.float64), None, rasters=True)
    for k, ref in (("1.lif", np.stack(s1)), ("3", np.stack(s2))):
        assert 0.02 < ref.mean() < 0.9
        assert np.array_equal(r.rasters[k][p.depths[k]:p.depths[k] + 40], ref), k
    imm = simulate(lower(export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0]), ImportOptions(reset="subtract")),
                   x.astype(np.float64), None, rasters=True)
    assert not np.array_equal(imm.rasters["1.lif"], r.rasters["1.lif"])  # the timing matters on this input
