"""The one error hierarchy of snnc. Every error names what is wrong: the layer, the node, the field, the file.

The CLI prints one line per error and exits with the class's ``exit_code`` (the table in docs/cli.md)."""
from __future__ import annotations


def one_line(e: BaseException, limit: int | None = None) -> str:
    """An exception's message on one line (its lines joined with "; "), cut to ``limit`` characters if given."""
    s = "; ".join(x.strip() for x in str(e).strip().splitlines() if x.strip()) or type(e).__name__
    return s if limit is None or len(s) <= limit else s[:limit - 3] + "..."


class SnncError(Exception):
    """Base of every error snnc raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(SnncError):
    """A command line that cannot run as typed: an unknown option, a missing or repeated argument, a value of the
    wrong type, out of its range or not among its choices (names the argument). Exit code 2, as argparse's."""

    exit_code = 2


class UnsupportedLayerError(SnncError):
    """A torch module/function or NIR node that snnc cannot convert or deploy (names it and its position)."""

    exit_code = 3


class RecurrentTimingError(UnsupportedLayerError):
    """A recurrent loop whose source timing snnc cannot keep: every snnc (and Lava) connection delays by one step,
    so a loop through k neuron layers takes k steps where the framework that wrote it takes one (names the loop)."""


class GraphError(SnncError):
    """Shape, edge or type problems in a graph; the message names the node and the field."""

    exit_code = 4


class NIRFileError(SnncError):
    """A file that is not NIR HDF5, is truncated, or holds an unknown node, missing field, bad dtype or NaN/inf."""

    exit_code = 5


class QuantizationError(SnncError):
    """Values that cannot be represented in the requested bit widths (names the layer and field)."""

    exit_code = 6


class BackendError(SnncError):
    """A backend is missing (e.g. lava not installed) or one of its processes failed."""

    exit_code = 7


class DataError(SnncError):
    """A data set argument that cannot be loaded or does not fit the model (names the file and field)."""

    exit_code = 8


class OverflowEventError(SnncError):
    """``--strict`` run in which a potential saturated or a current/conv output wrapped (names the layer)."""

    exit_code = 9


class ClusterError(SnncError):
    """``--cluster`` / ``cluster=``: a bad cluster spec, Ray not installed (says how to install the extra), or a
    Ray cluster that cannot be reached or started (names the address)."""

    exit_code = 10


class InternalError(SnncError):
    """Not raised by snnc on purpose: the CLI reports any other exception that escapes a command as this class
    (one line; ``--debug`` shows the traceback). Exit code 70 (EX_SOFTWARE in sysexits.h)."""

    exit_code = 70


class NIRImportWarning(UserWarning):
    """A foreign NIR graph read with a repair (a batch dimension dropped, scalar parameters broadcast to the layer);
    the message names the node, the field and the framework known to write it."""
