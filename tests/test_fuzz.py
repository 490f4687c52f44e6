"""Hypothesis fuzzing (bounded for CI; bench/fuzz.py runs >= 10,000 cases): random valid graphs (integer vs float
simulation, quantization bound, write -> read) and mutated NIR files (NIRFileError or a valid graph, nothing else)."""
from __future__ import annotations

import importlib.util
import random
import warnings
from collections import Counter
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("snnc_bench_fuzz", Path(__file__).parents[1] / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

def test_random_valid_graphs(tmp_path):
    """120 random valid graphs (seeds 0..119): exact vs the float run of the same integer graph (no events, no
    floored exponent), single-layer graphs within the derived bound of the original float graph, both graphs
    round-trip through NIR files. The generator reaches the checks: at least 40 exact and 12 bounded cases (measured
    51 and 16), so a change that makes them skip fails here."""
    done = {"exact": 0, "bounded": 0}
    for seed in range(120):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flags = fuzz.valid_case(seed, tmpdir=str(tmp_path))
        for k in done:
            done[k] += bool(flags[k])
    assert done["exact"] >= 40 and done["bounded"] >= 12, done


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    return fuzz.seed_files(str(tmp_path_factory.mktemp("seeds")))


def test_mutated_nir_files(seed_files, tmp_path):
    """240 truncated, bit-flipped or h5py-edited files (seeds 0..239): each reads as NIRFileError, or as a valid
    graph that simulates or raises an SnncError; any other exception propagates and fails the test. Every mutation
    kind and the outcomes that show the reader working both ways occur."""
    kinds, outcomes = Counter(), Counter()
    for seed in range(240):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kind, outcome = fuzz.mutation_case(seed_files[seed % len(seed_files)], str(tmp_path / "m.nir"),
                                               random.Random(seed))
        kinds[kind] += 1
        outcomes[outcome] += 1
    assert set(kinds) == {"truncate", "flip bytes", "delete", "change dtype", "change shape", "NaN/inf",
                          "change type", "change value"}, kinds
    assert outcomes["NIRFileError"] >= 60 and outcomes["valid+simulated"] >= 20, outcomes


def test_the_checks_can_fail():
    """The exact check is not vacuous: the integer twin with one neuron's threshold lowered by 1 % (to an integer)
    is caught (a one-unit change of a 17-bit threshold, 1/131071, almost never moves a spike in 8 steps)."""
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
        q = quantize(gf, x, calib_steps=8, input_bits=1, bias_onset=False)
        gi, rep = q.int_graph, q.report
        ri = simulate(gi, x, 8)
        if ri.total_events() or any(s["weight_exp"] < 0 for lq in rep.layers for s in lq.synapses.values()) \
                or ri.spike_counts["if0"].sum() == 0:
            continue
        twin = fuzz.float_twin(gi)
        rt = simulate(twin, quantize_input(gi, x), 8)
        assert np.array_equal(ri.spike_counts["if0"], rt.spike_counts["if0"])  # the check passes as it is
        th = np.asarray(twin.nodes["if0"].v_threshold, dtype=np.float64).copy()
        for j in range(th.size):  # one neuron's threshold 1 % down: the first that changes a spike is caught
            moved = fuzz.float_twin(gi)
            moved.nodes["if0"].v_threshold = np.where(np.arange(th.size) == j, np.floor(th * 0.99), th)
            if not np.array_equal(ri.spike_counts["if0"], simulate(moved, quantize_input(gi, x), 8).spike_counts["if0"]):
                return
    pytest.fail("no tame graph in 200 seeds where a 1 % threshold change moves a spike")
