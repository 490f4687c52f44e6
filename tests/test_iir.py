"""IIR-SNN fine-tuning: the torch module reproduces the float simulator exactly; fine-tuning at T=1 helps."""
from __future__ import annotations

import numpy as np
import pytest
import snnc
import torch
from snnc.backends.cpu.simulator import simulate
from snnc.data import digits
from snnc.frontend.convert import ConvertOptions
from snnc.ir import conventions as cv
from snnc.ir.errors import DataError, GraphError
from snnc.pipeline import quantize
from snnc.train.fit import fit
from snnc.train.iir import finetune_few_steps, spiking_module
from snnc.zoo import DigitsCNN


@pytest.fixture(scope="module")
def compiled():
    torch.set_num_threads(1)
    xtr, ytr = digits("train")
    m = fit(DigitsCNN(), xtr[:512], ytr[:512], epochs=3)
    return snnc.compile(m, xtr[:256], ConvertOptions(v_init=0.5), calib_steps=8), xtr, ytr


@pytest.mark.parametrize("steps", [1, 3])
def test_module_matches_float_simulator(compiled, steps):
    c, xtr, _ = compiled
    mod = spiking_module(c.float_graph)
    with torch.no_grad():
        lg = mod(torch.as_tensor(xtr[:64]), steps).numpy()
    ref = simulate(c.float_graph, xtr[:64], steps).logits
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(lg, ref, rtol=0, atol=1e-6)


def test_finetune_t1_raises_accuracy_and_writes_back(compiled):
    c, xtr, ytr = compiled
    x, y = xtr[:384], ytr[:384]
    before = simulate(c.float_graph, x, 1).accuracy(y)
    g = finetune_few_steps(c.float_graph, x, y, steps=(1,), epochs=3, lr=3e-3)[1]
    r = simulate(g, x, 1)
    assert r.accuracy(y) > before + 0.05
    # the written graph is what the module trained: the module of it reproduces the simulator again
    with torch.no_grad():
        lg = spiking_module(g)(torch.as_tensor(x[:32]), 1).numpy()
    np.testing.assert_allclose(lg, r.logits[:32], rtol=0, atol=1e-6)
    assert all(cv.meta(g.nodes[n], cv.BIAS_ONSET, False) for n in ("relu1", "relu2", "readout"))
    gi = quantize(g, x, calib_steps=1, bias_onset=False).int_graph
    assert cv.graph_kind(gi) == cv.INTEGER
    assert simulate(gi, x, 1).accuracy(y) > before


def test_bad_inputs_give_named_errors(compiled):
    c, xtr, ytr = compiled
    with pytest.raises(GraphError, match="snnc.kind"):
        spiking_module(c.int_graph)
    with pytest.raises(DataError, match="labels"):
        finetune_few_steps(c.float_graph, xtr[:10], ytr[:5], steps=(1,), epochs=1)
    with pytest.raises(DataError, match="steps"):
        finetune_few_steps(c.float_graph, xtr[:10], ytr[:10], steps=(0,), epochs=1)
