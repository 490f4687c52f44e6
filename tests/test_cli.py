"""The command line's promises (docs/cli.md): every argument validated by its spec before work starts, one-line
named errors (five reported invocations among them), InternalError at the boundary, safe model loading
(state dicts, torch.export programs; pickles only with --trust-pickle), empty data a DataError in the Python API
too, and the reference page in step with the parsers."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from snnc.ir import (BackendError, ClusterError, DataError, InternalError, UnsupportedLayerError, UsageError,
                     graphs_equal)

_spec = importlib.util.spec_from_file_location("snnc_bench_fuzz_cli", Path(__file__).parents[1] / "bench" /
                                               "fuzz_cli.py")
fz = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = fz
    _spec.loader.exec_module(fz)

DOC = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fz.fixtures(tmp_path_factory.mktemp("cli"))


def cli(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    r = fz.run_in_process([str(a) for a in argv], cwd or Path.cwd(), timeout_s=300)
    return r.rc, r.out, r.err


def one_line(rc_out_err: tuple[int, str, str], cls: type, fragment: str) -> str:
    rc, _, err = rc_out_err
    lines = err.strip().splitlines()
    assert rc == cls.exit_code and len(lines) == 1, (rc, err)
    assert lines[0].startswith(f"snnc: {cls.__name__}: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# ---- five reported invocations that ended in a traceback ----------------------------------------------------------
def test_reported_invocations_give_one_line_named_errors(fx, tmp_path, monkeypatch):
    g, d, empty = fx["g.nir"], fx["d.npz"], fx["empty.npz"]
    one_line(cli("simulate", g, "--data", d, "--batch", "0"), UsageError, "--batch: must be an integer >= 1, got '0'")
    one_line(cli("simulate", g, "--data", empty), DataError, "empty.npz: field 'x' holds no samples (shape (0, 1, 8, 8))")
    one_line(cli("energy", g, "--samples", "0"), UsageError, "--samples: must be an integer >= 1, got '0'")
    one_line(cli("compile", fx["model.pt2"], "--calib", empty, "-o", tmp_path / "o.nir"), DataError,
             "empty.npz: field 'x' holds no samples")
    assert not (tmp_path / "o.nir").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line(cli("simulate", g, "--data", d, "--device", "cuda"), BackendError,
             "--device 'cuda': torch sees no CUDA device on this machine")


@pytest.mark.parametrize("argv, cls, fragment", [
    (["simulate", "@g", "--steps", "-3"], UsageError, "--steps: must be an integer in 1..1000000, got '-3'"),
    (["simulate", "@g", "--steps", "2.5"], UsageError, "--steps: expected an integer"),
    (["simulate", "@g", "--device", "gpu"], BackendError, "--device 'gpu': not a torch device name"),
    (["simulate", "@g", "--device", "meta"], BackendError, "the simulator runs on cpu, cuda, mps"),
    (["simulate", "@g", "--data", "@odd"], DataError, "expects (1, 8, 8)"),
    (["simulate", "@g", "--data", "@nolabels"], DataError, "has no labels"),
    (["simulate", "@g", "--data", "@nan"], DataError, "contains NaN or inf"),
    (["simulate", "@g", "--bogus"], UsageError, "unrecognized arguments: --bogus"),
    (["compile", "@pt2"], UsageError, "the following arguments are required: -o/--output"),
    (["compile", "@pt2", "-o", "x.nir", "--bits", "0"], UsageError, "--bits: must be an integer in 1..8, got '0'"),
    (["compile", "@pt2", "-o", "x.nir", "--bits", "12"], UsageError, "--bits: must be an integer in 1..8"),
    (["compile", "@pt2", "-o", "x.nir", "--percentile", "nan"], UsageError, "--percentile: expected a finite"),
    (["compile", "@pt2", "-o", "nofolder/x.nir"], Exception, "folder nofolder does not exist (--output)"),
    (["compile", "@pt2", "-o", "x.nir", "--max-drop", "0.5"], UsageError, "--max-drop: applies to --binarize"),
    (["compile", "@pt2", "-o", "x.nir", "--calibrate", "2", "--reset", "zero"], UsageError, "--calibrate"),
    (["compile", "@f", "-o", "x.nir", "--calibrate", "2"], DataError, "is an NIR graph"),
    (["compile", "@g", "-o", "x.nir"], Exception, "is already an integer graph"),
    (["compile", "@sd", "-o", "x.nir", "--model-class", "nocolon"], UsageError, "expected package.module:Class"),
    (["compile", "@sd", "-o", "x.nir", "--model-class", "snnc.zoo:DigitsCNN"], DataError, "does not fit"),
    (["compile", "@sig", "-o", "x.nir"], UnsupportedLayerError, "aten.sigmoid.default"),
    (["energy", "@g", "--sweep", "1,,2"], UsageError, "--sweep: empty item"),
    (["energy", "@g", "--plots", "@afile"], DataError, "is a file, not a folder (--plots)"),
    (["run", "@f", "--backend", "cpu"], Exception, "is a float graph"),
    (["run", "@g", "--timeout", "0"], UsageError, "--timeout: must be a number > 0"),
    (["sweep", "@pt2", "--steps", "0,1"], UsageError, "--steps: must be an integer in 1..1000000, got '0'"),
    (["sweep", "@pt2", "--floor", "-1"], UsageError, "--floor: expected 'none' or number >= 0"),
    (["sweep", "@pt2", "--method", "max,bogus"], UsageError, "--method: choose from max, percentile, qcfs"),
    (["sweep", "@pt2", "--plot", "s.txt"], UsageError, "must end in .png, .pdf, .svg"),
    (["sweep", "@pt2", "--data", "@odd", "--limit", "3"], DataError, "the model failed on data of shape (2, 3, 5, 5)"),
    (["simulate", "@g", "--cluster", "local:0"], ClusterError, "--cluster 'local:0': the worker count must be >= 1"),
    (["sweep", "@pt2", "--cluster", "ray://host"], ClusterError, "expected local, local:N or ray://HOST:PORT"),
    (["inspect", "@trunc"], Exception, "trunc.nir"),
    (["inspect", "missing.nir"], Exception, "missing.nir: no such NIR file"),
])
def test_refused_by_name(fx, tmp_path, argv, cls, fragment):
    names = {"@g": "g.nir", "@f": "f.nir", "@pt2": "model.pt2", "@sd": "sd.pt", "@sig": "sigmoid.pt2",
             "@odd": "odd.npz", "@nolabels": "nolabels.npz", "@nan": "nan.npz", "@flat": "flat.npz",
             "@afile": "afile", "@trunc": "trunc.nir"}
    argv = [fx[names[a]] if a in names else a for a in argv]
    rc, out, err = cli(*argv, cwd=tmp_path)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err, err
    m = re.match(r"snnc: (\w+): ", lines[0])
    if cls is not Exception:
        assert m.group(1) == cls.__name__ and rc == cls.exit_code, (rc, lines[0])
    assert m.group(1) != "InternalError" and rc not in (0, InternalError.exit_code)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


# ---- the boundary: an unforeseen exception is one line and its own exit code ------------------------------------
def test_internal_error_is_one_line_and_debug_keeps_the_traceback(monkeypatch, capsys):
    from snnc import cli as cli_mod

    def bug(args):
        raise ValueError("range() arg 3 must not be zero\nsecond line")

    real = cli_mod._discover
    monkeypatch.setattr(cli_mod, "_discover", lambda: real() + [("bug", "raise", lambda p: None, bug)])
    assert cli_mod.main(["bug"]) == InternalError.exit_code == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["snnc: InternalError: ValueError: range() arg 3 must not be zero; second line (run with --debug "
                   "for the traceback; please report)"]
    with pytest.raises(ValueError, match="range"):
        cli_mod.main(["--debug", "bug"])
    with pytest.raises(UsageError):
        cli_mod.main(["--debug", "bug", "--nope"])


def test_warnings_print_one_line_each_after_success(monkeypatch, capsys):
    from snnc import cli as cli_mod

    def warns(args):
        warnings.warn("a multi\nline warning", RuntimeWarning)
        return 0

    real = cli_mod._discover
    monkeypatch.setattr(cli_mod, "_discover", lambda: real() + [("warns", "warn", lambda p: None, warns)])
    assert cli_mod.main(["warns"]) == 0
    assert capsys.readouterr().err.splitlines() == ["snnc: warning: RuntimeWarning: a multi; line warning"]
    assert cli_mod.main(["--help"]) == 0  # argparse's exit is an exit code, not an exception


# ---- every argument has a spec, is documented, and --json keys are what the page says ---------------------------
def test_every_argument_has_a_spec_and_is_documented():
    from snnc import argspec
    from snnc.cli import build_parser

    for name, p in argspec.subcommands(build_parser()).items():
        section = DOC.split(f"### `snnc {name}`")[1].split("\n### ")[0]
        for a in argspec.arguments(p):
            assert a.flag or a.spec is not None, f"snnc {name} {a.flags[0]}: a value without a spec bypasses checks"
            assert f"`{a.flags[-1]}`" in section, f"snnc {name} {a.flags[-1]} is not in docs/cli.md"


def _documented_keys(cmd: str) -> set[str]:
    section = DOC.split(f"### `snnc {cmd}`")[1].split("\n### ")[0]
    para = section.split("`--json` keys:")[1].split("\n\n")[0].split("With `--binarize`")[0]
    para = re.split(r"\.(?:\s|$)", para)[0]  # the sentence that lists them
    depth, top = 0, []
    for tok in re.findall(r"\(|\)|`[^`]+`", para):  # keys outside parentheses are the top-level ones
        depth += tok == "("
        depth -= tok == ")"
        if tok.startswith("`") and depth == 0:
            top.append(tok.strip("`"))
    return set(top)


def test_json_keys_are_the_documented_ones(fx, tmp_path):
    g, d, pt2 = fx["g.nir"], fx["d.npz"], fx["model.pt2"]
    runs = {"compile": ["compile", pt2, "--calib", d, "-o", tmp_path / "c.nir", "--calib-steps", "2"],
            "simulate": ["simulate", g, "--data", d, "--steps", "2"],
            "inspect": ["inspect", g],
            "energy": ["energy", g, "--data", d, "--steps", "2"],
            "run": ["run", g, "--data", d, "--steps", "2", "--samples", "2", "--backend", "cpu"],
            "sweep": ["sweep", pt2, "--data", d, "--steps", "1", "--limit", "3", "--plot", tmp_path / "s.png"]}
    for cmd, argv in runs.items():
        rc, out, err = cli(*argv, "--json", cwd=tmp_path)
        assert rc == 0, err
        keys = set(json.loads(out))
        assert keys == _documented_keys(cmd), (cmd, keys ^ _documented_keys(cmd))
    rc, out, err = cli("compile", pt2, "--calib", d, "-o", tmp_path / "b.nir", "--calib-steps", "2", "--binarize",
                       "auto", "--no-measure", "--steps", "2", "--json", cwd=tmp_path)
    doc = DOC.split("With `--binarize`")[1].split("\n\n")[0]
    assert rc == 0 and all(f"`{k}`" in doc or k in _documented_keys("compile") for k in json.loads(out)), err


# ---- safe loading ---------------------------------------------------------------------------------------------
def test_pickles_run_no_code_without_trust(fx, tmp_path):
    for name in ("evil.pt", "evil.pt2", "whole.pt"):
        line = one_line(cli("compile", fx[name], "-o", tmp_path / "o.nir", "--calib", fx["d.npz"]), DataError,
                        "--trust-pickle")
        assert not (fx.root / "PWNED").exists() and not (fx.root / "PWNED2").exists(), line
    assert "imports snnc.zoo.DigitsMLP" in one_line(cli("sweep", fx["whole.pt"]), DataError, "--trust-pickle")
    rc, out, err = cli("compile", fx["whole.pt"], "--trust-pickle", "-o", tmp_path / "o.nir", "--calib", fx["d.npz"],
                       "--calib-steps", "2", "--json", cwd=tmp_path)
    assert rc == 0, err


def test_load_model_python_api(fx):
    import snnc

    m = snnc.load_model(fx["sd.pt"], "snnc.zoo:DigitsMLP")
    assert isinstance(m, nn.Module) and not m.training
    with pytest.raises(DataError, match="trust_pickle=True"):
        snnc.load_model(fx["whole.pt"])
    assert isinstance(snnc.load_model(fx["whole.pt"], trust_pickle=True), nn.Module)
    with pytest.raises(DataError, match="need pickle code to load"):
        snnc.load_model(fx["evil.pt2"])
    assert not (fx.root / "PWNED2").exists()


def test_exported_programs_convert_like_their_source():
    from snnc.frontend.convert import convert
    from snnc.zoo import DigitsCNN, DigitsResNet

    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    for m in (DigitsCNN(4, 8).eval(), DigitsResNet(1, 4).eval()):
        ep = torch.export.export(m, (torch.as_tensor(x[:2]),))
        ref = convert(m, x)
        assert graphs_equal(ref, convert(ep, x)) and graphs_equal(ref, convert(ep.module(), x))
    with pytest.raises(UnsupportedLayerError, match=r"aten\.sigmoid\.default at position 'sigmoid'"):
        sig = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Sigmoid(), nn.Linear(4, 2)).eval()
        convert(torch.export.export(sig, (torch.as_tensor(x[:2]),)), x)
    mp = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2)).eval()
    with pytest.raises(UnsupportedLayerError, match="max-pooling"):
        convert(torch.export.export(mp, (torch.as_tensor(x[:2]),)), x)


# ---- the Python API: empty data is a DataError everywhere -------------------------------------------------------
def test_empty_data_is_a_data_error_in_the_python_api(fx):
    import snnc

    g = snnc.read(fx["g.nir"])
    empty = np.zeros((0, 1, 8, 8), np.float32)
    model = snnc.load_model(fx["model.pt2"])
    with pytest.raises(DataError, match="calibration data holds no samples"):
        snnc.compile(model, empty)
    with pytest.raises(DataError, match="input data holds no samples"):
        snnc.simulate(g, empty, steps=2)
    with pytest.raises(DataError, match="input data holds no samples"):
        snnc.energy(g, empty, steps=2)
    with pytest.raises(DataError, match="input data holds no samples"):
        snnc.run_lava(g, empty, steps=2)  # refused before Lava starts
    with pytest.raises(DataError, match="contains NaN"):
        snnc.simulate(g, np.full((2, 1, 8, 8), np.nan), steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        snnc.simulate(g, np.zeros((2, 1, 8, 8)), steps=2, batch_size=0)


def test_device_checks(monkeypatch):
    from snnc.backends.cpu.device import torch_device

    assert torch_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_device("cuda:0").index == 0
    with pytest.raises(BackendError, match=r"'cuda:3': this machine has 1 CUDA device"):
        torch_device("cuda:3")
    for bad in ("tpu", "", "cpu:2", "xla"):
        with pytest.raises(BackendError):
            torch_device(bad)


def test_figures_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from snnc.analysis.plots import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    out = tmp_path / "p.png"
    out.write_bytes(b"previous")

    def broken(self, path, **kw):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(type(fig), "savefig", broken)
    with pytest.raises(OSError):
        save_figure(fig, out)
    assert out.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["p.png"]
