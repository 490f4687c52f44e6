"""Calibration vs evaluation data: SOURCE[:SPLIT] specs, named splits in .npz files, role defaults, the held-out
validation part, overlap reporting, and --calib/--data in compile, sweep and simulate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from snnc.dataspec import Data, default_specs, holdout, load, overlap, parse_spec
from snnc.ir.errors import DataError


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_data):
    (xtr, ytr), (xte, yte) = digits_data
    d = tmp_path_factory.mktemp("data")
    np.savez(d / "A.npz", x=xtr[:200], y=ytr[:200])
    np.savez(d / "B.npz", x=xte[:60], y=yte[:60])
    np.savez(d / "splits.npz", x_train=xtr[:200], y_train=ytr[:200], x_test=xte[:60], y_test=yte[:60],
             x_extra=xte[60:70], y_extra=yte[60:70])
    np.savez(d / "only_extra.npz", x_extra=xte[:5], y_extra=yte[:5])
    np.savez(d / "nolabels.npz", x=xte[:30])
    torch.manual_seed(0)
    from snnc.train.fit import fit

    mlp = fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(),
                            nn.Linear(24, 10)), xtr, ytr, epochs=8, seed=0)
    torch.save(mlp, d / "mlp.pt")
    return d


def test_specs_roles_and_named_splits(files, digits_data):
    (xtr, _), (xte, yte) = digits_data
    assert parse_spec("digits") == ("digits", None) and parse_spec("digits:test") == ("digits", "test")
    assert parse_spec(str(files / "splits.npz") + ":extra") == (str(files / "splits.npz"), "extra")
    # digits: train for calibration, test for evaluation unless a split is named
    assert load("digits", "calib").samples == 1437 and load("digits", "eval").samples == 360
    assert load("digits:test", "calib").spec == "digits:test"
    # an .npz with x, y: the whole file in either role
    a = load(str(files / "A.npz"), "eval")
    assert a.samples == 200 and a.split is None and a.spec == str(files / "A.npz")
    # named splits: x_train for calibration, x_test for evaluation; NAME picks x_NAME
    s = str(files / "splits.npz")
    c, e, x = load(s, "calib"), load(s, "eval"), load(s + ":extra", "eval")
    assert (c.samples, e.samples, x.samples) == (200, 60, 10) and e.spec == s + ":test"
    assert np.array_equal(e.x, xte[:60]) and np.array_equal(x.y, yte[60:70])
    with pytest.raises(DataError, match=r"only_extra.npz.*no split 'train'.*\['extra'\]"):
        load(str(files / "only_extra.npz"), "calib")
    with pytest.raises(DataError, match=r"missing array 'x_nope'.*named splits"):
        load(s + ":nope", "eval")
    with pytest.raises(DataError, match="digits has splits"):
        load("digits:val", "eval")
    with pytest.raises(DataError, match="nolabels.npz.*no labels"):
        load(str(files / "nolabels.npz"), "eval").labels()
    # one argument given: the other is the same source (each role takes its own split)
    assert default_specs(None, None) == ("digits", "digits")
    assert default_specs(None, s + ":extra") == (s, s + ":extra")
    assert default_specs("digits:all", None) == ("digits:all", "digits")


def test_overlap_and_holdout(digits_data):
    (xtr, ytr), (xte, yte) = digits_data
    cal = Data(xtr[:400], ytr[:400], "digits", "train", "calib")
    ev = Data(np.concatenate([xte[:50], xtr[10:15]]), np.concatenate([yte[:50], ytr[10:15]]), "x", None, "eval")
    assert overlap(cal, ev) == 5 and overlap(cal, Data(xte, yte, "digits", "test", "eval")) == 0
    fit, val = holdout(cal, 0.25, seed=0)
    assert (fit.samples, val.samples) == (300, 100) and overlap(fit, val) == 0
    # stratified: each class's share of the validation part is its share of the calibration data
    assert np.all(np.abs(np.bincount(val.y, minlength=10) - 0.25 * np.bincount(cal.y, minlength=10)) <= 1)
    assert val.spec == "digits:train (validation 100)" and fit.describe()["part"] == "fit 300"
    again, _ = holdout(cal, 0.25, seed=0)
    assert again.sha256 == fit.sha256  # seeded
    with pytest.raises(DataError, match="fraction"):
        holdout(cal, 1.0)
    with pytest.raises(DataError, match="cannot be split"):
        holdout(cal.first(1), 0.5)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_cli_sweep_and_simulate_take_calib_and_data(files, capsys, tmp_path):
    from snnc.cli import main

    A, B, m = str(files / "A.npz"), str(files / "B.npz"), str(files / "mlp.pt")
    args = ["sweep", m, "--trust-pickle", "--steps", "2", "--no-int", "--plot", str(tmp_path / "p.png"), "--json"]
    assert main(args + ["--calib", A, "--data", B]) == 0
    out = _json(capsys)
    assert out["data"]["calib"]["spec"] == A and out["data"]["eval"]["spec"] == B
    assert out["data"]["eval"]["samples"] == 60 and out["data"]["eval_samples_in_calib"] == 0
    assert out["measured_on"]["int_accuracy"] == "eval"
    # --data alone: the calibration data defaults to the same source; an .npz with one split is then both, and
    # the report and stderr say so
    assert main(args + ["--data", A]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["data"]["eval_samples_in_calib"] == 200
    assert "200 of 200 evaluation samples" in cap.err and "not measured on unseen data" in cap.err
    # simulate compiles another tool's NIR file on --calib and evaluates on --data
    import nir

    rng = np.random.default_rng(0)
    other = tmp_path / "other.nir"
    nir.write(other, nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
               "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1),
               "fc": nir.Affine(weight=rng.normal(size=(10, 64)), bias=np.zeros(10)),
               "if1": nir.IF(r=np.ones(10), v_threshold=np.ones(10)),
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "if1"), ("if1", "output")]))
    assert main(["simulate", str(other), "--calib", A, "--data", B, "--steps", "4", "--json"]) == 0
    sim = _json(capsys)
    assert sim["samples"] == 60 and sim["data"]["calib"]["spec"] == A and sim["data"]["eval_samples_in_calib"] == 0
    # an snnc graph records its calibration data (samples, sha256): simulate tells when it is the evaluation data
    nirf = tmp_path / "m.nir"
    assert main(["compile", m, "--trust-pickle", "--calib", A, "-o", str(nirf), "--calib-steps", "8", "--json"]) == 0
    assert _json(capsys)["data"]["calib"]["samples"] == 200
    assert main(["simulate", str(nirf), "--data", B, "--steps", "4", "--json"]) == 0
    d = _json(capsys)["data"]
    assert d["eval_is_calib"] is False and d["calib"]["samples"] == 200
    assert main(["simulate", str(nirf), "--data", A, "--steps", "4", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["data"]["eval_is_calib"] is True and "not measured on unseen data" in cap.err
    # --calib with an already compiled graph would be ignored: refused by name
    assert main(["simulate", str(nirf), "--calib", A, "--data", B]) == DataError.exit_code
    assert "--calib" in capsys.readouterr().err


def test_cli_compile_binarize_reports_on_evaluation_data(files, capsys, tmp_path):
    from snnc.cli import main

    A, B, m = str(files / "A.npz"), str(files / "B.npz"), str(files / "mlp.pt")
    assert main(["compile", m, "--trust-pickle", "--calib", A, "--data", B, "--binarize", "auto", "--max-drop", "0.5", "-o",
                 str(tmp_path / "b.nir"), "--steps", "8", "--calib-steps", "8", "--json"]) == 0
    out = _json(capsys)
    d = out["data"]
    assert d["eval"]["spec"] == B and d["eval"]["samples"] == 60 and d["eval_samples_in_calib"] == 0
    assert d["fit"]["samples"] == d["validation"]["samples"] == 100 and d["fit"]["sha256"] != d["validation"]["sha256"]
    assert out["measured_on"]["accuracy_before"] == "eval" and out["measured_on"]["estimated_drop"] == "validation"
    assert out["estimator"] == "disagreement" and 0 <= out["accuracy_after"] <= 1
    # accuracy on B, recomputed here with the simulator from the written file
    from snnc.backends.cpu.simulator import simulate
    from snnc.ir import read

    _, (xte, yte) = _digits()
    assert simulate(read(tmp_path / "b.nir"), xte[:60], 8).accuracy(yte[:60]) == pytest.approx(out["accuracy_after"])
    assert [r["name"] for r in out["layers"]] == ["_1", "_3", "_5"]  # fx names of the Sequential's Linear layers
    assert all(abs(r["float_drop"]) <= r["disagreement"] + 1e-9 for r in out["layers"])
    assert out["combined_estimate"] <= 0.5


def _digits():
    from snnc.data import digits

    return digits("train"), digits("test")


def test_validation_part_is_fitted_on_by_nothing(files):
    """Thresholds, quantization ranges and STE fine-tuning see the fit part only; the estimators the validation
    part only (the compiled graph records the fingerprint of the data it was calibrated on)."""
    from snnc.binarize_search import BinarizeOptions, compile_binarized
    from snnc.dataspec import fingerprint
    from snnc.ir import conventions as cv
    from snnc.pipeline import CompileOptions
    from snnc.train.fit import fit

    seen = []

    def trainer(m, x, y, **kw):
        seen.append(fingerprint(x))
        return fit(m, x, y, **kw)

    mlp = torch.load(files / "mlp.pt", weights_only=False)
    cal, ev = load(str(files / "A.npz"), "calib"), load(str(files / "B.npz"), "eval")
    co = CompileOptions(calib_steps=4)
    # post-training: the compile (thresholds, ranges) ran on the fit part
    o = compile_binarized(mlp, cal, ev, BinarizeOptions(layers=["_3"], steps=4, measure=False), co)
    fit_sha, val_sha = o.data["fit"]["sha256"], o.data["validation"]["sha256"]
    assert cv.meta(o.int_graph, cv.CALIB_SHA256) == fit_sha != val_sha
    assert o.data["validation"]["samples"] + o.data["fit"]["samples"] == cal.samples
    # fine-tuning: every candidate set is trained on the fit part, and re-converted on it
    o = compile_binarized(mlp, cal, ev, BinarizeOptions(layers="auto", steps=4, finetune_epochs=1, measure=False,
                                                        allow_first_last=True, max_drop=100.0), co, trainer=trainer)
    assert seen and set(seen) == {fit_sha}
    assert cv.meta(o.int_graph, cv.CALIB_SHA256) == fit_sha
    assert o.finetuned and o.chosen  # a 100-point budget keeps every candidate


def test_data_option_spec_refuses_by_name(files):
    """--calib/--data values are checked before work (snnc.argspec.DataSet): a built-in set's split, an existing
    file (the split of an .npz is checked when it loads, naming the splits it has)."""
    from dataclasses import replace

    from snnc.argspec import DataSet
    from snnc.ir.errors import UsageError

    spec = replace(DataSet(), name="--data")
    assert spec("digits:test") == "digits:test"
    assert spec(str(files / "splits.npz") + ":extra") == str(files / "splits.npz") + ":extra"
    with pytest.raises(UsageError, match="digits has splits train, test, all"):
        spec("digits:val")
    with pytest.raises(DataError, match=r"no such data file \(--data\)"):
        spec(str(files / "missing.npz") + ":train")
    with pytest.raises(UsageError):
        spec("")
    with pytest.raises(DataError, match="its named splits are"):
        load(str(files / "only_extra.npz"), "eval")
