"""Lava backend: emit Lava processes from an integer snnc graph (``snnc.backends.lava.emit.emit``), run them on
Lava's fixed-point CPU models (``run_lava``), and verify them spike for spike against the CPU simulator
(``verify``).

Importing this package does not import lava; the functions below do, and raise ``BackendError`` without it.
(``emit`` is not re-exported here: the submodule of the same name would shadow it.)"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .runner import LavaResult
    from .verification import VerifyReport

__all__ = ["run_lava", "verify"]


def run_lava(graph: Any, x: Any, steps: int, **kwargs: Any) -> "LavaResult":
    """Run samples on Lava (see ``snnc.backends.lava.runner.run_lava``)."""
    from .runner import run_lava as _run

    return _run(graph, x, steps, **kwargs)


def verify(graph: Any, x: Any, steps: int, **kwargs: Any) -> "VerifyReport":
    """Compare Lava with the CPU simulator (see ``snnc.backends.lava.verification.verify``)."""
    from .verification import verify as _verify

    return _verify(graph, x, steps, **kwargs)
