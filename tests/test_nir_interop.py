"""NIR import of graphs built by hand: named errors, Threshold/Delay/Conv1d lowering, snnc round trips, the
deployability table, other frameworks' export quirks (Norse-like graphs), the snnTorch export target. The
frameworks' own graphs are tested in tests/interop/ (one file per framework), the NIR paper's files in
tests/test_nir_paper_graphs.py.
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import snnc
import torch
from snnc.backends.cpu.simulator import simulate
from snnc.frontend.nir_import import ImportOptions, deployability, lower
from snnc.ir import make_graph
from snnc.ir.errors import GraphError, QuantizationError, UnsupportedLayerError
from snnc.passes.fuse_synapses import fuse_synapses


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


def _norse_like() -> nir.NIRGraph:
    """Norse 1.1.0's to_nir quirks, built by hand: Input type [1, 3] (batch included), 0-d LIF parameters, and
    tau = dt/tau_mem_inv (1e-5 s for tau_mem_inv = 100/s at dt = 1e-3 s)."""
    return make_graph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 3])}),
               "0": nir.Affine(weight=np.eye(3) * 2.0, bias=np.zeros(3)),
               "1": nir.LIF(tau=np.array(1e-5), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5)),
               "output": nir.Output(output_type={"output": np.array([1, 3])})},
        edges=[("input", "0"), ("0", "1"), ("1", "output")])


def test_norse_style_graph_read_with_named_warnings(tmp_path):
    """Accepted with NIRImportWarnings naming node and field (not a crash); the default step is refused by name;
    dt = 1e-6 s (Norse's dt**2) gives Norse's v <- 0.9 v + 0.1 x, reset to zero, spike for spike; snnc's writer
    stores the 0-d parameters that nir.write (gzip) refuses."""
    from snnc.frontend.nir_import import read_any
    from snnc.ir import nir_compat
    from snnc.ir.errors import NIRImportWarning

    with pytest.raises(UnsupportedLayerError, match=r"node '1': field 'tau' = 1e-05 .*ImportOptions\(dt=seconds\)"):
        with pytest.warns(NIRImportWarning):
            lower(_norse_like())
    nir_compat.write(str(tmp_path / "norse.nir"), _norse_like())
    x = np.array([[0.3, 0.6, 1.5]])
    for g in (_norse_like(), read_any(tmp_path / "norse.nir")):
        with pytest.warns(NIRImportWarning) as w:
            lg = fuse_synapses(lower(g, ImportOptions(dt=1e-6, reset="zero")))
        msgs = " | ".join(str(m.message) for m in w)
        assert "node 'input': field 'input_type' [1, 3] includes a batch dimension of 1" in msgs
        assert "node '1': fields tau, r, v_leak, v_threshold" in msgs and "broadcast to every neuron" in msgs
        assert np.shape(lg.nodes["1"].v_threshold) == (3,)
        v, ref = np.zeros(3), []
        for _ in range(12):
            v = 0.9 * v + 0.1 * 2.0 * x[0]
            s = v > 0.5
            v[s] = 0.0
            ref.append(s)
        assert np.array(ref).any() and not np.array(ref).all()
        assert np.array_equal(simulate(lg, x, 12, rasters=True).rasters["1"][1:13, 0], np.array(ref))


def test_to_framework_snntorch_writes_leak_free_lif_and_refuses_by_name():
    """The snnTorch export target: IF -> LIF(tau 1e13 s, r = tau/1e-4 s), I -> never-firing LIF; subtract reset,
    floors, per-neuron thresholds and pooling nodes are refused naming node and field."""
    from snnc.frontend.nir_export import SNNTORCH_DT, to_framework
    from snnc.ir.conventions import READOUT_NODE

    def graph(reset="zero", vth=(1.0, 1.0, 1.0), extra=None):
        n = nir.IF(r=np.ones(3), v_threshold=np.array(vth), metadata={"snnc.reset": reset, **(extra or {})})
        ro = nir.I(r=np.ones(3), metadata={"snnc.readout": True})
        return make_graph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                                 "fc": nir.Linear(weight=np.eye(3)), "n": n, "fc2": nir.Linear(weight=np.eye(3)),
                                 "ro": ro, "out": nir.Output(output_type={"output": np.array([3])})},
                          edges=[("in", "fc"), ("fc", "n"), ("n", "fc2"), ("fc2", "ro"), ("ro", "out")],
                          metadata={"snnc.kind": "float"})

    sg = to_framework(graph(), "snntorch")
    lif = sg.nodes["n"]
    assert isinstance(lif, nir.LIF) and 1 - SNNTORCH_DT / float(lif.tau[0]) == 1.0
    assert np.allclose(lif.r * SNNTORCH_DT / lif.tau, 1.0) and np.all(lif.v_threshold == 1.0)
    assert sg.metadata[READOUT_NODE] == "ro" and float(sg.nodes["ro"].v_threshold[0]) >= 1e30
    for g, field in ((graph(reset="subtract"), "snnc.reset"), (graph(extra={"snnc.v_min": -1.0}), "snnc.v_min"),
                     (graph(vth=(1.0, 2.0, 1.0)), "v_threshold"), (graph(extra={"snnc.v_init": 0.5}), "snnc.v_init")):
        with pytest.raises(GraphError, match=f"node 'n': field '{field}'"):
            to_framework(g, "snntorch")
    with pytest.raises(GraphError, match="export target must be one of"):
        to_framework(graph(), "norse")
