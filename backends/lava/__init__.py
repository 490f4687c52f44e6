"""Lava backend: emit Lava processes from an integer snnc graph, run them on Lava's fixed-point CPU models,
and verify them spike for spike against the CPU simulator.

Importing this package does not import lava; the functions below do, and raise ``BackendError`` without it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .emit import LavaNetwork
    from .runner import LavaResult
    from .verify import VerifyReport

__all__ = ["emit", "run_lava", "verify"]


def emit(graph: Any, record_steps: int = 0) -> "LavaNetwork":
    """Build the Lava processes of an integer graph (see ``snnc.backends.lava.emit.emit``)."""
    from .emit import emit as _emit

    return _emit(graph, record_steps=record_steps)


def run_lava(graph: Any, x: Any, steps: int, **kwargs: Any) -> "LavaResult":
    """Run samples on Lava (see ``snnc.backends.lava.runner.run_lava``)."""
    from .runner import run_lava as _run

    return _run(graph, x, steps, **kwargs)


def verify(graph: Any, x: Any, steps: int, **kwargs: Any) -> "VerifyReport":
    """Compare Lava with the CPU simulator (see ``snnc.backends.lava.verify.verify``)."""
    from .verify import verify as _verify

    return _verify(graph, x, steps, **kwargs)
