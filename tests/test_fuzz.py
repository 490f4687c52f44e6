"""Hypothesis fuzzing (bounded for CI; bench/fuzz.py runs >= 10,000 cases): random valid graphs (integer vs float
simulation, quantization bound, write -> read) and mutated NIR files (NIRFileError or a valid graph, nothing else)."""
from __future__ import annotations

import importlib.util
import random
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("snnc_bench_fuzz", Path(__file__).parents[1] / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=120, **SETTINGS)
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_random_valid_graphs(seed, tmp_path):
    """Exact vs the float run of the same integer graph (no events, no floored exponent); single-layer graphs
    within the derived bound of the original float graph; both graphs round-trip through NIR files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fuzz.valid_case(seed, tmpdir=str(tmp_path))


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    return fuzz.seed_files(str(tmp_path_factory.mktemp("seeds")))


@settings(max_examples=240, **SETTINGS)
@given(which=st.integers(0, 3), seed=st.integers(0, 2 ** 31 - 1))
def test_mutated_nir_files(seed_files, which, seed, tmp_path):
    """Truncated, bit-flipped or h5py-edited files: NIRFileError, or a valid graph that simulates or raises an
    SnncError; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kind, outcome = fuzz.mutation_case(seed_files[which], str(tmp_path / "m.nir"), random.Random(seed))
    assert outcome in ("NIRFileError", "valid+simulated", "valid+SnncError")


def test_the_checks_can_fail():
    """The exact check is not vacuous: a graph whose twin differs (a threshold moved by one) is caught."""
    import numpy as np
    from snnc.backends.cpu.simulator import simulate
    from snnc.ir.chain import quantize_input
    from snnc.pipeline import quantize

    for seed in range(200):
        rng = np.random.default_rng(seed)
        gf = fuzz.random_float_graph(rng, depth=1)
        if not gf.metadata["fuzz.tame"]:
            continue
        n_in = int(np.asarray(gf.nodes["input"].input_type["input"])[0])
        x = rng.uniform(0, 1, (16, n_in))
        q = quantize(gf, x, calib_steps=8, bias_onset=False)
        gi, rep = q.int_graph, q.report
        ri = simulate(gi, x, 8)
        if ri.total_events() or any(s["weight_exp"] < 0 for lq in rep.layers for s in lq.synapses.values()) \
                or ri.spike_counts["if0"].sum() == 0:
            continue
        twin = fuzz.float_twin(gi)
        twin.nodes["if0"].v_threshold = np.asarray(twin.nodes["if0"].v_threshold) * 0.5
        rt = simulate(twin, quantize_input(gi, x), 8)
        assert not np.array_equal(ri.spike_counts["if0"], rt.spike_counts["if0"])
        return
    pytest.skip("no tame graph without events in 200 seeds")
