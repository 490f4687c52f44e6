"""The metadata registry (ir/conventions.py KEYS) is complete and documented: every ``snnc.*`` key the library
writes or reads is registered, docs/conventions.md shows exactly the registry, and validate enforces the
registered types."""
from __future__ import annotations

import re
from pathlib import Path

import nir
import numpy as np
import pytest

from snnc.ir import conventions as cv
from snnc.ir import make_graph, validate
from snnc.ir.errors import GraphError

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"snnc.pipeline", "snnc.cli", "snnc.model_file"}  # "snnc.X" strings that are module paths, not metadata keys


def test_every_key_in_the_code_is_registered() -> None:
    found = set()
    for folder in ("compiler", "backends", "ir"):
        for p in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"[\"'](snnc\.[a-z_]+)[\"']", p.read_text()))
    found = {k for k in found if not k.startswith(("snnc.backends", "snnc.frontend", "snnc.passes", "snnc.ir",
                                                   "snnc.train", "snnc.analysis", "snnc.commands"))} - MODULES
    assert found, "the scan found no keys: the pattern is broken"
    assert found <= set(cv.KEYS), f"unregistered snnc.* keys: {sorted(found - set(cv.KEYS))}"


def test_docs_table_is_the_registry() -> None:
    doc = (ROOT / "docs" / "conventions.md").read_text()
    block = doc.split("<!-- keys:begin -->")[1].split("<!-- keys:end -->")[0].strip()
    assert block == cv.markdown_table()


def _graph(**node_md) -> nir.NIRGraph:
    return make_graph({"in": nir.Input(input_type={"input": np.array([2])}),
                       "fc": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                       "ro": nir.I(r=np.ones(2), metadata={cv.READOUT: True, **node_md}),
                       "out": nir.Output(output_type={"output": np.array([2])})},
                      [("in", "fc"), ("fc", "ro"), ("ro", "out")])


@pytest.mark.parametrize("key,bad", [(cv.DU, 5000), (cv.SCALE, "big"), (cv.BIAS_ONSET, 3), (cv.NIR_TYPE, 1.5),
                                     (cv.THRESHOLD_FACTOR, float("nan"))])
def test_validate_enforces_registered_types(key: str, bad: object) -> None:
    validate(_graph())
    with pytest.raises(GraphError, match=re.escape(key)):
        validate(_graph(**{key: bad}))
