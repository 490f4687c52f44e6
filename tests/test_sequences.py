"""Time-varying input (``snnc.ir.sequence``): x (N, T, *input) is one slice per step, x (N, *input) one frame.

The rule decided against the graph's Input, the steps and window, both CPU engines bit for bit, Lava spike for spike,
energy (binary input events are synaptic ops), calibration in compile, the CLI's JSON keys, and ``digits-events``.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from snnc.backends.cpu.simulator import simulate
from snnc.ir import conventions as cv
from snnc.ir.errors import DataError
from snnc.ir.sequence import input_series

HAS_LAVA = importlib.util.find_spec("lava") is not None
IN_SHAPE = (2, 6, 6)


@pytest.fixture(scope="module")
def event_net():
    """A small CNN on 2 x 6 x 6 event frames, compiled with random event sequences as calibration data."""
    import snnc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(64, 5)).eval()
    rng = np.random.default_rng(0)
    calib = (rng.random((64, 12) + IN_SHAPE) < 0.3).astype(np.float32)
    c = snnc.compile(model, calib, calib_sequence=True)
    x = (rng.random((6, 12) + IN_SHAPE) < 0.3).astype(np.float32)
    return c, x


def test_layout_rule_and_named_error():
    s = input_series(IN_SHAPE, np.zeros((3,) + IN_SHAPE))
    assert not s.sequence and s.samples == 3 and s.steps_in is None
    s = input_series(IN_SHAPE, np.zeros((3, 7) + IN_SHAPE))
    assert s.sequence and s.steps_in == 7 and s.run_steps(None) == 7 and s.run_steps(9) == 9 and s.presented(4) == 4
    assert input_series(IN_SHAPE, np.zeros(IN_SHAPE)).samples == 1  # one static sample
    with pytest.raises(DataError, match=r"\(N, 2, 6, 6\) \(static.*\(N, T, 2, 6, 6\) \(a sequence"):
        input_series(IN_SHAPE, np.zeros((3, 7, 2, 5, 6)), "input")
    with pytest.raises(DataError, match="needs the number of steps"):
        input_series(IN_SHAPE, np.zeros((3,) + IN_SHAPE)).run_steps(None)


def test_constant_sequence_equals_static_frame(event_net):
    """T copies of a frame give the static frame's output (the static frame keeps coming during the last depth steps,
    which reach the readout only after its window)."""
    c, x = event_net
    frame = x[:, 0]
    seq = np.repeat(frame[:, None], 8, axis=1)
    for g, engine in ((c.float_graph, "reference"), (c.int_graph, "fast"), (c.int_graph, "reference")):
        a = simulate(g, frame, 8, engine=engine, rasters=True)
        b = simulate(g, seq, None, engine=engine, rasters=True)
        assert np.array_equal(a.logits, b.logits), (g.metadata.get(cv.KIND), engine)
        assert b.sequence and b.input_steps == 8 and b.steps == 8 and not a.sequence and a.input_steps is None
        assert all(np.array_equal(a.rasters[n][:9], b.rasters[n][:9]) for n in a.rasters)


@pytest.mark.parametrize("steps", [None, 5, 16])
def test_fast_engine_equals_reference_on_sequences(event_net, steps):
    """Bit for bit: logits, potentials, spike counts; ``steps`` shorter cuts the sequence, longer adds silence."""
    c, x = event_net
    a = simulate(c.int_graph, x, steps, engine="fast", batch_size=4)
    b = simulate(c.int_graph, x, steps, engine="reference", batch_size=4)
    assert a.steps == b.steps == (steps or 12) and a.latency_steps == a.steps + 2  # one IF layer + readout
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.potentials, b.potentials)
    assert all(np.array_equal(a.spike_counts[n], b.spike_counts[n]) for n in a.spike_counts)
    assert sum(a.spikes_per_layer.values()) > 0


def test_silent_tail_and_cut_follow_the_rule(event_net):
    """Steps after the sequence get no input: a 16-step run of a 12-step sequence equals the 12 slices followed by
    4 slices without events; an 8-step run equals the first 8 slices."""
    c, x = event_net
    padded = np.concatenate([x, np.zeros_like(x[:, :4])], axis=1)
    assert np.array_equal(simulate(c.int_graph, x, 16).logits, simulate(c.int_graph, padded, None).logits)
    assert np.array_equal(simulate(c.int_graph, x, 8).logits, simulate(c.int_graph, x[:, :8], None).logits)


def test_binary_calibration_gives_one_bit_input(event_net):
    c, x = event_net
    assert cv.meta(c.int_graph, cv.INPUT_BITS) == 1 and cv.meta(c.int_graph, cv.INPUT_SCALE) == 1.0
    assert not cv.meta(c.int_graph, cv.INPUT_SIGNED)
    fl, it = simulate(c.float_graph, x, None), simulate(c.int_graph, x, None)
    assert float((fl.logits.argmax(1) == it.logits.argmax(1)).mean()) >= 0.5


def test_energy_counts_binary_input_events_as_sops(event_net):
    """The input connection's SOPs are the presented events times their fan-out (a 3x3 valid conv over 2 channels:
    fan-out by position); the static frame counts every step of the run."""
    from snnc.analysis.report import energy_report
    from snnc.analysis.sops import count_ops, fanout_map
    from snnc.ir.plan import build_plan

    c, x = event_net
    g = c.int_graph
    plan = build_plan(g)
    conn = [k for k in plan.connections if k.src == plan.input][0]
    fo = fanout_map(g, conn, plan)
    r = simulate(g, x, 8)
    row = [k for k in count_ops(g, r, x, plan) if k.src == plan.input][0]
    assert not row.graded
    assert row.events == int(x[:, :8].sum()) and row.ops == int((x[:, :8].sum((0, 1)) * fo).sum())
    rep = energy_report(g, x, r)
    d = rep.as_dict()
    assert d["sequence"] and d["input_steps"] == 12 and d["input_binary"] and d["input_macs"] == 0
    assert d["ann_steps"] == 8 and d["sops_total"] >= row.ops
    rs = simulate(g, x[:, 0], 8)
    static = [k for k in count_ops(g, rs, x[:, 0], plan) if k.src == plan.input][0]
    assert static.events == int(x[:, 0].sum()) * rs.latency_steps
    assert not energy_report(g, x[:, 0], rs).as_dict()["sequence"]


@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc not installed")
def test_lava_equals_simulator_on_sequences(event_net):
    """Binary event sequences as Lava spikes (1-bit input, num_message_bits 0), one RingBuffer slot per step."""
    from snnc.backends.lava import verify

    c, x = event_net
    rep = verify(c.int_graph, x[:2], 14, progress=False, timeout_s=300)
    assert rep.ok and rep.spikes_compared > 0 and rep.sequence and rep.input_steps == 12, rep.as_dict()


def test_cli_sequences_json(tmp_path, event_net, capsys):
    """simulate / energy take an .npz whose x has a time axis; --json tells sequence from static; a shape that fits
    neither layout is a DataError (exit 8) naming both."""
    from snnc.cli import main
    from snnc.ir import write

    c, x = event_net
    write(c.int_graph, tmp_path / "g.nir")
    np.savez(tmp_path / "seq.npz", x=x, y=np.arange(len(x)) % 5)
    np.savez(tmp_path / "static.npz", x=x[:, 0], y=np.arange(len(x)) % 5)
    np.savez(tmp_path / "bad.npz", x=x[:, :, :, :5], y=np.arange(len(x)) % 5)
    assert main(["simulate", str(tmp_path / "g.nir"), "--data", str(tmp_path / "seq.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sequence"] and out["input_steps"] == 12 and out["steps"] == 12 and out["latency_steps"] == 14
    assert main(["simulate", str(tmp_path / "g.nir"), "--data", str(tmp_path / "static.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not out["sequence"] and out["input_steps"] is None and out["steps"] == 32
    assert main(["energy", str(tmp_path / "g.nir"), "--data", str(tmp_path / "seq.npz"), "--steps", "6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sequence"] and out["steps"] == 6 and out["input_binary"] and out["input_macs"] == 0
    assert main(["simulate", str(tmp_path / "g.nir"), "--data", str(tmp_path / "bad.npz")]) == DataError.exit_code
    assert "static" in capsys.readouterr().err


def test_digits_events_deterministic_and_split():
    """Same split and order as digits; deterministic; ON events where the moving digit brightens a pixel."""
    from snnc.data import digits, digits_events, events_from_images

    x, y = digits_events("test")
    assert x.shape == (360, 30, 2, 10, 10) and x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
    assert np.array_equal(y, digits("test")[1])
    x2, _ = digits_events("test", steps=60)
    assert np.array_equal(x2[:, :30], x) and 0.05 < x.mean() < 0.2
    img = np.zeros((1, 8, 8))
    img[0, :, 0] = 1.0  # a bright left column moving down-right in the first saccade: ON ahead, OFF behind it
    ev = events_from_images(img, 10)[0]  # (steps, polarity, row, column)
    assert ev[:, 0, 3, 1].sum() > 0 and ev[:, 1, 3, 1].sum() == 0  # column 1 brightens
    assert ev[:, 1, 0, 0].sum() > 0 and ev[:, 0, 0, 0].sum() == 0  # the top of column 0 darkens
