"""The one error hierarchy of snnc. Every error names what is wrong: the layer, the node, the field, the file.

The CLI prints one line per error and exits with the class's ``exit_code`` (documented in the README)."""
from __future__ import annotations


class SnncError(Exception):
    """Base of every error snnc raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UnsupportedLayerError(SnncError):
    """A torch module/function or NIR node that snnc cannot convert or deploy (names it and its position)."""

    exit_code = 3


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
