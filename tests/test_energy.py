"""Energy analysis: SOP counts (hand-sized conv/pool/affine/residual graphs, worked by hand), rates -> SOPs
formula vs the step-by-step measured count, ANN MACs, the CLI (the Sinabs SNNAnalyzer cross-check is in
tests/interop/test_sinabs.py)."""
from __future__ import annotations

import json
import math

import nir
import numpy as np
import pytest
import torch
import torch.nn as nn
from snnc.analysis.energy import MODELS, get_model
from snnc.analysis.macs import connection_macs, graph_macs
from snnc.analysis.report import energy_report
from snnc.analysis.sops import count_ops, fanout_map, sops_from_rasters, sops_from_rates
from snnc.analysis.spike_stats import spike_stats
from snnc.backends.cpu.simulator import simulate
from snnc.ir import conventions as cv
from snnc.ir import make_graph
from snnc.ir.errors import DataError, UsageError
from snnc.ir.plan import build_plan


def _if(shape, vth=1.0):
    n = nir.IF(r=np.ones(shape), v_threshold=np.full(shape, vth))
    n.metadata = {cv.RESET: "subtract", cv.V_INIT: 0.0}
    return n


def _readout(shape):
    n = nir.I(r=np.ones(shape))
    n.metadata = {cv.READOUT: True}
    return n


def _conv(w, stride=1, padding=0):
    w = np.asarray(w, dtype=np.float64)
    return nir.Conv2d(input_shape=None, weight=w, stride=stride, padding=padding, dilation=1, groups=1,
                      bias=np.zeros(w.shape[0]))


def _graph(in_shape, nodes: dict, chain_edges: list, out_shape) -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), **nodes,
             "output": nir.Output(output_type={"output": np.array(out_shape)})}
    return make_graph(nodes=nodes, edges=chain_edges, metadata={cv.KIND: cv.FLOAT})


def _conv_graph() -> nir.NIRGraph:
    """input (1,4,4) -> 1x1 conv (weight 1) -> IF l0 (vth 1) -> conv 1->2, k3, stride 2, padding 1 -> I readout."""
    return _graph((1, 4, 4), {
        "c0": _conv(np.ones((1, 1, 1, 1))), "l0": _if((1, 4, 4)),
        "c1": _conv(np.full((2, 1, 3, 3), 0.1), stride=2, padding=1), "readout": _readout((2, 2, 2))},
        [("input", "c0"), ("c0", "l0"), ("l0", "c1"), ("c1", "readout"), ("readout", "output")], (2, 2, 2))


# By hand: conv k3, stride 2, padding 1 on 4x4 -> 2x2. Output row 0 reads input rows -1..1 (= 0, 1), output row 1
# reads rows 1..3, so input rows are covered [1, 2, 1, 1] times (same for columns); 2 output channels.
HAND_CONV_FANOUT = np.array([[2, 4, 2, 2],
                             [4, 8, 4, 4],
                             [2, 4, 2, 2],
                             [2, 4, 2, 2]])


def test_conv_fanout_padding_stride_by_hand():
    g = _conv_graph()
    plan = build_plan(g)
    conn = [c for c in plan.connections if c.src == "l0"][0]
    assert fanout_map(g, conn, plan)[0].tolist() == HAND_CONV_FANOUT.tolist()
    assert HAND_CONV_FANOUT.sum() == 50  # = 2 channels x (4 + 6 + 6 + 9) valid window taps
    inconn = [c for c in plan.connections if c.src == "input"][0]
    assert fanout_map(g, inconn, plan).tolist() == np.ones((1, 4, 4), dtype=int).tolist()


def test_conv_sops_worked_by_hand():
    # x = 2 at (1,1) and (0,3), 0 elsewhere. steps=2, depth 2 -> the run lasts 4 steps. l0 gets 2 per step from
    # step 1 on (one step of delay): v = 2 > 1 spikes, leaving 1; then 3 -> 2, 4 -> 3: it spikes at steps 1, 2, 3.
    # SOPs into the readout = 3 spikes x (fan-out 8 at (1,1) + 2 at (0,3)) = 30.
    # Input MACs = 2 non-zero pixels x fan-out 1 x 4 steps = 8.
    g = _conv_graph()
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 0, 3] = 2.0
    r = simulate(g, x, steps=2, rasters=True)
    assert r.latency_steps == 4
    assert r.spike_counts["l0"][0, 0, 1, 1] == 3 and r.spike_counts["l0"][0, 0, 0, 3] == 3
    ops = {(c.src, c.dst): c for c in count_ops(g, r, x)}
    assert ops[("l0", "readout")].ops == 30 and ops[("l0", "readout")].events == 6
    assert not ops[("l0", "readout")].graded
    assert ops[("input", "l0")].ops == 8 and ops[("input", "l0")].graded
    assert sops_from_rasters(g, r)[("l0", "readout")] == 30
    rep = energy_report(g, x, r, "cmos45")
    assert rep.sops_total == 30 and rep.input_macs_total == 8
    assert rep.neuron_updates_total == (16 + 8) * 4
    # ANN MACs: 1x1 conv 16 x 1; strided conv 8 outputs x 1 x 3 x 3 = 72
    assert graph_macs(g) == {"c0": 16, "c1": 72}
    e = MODELS["cmos45"]
    assert rep.snn_energy_j == pytest.approx(30 * 0.9e-12 + 8 * 4.6e-12 + 96 * 0.9e-12)
    assert rep.ann_energy_j == pytest.approx(88 * 4.6e-12) == pytest.approx(e.ann_energy(88))


def test_pool_affine_and_merged_chain_fanout():
    # sum pool k2 stride 1 on 3x3 -> 2x2: centre pixel in 4 windows, edges 2, corners 1
    g = _graph((1, 3, 3), {
        "c0": _conv(np.ones((1, 1, 1, 1))), "l0": _if((1, 3, 3)),
        "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0])),
        "l1": _if((1, 2, 2)), "f": nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0),
        "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), "readout": _readout((3,))},
        [("input", "c0"), ("c0", "l0"), ("l0", "p"), ("p", "l1"), ("l1", "f"), ("f", "a"), ("a", "readout"),
         ("readout", "output")], (3,))
    plan = build_plan(g)
    by_src = {c.src: c for c in plan.connections}
    assert fanout_map(g, by_src["l0"], plan)[0].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    assert fanout_map(g, by_src["l1"], plan).tolist() == [[[3, 3], [3, 3]]]  # affine: every output
    assert graph_macs(g)["p"] == 4 * 4 and graph_macs(g)["a"] == 12
    # two 1x3 convs (padding 1) in one chain compose to a 1x5 window: targets within distance 2 of a position,
    # not the path count (the centre reaches itself by 3 paths)
    g2 = _graph((1, 1, 5), {
        "c0": _conv(np.ones((1, 1, 1, 1))), "l0": _if((1, 1, 5)),
        "ca": _conv(np.ones((1, 1, 1, 3)), padding=(0, 1)), "cb": _conv(np.ones((1, 1, 1, 3)), padding=(0, 1)),
        "readout": _readout((1, 1, 5))},
        [("input", "c0"), ("c0", "l0"), ("l0", "ca"), ("ca", "cb"), ("cb", "readout"), ("readout", "output")],
        (1, 1, 5))
    p2 = build_plan(g2)
    c = [c for c in p2.connections if c.src == "l0"][0]
    assert fanout_map(g2, c, p2).ravel().tolist() == [3, 4, 5, 4, 3]


def test_residual_fan_in_counts_each_path():
    # l0 -> A (2x2 ones) -> l1 -> B (3x2) -> readout, and l0 -> C (3x2) -> readout (skip)
    g = _graph((2,), {
        "a0": nir.Affine(weight=np.eye(2), bias=np.zeros(2)), "l0": _if((2,), 0.5),
        "A": nir.Affine(weight=np.full((2, 2), 0.4), bias=np.zeros(2)), "l1": _if((2,), 0.5),
        "B": nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)),
        "C": nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)), "readout": _readout((3,))},
        [("input", "a0"), ("a0", "l0"), ("l0", "A"), ("A", "l1"), ("l1", "B"), ("B", "readout"), ("l0", "C"),
         ("C", "readout"), ("readout", "output")], (3,))
    x = np.array([[1.0, 0.3], [0.0, 0.7]])
    r = simulate(g, x, steps=6, rasters=True)
    ops = {(c.src, c.dst): c.ops for c in count_ops(g, r, x)}
    s0, s1 = int(r.spike_counts["l0"].sum()), int(r.spike_counts["l1"].sum())
    assert s0 > 0 and s1 > 0
    assert ops[("l0", "l1")] == 2 * s0 and ops[("l1", "readout")] == 3 * s1 and ops[("l0", "readout")] == 3 * s0
    rep = energy_report(g, x, r)
    ro = [row for row in rep.layers if row.name == "readout"][0]
    assert ro.sops * 2 == 3 * s1 + 3 * s0  # per inference, both incoming connections
    assert ro.macs == 6 + 6
    meas = sops_from_rasters(g, r)
    assert all(meas[k] == ops[k] for k in meas)


def _fanout_by_geometry(graph, conn, plan) -> np.ndarray:
    """Per source neuron, its number of targets, counted here from the layer's geometry alone (independent of
    snnc.analysis.sops): a dense synapse reaches every output; a conv tap (r, q) of output (oh, ow) reads input
    (oh s - p + r d, ow s - p + q d), so each in-bounds tap adds C_out / groups targets to that input position."""
    from snnc.ir.graph import conv2d_params

    (name,) = [o for o in conn.ops if isinstance(graph.nodes[o], (nir.Affine, nir.Linear, nir.Conv2d))]
    node, src = graph.nodes[name], tuple(plan.shapes[conn.src])
    if not isinstance(node, nir.Conv2d):
        return np.full(src, np.asarray(node.weight).shape[0], dtype=np.int64)
    p = conv2d_params(node, name)
    c_out, _, kh, kw = np.asarray(node.weight).shape
    _, ho, wo = plan.shapes[conn.dst]
    count = np.zeros(src, dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            for r in range(kh):
                for q in range(kw):
                    i = oh * p["stride"][0] - p["padding"][0] + r * p["dilation"][0]
                    j = ow * p["stride"][1] - p["padding"][1] + q * p["dilation"][1]
                    if 0 <= i < src[1] and 0 <= j < src[2]:
                        count[:, i, j] += c_out // p["groups"]
    return count


def test_rates_formula_equals_measured_count(digits_run):
    """Three ways to the same SOPs per connection: spikes x fan-out counted here from the rasters and the layer
    geometry (independent of snnc.analysis), the rates formula with snnc's fan-out map, and snnc's counters."""
    g, x, y, r = digits_run
    plan = build_plan(g)
    stats = spike_stats(g, r, plan)
    counted = {(c.src, c.dst): c.ops for c in count_ops(g, r, x, plan)}
    measured = sops_from_rasters(g, r, plan)
    assert set(measured) == {("relu1", "relu2"), ("relu2", "readout")}
    for conn in plan.connections:
        if conn.src == plan.input:
            continue
        key = (conn.src, conn.dst)
        geo = _fanout_by_geometry(g, conn, plan)
        np.testing.assert_array_equal(fanout_map(g, conn, plan), geo)
        by_hand = int((r.rasters[conn.src].sum((0, 1)).astype(np.int64) * geo).sum())
        st = stats[conn.src]
        analytic = sops_from_rates(st.rates, fanout_map(g, conn, plan), r.samples, st.window)
        assert by_hand > 0
        assert measured[key] == by_hand and counted[key] == by_hand and analytic == pytest.approx(by_hand, rel=1e-12)
    # spike statistics agree with the simulator's own totals; silent/saturated are per-neuron counts
    for n, st in stats.items():
        assert st.spikes == r.spikes_per_layer[n]
        assert st.silent == int((r.spike_counts[n].sum(0) == 0).sum())
        assert 0 <= st.saturated <= st.neurons and 0 < st.rate < 1


def test_macs_of_digits_graphs(small_compiled):
    digits_model, digits_compiled = small_compiled
    # fused integer graph: conv1 64 x 16 x 1 x 9, conv2 64 x 32 x 16 x 9, fc (pool folded in) 2048 x 10
    m = graph_macs(digits_compiled.int_graph)
    assert m == {"conv1": 64 * 16 * 9, "conv2": 64 * 32 * 16 * 9, "fc": 2048 * 10}
    cm = connection_macs(digits_compiled.int_graph)
    assert cm[("relu2", "readout")] == 20480
    # the same count from the torch model's layers
    ann = 0
    for mod in digits_model.modules():
        if isinstance(mod, nn.Conv2d):
            ann += 64 * mod.out_channels * mod.in_channels * math.prod(mod.kernel_size)
    assert ann == m["conv1"] + m["conv2"]


def test_energy_models_and_errors():
    e = get_model("loihi")
    assert e.e_synop == pytest.approx(23.6e-12) and e.e_neuron_update == pytest.approx(81e-12)
    c = get_model("cmos45")
    assert c.e_mac == pytest.approx(4.6e-12) and c.e_synop == pytest.approx(0.9e-12)
    with pytest.raises(DataError, match="nope"):
        get_model("nope")


def test_cli_energy_json_and_plots(tmp_path, small_compiled, capsys):
    digits_compiled = small_compiled[1]
    from snnc.cli import main
    from snnc.ir import write

    p = tmp_path / "m.nir"
    write(digits_compiled.int_graph, p)
    assert main(["energy", str(p), "--data", "digits", "--steps", "2", "--samples", "20", "--json",
                 "--plots", str(tmp_path / "plots"), "--sweep", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("steps", "samples", "accuracy", "sops", "neuron_updates", "macs", "snn_energy_j", "ann_energy_j",
              "layers"):
        assert k in out
    assert out["steps"] == 2 and out["samples"] == 20 and [s["steps"] for s in out["sweep"]] == [1, 2]
    for row in out["layers"]:
        for k in ("name", "neurons", "spikes", "rate", "sops", "macs", "snn_energy_j", "ann_energy_j"):
            assert k in row
    assert sum(r["sops"] for r in out["layers"]) == pytest.approx(out["sops"])
    assert sum(r["snn_energy_j"] for r in out["layers"]) == pytest.approx(out["snn_energy_j"])
    # the source network's MACs (pool 512 x 4 and fc 512 x 10 counted apart), not the fused 2048 x 10 fc
    assert sum(r["macs"] for r in out["layers"]) == out["macs"] == 9216 + 294912 + 2048 + 5120
    assert out["macs_compiled_graph"] == 9216 + 294912 + 20480 and out["ann_macs_counted_on"] == "torch"
    assert out["sops_total"] == round(out["sops"] * 20)
    assert out["sweep"][0]["sops"] < out["sweep"][1]["sops"]  # fewer steps, fewer spikes
    assert len(out["plots"]) == 4
    for f in out["plots"]:
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["energy", str(p), "--samples", "5", "--sweep", "1,x", "--json"]) == UsageError.exit_code
    assert "--sweep" in capsys.readouterr().err


def test_ann_baseline_is_the_source_network_pool_before_linear(tmp_path, capsys):
    """The 4-layer BN CNN (snnc.zoo.DigitsBNCNN), counted by hand on the torch model: pooling before a hidden linear layer."""
    import snnc
    from snnc.cli import main
    from snnc.data import digits
    from snnc.zoo import DigitsBNCNN

    torch.manual_seed(0)
    model = DigitsBNCNN().eval()  # MACs do not depend on the weights
    c = snnc.compile(model, digits("train")[0][:32], calib_steps=4)
    conv1 = 8 * 8 * 12 * (1 * 3 * 3)  # out elements x in channels x kernel = 6,912
    conv2 = 4 * 4 * 24 * (12 * 3 * 3)  # stride 2: 4x4 out = 41,472
    pool = (24 * 2 * 2) * (2 * 2)  # AvgPool2d(2): 96 out elements x 4 = 384
    fc1, fc2 = 96 * 32, 32 * 10  # 3,072 and 320; BatchNorm1d folded: 0
    assert conv1 + conv2 + fc1 + fc2 == 51776 and pool == 384
    assert cv.meta(c.int_graph, cv.ANN_MACS) == {"relu1": conv1, "relu2": conv2, "relu3": pool + fc1,
                                                 "readout": fc2}
    assert cv.meta(c.int_graph, cv.ANN_MACS_COUNTED_ON) == "torch"
    # the compiled graph has the pool fused into a 384 -> 32 dense layer: 12,288 MACs instead of 3,072 + 384
    assert graph_macs(c.int_graph)["fc1"] == 384 * 32
    path = tmp_path / "bn.nir"
    snnc.write(c.int_graph, path)
    assert main(["energy", str(path), "--steps", "2", "--samples", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["macs"] == 51776 + 384 and out["macs_compiled_graph"] == 6912 + 41472 + 12288 + 320
    assert out["ann_macs_counted_on"] == "torch" and "source network" in out["ann_macs_counted_on_text"]
    assert out["ann_energy_j"] == pytest.approx(52160 * 4.6e-12)  # every ratio uses the source count
    assert out["energy_ratio_ann_over_snn"] == pytest.approx(out["ann_energy_j"] / out["snn_energy_j"])
    assert {r["name"]: r["macs"] for r in out["layers"]}["relu3"] == 3456
    # a graph without a recorded count (older snnc files): counted on the graph as given, and the report says so
    g = snnc.read(path)
    g.metadata.pop(cv.ANN_MACS)
    rep = energy_report(g, digits("test")[0][:4], simulate(g, digits("test")[0][:4], 2))
    assert rep.macs == 60992 and rep.as_dict()["ann_macs_counted_on"] == "graph"


def test_ann_baseline_of_another_tools_nir_file(tmp_path):
    """An NIR file written by another tool: counted as imported, before fusing (conv 288 + pool 32 + affine 24)."""
    import snnc

    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
             "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(size=(2, 1, 3, 3)), stride=1, padding=1,
                                dilation=1, groups=1, bias=np.zeros(2)),
             "if1": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4))),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(size=(3, 8)), bias=np.zeros(3)),
             "if2": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "if2"),
             ("if2", "output")]
    nir.write(tmp_path / "other.nir", make_graph(nodes, edges))  # nir >= 1.0.5 cannot type a SumPool2d
    x = rng.random((16, 1, 4, 4)).astype(np.float32)
    c = snnc.compile(str(tmp_path / "other.nir"), x)
    assert cv.meta(c.int_graph, cv.ANN_MACS_COUNTED_ON) == "nir"
    assert sum(cv.meta(c.int_graph, cv.ANN_MACS).values()) == 4 * 4 * 2 * 9 + 8 * 4 + 8 * 3
    rep = energy_report(c.int_graph, x, simulate(c.int_graph, x, 2)).as_dict()
    assert rep["macs"] == 344 and rep["ann_macs_counted_on"] == "nir" and "another tool" in rep[
        "ann_macs_counted_on_text"]
    assert rep["macs_compiled_graph"] > rep["macs"]  # pool fused into a 32 -> 3 dense layer, plus the readout's
