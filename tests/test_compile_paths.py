"""The compile's fast paths keep their results: the streaming percentile equals np.percentile, conv/pool ->
flatten -> linear is fused without the unit-vector matrix, the depthwise pool -> conv composition equals the
general one, quantize and bias onset leave their input graph alone when they share its arrays, the ranges stage's
modes (the ANN estimate and its probe, the full range run), and writes with and without gzip."""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import snnc
import torch
import torch.nn as nn
from snnc.backends.cpu import ranges as R
from snnc.frontend.convert import calibration_stats, convert, percentile, trace
from snnc.ir.errors import DataError
from snnc.ir import nir_compat
from snnc.ir.graph import copy_graph, read, write
from snnc.ir.nirfile import graphs_equal
from snnc.ir.plan import build_plan
from snnc.passes import fuse_synapses as fs
from snnc.passes.fold_batchnorm import fold_batchnorm
from snnc.pipeline import quantize as requantize


def _net(pool: nn.Module, seed: int = 0) -> tuple[nn.Module, np.ndarray]:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                      nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(5))
    x = np.random.default_rng(seed).standard_normal((12, 3, 12, 12)).astype(np.float32)
    m(torch.as_tensor(x))
    return m.eval(), x


def test_percentile_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(70_000, 200_000))
        a = rng.standard_normal(n).astype(np.float32 if trial % 2 else np.float64)
        if trial % 4 == 1:
            a = np.maximum(a, 0)  # ReLU activations: most values tie at 0
        if trial % 4 == 2:
            a = np.round(a * 3)  # ties everywhere
        q = (99.99, 99.9, 99.0, 99.999, 50.0)[trial % 5]
        assert percentile(a, q) == float(np.percentile(a, q)), (trial, q)
        cut = sorted(rng.integers(0, n, 2))
        assert percentile([a[:cut[0]], a[cut[0]:cut[1]], a[cut[1]:]], q) == float(np.percentile(a, q))  # chunks


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3), nn.AdaptiveAvgPool2d(1), nn.AvgPool2d(2, 2, 1)])
def test_pool_flatten_linear_fuses_structurally(pool, monkeypatch) -> None:
    """One dense over the unpooled map, equal (to the last bit or nearly: the unit-vector forward subtracted the
    bias after adding it) to the chain's matrix, without the explicit unit-vector construction."""
    m, x = _net(pool)
    g = fold_batchnorm(convert(m, x))
    plan = build_plan(g)
    c = plan.connections[-1]
    fn = fs.chain_fn(g, plan, c)
    n_in = math.prod(plan.shapes[c.src])
    eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + tuple(plan.shapes[c.src]))
    ref = fn.linear(eye).reshape(n_in, -1).T.numpy()
    monkeypatch.setattr(fs, "_explicit", lambda *a: pytest.fail("explicit matrix built"))
    fused = fs.fuse_synapses(g)
    node = next(fused.nodes[n] for n in fused.nodes if isinstance(fused.nodes[n], nir.Affine))
    assert node.weight.shape == ref.shape
    np.testing.assert_allclose(node.weight, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())  # ulps (1/9 rounds)
    np.testing.assert_array_equal(node.bias, fn.bias.reshape(-1))


def test_depthwise_pool_then_conv_composition_is_the_general_one() -> None:
    rng = np.random.default_rng(1)
    c = 5
    a = dict(weight=np.full((c, 1, 2, 2), 0.25), bias=np.zeros(c), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
             groups=c)
    b = dict(weight=rng.standard_normal((7, c, 3, 3)), bias=rng.standard_normal(7), stride=(1, 1),
             padding=(1, 1), dilation=(1, 1), groups=1)
    fast = fs.compose_conv(a, b, c)
    a_dense = dict(a, weight=fs.dense_weight(a, c), groups=1)  # the same pool as a full conv: the general path
    general = fs.compose_conv(a_dense, b, c)
    np.testing.assert_array_equal(fast["weight"], general["weight"])
    np.testing.assert_array_equal(fast["bias"], general["bias"])
    assert fast["stride"] == general["stride"] and fast["padding"] == general["padding"]


def test_calibration_stats_record_activations_and_pre_activation_ranges() -> None:
    m, x = _net(nn.AvgPool2d(2))
    st = calibration_stats(trace(m), x, batch=5)  # three batches, the last one ragged
    with torch.no_grad():  # the same batches (a conv's float result may depend on the batch size)
        z1 = torch.cat([m[0](torch.as_tensor(x[i:i + 5])) for i in range(0, 12, 5)])
        out = torch.cat([m(torch.as_tensor(x[i:i + 5])) for i in range(0, 12, 5)])
    relu1 = next(k for k in st.acts)
    np.testing.assert_array_equal(st.acts[relu1], torch.relu(z1).numpy().reshape(-1))
    assert st.pre_absmax[relu1] == float(z1.abs().max())
    assert st.pre_absmax[st.OUTPUT] == float(out.abs().max())


def test_quantize_and_bias_onset_leave_their_input_alone() -> None:
    m, x = _net(nn.AvgPool2d(2))
    c = snnc.compile(m, x, calib_steps=8)
    before = copy_graph(c.float_graph)
    g = requantize(c.float_graph, x, calib_steps=8, bias_onset=True)
    assert graphs_equal(c.float_graph, before)
    assert g.int_graph is not None
    shared = copy_graph(c.int_graph, share_arrays=True)
    assert graphs_equal(shared, c.int_graph)
    n = next(k for k, v in shared.nodes.items() if isinstance(v, nir.Conv2d))
    assert shared.nodes[n].weight is c.int_graph.nodes[n].weight
    shared.nodes[n].metadata["x"] = 1
    assert "x" not in (c.int_graph.nodes[n].metadata or {})


def test_ranges_modes() -> None:
    m, x = _net(nn.AvgPool2d(2))
    run = snnc.compile(m, x, calib_steps=8, ranges="run")
    ann = snnc.compile(m, x, calib_steps=8)  # the default: ANN + probe
    g = run.float_graph
    # the probe (float32, planned kernels) agrees with the float64 range run on the same samples and steps
    probe, exact = R.probe_ranges(g, x[:3], 8), R.calibration_ranges(g, x[:3].astype(np.float64), 8)
    for n in exact:
        for k in ("a", "v"):
            assert probe[n][k] == pytest.approx(exact[n][k], rel=1e-5), (n, k)
    ro = build_plan(ann.int_graph).readout
    assert ann.report.layers[-1].name == ro and run.report.layers[-1].name == ro
    # the estimate sizes the readout for calib_steps steps of the largest logit: never tighter than the run's
    assert ann.report.layers[-1].scale <= run.report.layers[-1].scale * 1.05
    with pytest.raises(DataError, match="ranges"):
        snnc.compile(m, x, calib_steps=8, ranges="guess")
    with pytest.raises(DataError, match="ANN"):
        requantize(run.float_graph, x, calib_steps=8, ranges="ann")
    auto = requantize(run.float_graph, x, calib_steps=8)  # no ANN: the full range run
    assert graphs_equal(auto.int_graph, requantize(run.float_graph, x, calib_steps=8, ranges="run").int_graph)


def test_write_with_and_without_gzip(tmp_path) -> None:
    m, x = _net(nn.AvgPool2d(2))
    g = snnc.compile(m, x, calib_steps=8).int_graph
    for compress in (None, True, False):
        p = tmp_path / f"g{compress}.nir"
        write(g, p, compress)
        assert graphs_equal(read(p), g)
    if not nir_compat.WRITE_COMPRESSION:  # this nir's nir.write takes no compression argument (e.g. 1.0.4)
        assert (tmp_path / "gTrue.nir").stat().st_size == (tmp_path / "gFalse.nir").stat().st_size
        return
    assert (tmp_path / "gTrue.nir").stat().st_size < (tmp_path / "gFalse.nir").stat().st_size
    assert (tmp_path / "gNone.nir").stat().st_size == (tmp_path / "gTrue.nir").stat().st_size  # small: gzip


def test_sequence_calibration_takes_the_range_run() -> None:
    """Calibration sequences (N, T, *input): "auto" sizes the potentials by the range run over each sequence's T
    (the ANN sees only the time-average), and "ann" is refused by name."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5)).eval()
    seq = (np.random.default_rng(0).random((16, 6, 2, 6, 6)) < 0.3).astype(np.float32)
    auto = snnc.compile(m, seq, calib_sequence=True)
    run = snnc.compile(m, seq, calib_sequence=True, ranges="run")
    assert graphs_equal(auto.int_graph, run.int_graph)
    with pytest.raises(DataError, match="sequences"):
        snnc.compile(m, seq, calib_sequence=True, ranges="ann")
