"""Conversion quality (issue 4): QCFS ClipFloor, half-threshold init, threshold tuning, residual add/cat fan-in
with delay balancing, the max-pool rule, and the sweep command. Tiny fixed networks, float simulator."""
from __future__ import annotations

import functools
import json

import nir
import numpy as np
import pytest
import torch
import torch.nn as nn
from snnc.backends.cpu.simulator import simulate
from snnc.frontend.convert import convert
from snnc.frontend.residual import balance_residual_delays, delay_imbalance
from snnc.ir import conventions as cv
from snnc.ir.errors import UnsupportedLayerError
from snnc.passes.threshold_tuning import (
    layer_activations,
    tune_thresholds,
    tuning_factor,
)
from snnc.train import ClipFloor, swap_maxpool, swap_relu


@pytest.fixture(scope="module")
def xs() -> np.ndarray:
    from snnc.data import digits

    return digits("train")[0][:96]


def _ann(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.as_tensor(x)).numpy()


def _err(g, m, x, steps) -> float:
    """Mean squared error of the SNN readout against the ANN logits (float simulator)."""
    return float(np.mean((simulate(g, x, steps=steps).logits - _ann(m, x)) ** 2))


def _cnn(act=nn.ReLU, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), act(), nn.Conv2d(6, 8, 3, padding=1), act(),
                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 10))
    return m.eval()


class Res(nn.Module):
    """Stem, one identity-shortcut block, one downsampling block (1x1 conv shortcut), linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.c0, self.r0 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.c1, self.r1, self.c2, self.r2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), \
            nn.ReLU()
        self.c3, self.r3 = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        self.sc, self.r4 = nn.Conv2d(4, 6, 1, stride=2), nn.ReLU()
        self.fc = nn.Linear(6 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r0(self.c0(x))
        y = self.r2(self.c2(self.r1(self.c1(x))) + x)
        z = self.r4(self.c3(y) + self.sc(y))
        return self.fc(torch.flatten(z, 1))


# --- QCFS -------------------------------------------------------------------------------------------------------

def test_clip_floor_levels_and_gradient():
    cf = ClipFloor(levels=4, init=2.0)
    z = torch.linspace(-1, 3, 41, requires_grad=True)
    h = cf(z)
    assert torch.allclose(torch.unique(h.detach()), torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]), atol=1e-5)
    # floor(z*L/lam + 1/2): z = 0.3 -> floor(1.1) = 1 level of 0.5
    assert float(cf(torch.tensor(0.3)).detach()) == pytest.approx(0.5, abs=1e-5)
    h.sum().backward()
    assert cf.lam.grad is not None and float(cf.lam.grad) != 0.0
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_swap_relu_replaces_and_calibrates(xs):
    """Each ClipFloor's lambda starts at the 99.9th percentile of its ReLU's activations on the calibration data,
    computed here by running the ReLU network itself."""
    ref = _cnn()
    with torch.no_grad():
        h1 = ref[1](ref[0](torch.as_tensor(xs)))
        h2 = ref[3](ref[2](h1))
    want = [float(np.percentile(h.numpy().ravel(), 99.9)) for h in (h1, h2)]
    m = swap_relu(_cnn(), levels=8, calib=xs)
    cfs = [mm for mm in m.modules() if isinstance(mm, ClipFloor)]
    assert len(cfs) == 2 and not any(isinstance(mm, nn.ReLU) for mm in m.modules())
    assert all(c.levels == 8 for c in cfs)
    assert [float(c.lam.detach()) for c in cfs] == pytest.approx(want, rel=1e-6)


def test_qcfs_threshold_is_lambda_and_half_init_matches_ann_at_T_eq_L(xs):
    m = _cnn(functools.partial(ClipFloor, 4, 1.5))
    m[3].lam.data.fill_(0.7)
    g_half = convert(m, xs, v_init=0.5)
    ifs = {n: nd for n, nd in g_half.nodes.items() if isinstance(nd, nir.IF)}
    thetas = sorted(float(np.max(nd.v_threshold)) for nd in ifs.values())
    assert thetas == pytest.approx([0.7, 1.5], abs=1e-5)
    assert all(cv.meta(nd, cv.THRESHOLD_METHOD) == "qcfs" for nd in ifs.values())
    g_zero = convert(m, xs, v_init=0.0)
    e_half, e_zero = _err(g_half, m, xs, 4), _err(g_zero, m, xs, 4)
    assert e_half < e_zero


# --- half-threshold init and threshold tuning -------------------------------------------------------------------

def test_half_init_lowers_T4_error(xs):
    m = _cnn()
    e0 = _err(convert(m, xs, method="max", v_init=0.0), m, xs, 4)
    e5 = _err(convert(m, xs, method="max", v_init=0.5), m, xs, 4)
    assert e5 < e0


def test_tuning_factor_balances_clip_and_quantization():
    """tuning_factor returns the minimiser of the clip + quantization error over its grid: checked by brute force on
    a fine grid computed here; fewer steps need a lower threshold."""
    from snnc.passes.threshold_tuning import GRID

    a = np.random.default_rng(0).exponential(1.0, 20000)
    theta = float(a.max())

    def err(k: float, steps: int) -> float:  # E[(a - clip(floor(a T / (k theta)), 0, T) k theta / T)^2], f = 0
        th = k * theta
        return float(np.mean((a - np.clip(np.floor(a * steps / th), 0, steps) * th / steps) ** 2))

    fine = np.arange(0.05, 1.5, 0.001)
    for steps in (4, 64):
        k, ratio = tuning_factor(a, theta, steps=steps)
        best_on_grid = min(GRID, key=lambda g: err(g, steps))
        assert k == pytest.approx(best_on_grid) and ratio == pytest.approx(err(k, steps) / err(1.0, steps))
        k_fine = float(fine[np.argmin([err(g, steps) for g in fine])])
        assert abs(k - k_fine) <= 0.05 and err(k, steps) <= 1.02 * err(k_fine, steps)
    assert tuning_factor(a, theta, steps=4)[0] < tuning_factor(a, theta, steps=64)[0]


def test_threshold_tuning_lowers_T4_error(xs):
    m = _cnn()
    g = convert(m, xs, method="max", v_init=0.5)
    gt = tune_thresholds(g, layer_activations(m, xs), steps=4)
    ks = [cv.meta(nd, "snnc.threshold_factor") for nd in gt.nodes.values() if isinstance(nd, nir.IF)]
    assert all(k is not None and k < 1 for k in ks)
    assert _err(gt, m, xs, 4) < _err(g, m, xs, 4)


# --- residual adds / cat ----------------------------------------------------------------------------------------

def test_residual_add_is_fan_in_and_matches_ann_at_large_T(xs):
    m = Res().eval()
    g = convert(m, xs, method="max", v_init=0.5)
    assert not any(type(nd).__name__ == "Add" for nd in g.nodes.values())
    fanin = {d for _, d in g.edges}
    assert sum(1 for _, d in g.edges if d == "r2") == 2 and sum(1 for _, d in g.edges if d == "r4") == 2
    assert "r2" in fanin
    x = xs[:24]
    ann = _ann(m, x)
    for gg in (g, balance_residual_delays(g)):
        r = simulate(gg, x, steps=256)
        assert np.abs(r.logits - ann).max() < 0.03 * np.abs(ann).max()


def test_balance_residual_delays_equalises_depth_and_relays_copy_spikes(xs):
    m = Res().eval()
    g = convert(m, xs, method="max", v_init=0.5)
    assert delay_imbalance(g) == {"r2": [1, 2]}
    gb = balance_residual_delays(g)
    assert delay_imbalance(gb) == {}
    r = simulate(gb, xs[:16], steps=20)
    # a relay repeats its source's spikes one step later: counts differ by at most the last spike
    diff = r.spike_counts["r0"] - r.spike_counts["r0.relay1"]
    assert r.spike_counts["r0"].sum() > 0 and diff.min() >= 0 and diff.max() <= 1


def test_add_output_goes_into_readout_and_cat_converts(xs):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.c, self.r = nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()
            self.d, self.s = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()
            self.f1, self.f2 = nn.Linear(5 * 64, 10), nn.Linear(5 * 64, 10)

        def forward(self, x):
            h = torch.flatten(torch.cat([self.r(self.c(x)), self.s(self.d(x))], 1), 1)
            return self.f1(h) + self.f2(h)

    m = M().eval()
    g = convert(m, xs, method="max", v_init=0.5)
    assert sum(1 for _, d in g.edges if d == "readout") >= 2
    ann = _ann(m, xs[:24])
    assert np.abs(simulate(g, xs[:24], steps=256).logits - ann).max() < 0.03 * np.abs(ann).max()


def test_add_into_conv_is_distributed(xs):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.a, self.ra, self.b, self.rb = nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 3, 1), nn.ReLU()
            self.c, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 64, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.c(self.ra(self.a(x)) + self.rb(self.b(x)))), 1))

    m = M().eval()
    g = convert(m, xs, method="max", v_init=0.5)
    ann = _ann(m, xs[:24])
    assert np.abs(simulate(g, xs[:24], steps=256).logits - ann).max() < 0.03 * np.abs(ann).max()


# --- max pooling ------------------------------------------------------------------------------------------------

def test_maxpool_gives_named_error_and_swap_fixes_it(xs):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(64, 10)).eval()
    with pytest.raises(UnsupportedLayerError, match=r"'2' \(MaxPool2d\).*swap_maxpool"):
        convert(m, xs)
    swap_maxpool(m)
    assert isinstance(m[2], nn.AvgPool2d)
    convert(m, xs)


# --- the sweep command ------------------------------------------------------------------------------------------

def test_sweep_json_and_plot(tmp_path, capsys):
    from snnc.cli import main

    p = tmp_path / "m.pt"
    torch.save(_cnn(), p)
    png = tmp_path / "s.png"
    rc = main(["sweep", str(p), "--trust-pickle", "--steps", "2,16", "--method", "max,percentile", "--init", "zero,half",
               "--limit", "24", "--plot", str(png), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 8
    assert {r["method"] for r in out["rows"]} == {"max", "percentile"}
    assert {(r["init"], r["steps"]) for r in out["rows"]} == {("zero", 2), ("zero", 16), ("half", 2), ("half", 16)}
    assert png.stat().st_size > 1000
    # every number is the Python API's on the same data: the ANN, and each row's float and integer accuracy
    from snnc.data import digits
    from snnc.sweep import compile_variant
    from snnc.train.fit import accuracy

    (xcal, _), (x, y) = digits("train"), digits("test")
    x, y = x[:24], y[:24]
    assert out["ann_accuracy"] == accuracy(_cnn(), x, y)
    for row in out["rows"]:
        c = compile_variant(_cnn(), xcal, row["method"], 0.5 if row["init"] == "half" else 0.0,
                            calib_steps=16)
        assert row["float_accuracy"] == simulate(c.float_graph, x, row["steps"]).accuracy(y), row
        assert row["int_accuracy"] == simulate(c.int_graph, x, row["steps"]).accuracy(y), row
    rc = main(["sweep", str(p), "--trust-pickle", "--steps", "4", "--init", "half", "--calibrate", "--limit", "16",
               "--plot",
               str(png), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rc == 0 and len(rows) == 1 and rows[0]["calibrate"] is True and 0 <= rows[0]["int_accuracy"] <= 1
    rc = main(["sweep", str(p), "--trust-pickle", "--method", "qcfs", "--limit", "4", "--plot", str(png)])
    assert rc == 3  # a ReLU model has no ClipFloor: UnsupportedLayerError


def _small_resnet(xs: np.ndarray) -> nn.Module:
    """DigitsResNet(n=1, width=4) (ResNet-8: identity + two downsampling shortcuts, BN) with non-trivial BN:
    random bn2 gains (the zoo zero-inits them) and running statistics set by train-mode passes over ``xs``."""
    from snnc.zoo import DigitsResNet

    torch.manual_seed(3)
    m = DigitsResNet(n=1, width=4)
    for b in m.blocks:
        nn.init.uniform_(b.bn2.weight, 0.3, 1.0)
    m.train()
    with torch.no_grad():
        for bn in (mm for mm in m.modules() if isinstance(mm, nn.BatchNorm2d)):
            bn.momentum = None  # cumulative average
        for _ in range(2):
            m(torch.as_tensor(xs))
    return m.eval()


@pytest.mark.parametrize("tuned", [False, True])
def test_resnet_compiled_float_snn_matches_ann_at_large_T(xs, tuned):
    """Whole pipeline (fold BN, fuse, bias onset; optionally threshold tuning + relay restructuring) on a
    DigitsResNet with downsampling shortcuts: at T=128 the float SNN reproduces the ANN's logits and classes.
    Without the potential floor: the unbounded IF is the one whose rate converges to the ANN's ReLU (a floor
    forgets inhibition, which biases rates upward where a neuron's drive changes sign over time)."""
    from snnc.sweep import compile_variant

    m = _small_resnet(xs)
    x = xs[:32]
    ann = _ann(m, x)
    c = compile_variant(m, xs[:64], "percentile", 0.5, tune_steps=128 if tuned else None, restructure=tuned,
                        calib_steps=16, v_floor=None)
    if tuned:
        assert delay_imbalance(c.float_graph) == {}
    r = simulate(c.float_graph, x, steps=128)
    rel = np.sqrt(np.mean((r.logits - ann) ** 2)) / np.sqrt(np.mean(ann ** 2))
    agree = np.mean(r.logits.argmax(1) == ann.argmax(1))
    assert rel < 0.1 and agree >= 0.9, (rel, agree)


# --- layer calibration (threshold factor + bias shift measured on the SNN) ---------------------------------------

def test_layer_calibration_lowers_T4_error_on_held_out_samples(xs):
    from snnc.sweep import compile_variant

    m = _small_resnet(xs)
    xc, xt = xs[:64], xs[64:]
    plain = compile_variant(m, xc, "percentile", 0.5, calib_steps=8)
    cal = compile_variant(m, xc, "percentile", 0.5, calib_steps=8, calibrate_steps=4, calibrate_samples=64)
    shifts = [cv.meta(nd, "snnc.bias_shift") for nd in cal.float_graph.nodes.values() if isinstance(nd, nir.IF)]
    assert any(s is not None and np.any(np.asarray(s) != 0) for s in shifts)
    for a, b in ((plain.float_graph, cal.float_graph), (plain.int_graph, cal.int_graph)):
        assert _err(b, m, xt, 4) < 0.8 * _err(a, m, xt, 4)


def test_layer_calibration_measures_what_the_simulator_runs(xs):
    """The error each layer records is the error the simulator shows for that layer over its T-step window, on
    the same samples, after the bias-onset pass: the pass's own IF run equals the simulator's."""
    from snnc.frontend.convert import ConvertOptions
    from snnc.ir.plan import build_plan
    from snnc.passes.bias_onset import compensate_bias_onset
    from snnc.passes.fold_batchnorm import fold_batchnorm
    from snnc.passes.fuse_synapses import fuse_synapses
    from snnc.passes.layer_calibration import calibrate_layers

    m = _small_resnet(xs)
    x, T = xs[:24], 6
    acts = layer_activations(m, x)
    g = fuse_synapses(fold_batchnorm(balance_residual_delays(convert(m, xs, ConvertOptions(v_init=0.5)))))
    gc = compensate_bias_onset(calibrate_layers(g, x, acts, steps=T))
    plan = build_plan(gc)
    r = simulate(gc, x, steps=T, rasters=True)
    checked = 0
    for n in plan.neurons:
        node = gc.nodes[n]
        if cv.meta(node, "snnc.calibration_mse") is None:
            continue
        d, th = plan.depths[n], np.asarray(node.v_threshold, dtype=np.float64)
        out = r.rasters[n][d:d + T].sum(0) * th / T
        target = acts[cv.meta(node, cv.SOURCE)].reshape(out.shape)
        np.testing.assert_allclose(np.mean((out - target) ** 2), cv.meta(node, "snnc.calibration_mse"), rtol=1e-9)
        checked += 1
    assert checked >= 5


def test_compile_calibrate_writes_a_calibrated_graph(tmp_path, capsys):
    from snnc.cli import main
    from snnc.ir.graph import read

    p, out = tmp_path / "m.pt", tmp_path / "m.nir"
    torch.save(_cnn(), p)
    rc = main(["compile", str(p), "--trust-pickle", "-o", str(out), "--calibrate", "4", "--calibrate-samples", "32",
               "--calib-steps", "8", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert "calibrate" in res["stages"]
    ifs = [nd for nd in read(str(out)).nodes.values() if isinstance(nd, nir.IF)]
    assert ifs and all(cv.meta(nd, "snnc.bias_shift") is not None for nd in ifs)
    assert main(["compile", str(out), "-o", str(tmp_path / "x.nir"), "--calibrate", "4"]) != 0
    assert "--calibrate" in capsys.readouterr().err
