"""NIR HDF5 files: ``nir.read``/``nir.write`` wrapped with named errors and atomic writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import nir
import numpy as np

from .errors import GraphError, NIRFileError


def _clean_meta(md: dict) -> dict:
    out = {}
    for k, v in (md or {}).items():
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


NODE_META = "snnc.node_metadata"  # graph-level home of metadata for node types without a metadata field


def _has_meta_field(node: Any) -> bool:
    import dataclasses

    return any(f.name == "metadata" for f in dataclasses.fields(node))


def _normalise(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Decode metadata and move ``snnc.node_metadata`` entries back onto their nodes."""
    graph.metadata = _clean_meta(getattr(graph, "metadata", {}))
    extra = graph.metadata.pop(NODE_META, None) or {}
    for name, node in graph.nodes.items():
        md = _clean_meta(getattr(node, "metadata", None) or {})
        if isinstance(extra, dict) and isinstance(extra.get(name), dict):
            md.update(_clean_meta(extra[name]))
        node.metadata = md
    return graph


def _for_writing(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Shallow copy whose graph metadata carries the metadata of nodes that nir cannot store (nir 1.0.4:
    Conv2d, Linear, Scale, Input, Output, AvgPool2d have no metadata field)."""
    extra = {name: dict(node.metadata) for name, node in graph.nodes.items()
             if not _has_meta_field(node) and getattr(node, "metadata", None)}
    md = dict(getattr(graph, "metadata", None) or {})
    md.pop(NODE_META, None)
    if extra:
        md[NODE_META] = extra
    for k, v in list(md.items()):
        if v is None:
            del md[k]
    return nir.NIRGraph(nodes=graph.nodes, edges=list(graph.edges), metadata=md)


def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """Read an NIR HDF5 file; every failure becomes ``NIRFileError`` naming the file (and node/field if known)."""
    import h5py

    p = Path(path)
    if not p.exists():
        raise NIRFileError(f"{p}: no such file")
    if p.is_dir():
        raise NIRFileError(f"{p}: is a directory, expected an NIR HDF5 file")
    try:
        if not h5py.is_hdf5(p):
            raise NIRFileError(f"{p}: not an HDF5 file (NIR files are HDF5; is it truncated or a torch checkpoint?)")
    except OSError as e:
        raise NIRFileError(f"{p}: cannot be read ({e})") from None
    try:
        with h5py.File(p, "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{p}: HDF5 file has no 'node' group, so it is not an NIR file")
            node = f["node"]
            if "type" not in node:
                raise NIRFileError(f"{p}: 'node' group has no 'type' field")
        graph = nir.read(p)
    except NIRFileError:
        raise
    except KeyError as e:
        raise NIRFileError(f"{p}: missing field {e} in an NIR node") from None
    except ValueError as e:
        raise NIRFileError(f"{p}: {e}") from None
    except Exception as e:  # h5py/nir raise many types for damaged files
        raise NIRFileError(f"{p}: malformed NIR file ({type(e).__name__}: {e})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFileError(f"{p}: top-level node is a {type(graph).__name__}, expected an NIRGraph")
    graph = _normalise(graph)
    from .graph import validate

    try:
        validate(graph)
    except GraphError as e:
        raise NIRFileError(f"{p}: {e}") from None
    return graph


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.exists():
        raise NIRFileError(f"{p}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        nir.write(tmp, _for_writing(graph))
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, Exception) and not isinstance(e, NIRFileError):
            raise NIRFileError(f"{p}: could not write NIR file ({type(e).__name__}: {e}); nothing was written") from e
        raise


def graphs_equal(a: Any, b: Any) -> bool:
    """Structural equality of two graphs: node names, types, arrays, metadata, edges."""
    if set(a.nodes) != set(b.nodes) or sorted(map(tuple, a.edges)) != sorted(map(tuple, b.edges)):
        return False
    if _clean_meta(getattr(a, "metadata", {})) != _clean_meta(getattr(b, "metadata", {})):
        return False
    for k in a.nodes:
        x, y = a.nodes[k], b.nodes[k]
        if type(x) is not type(y):
            return False
        if _clean_meta(getattr(x, "metadata", None) or {}) != _clean_meta(getattr(y, "metadata", None) or {}):
            return False
        dx, dy = x.to_dict(), y.to_dict()
        if set(dx) != set(dy):
            return False
        for f in dx:
            u, v = dx[f], dy[f]
            if f == "metadata":
                continue
            if isinstance(u, dict) or isinstance(v, dict):
                if str(u) != str(v):
                    return False
                continue
            ua, va = np.asarray(u), np.asarray(v)
            if ua.dtype.kind in "SUO" or va.dtype.kind in "SUO":
                if str(u) != str(v):
                    return False
            elif ua.shape != va.shape or not np.array_equal(ua, va, equal_nan=True):
                return False
    return True
