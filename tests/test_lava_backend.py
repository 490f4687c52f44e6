"""The bit-accurate CPU simulator against Lava's own fixed-point models, spike for spike.

Random integer networks (Dense and Conv, mixed/excitatory/inhibitory weights, several du/dv, biases, negative
and positive weight exponents, 5-8 bit weights, graded input, >= 3 spiking layers, residual fan-in) are built
as integer snnc graphs and run both on Lava (stock LIF for reset-to-zero layers, snnc's SubtractLIF for
reset-by-subtraction layers) and on ``snnc.backends.cpu.simulator``: every spike and every final u and v must
agree over >= 100 steps. Each Lava run is bounded by a time limit.

Both sides of most comparisons here are snnc's own code in one place: the reset by subtraction and the potential
floor inside Lava are snnc's SubtractLIF process model (``backends/lava/processes.py``), and the simulator's kernel
is snnc's. ``test_hand_computed_spike_trains`` is the independent reference: spike times derived by hand from NIR's
IF equations (reset by subtraction, and to zero) for one neuron, checked on both engines and on Lava; the Sinabs
comparisons in the interop matrix (``tests/interop``) check the same dynamics against another framework.
"""
from __future__ import annotations

import importlib.util

import nir
import numpy as np
import pytest
from snnc.backends.cpu.simulator import simulate
from snnc.ir import conventions as cv
from snnc.ir import make_graph
from snnc.ir.errors import QuantizationError

HAS_LAVA = importlib.util.find_spec("lava") is not None
needs_lava = pytest.mark.skipif(not HAS_LAVA, reason="lava-nc not installed")
LAVA_TIMEOUT_S = 120
STEPS = 100


# ---------------------------------------------------------------- random integer networks


def _mant(rng: np.random.Generator, shape: tuple, bits: int, sign: str) -> np.ndarray:
    """Lava Dense mantissas m * 2**(9 - bits), |m| <= 2**(bits-1) - 1, of the given sign mode."""
    hi = 2 ** (bits - 1) - 1
    m = rng.integers(-hi, hi + 1, size=shape)
    if sign == "exc":
        m = np.abs(m)
    elif sign == "inh":
        m = -np.abs(m)
    m[rng.random(shape) < 0.3] = 0
    return (m * 2 ** (9 - bits)).astype(np.float64)


def _affine(rng, n_out: int, n_in: int, bits: int, exp: int, sign: str, bias_max: int = 0) -> nir.Affine:
    w = _mant(rng, (n_out, n_in), bits, sign) * 2.0 ** exp
    b = rng.integers(-bias_max, bias_max + 1, size=n_out).astype(np.float64)
    node = nir.Affine(weight=w, bias=b)
    node.metadata = {cv.WEIGHT_EXP: exp, cv.WEIGHT_BITS: bits}
    return node


def _conv(rng, c_out: int, c_in: int, k: tuple, hw: tuple, bits: int, sign: str, stride=1, padding=0, groups=1,
          bias_max: int = 0) -> nir.Conv2d:
    w = _mant(rng, (c_out, c_in // groups) + tuple(k), bits, sign) / 4  # integer conv weights (no exponent)
    w = np.round(w)
    b = rng.integers(-bias_max, bias_max + 1, size=c_out).astype(np.float64)
    node = nir.Conv2d(input_shape=hw, weight=w, stride=stride, padding=padding, dilation=1, groups=groups, bias=b)
    node.metadata = {cv.WEIGHT_BITS: bits, cv.WEIGHT_EXP: 0}
    return node


def _if(shape: tuple, vth, reset: str, du: int, dv: int, v_init=0.0) -> nir.IF:
    node = nir.IF(r=np.ones(shape), v_threshold=np.broadcast_to(np.asarray(vth, dtype=np.float64), shape).copy())
    node.metadata = {cv.RESET: reset, cv.DU: du, cv.DV: dv, cv.V_INIT: v_init}
    return node


def _readout(n: int, du: int = 4095, dv: int = 0) -> nir.I:
    node = nir.I(r=np.ones(n))
    node.metadata = {cv.READOUT: True, cv.DU: du, cv.DV: dv, cv.SCALE: 3.0}
    return node


def _graph(nodes: dict, edges: list, in_shape: tuple, out_n: int) -> nir.NIRGraph:
    nodes = dict(nodes)
    nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    nodes["output"] = nir.Output(output_type={"output": np.array([out_n])})
    g = make_graph(nodes=nodes, edges=edges)
    g.metadata = {cv.KIND: cv.INTEGER, cv.INPUT_SCALE: 0.5, cv.INPUT_BITS: 8, cv.INPUT_SIGNED: True}
    return g


def mlp_graph(seed: int, reset: str) -> nir.NIRGraph:
    """input(24) -> fc1 -> h1 -> fc2 -> h2 -> {fc3 from h2, skip from h1} -> h3 (fan-in) -> fc4 -> readout."""
    rng = np.random.default_rng(seed)
    r2 = "zero" if reset == "zero" else "subtract"
    nodes = {
        "fc1": _affine(rng, 32, 24, bits=8, exp=-1, sign="mixed", bias_max=40),
        "h1": _if((32,), rng.integers(60, 200, size=32) if reset == "subtract" else 120, reset, 4095, 0,
                  v_init=0.5 if reset == "subtract" else 0.0),
        "fc2": _affine(rng, 28, 32, bits=6, exp=-1, sign="exc", bias_max=0),
        "h2": _if((28,), 2500, r2, 2048, 100),
        "fc3": _affine(rng, 20, 28, bits=5, exp=2, sign="mixed", bias_max=4000),
        "skip": _affine(rng, 20, 32, bits=7, exp=-2, sign="inh"),
        "h3": _if((20,), 250, r2, 0, 4095),  # du=0: u keeps integrating and wraps
        "fc4": _affine(rng, 10, 20, bits=8, exp=0, sign="mixed", bias_max=5),
        "out": _readout(10, du=4095, dv=0),
    }
    edges = [("input", "fc1"), ("fc1", "h1"), ("h1", "fc2"), ("fc2", "h2"), ("h2", "fc3"), ("fc3", "h3"),
             ("h1", "skip"), ("skip", "h3"), ("h3", "fc4"), ("fc4", "out"), ("out", "output")]
    return _graph(nodes, edges, (24,), 10)


def cnn_graph(seed: int, reset: str) -> nir.NIRGraph:
    """Non-square (2, 9, 7) input; conv 3x3 pad (1, 0) -> c1; {conv 3x3 pad 1 groups 2, conv 1x1} -> c2
    (residual fan-in); sumpool 2 -> p; conv stride (2, 1) -> c3; flatten -> fc -> readout."""
    rng = np.random.default_rng(seed)
    nodes = {
        "conv1": _conv(rng, 4, 2, (3, 3), (9, 7), bits=8, sign="mixed", padding=(1, 0), bias_max=30),
        "c1": _if((4, 9, 5), 150, reset, 4095, 0, v_init=0.5 if reset == "subtract" else 0.0),
        "conv2": _conv(rng, 4, 4, (3, 3), (9, 5), bits=6, sign="exc", padding=1, groups=2),
        "conv2s": _conv(rng, 4, 4, (1, 1), (9, 5), bits=8, sign="inh", bias_max=10),
        "c2": _if((4, 9, 5), 400, reset, 1024, 256),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "p": _if((4, 4, 2), 6, reset, 4095, 0),
        "conv3": _conv(rng, 6, 4, (2, 2), (4, 2), bits=7, sign="mixed", stride=(2, 1), bias_max=20),
        "c3": _if((6, 2, 1), 4, reset, 4095, 2000),
        "flat": nir.Flatten(input_type={"input": np.array([6, 2, 1])}, start_dim=0, end_dim=-1),
        "fc": _affine(rng, 5, 12, bits=8, exp=1, sign="mixed"),
        "out": _readout(5, du=0, dv=10),
    }
    edges = [("input", "conv1"), ("conv1", "c1"), ("c1", "conv2"), ("conv2", "c2"), ("c1", "conv2s"),
             ("conv2s", "c2"), ("c2", "pool"), ("pool", "p"), ("p", "conv3"), ("conv3", "c3"), ("c3", "flat"),
             ("flat", "fc"), ("fc", "out"), ("out", "output")]
    return _graph(nodes, edges, (2, 9, 7), 5)


def conv_flatten_graph(seed: int) -> nir.NIRGraph:
    """Flatten of a non-square multi-channel layer into a dense layer: catches a wrong (C,H,W) <-> (W,H,C) order."""
    rng = np.random.default_rng(seed)
    nodes = {
        "conv": _conv(rng, 3, 1, (3, 3), (6, 5), bits=8, sign="mixed", padding=1, bias_max=20),
        "c": _if((3, 6, 5), 40, "subtract", 4095, 0),
        "flat": nir.Flatten(input_type={"input": np.array([3, 6, 5])}, start_dim=0, end_dim=-1),
        "fc": _affine(rng, 12, 90, bits=8, exp=0, sign="mixed", bias_max=5),
        "h": _if((12,), 100, "subtract", 4095, 0),
        "fc2": _affine(rng, 4, 12, bits=8, exp=0, sign="mixed"),
        "out": _readout(4),
    }
    edges = [("input", "conv"), ("conv", "c"), ("c", "flat"), ("flat", "fc"), ("fc", "h"), ("h", "fc2"),
             ("fc2", "out"), ("out", "output")]
    return _graph(nodes, edges, (1, 6, 5), 4)


def wide_activation_graph() -> nir.NIRGraph:
    """Activations far beyond int16 (Lava's LIF a_in port type): a conv whose 24-bit output wraps, and a dense
    layer whose a_in << 6 wraps u. Lava must deliver them unchanged (no int16 truncation) to match."""
    w = np.stack([np.full((1, 3, 3), 30001.0), np.full((1, 3, 3), -300.0)])  # (2, 1, 3, 3)
    conv = nir.Conv2d(input_shape=(3, 3), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2))
    conv.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    fc = nir.Affine(weight=np.full((3, 18), 254.0 * 2 ** 7), bias=np.zeros(3))
    fc.metadata = {cv.WEIGHT_EXP: 7, cv.WEIGHT_BITS: 8}
    nodes = {"conv": conv, "c": _if((2, 3, 3), 20000, "subtract", 4095, 0),
             "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
             "fc": fc, "h": _if((3,), 1000, "subtract", 4095, 0),
             "fc2": _affine(np.random.default_rng(0), 2, 3, bits=8, exp=0, sign="mixed"), "out": _readout(2)}
    edges = [("input", "conv"), ("conv", "c"), ("c", "flat"), ("flat", "fc"), ("fc", "h"), ("h", "fc2"),
             ("fc2", "out"), ("out", "output")]
    return _graph(nodes, edges, (1, 3, 3), 2)


def _inputs(seed: int, shape: tuple, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    return rng.uniform(-40, 64, size=(n,) + shape)  # input_scale 0.5: graded ints in [-80, 127]


# ---------------------------------------------------------------- comparison


def _same_spikes(sim, lav, engine: str) -> None:
    for n in sim.rasters:
        r_sim, r_lava = sim.rasters[n], lav.rasters[n]
        assert r_sim.shape == r_lava.shape, n
        if not np.array_equal(r_sim, r_lava):
            t, i, *idx = np.argwhere(r_sim != r_lava)[0]
            pytest.fail(f"{engine} engine, layer {n}: first differing spike at step {t}, sample {i}, neuron "
                        f"{tuple(idx)} (sim {r_sim[(t, i, *idx)]}, lava {r_lava[(t, i, *idx)]}); "
                        f"{int((r_sim != r_lava).sum())} of {r_sim.size} differ")


def _compare(graph: nir.NIRGraph, x: np.ndarray, steps: int = STEPS) -> tuple[dict, dict]:
    """Both simulator engines vs Lava: every spike and the readout potential of the fast engine (what users run)
    and of the int64 reference engine, and the reference's final u and v; returns (spike rates, sim events)."""
    from snnc.backends.lava import run_lava

    sim = simulate(graph, x, steps, rasters=True, record_final=True)
    assert sim.engine == "reference"
    lav = run_lava(graph, x, steps, rasters=True, record_final=True, progress=False, timeout_s=LAVA_TIMEOUT_S)
    _same_spikes(sim, lav, "reference")
    fast = simulate(graph, x, steps, rasters=True, engine="fast")
    assert fast.engine == "fast"
    _same_spikes(fast, lav, "fast")
    np.testing.assert_array_equal(fast.potentials, lav.potentials)
    assert fast.events == sim.events
    for n, st in sim.final_state.items():
        for k in ("u", "v"):
            np.testing.assert_array_equal(st[k], lav.final_state[n][k], err_msg=f"layer {n}: final {k}")
    np.testing.assert_array_equal(sim.potentials, lav.potentials)
    np.testing.assert_allclose(sim.logits, lav.logits, rtol=0, atol=1e-12)
    return {n: float(sim.rasters[n].mean()) for n in sim.rasters}, sim.events


def _assert_active(rates: dict, readout: str = "out") -> None:
    """The test networks must actually spike (a silent or saturated layer would compare little)."""
    for n, r in rates.items():
        if n == readout:
            assert r == 0, "the readout must never spike"
        else:
            assert 0.005 < r < 0.95, f"layer {n}: spike rate {r:.3f} makes a weak test"


@needs_lava
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_mlp_sim_equals_lava(reset: str) -> None:
    rates, events = _compare(mlp_graph(1, reset), _inputs(1, (24,), 3))
    _assert_active(rates)
    assert events["h3"]["u_wrap"] > 0 and events["h1"]["v_saturate"] > 0  # wrap and saturation were exercised


@needs_lava
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_cnn_sim_equals_lava(reset: str) -> None:
    rates, events = _compare(cnn_graph(2, reset), _inputs(2, (2, 9, 7), 3))
    _assert_active(rates)
    assert events["out"]["v_saturate"] > 0


@needs_lava
def test_flatten_order_sim_equals_lava() -> None:
    rates, _ = _compare(conv_flatten_graph(3), _inputs(3, (1, 6, 5), 2), steps=40)
    _assert_active(rates)


@needs_lava
def test_wide_activations_wrap_identically() -> None:
    rates, events = _compare(wide_activation_graph(), _inputs(7, (1, 3, 3), 2), steps=30)
    assert events.get("input->c", {}).get("conv_wrap", 0) > 0, events  # the conv output wrapped
    assert events["h"]["u_wrap"] > 0, events  # u = a << 6 wrapped


@needs_lava
def test_converted_digits_cnn_verifies() -> None:
    """The lead's pipeline on a small, briefly trained digits CNN (soft reset, half-threshold initial potential):
    Lava and the simulator agree on every spike of >= 10 test samples."""
    import snnc
    from snnc.backends.lava import verify
    from snnc.data import digits
    from snnc.frontend.convert import ConvertOptions
    from snnc.train.fit import fit
    from snnc.zoo import DigitsCNN

    xtr, ytr = digits("train")
    xte, _ = digits("test")
    model = fit(DigitsCNN(c1=4, c2=8), xtr[:300], ytr[:300], epochs=1)
    g = snnc.compile(model, xtr[:200], ConvertOptions(v_init=0.5)).int_graph
    rep = verify(g, xte[:10], 32, progress=False, timeout_s=LAVA_TIMEOUT_S)
    assert rep.engine == "fast"  # the engine users run is the one compared spike for spike
    spiking = {n: d for n, d in rep.layers.items() if d.spikes_compared}
    assert set(spiking) == {"relu1", "relu2"}
    for n, d in spiking.items():  # activity: every layer fires, none saturates
        assert 0.01 < d.lava_spikes / d.spikes_compared < 0.9, (n, d)
    assert rep.ok, (rep.first_divergence, rep.spikes_differ, rep.potentials_differ, rep.state_differ,
                    rep.reference_spikes_differ)


@pytest.mark.parametrize("reset,spike_steps", [
    # one IF neuron, vth = 5, input a = 3 from step 1 (one connection), v_init = 0; by hand from NIR's IF:
    # subtract: v = 3, 6>5 spike ->1, 4, 7 spike ->2, 5 (not > 5), 8 spike ->3, 6 spike ->1, 4, 7 spike ->2, 5,
    #           8 spike ->3 (steps 1..11: the run lasts T + depth = 10 + 2 steps)
    ("subtract", [2, 4, 6, 7, 9, 11]),
    # zero:     v = 3, 6 spike ->0, 3, 6 spike ->0, ..., 3 at step 11
    ("zero", [2, 4, 6, 8, 10]),
])
def test_hand_computed_spike_trains(reset: str, spike_steps: list[int]) -> None:
    """The independent reference for the reset semantics: spike times worked out by hand (see the parameters)."""
    fc = nir.Affine(weight=np.array([[3.0]]), bias=np.zeros(1))
    fc.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    out = nir.Affine(weight=np.array([[1.0]]), bias=np.zeros(1))
    out.metadata = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    g = _graph({"fc": fc, "h": _if((1,), 5, reset, 4095, 0), "out_fc": out, "out": _readout(1)},
               [("input", "fc"), ("fc", "h"), ("h", "out_fc"), ("out_fc", "out"), ("out", "output")], (1,), 1)
    g.metadata[cv.INPUT_SCALE] = 1.0
    x = np.ones((1, 1))
    want = np.zeros(12, dtype=bool)
    want[spike_steps] = True
    for engine in ("reference", "fast"):
        r = simulate(g, x, 10, rasters=True, engine=engine)
        assert r.rasters["h"][:, 0, 0].tolist() == want.tolist(), engine
    if HAS_LAVA:
        from snnc.backends.lava import run_lava

        lav = run_lava(g, x, 10, rasters=True, record_final=False, progress=False, timeout_s=LAVA_TIMEOUT_S)
        assert lav.rasters["h"][:, 0, 0].tolist() == want.tolist()


# ---------------------------------------------------------------- verify, CLI, layout, errors


@needs_lava
def test_verify_reports_zero_and_first_divergence() -> None:
    from snnc.backends.lava import verify
    from snnc.backends.lava.verification import compare
    from snnc.ir.plan import build_plan

    g = mlp_graph(4, "subtract")
    x = _inputs(4, (24,), 2)
    rep = verify(g, x, 20, progress=False, timeout_s=LAVA_TIMEOUT_S)
    assert rep.ok and rep.spikes_differ == 0 and rep.potentials_differ == 0 and rep.first_divergence is None
    assert rep.spikes_compared == 2 * (20 + 4) * (32 + 28 + 20)  # samples * (steps + depth) * spiking neurons
    # a perturbed copy of the simulator run must be reported at its earliest (sample, step)
    sim = simulate(g, x, 20, rasters=True, record_final=True)
    sim2 = simulate(g, x, 20, rasters=True, record_final=True)
    sim2.rasters["h3"][7, 1, 5] ^= True
    sim2.rasters["h2"][3, 1, 2] ^= True
    sim2.potentials[0, 0] += 1
    rep2 = compare(sim2, _as_lava_result(sim), build_plan(g).neurons)
    assert not rep2.ok and rep2.spikes_differ == 2 and rep2.potentials_differ == 1
    d = rep2.first_divergence
    assert (d.layer, d.neuron, d.sample, d.step) == ("h2", (2,), 1, 3)


def _as_lava_result(sim):
    from snnc.backends.lava.runner import LavaResult

    return LavaResult(logits=sim.logits, potentials=sim.potentials.copy(), steps=sim.steps,
                      latency_steps=sim.latency_steps, samples=sim.samples, spikes_per_layer=sim.spikes_per_layer,
                      spike_counts=sim.spike_counts, seconds=1.0, compile_seconds=0.0,
                      rasters={k: v.copy() for k, v in sim.rasters.items()}, final_state=sim.final_state)


@needs_lava
def test_cli_run_and_verify(tmp_path, capsys) -> None:
    import json

    from snnc.cli import main
    from snnc.ir.graph import read, write

    g = mlp_graph(5, "subtract")
    write(g, tmp_path / "m.nir")
    assert cv.graph_kind(read(tmp_path / "m.nir")) == cv.INTEGER
    x = _inputs(5, (24,), 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2]))
    rc = main(["verify", str(tmp_path / "m.nir"), "--data", str(tmp_path / "d.npz"), "--samples", "3",
               "--steps", "16", "--json", "--timeout", str(LAVA_TIMEOUT_S)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, out
    assert {"samples", "steps", "spikes_compared", "spikes_differ", "potentials_differ"} <= set(out)
    assert out["samples"] == 3 and out["steps"] == 16 and out["spikes_differ"] == 0 and out["spikes_compared"] > 0
    for backend in ("lava", "cpu"):
        rc = main(["run", str(tmp_path / "m.nir"), "--backend", backend, "--data", str(tmp_path / "d.npz"),
                   "--samples", "3", "--steps", "16", "--json", "--timeout", str(LAVA_TIMEOUT_S)])
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rc == 0 and res["samples"] == 3 and set(res["spikes_per_layer"]) == {"h1", "h2", "h3"}
        res.pop("samples_per_s"), res.pop("seconds"), res.pop("backend")
        if backend == "lava":
            lava_res = res
        else:
            assert res == lava_res  # same accuracy and spike counts on both backends


@needs_lava
def test_conv_weight_layout_matches_torch() -> None:
    """Lava's own conv routine on transformed weights equals torch's cross-correlation in NCHW."""
    import torch
    import torch.nn.functional as F
    from lava.proc.conv import utils
    from snnc.backends.lava.layout import conv_weight_to_lava, from_lava, to_lava

    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, size=(3, 7, 5)).astype(np.int32)  # C, H, W
    w = rng.integers(-9, 10, size=(4, 3, 3, 2)).astype(np.int32)  # out, in, kh, kw
    ref = F.conv2d(torch.tensor(x[None], dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                   stride=(2, 1), padding=(1, 0))[0].numpy()
    got = utils.conv(to_lava(x, 3), conv_weight_to_lava(w), (2, 3), (1, 2), (0, 1), (1, 1), 1)  # XY order
    np.testing.assert_array_equal(from_lava(got, 3), ref)


def test_bias_to_lava() -> None:
    from snnc.backends.lava.emit import bias_to_lava

    mant, exp = bias_to_lava(np.array([0, -4095, 4095, 8190, -6000]), "n")
    np.testing.assert_array_equal(mant.astype(np.int64) << exp, np.array([0, -4095, 4095, 8190, -6000]) << 6)
    with pytest.raises(QuantizationError, match="'n'"):
        bias_to_lava(np.array([4097]), "n")  # odd and > 4095
    with pytest.raises(QuantizationError):
        bias_to_lava(np.array([1.5]), "n")


@needs_lava
def test_emit_rejects_weights_lava_would_change() -> None:
    from snnc.backends.lava.emit import emit

    g = mlp_graph(6, "subtract")
    g.nodes["fc1"].weight[0, 0], g.nodes["fc1"].weight[0, 1] = 3 * 0.5, -2 * 0.5  # mantissa 3: mixed sign floors
    with pytest.raises(QuantizationError, match="fc1"):
        emit(g)


def test_lava_is_imported_lazily_and_missing_lava_is_a_backend_error() -> None:
    import subprocess
    import sys

    code = ("import sys, builtins\n"
            "import snnc.backends.lava as L\n"
            "assert not any(m == 'lava' or m.startswith('lava.') for m in sys.modules), 'lava imported eagerly'\n"
            "real = builtins.__import__\n"
            "def fake(name, *a, **k):\n"
            "    if name == 'lava' or name.startswith('lava.'):\n"
            "        raise ImportError('No module named ' + repr(name))\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = fake\n"
            "from snnc.ir.errors import BackendError\n"
            "try:\n"
            "    L.run_lava(None, None, 1)\n"
            "except BackendError as e:\n"
            "    print('BACKEND_ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BACKEND_ERROR" in out.stdout and "lava-nc" in out.stdout
