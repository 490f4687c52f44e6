"""Lava-dl 0.6.0 (nox session ``lava_dl``): it pins torch < 2.4, so the session installs snnc without its torch pin.

Measured: lava-dl 0.6.0 has no NIR reader or writer (no module of ``lava.lib.dl`` imports nir or nirtorch; its
netx reads lava-dl's own HDF5 network format). The NIR project's NIR -> Lava(-dl) converter is example code in the
NIR repository (``paper/nir_to_lava.py``), not part of the package. So no spikes are exchanged through NIR; what
is checked is that snnc's Lava backend (lava-nc 0.10.0, which lava-dl depends on) verifies spike for spike beside
lava-dl, on a graph written by another framework.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from spike_compare import measure


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


pytestmark = pytest.mark.skipif(not _installed("lava.lib.dl"),
                                reason="Lava-dl 0.6.0 not installed (it pins torch < 2.4): run `nox -s lava_dl`")
DATA = Path(__file__).parent.parent / "data" / "nir_paper"


def _version() -> str:
    return importlib.metadata.version("lava-dl")


def test_lava_dl_has_no_nir_reader_or_writer():
    """Fails when a lava-dl release adds NIR support: then add both directions with spikes compared."""
    import lava.lib.dl as dl

    root = Path(dl.__path__[0])
    files = sorted(root.rglob("*.py"))
    assert len(files) > 20  # the package is there (slayer, netx, bootstrap)
    pat = re.compile(r"^\s*(import nir\b|from nir\b|import nirtorch\b|from nirtorch\b)", re.M)
    hits = [str(f.relative_to(root)) for f in files if pat.search(f.read_text(errors="replace"))]
    assert hits == []
    measure("Lava-dl", _version(), "none", "test_lava_dl_has_no_nir_reader_or_writer", 0, 0,
            f"no NIR import/export in lava.lib.dl ({len(files)} modules scanned)")


def test_snnc_lava_backend_beside_lava_dl():
    """The NIR paper's Sinabs CNN: snnc compiles it (torch 2.3.1 here) and Lava runs it spike for spike."""
    import torch

    from snnc.backends.lava import verify
    import snnc

    x = (np.random.default_rng(0).random((2, 2, 34, 34)) < 0.3).astype(np.float64)
    c = snnc.compile(DATA / "cnn_sinabs.nir", x, calib_steps=8)
    rep = verify(c.int_graph, x, 8, progress=False, timeout_s=300)
    assert rep.spikes_compared > 0 and rep.ok, rep.as_dict()
    measure("Lava-dl", _version(), "snnc -> Lava (lava-nc 0.10.0) beside lava-dl", "test_snnc_lava_backend_beside_lava_dl",
            rep.spikes_compared, rep.spikes_differ, f"paper cnn_sinabs.nir, integer, torch {torch.__version__}")
