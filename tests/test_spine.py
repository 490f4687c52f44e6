"""The spine: frontend, BN folding, quantization bounds, the simulator's arithmetic, NIR files, named errors."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from snnc.backends.cpu.simulator import simulate
from snnc.frontend.convert import convert
from snnc.ir import (
    NIRFileError,
    UnsupportedLayerError,
    graphs_equal,
    make_graph,
    read,
    write,
)
from snnc.ir import conventions as cv
from snnc.ir.graph import conv2d_params
from snnc.passes.fold_batchnorm import fold_batchnorm
from snnc.passes.fuse_synapses import fuse_synapses
from snnc.pipeline import quantize


def test_fold_batchnorm_matches_unfolded_on_real_data(digits_model, digits_data):
    (xtr, _), (xte, _) = digits_data
    g = convert(digits_model, xtr[:256])
    assert any(cv.meta(n, cv.FROM_BN, False) for n in g.nodes.values())
    gf = fold_batchnorm(g)
    assert not any(cv.meta(n, cv.FROM_BN, False) for n in gf.nodes.values())
    conv = gf.nodes["conv1"]
    p = conv2d_params(conv, "conv1")
    x = torch.as_tensor(xte, dtype=torch.float64)
    y_fold = F.conv2d(x, torch.as_tensor(conv.weight), torch.as_tensor(conv.bias), stride=p["stride"],
                      padding=p["padding"])
    m = digits_model.double()
    with torch.no_grad():
        y_ref = m.bn1(m.conv1(x))
    digits_model.float()
    rel = float((y_fold - y_ref).abs().max() / y_ref.abs().max())
    assert rel < 1e-5
    # the whole graph: float SNN outputs of the folded and unfolded graphs agree
    ra, rb = simulate(g, xte[:64], 8), simulate(gf, xte[:64], 8)
    assert np.allclose(ra.logits, rb.logits, rtol=1e-5, atol=1e-8 * np.abs(ra.logits).max())


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_quantization_error_bounds(digits_model, digits_data, bits):
    (xtr, _), _ = digits_data
    g = fuse_synapses(fold_batchnorm(convert(digits_model, xtr[:256])))
    q = quantize(g, xtr[:128], weight_bits=bits, calib_steps=16, bias_onset=False)
    gi, rep = q.int_graph, q.report
    s_x = cv.meta(gi, cv.INPUT_SCALE)
    qmax = 2 ** (bits - 1) - 1
    for lq in rep.layers:
        for name, info in lq.synapses.items():
            w_eff = np.asarray(gi.nodes[name].weight)
            target = np.asarray(g.nodes[name].weight) * lq.scale * (s_x if name == "conv1" else 1.0)
            node = gi.nodes[name]
            unit = info["unit"]  # W_eff = m * unit, |m| <= qmax
            mant = w_eff / unit
            assert np.all(mant == np.round(mant)) and np.abs(mant).max() <= qmax
            if isinstance(node, nir.Conv2d):
                assert info["weight_exp"] == 0 and np.all(w_eff == np.round(w_eff))  # Lava Conv: raw integers
            else:
                assert unit == 2.0 ** (9 - bits + info["weight_exp"])
            # rounding error at most half a unit, relative error as reported
            assert np.abs(w_eff - target).max() <= unit / 2 + 1e-9
            assert info["max_rel_error"] <= (unit / 2) / np.abs(target).max() + 1e-12
        if lq.vth is not None:
            assert 1 <= lq.vth <= cv.VTH_MAX


def _tiny_integer_graph(reset: str = "subtract") -> nir.NIRGraph:
    """2 graded inputs -> Dense [[2,0],[0,-2]] -> IF(vth=5) -> Dense [[4,2]] -> I readout."""
    l1 = nir.Affine(weight=np.array([[2.0, 0.0], [0.0, -2.0]]), bias=np.zeros(2))
    l1.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    if_ = nir.IF(r=np.ones(2), v_threshold=np.full(2, 5.0))
    if_.metadata = {cv.RESET: reset, cv.V_INIT: 0.0}
    l2 = nir.Affine(weight=np.array([[4.0, 2.0]]), bias=np.zeros(1))
    l2.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    ro = nir.I(r=np.ones(1))
    ro.metadata = {cv.READOUT: True, cv.SCALE: 1.0}
    return make_graph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}), "l1": l1, "if": if_, "l2": l2,
               "readout": ro, "output": nir.Output(output_type={"output": np.array([1])})},
        edges=[("input", "l1"), ("l1", "if"), ("if", "l2"), ("l2", "readout"), ("readout", "output")],
        metadata={cv.KIND: cv.INTEGER, cv.INPUT_SCALE: 1.0, cv.INPUT_BITS: 8, cv.INPUT_SIGNED: True})


def test_simulator_matches_hand_computed_network():
    # worked by hand (Lava fixed point): x_int = [2, 1]; neuron 0 gets a = 4 from step 1 on (one step of delay),
    # u = 4 << 6 = 256, threshold 5 << 6 = 320, reset by subtraction:
    #   v: t1 256, t2 512 -> spike -> 192, t3 448 -> spike -> 128, t4 384 -> spike -> 64, t5 320 (not > 320)
    # neuron 1 gets a = -2: v = -128 t each step, never spikes.
    # Readout (depth 2): gets 4 * spike(t-1): steps 3, 4, 5 -> 3 * (4 << 6) = 768; v after step 1 = 0.
    g = _tiny_integer_graph()
    r = simulate(g, np.array([[2.0, 1.0]]), steps=4, rasters=True, record_final=True)
    assert r.latency_steps == 6
    assert r.rasters["if"][:, 0, 0].astype(int).tolist() == [0, 0, 1, 1, 1, 0]
    assert r.rasters["if"][:, 0, 1].sum() == 0
    assert r.final_state["if"]["v"][0].tolist() == [320, -128 * 5]
    assert r.potentials[0, 0] == 768
    assert r.logits[0, 0] == pytest.approx(768 / 64 / 4)
    # reset to zero: t2 512 -> 0, t3 256, t4 512 -> 0, t5 256
    rz = simulate(_tiny_integer_graph("zero"), np.array([[2.0, 1.0]]), steps=4, rasters=True, record_final=True)
    assert rz.rasters["if"][:, 0, 0].astype(int).tolist() == [0, 0, 1, 0, 1, 0]
    assert rz.final_state["if"]["v"][0, 0] == 256


def test_simulator_current_wraps_and_potential_saturates_like_lava():
    g = _tiny_integer_graph()
    g.nodes["l1"].weight = np.array([[254.0 * 8, 0.0], [0.0, -254.0 * 8]])  # W_eff = mant 254 << weight_exp 3
    g.nodes["l1"].metadata[cv.WEIGHT_EXP] = 3
    r = simulate(g, np.array([[127.0, 127.0]]), steps=3, record_final=True)
    u = (254 * 127 << 3) << 6  # 16516096 > 2**23: Lava wraps it once into (-2**23, 2**23]
    assert r.final_state["if"]["u"][0].tolist() == [u - 2 ** 24, -(u - 2 ** 24)]
    assert r.events["if"]["u_wrap"] == 2 * 4  # both neurons, steps 1..4 (step 0 has no input yet)
    # v of neuron 1 falls by |u - 2**24| per step: no saturation in 5 steps
    assert r.events["if"]["v_saturate"] == 0
    g.nodes["l1"].weight = np.array([[0.0, 0.0], [0.0, -254.0 * 4]])
    g.nodes["l1"].metadata[cv.WEIGHT_EXP] = 2  # u = -(254*127 << 2) << 6 = -8258048: v saturates at step 2
    r = simulate(g, np.array([[0.0, 127.0]]), steps=3, record_final=True)
    assert r.final_state["if"]["v"][0, 1] == -(2 ** 23 - 1)
    assert r.events["if"]["v_saturate"] == 3 and r.events["if"]["u_wrap"] == 0


def test_float_snn_matches_ann_at_T64(digits_model, digits_data, digits_compiled):
    from snnc.train.fit import accuracy

    _, (xte, yte) = digits_data
    ann = accuracy(digits_model, xte, yte)
    snn = simulate(digits_compiled.float_graph, xte, 64).accuracy(yte)
    assert abs(ann - snn) <= 0.01, (ann, snn)
    integer = simulate(digits_compiled.int_graph, xte, 64).accuracy(yte)
    assert abs(ann - integer) <= 0.02, (ann, integer)


def test_integer_graph_invariants(digits_compiled):
    gi = digits_compiled.int_graph
    assert cv.graph_kind(gi) == cv.INTEGER
    for name, node in gi.nodes.items():
        if isinstance(node, nir.IF):
            th = np.asarray(node.v_threshold)
            assert np.all(th == np.round(th))
        if isinstance(node, (nir.Affine, nir.Conv2d)):
            assert cv.meta(node, cv.WEIGHT_BITS) == 8
            assert np.all(np.asarray(node.bias) == np.round(node.bias))


def test_nir_round_trip_identical(digits_compiled, tmp_path):
    for g in (digits_compiled.float_graph, digits_compiled.int_graph):
        p = tmp_path / "g.nir"
        write(g, p)
        back = read(p)
        assert graphs_equal(g, back)
        assert cv.meta(back.nodes["conv1"], cv.WEIGHT_BITS) == cv.meta(g.nodes["conv1"], cv.WEIGHT_BITS)
    # and the integer graph simulates identically after the round trip
    x = np.random.default_rng(0).random((8, 1, 8, 8))
    a, b = simulate(digits_compiled.int_graph, x, 4), simulate(back, x, 4)
    assert np.array_equal(a.potentials, b.potentials)


class _Sig(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.Sigmoid()
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


def test_unsupported_layer_names_it():
    with pytest.raises(UnsupportedLayerError, match=r"'act'.*Sigmoid"):
        convert(_Sig(), np.zeros((4, 4), np.float32))

    class Fn(nn.Module):
        def forward(self, x):
            return torch.tanh(x)

    with pytest.raises(UnsupportedLayerError, match="tanh"):
        convert(Fn(), np.zeros((2, 3), np.float32))


def test_malformed_files_give_named_error(tmp_path, digits_compiled):
    bad = tmp_path / "notnir.nir"
    bad.write_text("hello")
    with pytest.raises(NIRFileError, match="notnir.nir"):
        read(bad)
    good = tmp_path / "good.nir"
    write(digits_compiled.int_graph, good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.nir"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(NIRFileError, match="trunc.nir"):
        read(trunc)
    with pytest.raises(NIRFileError, match="no such file"):
        read(tmp_path / "missing.nir")


def test_cli_compile_simulate_inspect_json(tmp_path, digits_model, capsys):
    from snnc.cli import main

    mp = tmp_path / "m.pt"
    torch.save(digits_model, mp)
    out = tmp_path / "m.nir"
    # a whole pickled module runs code from the file when loaded: refused by name unless --trust-pickle
    assert main(["compile", str(mp), "--calib", "digits", "-o", str(out), "--json"]) == 8
    assert "--trust-pickle" in capsys.readouterr().err and not out.exists()
    assert main(["compile", str(mp), "--trust-pickle", "--calib", "digits", "-o", str(out), "--json"]) == 0
    comp = json.loads(capsys.readouterr().out)
    assert comp["output"] == str(out) and len(comp["layers"]) == 3
    assert main(["simulate", str(out), "--data", "digits", "--steps", "8", "--samples", "40", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    for k in ("accuracy", "steps", "latency_steps", "samples", "spikes_per_layer", "samples_per_s"):
        assert k in sim
    assert 0 <= sim["accuracy"] <= 1 and sim["steps"] == 8 and sim["latency_steps"] == 11
    assert sim["samples"] == 40 and set(sim["spikes_per_layer"]) == {"relu1", "relu2"}
    # the CLI's numbers are the Python API's on the same samples: the same graph, accuracy and spikes
    import snnc
    from snnc.data import digits

    (xtr, _), (xte, yte) = digits("train"), digits("test")
    assert snnc.ir.graphs_equal(snnc.read(out), snnc.compile(digits_model, xtr).int_graph)
    r = snnc.simulate(snnc.read(out), xte[:40], 8)
    assert sim["accuracy"] == r.accuracy(yte[:40]) and sim["spikes_per_layer"] == r.spikes_per_layer
    assert min(sim["spikes_per_layer"].values()) > 0
    assert main(["inspect", str(out), "--json"]) == 0
    ins = json.loads(capsys.readouterr().out)
    assert ins["kind"] == "integer" and any(n["type"] == "IF" for n in ins["nodes"])
    # a state dict needs --model-class; without it the error is named, with it compile works
    sd = tmp_path / "sd.pt"
    torch.save(digits_model.state_dict(), sd)
    assert main(["compile", str(sd), "-o", str(tmp_path / "x.nir")]) == 8
    assert "model-class" in capsys.readouterr().err
    assert main(["compile", str(sd), "--model-class", "snnc.zoo:DigitsCNN", "-o",
                 str(tmp_path / "x.nir"), "--json"]) == 0


def test_npz_data(tmp_path, digits_data, digits_compiled):
    from snnc.data import load_dataset
    from snnc.ir import DataError

    _, (xte, yte) = digits_data
    p = tmp_path / "d.npz"
    np.savez(p, x=xte[:10], y=yte[:10])
    x, y = load_dataset(str(p))
    assert x.shape == (10, 1, 8, 8) and y.tolist() == yte[:10].tolist()
    np.savez(tmp_path / "bad.npz", x=xte[:10], y=np.zeros(3))
    with pytest.raises(DataError, match="'y'"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(DataError, match="shape"):
        simulate(digits_compiled.int_graph, np.zeros((2, 3)), 2)
