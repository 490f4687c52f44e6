"""calibration_ranges (quantize's layer-by-layer float range run) equals simulate(..., track_ranges=True).ranges
bit for bit: IF floors, both resets, r != 1, residual fan-in, pointwise shortcuts, batches and block sizes."""
from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
from snnc.backends.cpu import ranges as S
from snnc.data import digits
from snnc.frontend.convert import convert
from snnc.ir import conventions as cv
from snnc.passes.fold_batchnorm import fold_batchnorm
from snnc.passes.fuse_synapses import fuse_synapses
from test_lava_backend import _inputs, cnn_graph, mlp_graph


def _float_twin(g: nir.NIRGraph) -> nir.NIRGraph:
    g = copy.deepcopy(g)
    g.metadata = dict(g.metadata or {}, **{cv.KIND: cv.FLOAT})
    return g


def _same(g, x, steps: int, batch_size: int = 256) -> None:
    ref = S.simulate(g, x, steps, batch_size=batch_size, track_ranges=True).ranges
    for block in (1 << 20, 0):  # one block per run, and 2 steps per block
        old = S.BLOCK_BYTES
        S.BLOCK_BYTES = block
        try:
            assert S.calibration_ranges(g, x, steps, batch_size=batch_size) == ref
        finally:
            S.BLOCK_BYTES = old


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_hand_graphs(reset: str) -> None:
    for seed in range(2):
        _same(_float_twin(mlp_graph(seed, reset)), _inputs(seed, (24,), 20), 12, batch_size=7)
        _same(_float_twin(cnn_graph(seed, reset)), _inputs(seed, (2, 9, 7), 20), 12, batch_size=6)


def test_converted_resnet_with_and_without_floor() -> None:
    from snnc.zoo import DigitsResNet

    x, _ = digits("train")
    torch.manual_seed(0)
    g = fuse_synapses(fold_batchnorm(convert(DigitsResNet(n=1, width=4).eval(), x[:64])))
    _same(g, x[:40], 6, batch_size=16)
    g0 = copy.deepcopy(g)
    for node in g0.nodes.values():
        if isinstance(node, nir.IF):
            node.r = np.full(np.shape(node.r), 0.75)
            (node.metadata or {}).pop(cv.V_MIN, None)
    _same(g0, x[:40], 6)


def test_a_changed_step_is_caught() -> None:
    """The comparison can fail: a one-ulp change of a shortcut weight shows in the ranges."""
    from snnc.zoo import DigitsResNet

    x, _ = digits("train")
    torch.manual_seed(0)
    g = fuse_synapses(fold_batchnorm(convert(DigitsResNet(n=1, width=4).eval(), x[:64])))
    ref = S.simulate(g, x[:16], 4, track_ranges=True).ranges
    orig = S.pointwise_scale
    try:
        S.pointwise_scale = lambda syn: None if orig(syn) is None else (orig(syn)[0] * (1 + 1e-15), orig(syn)[1])
        assert S.calibration_ranges(g, x[:16], 4) != ref
    finally:
        S.pointwise_scale = orig
