"""Shared fixtures: the digits data and one trained digits CNN per test session (about 6 s on 2 cores)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def digits_data():
    from snnc.compiler.data import digits

    return digits("train"), digits("test")


@pytest.fixture(scope="session")
def digits_model(digits_data):
    from snnc.compiler.zoo import DigitsCNN, train

    (xtr, ytr), _ = digits_data
    torch.manual_seed(0)
    return train(DigitsCNN(), xtr, ytr, epochs=30, seed=0)


@pytest.fixture(scope="session")
def digits_compiled(digits_model, digits_data):
    from snnc.compiler.pipeline import compile_model

    (xtr, _), _ = digits_data
    return compile_model(digits_model, xtr)
