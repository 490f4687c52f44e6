"""The CLI fuzzer (bench/fuzz_cli.py runs >= 5,000 invocations): a derandomized hypothesis slice over every
subcommand, drawn from its own argparse definition -- valid and invalid values, missing/extra/damaged files, bad
data -- judged on exit code, one-line stderr, no traceback, no half-written output, valid ones succeeding; a few
through the real entry point; and the judge itself shown to catch each broken promise."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("snnc_bench_fuzz_cli", Path(__file__).parents[1] / "bench" /
                                               "fuzz_cli.py")
fz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fz  # dataclasses look their module up
_spec.loader.exec_module(fz)

# examples per subcommand: Lava runs (run, verify) cost seconds each
EXAMPLES = {"compile": 14, "simulate": 12, "energy": 8, "inspect": 6, "sweep": 6, "run": 5, "verify": 4}


class HypothesisDraw(fz.Draw):
    """The fuzzer's draws as hypothesis strategies (so failures shrink to a minimal command line)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def coin(self, p: float) -> bool:
        return self.data.draw(st.integers(0, 99)) < round(100 * p)

    def weighted(self, weights: dict[str, float]) -> str:
        return self.choice(sorted(weights))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fz.fixtures(tmp_path_factory.mktemp("fuzz_cli"))


def _case_dir(fx) -> Path:
    d = fx.root.parent / "case"
    if d.exists():
        import shutil

        shutil.rmtree(d)
    d.mkdir()
    return d


def test_every_subcommand_is_covered():
    from snnc import argspec
    from snnc.cli import build_parser

    assert set(argspec.subcommands(build_parser())) == set(EXAMPLES)


@pytest.mark.parametrize("cmd", sorted(EXAMPLES))
def test_cli_fuzz(cmd, fx):
    @settings(max_examples=EXAMPLES[cmd], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data):
        work = _case_dir(fx)
        case = fz.invocation(HypothesisDraw(data), fx, work, cmd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fz.run_in_process(case.argv, work, timeout_s=300)
        problems = fz.judge(case, r, fx, work)
        assert not problems, (f"snnc {' '.join(case.argv)} (expect {case.expect}: {case.why}) -> rc {r.rc}\n"
                              f"stderr: {r.err[-2000:]}\nproblems: {problems}")

    before = fx.digest()
    one()
    assert fx.digest() == before, "the fixtures were modified"


@pytest.mark.parametrize("cmd", sorted(EXAMPLES))
def test_one_bad_value_per_argument(cmd, fx):
    """Every value-taking argument of the command with each of its first three odd values (0, -1, the range
    boundaries, ...) on an otherwise valid command line: refused by name when its spec refuses it, else run without
    a crash; nothing half-written."""
    cases = fz.one_bad_values(fx, cmd, per_arg=3)
    assert cases
    for arg, text, verdict in cases:
        work = _case_dir(fx)
        case = fz.one_bad_case(fx, work, cmd, arg, text, verdict)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fz.run_in_process(case.argv, work, timeout_s=300)
        problems = fz.judge(case, r, fx, work)
        assert not problems, f"snnc {' '.join(case.argv)} -> rc {r.rc}\nstderr: {r.err[-2000:]}\n{problems}"


def test_real_entry_point(fx):
    """A few invocations through ``python -m snnc.cli``: the one line and the exit code at the process level."""
    cases = [(["simulate", fx["g.nir"], "--data", fx["d.npz"], "--batch", "0"], 2, "UsageError: --batch"),
             (["inspect", fx["g.nir"], "--json"], 0, "")]
    for argv, rc, fragment in cases:
        work = _case_dir(fx)
        case = fz.Case(argv, fz.OK if rc == 0 else fz.BAD)
        r = fz.run_subprocess(argv, [sys.executable, "-m", "snnc.cli"], work, timeout_s=300)
        assert r.rc == rc and fragment in r.err and not fz.judge(case, r, fx, work), (r.rc, r.err)


def test_the_judge_catches_each_broken_promise(fx):
    """Each promise the fuzzer checks, broken on purpose, is reported (the fuzzer cannot pass vacuously)."""
    work = _case_dir(fx)
    R, C = fz.Result, fz.Case
    assert fz.judge(C(["simulate"], fz.BAD), R(8, "", "snnc: DataError: x.npz: empty\n", 0.1), fx, work) == []
    assert "traceback" in fz.judge(C(["simulate"], fz.BAD), R(1, "", "Traceback (most recent call last):\n  ...\n"
                                                                   "ValueError: boom\n", 0.1), fx, work)
    assert "undocumented exit code 99" in fz.judge(C(["simulate"], fz.ANY), R(99, "", "snnc: X: y\n", 0.1), fx, work)
    assert "InternalError" in fz.judge(C(["simulate"], fz.ANY), R(70, "", "snnc: InternalError: ValueError: boom "
                                                                     "(run with --debug ...)\n", 0.1), fx, work)
    assert "stderr has 2 lines" in fz.judge(C(["simulate"], fz.BAD), R(8, "", "warning\nsnnc: DataError: x\n", 0.1),
                                            fx, work)
    assert "class GraphError does not exit with 8" in fz.judge(C(["simulate"], fz.BAD),
                                                               R(8, "", "snnc: GraphError: x\n", 0.1), fx, work)
    assert "a valid invocation failed" in fz.judge(C(["simulate"], fz.OK), R(8, "", "snnc: DataError: x\n", 0.1),
                                                   fx, work)
    assert "an invalid invocation succeeded" in fz.judge(C(["simulate"], fz.BAD), R(0, "", "", 0.1), fx, work)
    assert "--json did not print exactly one JSON object" in fz.judge(C(["inspect", "--json"], fz.OK),
                                                                      R(0, "{}\n{}\n", "", 0.1), fx, work)
    (work / "out0.nir").write_bytes(b"\x89HDF\r\n\x1a\n half")
    assert "half-written file: out0.nir" in fz.judge(C(["compile"], fz.BAD), R(8, "", "snnc: DataError: x\n", 0.1),
                                                     fx, work)
    (work / "out0.nir").unlink()
    (work / ".out0.nir.abc.tmp").write_bytes(b"")
    assert any(p.startswith("temporary file left") for p in
               fz.judge(C(["compile"], fz.BAD), R(8, "", "snnc: DataError: x\n", 0.1), fx, work))
    (work / ".out0.nir.abc.tmp").unlink()
    case = C(["compile"], fz.OK, outputs=[(work / "out1.nir", "fresh")])
    assert "out1.nir: missing after success" in fz.judge(case, R(0, "", "", 0.1), fx, work)
