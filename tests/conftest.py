"""Shared fixtures: the digits data and one trained digits CNN per test session (about 6 s on 2 cores)."""
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
