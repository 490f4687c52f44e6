"""Deployment targets as data: one ``Target`` record per target, looked up by name (``--target``).

A target says what a compiled graph runs on: which Lava processes the backend builds, the fixed-point widths of
its neurons and synapses, and (for chips) per-core and per-chip limits with their public sources. Design rules
that check a graph against a target are small named checks elsewhere; the numbers live here, once.

  lava     Lava 0.10 CPU simulation with snnc's ``SubtractLIF`` process model (reset by subtraction in one neuron):
           the reference target; a custom Python process model has no Loihi 2 implementation.
  loihi2   what a Loihi 2 chip runs: Lava's stock processes only (and CPU-side input/output).
"""
from __future__ import annotations

from dataclasses import dataclass

from snnc.ir.errors import DataError


@dataclass(frozen=True)
class Target:
    """One deployment target. name: the ``--target`` value; doc: one line for help texts; stock: the backend may
    build only Lava's stock processes (those Lava documents as running on Loihi 2)."""

    name: str
    doc: str
    stock: bool


LAVA = Target("lava", "Lava CPU simulation with snnc's SubtractLIF process (reference target)", stock=False)
LOIHI2 = Target("loihi2", "Loihi 2: Lava's stock processes only", stock=True)
TARGETS: dict[str, Target] = {t.name: t for t in (LAVA, LOIHI2)}
DEFAULT_TARGET = LAVA.name


def get_target(name: str) -> Target:
    """The target called ``name``; a DataError naming the known targets otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        raise DataError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}") from None
