"""Bad input, overflow and faults: named errors naming file/node/field, CLI one-liners and exit codes, overflow
events and --strict, quantization range report, atomic NIR writes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn as nn
from snnc.backends.cpu.simulator import simulate
from snnc.ir import (
    BackendError,
    ClusterError,
    DataError,
    GraphError,
    InternalError,
    NIRFileError,
    OverflowEventError,
    QuantizationError,
    UnsupportedLayerError,
    UsageError,
    make_graph,
    read,
    write,
)
from snnc.ir import conventions as cv
from snnc.pipeline import quantize

SNNC = [sys.executable, "-m", "snnc.cli"]
ALL_ERRORS = [UsageError, UnsupportedLayerError, GraphError, NIRFileError, QuantizationError, BackendError, DataError,
              OverflowEventError, ClusterError, InternalError]


def tiny_integer_graph(w1: float = 2.0) -> nir.NIRGraph:
    """2 graded inputs -> Dense [[w1,0],[0,-w1]] -> IF(vth=5) -> Dense [[4,2]] -> I readout (integer graph)."""
    from test_spine import _tiny_integer_graph

    g = _tiny_integer_graph()
    g.nodes["l1"].weight = np.array([[w1, 0.0], [0.0, -w1]])
    return g


def overflowing_graph() -> nir.NIRGraph:
    """Mantissa 254 << weight_exp 3 on 127-level inputs: u = 16516096 > 2**23 wraps (Lava does the same)."""
    g = tiny_integer_graph()
    g.nodes["l1"].weight = np.array([[254.0 * 8, 0.0], [0.0, -254.0 * 8]])
    g.nodes["l1"].metadata[cv.WEIGHT_EXP] = 3
    return g


@pytest.fixture()
def good(tmp_path) -> Path:
    p = tmp_path / "good.nir"
    write(tiny_integer_graph(), p)
    return p


def _edit(src: Path, dst: Path, fn) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        fn(f)
    return dst


def _replace(key: str, value):
    def fn(f):
        del f[key]
        f[key] = value
    return fn


# ---- NIR files: each bad input names the file, the node and the field -------------------------------------------
BAD_FILES = {
    "unknown node type": (_replace("node/nodes/if/type", b"Bogus"), r"node 'if': unknown node type 'Bogus'"),
    "missing field": (lambda f: f.__delitem__("node/nodes/l1/weight"), r"node 'l1' \(Affine\): missing field 'weight'"),
    "missing type": (lambda f: f.__delitem__("node/nodes/l1/type"), r"node 'l1': missing field 'type'"),
    "wrong dtype": (_replace("node/nodes/l1/weight", np.array([[b"a", b"b"], [b"c", b"d"]])),
                    r"node 'l1': field 'weight' has dtype \|S1, expected an array of real numbers"),
    "complex dtype": (_replace("node/nodes/if/v_threshold", np.full(2, 5 + 1j)),
                      r"node 'if': field 'v_threshold' has dtype complex128"),
    "wrong shape": (_replace("node/nodes/l1/weight", np.ones((2, 3))),
                    r"node 'l1': field 'weight' expects 3 inputs, gets 2"),
    "wrong threshold shape": (lambda f: (_replace("node/nodes/if/v_threshold", np.ones(3))(f),
                                         _replace("node/nodes/if/r", np.ones(3))(f),
                                         "v_reset" in f["node/nodes/if"]  # written by nir >= 1.0.5
                                         and _replace("node/nodes/if/v_reset", np.zeros(3))(f)),
                              r"node 'if': field 'v_threshold' has shape \(3,\), input has shape \(2,\)"),
    "NaN weights": (_replace("node/nodes/l2/weight", np.array([[np.nan, 1.0]])),
                    r"node 'l2': field 'weight' contains NaN or inf"),
    "inf bias": (_replace("node/nodes/l1/bias", np.array([0.0, np.inf])), r"node 'l1': field 'bias' contains NaN"),
    "bad metadata": (_replace("node/nodes/if/metadata/snnc.reset", b"sideways"),
                     r"node 'if': metadata field 'snnc.reset' must be 'subtract' or 'zero'"),
    "weight beyond Lava field": (_replace("node/nodes/l2/weight", np.array([[4096.0, 2.0]])),
                                 r"node 'l2': field 'weight \(mantissa\)' holds 4096, beyond Lava's field"),
    "dangling edge": (_replace("node/edges", np.array([[b"input", b"l1"], [b"l1", b"nowhere"]], dtype=object)),
                      r"'nowhere'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_nir_file_names_file_node_field(tmp_path, good, case):
    fn, pattern = BAD_FILES[case]
    bad = _edit(good, tmp_path / "bad.nir", fn)
    with pytest.raises(NIRFileError, match=pattern) as e:
        read(bad)
    assert str(bad) in str(e.value)


def test_not_hdf5_truncated_missing_directory(tmp_path, good):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not hdf5")
    with pytest.raises(NIRFileError, match=r"model.pt: not an HDF5 file"):
        read(tmp_path / "model.pt")
    data = good.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 100):
        (tmp_path / "trunc.nir").write_bytes(data[:cut])
        with pytest.raises(NIRFileError, match="trunc.nir"):
            read(tmp_path / "trunc.nir")
    with pytest.raises(NIRFileError, match="no such file"):
        read(tmp_path / "missing.nir")
    with pytest.raises(NIRFileError, match="is a directory"):
        read(tmp_path)


def test_corrupt_global_heap_is_an_error_not_a_hang(tmp_path, good):
    # found by the fuzzer: a bit flip in the size of the HDF5 global heap (where the edge names live) made h5py
    # loop forever; snnc walks the heap as libhdf5 would and rejects it
    data = bytearray(good.read_bytes())
    i = data.index(b"GCOL\x01")
    data[i + 9] ^= 4  # collection size 4096 -> 5120: its tail now reads a zero-size free-space object
    (tmp_path / "heap.nir").write_bytes(bytes(data))
    with pytest.raises(NIRFileError, match=r"heap.nir: corrupt HDF5 global heap"):
        read(tmp_path / "heap.nir")


# ---- CLI: one line, distinct exit codes, --debug traceback -----------------------------------------------------
def test_exit_codes_are_distinct_and_documented():
    codes = [c.exit_code for c in ALL_ERRORS]
    assert len(set(codes)) == len(codes) and 1 not in codes and 0 not in codes
    for page in ("errors.md", "cli.md"):  # the errors page and the CLI reference both hold the table
        doc = (Path(__file__).parents[1] / "docs" / page).read_text()
        for c in ALL_ERRORS:
            assert f"| `{c.__name__}` | {c.exit_code} |" in doc, (page, c.__name__)


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_cli_prints_one_line_per_class(cls, monkeypatch, capsys):
    from snnc import cli

    def boom(args):
        raise cls(f"node 'x': field 'y' is wrong ({cls.__name__})")

    real = cli._discover
    monkeypatch.setattr(cli, "_discover", lambda: real() + [("boom", "raise", lambda p: None, boom)])
    assert cli.main(["boom"]) == cls.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"snnc: {cls.__name__}: node 'x': field 'y' is wrong ({cls.__name__})"]
    with pytest.raises(cls):
        cli.main(["--debug", "boom"])


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(SNNC + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def _one_line(r: subprocess.CompletedProcess, cls: type, fragment: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == cls.exit_code, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"snnc: {cls.__name__}: ") and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)), d / "sigmoid.pt")
    torch.save(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), d / "mlp.pt")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((16, 4)).astype(np.float32), y=rng.integers(0, 2, 16))
    np.savez(d / "nan.npz", x=np.full((16, 4), np.nan, np.float32), y=np.zeros(16, int))
    np.savez(d / "ovf.npz", x=np.full((4, 2), 127.0), y=np.zeros(4, int))
    write(overflowing_graph(), d / "overflow.nir")
    g = tiny_integer_graph()  # valid NIR, but the Output reads a Dense, not a neuron layer
    g.nodes.pop("readout")
    g.edges = [("input", "l1"), ("l1", "if"), ("if", "l2"), ("l2", "output")]
    write(g, d / "no_readout.nir")
    (d / "text.nir").write_text("not a network\n")
    return d


CLI_CASES = {
    "UnsupportedLayerError": (UnsupportedLayerError, ["compile", "sigmoid.pt", "--trust-pickle", "-o", "o.nir",
                                                      "--calib", "data.npz"], "Sigmoid"),
    "GraphError": (GraphError, ["simulate", "no_readout.nir", "--data", "data.npz"], "Output node"),
    "NIRFileError": (NIRFileError, ["inspect", "text.nir"], "text.nir: not an HDF5 file"),
    "QuantizationError": (QuantizationError, ["compile", "mlp.pt", "--trust-pickle", "-o", "o.nir", "--calib",
                                              "data.npz", "--bits", "1"], "1 weight bit holds no nonzero"),
    "UsageError": (UsageError, ["compile", "mlp.pt", "-o", "o.nir", "--bits", "9"],
                   "--bits: must be an integer in 1..8, got '9'"),
    "DataError": (DataError, ["compile", "mlp.pt", "--trust-pickle", "-o", "o.nir", "--calib", "nan.npz"], "NaN"),
    "DataError (missing model)": (DataError, ["compile", "nope.pt", "-o", "o.nir"], "nope.pt: no such model file"),
    "OverflowEventError": (OverflowEventError, ["simulate", "overflow.nir", "--data", "ovf.npz", "--strict",
                                                "--steps", "3"], "u_wrap"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_subprocess_errors(cli_files, case):
    cls, args, fragment = CLI_CASES[case]
    line = _one_line(_run(*args, cwd=cli_files), cls, fragment)
    print(line)
    if case == "NIRFileError":
        r = _run("--debug", *args, cwd=cli_files)
        assert r.returncode != 0 and "Traceback" in r.stderr and "NIRFileError" in r.stderr


# ---- overflow accounting ---------------------------------------------------------------------------------------
def test_simulator_counts_overflow_events_and_strict_raises():
    g = overflowing_graph()
    x = np.array([[127.0, 127.0]])
    r = simulate(g, x, steps=3)
    assert r.events["if"]["u_wrap"] == 2 * 4 and r.total_events() == 8
    with pytest.raises(OverflowEventError, match=r"'if'.*u_wrap"):
        simulate(g, x, steps=3, strict=True)
    ok = simulate(tiny_integer_graph(), x, steps=3, strict=True)  # same input, fitting weights: no event
    assert ok.total_events() == 0


def test_quantize_report_states_ranges_against_lava_limits():
    rng = np.random.default_rng(0)
    l1 = nir.Affine(weight=rng.normal(0, 1, (6, 5)), bias=rng.normal(0, 0.1, 6))
    l2 = nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=np.zeros(3))
    ro = nir.I(r=np.ones(3))
    ro.metadata = {cv.READOUT: True}
    g = make_graph(nodes={"input": nir.Input(input_type={"input": np.array([5])}), "l1": l1,
                            "if": nir.IF(r=np.ones(6), v_threshold=np.ones(6)), "l2": l2, "readout": ro,
                            "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "l1"), ("l1", "if"), ("if", "l2"), ("l2", "readout"), ("readout", "output")],
                     metadata={cv.KIND: cv.FLOAT})
    x = rng.uniform(-1, 1, (64, 5))
    q = quantize(g, x, calib_steps=16, bias_onset=False)
    gi, rep = q.int_graph, q.report
    r = simulate(gi, x, 16)
    for lq in rep.layers:
        rg = lq.ranges
        assert rg["u_limit"] == 2 ** 23 and rg["v_limit"] == 2 ** 23 - 1
        assert 0 < rg["u_observed"] <= rg["u_worst"] < rg["u_limit"]  # u never wraps, for any input
        assert rg["v_observed"] <= 0.9 * rg["v_limit"] + 64
        assert rg["bias_max"] <= rg["bias_limit"]
        for s in lq.synapses.values():
            assert 0 < s["mant_max"] <= s["mant_limit"] == 2 ** (s["bits"] - 1) - 1
    assert r.events["readout"] == {"u_wrap": 0, "v_saturate": 0}  # readout never saturates on calibration data
    assert all(d.get("u_wrap", 0) == 0 for d in r.events.values())
    # "u never wraps, for any input", checked by brute force: the largest |a| a connection can deliver is reached at
    # a corner of its input domain (it is linear): every corner of the graded input box and every spike pattern
    import itertools

    import torch

    from snnc.ir.chain import Synapse
    from snnc.ir.plan import build_plan

    plan = build_plan(gi)
    lo, hi = (-128, 127) if rep.input_signed else (0, 255)  # quantize_input clips to 8 bits
    for lq in rep.layers:
        for i in plan.incoming[lq.name]:
            c = plan.connections[i]
            n_src = int(np.prod(plan.shapes[c.src]))
            levels = (lo, hi) if c.src == plan.input else (0, 1)
            corners = torch.tensor(list(itertools.product(levels, repeat=n_src)), dtype=torch.float64)
            a = Synapse(gi, plan, c, True, torch.device("cpu"))(corners)
            worst = int(a.abs().max())
            assert worst * 64 <= lq.ranges["u_worst"] < 2 ** 23, (lq.name, worst)
    # and the worst graded inputs, simulated: no wrap anywhere
    w_int = np.asarray(gi.nodes["l1"].weight)
    scale = rep.input_scale
    xw = np.concatenate([np.where(w_int > 0, hi, lo) * scale, np.where(w_int > 0, lo, hi) * scale])
    rw = simulate(gi, xw, 16)
    assert all(d.get("u_wrap", 0) == 0 for d in rw.events.values())


# ---- atomic outputs --------------------------------------------------------------------------------------------
def test_failed_compile_leaves_existing_output_untouched(cli_files, tmp_path):
    out = tmp_path / "out.nir"
    out.write_bytes(b"previous output")
    r = _run("compile", str(cli_files / "mlp.pt"), "--trust-pickle", "-o", str(out), "--calib",
             str(cli_files / "nan.npz"),
             cwd=tmp_path)
    assert r.returncode == DataError.exit_code
    assert out.read_bytes() == b"previous output" and sorted(p.name for p in tmp_path.iterdir()) == ["out.nir"]


def test_exception_during_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "out.nir"
    write(tiny_integer_graph(), out)
    before = out.read_bytes()

    def broken(path, graph, **kw):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(NIRFileError, match=r"out.nir: could not write NIR file \(OSError: disk full\)"):
        write(tiny_integer_graph(2.0), out)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.nir"]
    with pytest.raises(NIRFileError, match="does not exist"):
        write(tiny_integer_graph(), tmp_path / "no" / "out.nir")
