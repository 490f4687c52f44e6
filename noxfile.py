"""The framework interop matrix (``make interop``): each framework in its own environment where its pins conflict.

Sessions (``nox -l`` lists them; ``nox -s NAME`` runs one):
  nir         the core suite (``pytest tests``) on every nir release in pyproject's range (1.0.4, 1.0.5, 1.0.7,
              1.0.8), one venv that reinstalls nir between runs (``nox -s nir -- 1.0.4 1.0.8`` picks releases)
  sinabs      Sinabs 3.1.3 (pins nir <= 1.0.4) on nir 1.0.4: ``tests/interop/test_sinabs.py``
  frameworks  snnTorch 1.0.0, Norse 1.1.0, Rockpool 3.1.0 on nir 1.0.8, nirtorch 2.6, snnc's torch
  lava_dl     Lava-dl 0.6.0 (pins torch < 2.4) on nir 1.0.8: snnc installed without its torch pin
SpikingJelly 2.0 is not in the matrix: it needs Python >= 3.11 and snnc needs 3.10 (lava-nc 0.10.0).
Every session runs under Python 3.10: ``$SNNC_PYTHON310``, else the interpreter running nox when it is 3.10,
else the newest pyenv 3.10.x.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["nir", "sinabs", "frameworks", "lava_dl"]

# pyproject: nir>=1.0.4,!=1.0.6,<1.1 (nir 1.0.6's IF/LIF/CubaLIF require v_reset: docs/interop.md)
NIR_RELEASES = ("1.0.4", "1.0.5", "1.0.7", "1.0.8")
# a test that kills the interpreter on a release (a crash inside libhdf5 cannot become a named error in-process)
SEGFAULTS = {"1.0.7": ("tests/test_fuzz.py::test_mutated_nir_files",
                       "segmentation fault in libhdf5 (h5py 3.16) reading a bit-flipped file that nir 1.0.7 wrote "
                       "uncompressed: docs/interop.md")}
TEST_TOOLS = ("pytest", "hypothesis")
PYTEST = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs")
# snnc's runtime dependencies without torch (lava_dl: lava-dl 0.6.0 pins torch < 2.4, snnc pins torch 2.13)
SNNC_DEPS_NO_TORCH = ("numpy<2", "networkx<=2.8.7", "lava-nc==0.10.0", "h5py", "scikit-learn", "matplotlib",
                      "rich", "tqdm")


def _python310() -> str:
    """A working Python 3.10 (lava-nc 0.10.0 runs only on 3.10); ``python3.10`` on PATH may be a broken shim."""
    env = os.environ.get("SNNC_PYTHON310")
    if env:
        return env
    if sys.version_info[:2] == (3, 10):
        return sys.executable
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    cands = ["python3.10"] + sorted(glob.glob(f"{root}/versions/3.10.*/bin/python3.10"), reverse=True)
    for c in cands:
        try:
            ok = subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                capture_output=True).returncode == 0
        except OSError:
            ok = False
        if ok:
            return c
    return "3.10"  # nox reports it as not found


PY = _python310()


def _pytest(session: nox.Session, *paths: str) -> None:
    """pytest on ``paths``; the MEASURE rows the interop tests record (tests/spike_compare.py) are logged after."""
    rows = os.path.join(session.virtualenv.location, "measures.jsonl")
    if os.path.exists(rows):
        os.remove(rows)
    try:
        session.run(*PYTEST, *paths, env={"SNNC_MEASURE_FILE": rows})
    finally:
        if os.path.exists(rows):
            with open(rows) as fh:
                for line in fh:
                    r = json.loads(line)
                    session.log(f"MEASURE {r['framework']} {r['version']} | {r['direction']} | compared "
                                f"{r['compared']} | differing {r['differing']} | {r['test']} | {r['note']}")


@nox.session(python=PY)
def nir(session: nox.Session) -> None:
    """Core suite on each nir release of the declared range (posargs: a subset); reports every failing release."""
    session.install(".[dev]", *TEST_TOOLS)
    releases = session.posargs or NIR_RELEASES
    failed = []
    for v in releases:
        session.install("--no-deps", f"nir=={v}")
        session.log(f"nir {v}: pytest tests")
        extra = ()
        if v in SEGFAULTS:
            session.log(f"nir {v}: deselected {SEGFAULTS[v][0]}: {SEGFAULTS[v][1]}")
            extra = ("--deselect", SEGFAULTS[v][0])
        try:
            _pytest(session, "tests", *extra)
        except nox.command.CommandFailed:
            failed.append(v)
    if failed:
        session.error(f"core suite failed on nir {', '.join(failed)}")


@nox.session(python=PY)
def sinabs(session: nox.Session) -> None:
    """Sinabs 3.1.3 both ways, on nir 1.0.4 (Sinabs' pin)."""
    session.install(".", "sinabs==3.1.3", "nir==1.0.4", *TEST_TOOLS)
    _pytest(session, "tests/interop/test_sinabs.py", *session.posargs)


@nox.session(python=PY)
def frameworks(session: nox.Session) -> None:
    """snnTorch 1.0.0, Norse 1.1.0 and Rockpool 3.1.0 (no conflicting pins) on nir 1.0.8 and snnc's torch."""
    session.install(".", "snntorch==1.0.0", "norse==1.1.0", "rockpool==3.1.0", "nir==1.0.8", "nirtorch==2.6",
                    *TEST_TOOLS)
    _pytest(session, "tests/interop/test_snntorch.py", "tests/interop/test_norse.py",
            "tests/interop/test_rockpool.py", "tests/interop/test_spikingjelly.py", *session.posargs)


@nox.session(python=PY)
def lava_dl(session: nox.Session) -> None:
    """Lava-dl 0.6.0 (netx): it pins torch < 2.4, so snnc is installed without its torch pin."""
    session.install("lava-dl==0.6.0", "nir==1.0.8", "nirtorch==2.6", *SNNC_DEPS_NO_TORCH, *TEST_TOOLS)
    session.install("--no-deps", ".")
    _pytest(session, "tests/interop/test_lava_dl.py", "tests/test_nir_paper_graphs.py", *session.posargs)
