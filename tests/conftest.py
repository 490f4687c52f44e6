"""Shared fixtures: the digits data, one trained digits CNN per test session (about 6 s on 2 cores), and an
untrained compiled one with a short integer run (SOP counting: tests/test_energy.py, tests/interop/test_sinabs.py)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def digits_data():
    from snnc.data import digits

    return digits("train"), digits("test")


@pytest.fixture(scope="session")
def digits_model(digits_data):
    from snnc.train.fit import fit
    from snnc.zoo import DigitsCNN

    (xtr, ytr), _ = digits_data
    torch.manual_seed(0)
    return fit(DigitsCNN(), xtr, ytr, epochs=30, seed=0)


@pytest.fixture(scope="session")
def digits_compiled(digits_model, digits_data):
    import snnc

    (xtr, _), _ = digits_data
    return snnc.compile(digits_model, xtr)


@pytest.fixture(scope="session")
def small_compiled(digits_data):
    """The digits CNN converted and quantized (untrained, seed 0: SOP counting needs spikes, not accuracy; a small
    calibration keeps this file fast)."""
    import snnc
    from snnc.zoo import DigitsCNN

    (xtr, _), _ = digits_data
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    return model, snnc.compile(model, xtr[:256], calib_steps=16)


@pytest.fixture(scope="session")
def digits_run(small_compiled, digits_data):
    """The integer digits graph run on 30 test samples for 4 steps, with rasters: (graph, x, y, SimResult)."""
    from snnc.backends.cpu.simulator import simulate

    _, (xte, yte) = digits_data
    x, y = xte[:30], yte[:30]
    g = small_compiled[1].int_graph
    r = simulate(g, x, steps=4, rasters=True)
    return g, x, y, r
