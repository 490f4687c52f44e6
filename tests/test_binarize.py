"""ALBSNN binarization: binary pass, integer form (two values per scale group), estimators, storage accounting."""
from __future__ import annotations

import numpy as np
import pytest
from snnc.analysis.weight_storage import (
    pack_weights,
    total_bytes,
    unpack_weights,
    weight_storage,
)
from snnc.binarize_search import estimate_layers, select_layers, spearman
from snnc.ir.errors import GraphError, QuantizationError
from snnc.ir.graph import read, write
from snnc.passes.binarize import binarize, binary_weight, weighted_layers
from snnc.pipeline import quantize


@pytest.fixture(scope="module")
def fused(digits_compiled):
    return digits_compiled.float_graph


def test_binary_weight_two_values_per_channel():
    w = np.random.default_rng(0).normal(size=(5, 3, 3, 3))
    wb, alpha = binary_weight(w, per_channel=True)
    for c in range(5):
        assert set(np.unique(wb[c])) <= {alpha[c], -alpha[c]}
        assert np.isclose(alpha[c], np.abs(w[c]).mean())
    wl, al = binary_weight(w, per_channel=False)
    assert len(np.unique(wl)) == 2 and al.size == 5 and np.ptp(al) == 0


@pytest.mark.parametrize("per_channel", [True, False])
def test_integer_weights_two_values_per_group(fused, digits_data, per_channel):
    (xtr, _), _ = digits_data
    g = binarize(fused, ["conv2", "fc"], per_channel=per_channel)
    q = quantize(g, xtr[:64], calib_steps=16, bias_onset=False)
    gi, rep = q.int_graph, q.report
    for name in ("conv2", "fc"):
        node = gi.nodes[name]
        w = np.asarray(node.weight)
        assert node.metadata["snnc.binary"]
        groups = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
        for row in groups:
            vals = np.unique(row)
            assert len(vals) == 2 and vals[0] == -vals[1] and vals[1] > 0
    if not per_channel:  # alpha folded into the layer scale: +-2**k, a 2-bit Lava Dense field holding m = +-1
        k = np.log2(np.abs(gi.nodes["fc"].weight).max())
        assert k == np.round(k) and gi.nodes["fc"].metadata["snnc.weight_bits"] == 2
        mant = np.asarray(gi.nodes["fc"].weight) / 2.0 ** gi.nodes["fc"].metadata["snnc.weight_exp"]
        from lava.utils.weightutils import (
            clip_weights,
            determine_sign_mode,
            truncate_weights,
        )

        mode = determine_sign_mode(mant.astype(np.int32))
        lava_w = truncate_weights(clip_weights(mant.astype(np.int32), mode, 8), mode, 2)
        assert np.array_equal(lava_w, mant) and set(np.unique(mant)) == {-128, 128}
        assert "binary alpha folded" in next(lq.limit for lq in rep.layers if "fc" in lq.synapses)


def test_storage_matches_written_bytes(fused, digits_data, tmp_path):
    (xtr, _), _ = digits_data
    gi = quantize(binarize(fused, ["conv2"]), xtr[:64], calib_steps=16, bias_onset=False).int_graph
    path = tmp_path / "b.nir"
    write(gi, path)
    back = read(path)
    acct = {s.name: s for s in weight_storage(gi)}
    packed = pack_weights(back)  # from the weights read back from the written file
    assert {k: len(v) for k, v in packed.items()} == {k: s.bytes for k, s in acct.items()}
    rebuilt = unpack_weights(back, packed)
    for k, w in rebuilt.items():
        assert np.array_equal(w, np.asarray(back.nodes[k].weight))
    assert acct["conv2"].binary and acct["conv2"].bits_per_weight == 1
    assert acct["conv2"].bytes == 4608 // 8 + 32 + 1
    assert total_bytes(gi) < total_bytes(quantize(fused, xtr[:64], calib_steps=16, bias_onset=False).int_graph)
    # a binary layer that holds three values is caught when packing
    bad = back.nodes["conv2"]
    bad.weight = np.asarray(bad.weight).copy()
    bad.weight.flat[0] = 0
    with pytest.raises(QuantizationError, match="conv2"):
        pack_weights(back)


def test_fragile_layer_ranked_costlier(fused, digits_data):
    (xtr, ytr), _ = digits_data
    ests, val = estimate_layers(fused, xtr[:200], ytr[:200], steps=16, only=["conv1", "fc"])
    e = {x.name: x for x in ests}
    # conv1 has a fan-in of 9 (sign() of 9 weights keeps little); fc sums 2048 inputs (errors average out)
    assert e["conv1"].output_error > e["fc"].output_error
    assert e["conv1"].float_drop > e["fc"].float_drop + 5
    assert e["conv1"].disagreement > e["fc"].disagreement + 5 and e["conv1"].output_kl > e["fc"].output_kl
    # the budget estimator (default: disagreement) bounds the accuracy change on the same samples
    assert all(abs(x.float_drop) <= x.disagreement == x.estimated_drop for x in ests)
    assert not e["conv1"].eligible and not e["fc"].eligible  # first and last layers are excluded by default
    assert val.accuracy > 0.8


def test_select_policy_respects_budget_and_ends():
    from snnc.binarize_search import LayerEstimate

    ests = [LayerEstimate("a", "a", 100, False, 101, 15, estimated_drop=0.0),
            LayerEstimate("b", "b", 1000, True, 1001, 140, estimated_drop=0.3),
            LayerEstimate("c", "c", 2000, True, 2001, 260, estimated_drop=0.4),
            LayerEstimate("d", "d", 500, True, 501, 70, estimated_drop=-0.1)]
    assert select_layers(ests, max_drop=0.5) == ["d", "b"]  # a is an end layer; c would exceed 0.5 after b
    # bytes 3604 -> 3173 (0.88) after d -> 2312 (0.64) after b -> 571 after c
    assert select_layers(ests, max_drop=None, storage=0.9) == ["d"]
    assert select_layers(ests, max_drop=None, storage=0.75) == ["d", "b"]
    assert select_layers(ests, max_drop=None, storage=0.5) == ["d", "b", "c"]
    assert select_layers(ests, max_drop=0.5, storage=0.5) == ["d", "b"]
    assert spearman([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_bad_layer_names(fused):
    with pytest.raises(GraphError, match="nope"):
        binarize(fused, ["nope"])
    assert [lab for lab, _ in weighted_layers(fused)] == ["conv1", "conv2", "fc"]
