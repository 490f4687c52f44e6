"""NIR HDF5 files: ``nir.read``/``nir.write`` wrapped with named errors and atomic writes."""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from . import conventions as cv
from . import nir_compat
from .atomic import atomic_path
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




def _normalise(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Decode metadata and move ``snnc.node_metadata`` entries back onto their nodes."""
    graph.metadata = _clean_meta(getattr(graph, "metadata", {}))
    extra = graph.metadata.pop(cv.NODE_METADATA, None) or {}
    for name, node in graph.nodes.items():
        md = _clean_meta(getattr(node, "metadata", None) or {})
        if isinstance(extra, dict) and isinstance(extra.get(name), dict):
            md.update(_clean_meta(extra[name]))
        node.metadata = md
    return graph


class _Shared(np.ndarray):
    """An array view that ``copy.deepcopy`` returns as itself: nir's ``to_dict`` (``dataclasses.asdict``) deep-copies
    every array before writing it, 1.3 s for VGG-16's 230 MB of weights; the views make that copy free."""

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


def _shared(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.ndim:
        return v.view(_Shared)
    if isinstance(v, dict):
        return {k: _shared(x) for k, x in v.items()}
    return v


def _for_writing(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Shallow copy whose graph metadata carries the metadata of nodes that nir cannot store (nir 1.0.4:
    Conv2d, Linear, Scale, Input, Output, AvgPool2d have no metadata field); its nodes are shallow copies whose
    arrays are ``_Shared`` views of the graph's (written as they are, never copied)."""
    nodes = {}
    for name, node in graph.nodes.items():
        c = copy.copy(node)
        for f in dataclasses.fields(node):
            if f.name not in ("input_type", "output_type"):
                object.__setattr__(c, f.name, _shared(getattr(node, f.name)))
        nodes[name] = c
    extra = {name: dict(node.metadata) for name, node in nodes.items()
             if not nir_compat.has_metadata_field(node) and getattr(node, "metadata", None)}
    md = dict(getattr(graph, "metadata", None) or {})
    md.pop(cv.NODE_METADATA, None)
    if extra:
        md[cv.NODE_METADATA] = extra
    for k, v in list(md.items()):
        if v is None:
            del md[k]
    return nir_compat.make_graph(nodes, list(graph.edges), _shared(md))


KNOWN_TYPES = tuple(t for t in ("Affine", "AvgPool2d", "Conv1d", "Conv2d", "CubaLI", "CubaLIF", "Delay", "Flatten",
                                 "I", "IF", "Identity", "Input", "LI", "LIF", "Linear", "NIRGraph", "Output", "Scale",
                                 "SumPool2d", "Threshold") if hasattr(nir, t))  # the node types of the installed nir
REAL_FIELDS = ("weight", "bias", "r", "v_threshold", "v_reset", "tau", "tau_mem", "tau_syn", "v_leak", "scale",
               "delay", "threshold", "w_in")  # arrays of real numbers
INT_FIELDS = ("stride", "dilation", "groups", "kernel_size", "start_dim", "end_dim", "input_shape", "shape")
INT_LIMIT = 2 ** 31  # integer parameters (shapes, strides) beyond this are corrupt, not a network


def _check_global_heaps(p: Path) -> None:
    """Walk every HDF5 global heap collection ("GCOL", where variable-length strings live) the way libhdf5 does and
    reject one whose object sizes would make libhdf5 loop forever or read past the collection (a corrupt file
    seen by the fuzzer made ``h5py`` hang in ``H5HG`` deserialisation)."""
    import mmap
    import re

    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in re.finditer(b"GCOL\x01", mm):
                o = m.start()
                coll = int.from_bytes(mm[o + 8:o + 16], "little")
                end = o + coll
                if coll < 16 or end > size:
                    raise NIRFileError(f"{p}: corrupt HDF5 global heap at byte {o}: collection size {coll} does not "
                                       f"fit the file ({size} bytes); is the file truncated or damaged?")
                q = o + 16
                while q < end:
                    if q + 16 > end:
                        break  # libhdf5 treats a tail too short for a header as free space
                    idx = int.from_bytes(mm[q:q + 2], "little")
                    obj = int.from_bytes(mm[q + 8:q + 16], "little")
                    need = 16 + ((obj + 7) // 8) * 8 if idx > 0 else obj
                    if need == 0 or q + need > end:
                        raise NIRFileError(f"{p}: corrupt HDF5 global heap at byte {o}: object {idx} at byte {q} has "
                                           f"size {obj}, which does not fit its collection; the file is damaged")
                    q += need


def _required_fields(t: str) -> list[str]:
    """Fields a stored node of NIR type ``t`` must have (Input/Output store their shape as 'shape')."""
    import dataclasses

    if t in ("Input", "Output"):
        return ["shape"]
    return [f.name for f in dataclasses.fields(getattr(nir, t)) if f.init
            and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _type_name(p: Path, name: str, nd: Any) -> str:
    if not isinstance(nd, dict):
        raise NIRFileError(f"{p}: node {name!r}: expected an HDF5 group, found a {type(nd).__name__}")
    if "type" not in nd:
        raise NIRFileError(f"{p}: node {name!r}: missing field 'type'")
    t = nd["type"]
    if not isinstance(t, str) or t not in KNOWN_TYPES:
        raise NIRFileError(f"{p}: node {name!r}: unknown node type {t!r} (NIR 1.0 types: {', '.join(KNOWN_TYPES)})")
    return t


def _check_fields(p: Path, name: str, t: str, nd: dict) -> None:
    """dtype and value checks of one node's fields before nir builds it (names file, node, field)."""
    for field, val in nd.items():
        if field in ("type", "metadata", "input_type", "output_type"):
            continue
        a = np.asarray(val) if not isinstance(val, dict) else None
        if field in REAL_FIELDS:
            if a is None or a.dtype.kind not in "biuf":
                raise NIRFileError(f"{p}: node {name!r}: field {field!r} has dtype "
                                   f"{'group' if a is None else a.dtype}, expected an array of real numbers")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)) and not (
                    field == "v_threshold" and not np.any(np.isnan(a)) and np.all(a[~np.isfinite(a)] > 0)):
                raise NIRFileError(f"{p}: node {name!r}: field {field!r} contains NaN or inf")
        elif field in INT_FIELDS or (field == "padding" and a is not None and a.dtype.kind in "biuf"):
            if a is None or a.dtype.kind not in "biuf" or (a.dtype.kind == "f" and not np.all(np.isfinite(a))) \
                    or not np.all(a == np.round(a)):
                raise NIRFileError(f"{p}: node {name!r}: field {field!r} must hold integers, has "
                                   f"{'a group' if a is None else f'dtype {a.dtype}'}")
            if a.ndim > 1 or np.any(np.abs(a) >= INT_LIMIT):
                raise NIRFileError(f"{p}: node {name!r}: field {field!r} = {a.tolist()} is not a valid "
                                   "shape/size parameter")
        elif field == "padding":
            if a is None or a.dtype.kind not in "SUO" or a.size != 1:
                raise NIRFileError(f"{p}: node {name!r}: field 'padding' must be integers or 'same'/'valid'")
    for field in ("input_type", "output_type"):
        val = nd.get(field)
        if val is None:
            continue
        for k, v in (val.items() if isinstance(val, dict) else [("", val)]):  # Flatten stores a bare shape
            a = np.asarray(v)
            if a.dtype.kind not in "biu" or a.ndim > 1 or np.any(a < 0) or np.any(a >= INT_LIMIT):
                raise NIRFileError(f"{p}: node {name!r}: field '{field}{'/' * bool(k)}{k}' must be a 1-D array of non-negative "
                                   f"integers, got {a.dtype} {a.shape}")


def _build_node(p: Path, name: str, nd: dict, nested: bool) -> Any:
    """One stored node -> its nir node (a nested graph when ``nested``); errors name the file, node and field.

    A spiking node's reset is made explicit in ``snnc.reset`` when the file does not say it: reset to
    ``v_reset`` if the node stores one (nir >= 1.0.6), by subtraction if not (nir <= 1.0.5 equations)."""
    import nir.ir as nir_ir

    t = _type_name(p, name, nd)
    if t == "NIRGraph":
        if not nested:
            raise NIRFileError(f"{p}: node {name!r} is a nested NIRGraph; snnc reads flat graphs only")
        return _build(p, nd, nested, where=f"node {name!r}")
    for req in _required_fields(t):
        if req not in nd:
            raise NIRFileError(f"{p}: node {name!r} ({t}): missing field {req!r}")
    _check_fields(p, name, t, nd)
    md = nd.get("metadata", {})
    if not isinstance(md, dict):
        raise NIRFileError(f"{p}: node {name!r}: field 'metadata' must be a group")
    reset, v_reset = nir_compat.reset_from_file(nd)
    if v_reset is not None and np.any(v_reset != 0) and not nir_compat.HAS_V_RESET:
        raise NIRFileError(f"{p}: node {name!r} ({t}): field 'v_reset' is nonzero (reset to a potential, nir >= "
                           f"1.0.6); this nir {nir.version} cannot hold it and snnc resets to 0 or by subtraction")
    try:
        node = nir_ir.dict2NIRNode(nir_compat.node_kwargs(getattr(nir, t), dict(nd)))
    except KeyError as e:
        raise NIRFileError(f"{p}: node {name!r} ({t}): missing field {e}") from None
    except Exception as e:  # nir's constructors check shapes and types with assert/ValueError/TypeError
        raise NIRFileError(f"{p}: node {name!r} ({t}): invalid fields ({type(e).__name__}: {e})") from None
    if reset is not None and "snnc.reset" not in md:
        if getattr(node, "metadata", None) is None:
            node.metadata = {}
        node.metadata["snnc.reset"] = reset
    return node


def _build(p: Path, d: dict, nested: bool = False, where: str = "top-level graph") -> nir.NIRGraph:
    """The NIRGraph of an HDF5 dict (``nir.serialization.hdf2dict``), one node at a time so errors name it."""
    if not isinstance(d.get("type"), str) or d.get("type") != "NIRGraph":
        raise NIRFileError(f"{p}: {where} has type {d.get('type')!r}, expected 'NIRGraph'")
    for field in ("nodes", "edges"):
        if field not in d:
            raise NIRFileError(f"{p}: {where}: missing field {field!r}")
    if not isinstance(d["nodes"], dict):
        raise NIRFileError(f"{p}: {where}: field 'nodes' must be a group")
    nodes = {name: _build_node(p, name, nd, nested) for name, nd in d["nodes"].items()}
    edges = np.asarray(d["edges"], dtype=object)
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise NIRFileError(f"{p}: {where}: field 'edges' must be an (n, 2) array of node names, has shape "
                           f"{edges.shape}")
    pairs = []
    for a, b in edges:
        a, b = (x.decode(errors="replace") if isinstance(x, bytes) else x for x in (a, b))
        if not isinstance(a, str) or not isinstance(b, str):
            raise NIRFileError(f"{p}: {where}: field 'edges' must hold node names, holds {a!r} -> {b!r}")
        if a not in nodes or b not in nodes:
            raise NIRFileError(f"{p}: {where}: edge {a!r} -> {b!r} names a node that does not exist")
        pairs.append((a, b))
    md = d.get("metadata", {})
    if not isinstance(md, dict):
        raise NIRFileError(f"{p}: {where}: field 'metadata' must be a group")
    try:
        return nir_compat.make_graph(nodes, pairs, md)
    except Exception as e:  # nir checks edge ends when building a graph
        raise NIRFileError(f"{p}: invalid graph ({type(e).__name__}: {e})") from None


def read_hdf5_dict(path: str | os.PathLike) -> tuple[Path, dict]:
    """The stored graph of an NIR HDF5 file as nested dicts; NIRFileError for anything that is not one."""
    import h5py
    from nir.serialization import hdf2dict

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
    _check_global_heaps(p)
    try:
        with h5py.File(p, "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{p}: HDF5 file has no 'node' group, so it is not an NIR file")
            if not isinstance(f["node"], h5py.Group):
                raise NIRFileError(f"{p}: 'node' is not an HDF5 group, so it is not an NIR file")
            if "type" not in f["node"]:
                raise NIRFileError(f"{p}: 'node' group has no 'type' field")
            return p, hdf2dict(f["node"])
    except NIRFileError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/RuntimeError/ValueError... for damaged files
        raise NIRFileError(f"{p}: damaged HDF5 file ({type(e).__name__}: {e})") from None


def read_foreign(path: str | os.PathLike) -> nir.NIRGraph:
    """Read any NIR file as its writer stored it (nested subgraphs kept, no snnc validation); resets made
    explicit as in ``read_nir``. NIRFileError on damage."""
    p, d = read_hdf5_dict(path)
    return _normalise(_build(p, d, nested=True))


def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """Read an NIR HDF5 file; every failure becomes ``NIRFileError`` naming the file (and node/field if known)."""
    p, d = read_hdf5_dict(path)
    graph = _normalise(_build(p, d))
    from .graph import validate

    try:
        validate(graph)
    except GraphError as e:
        raise NIRFileError(f"{p}: {e}") from None
    return graph


COMPRESS_BYTES = 32 << 20  # write_nir's default: gzip when the graph's arrays total at most this many bytes


def array_bytes(graph: nir.NIRGraph) -> int:
    """Bytes of every array a graph's nodes hold (fields and metadata)."""
    def size(v: Any) -> int:
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, dict):
            return sum(size(x) for x in v.values())
        return 0
    return sum(size(vars(n)) for n in graph.nodes.values())


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike, compress: bool | None = None) -> None:
    """Write ``graph`` to ``path`` through a temporary file in the same folder and an atomic rename.
    compress: gzip every non-scalar array (None: when ``array_bytes`` <= ``COMPRESS_BYTES``)."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.exists():
        raise NIRFileError(f"{p}: folder {folder} does not exist")
    try:
        with atomic_path(p) as tmp:
            nir_compat.write(tmp, _for_writing(graph),
                             array_bytes(graph) <= COMPRESS_BYTES if compress is None else bool(compress))
    except NIRFileError:
        raise
    except Exception as e:
        raise NIRFileError(f"{p}: could not write NIR file ({type(e).__name__}: {e}); nothing was written") from e


def _meta_equal(a: dict, b: dict) -> bool:
    """Metadata equality where lists read back as arrays (and nested dicts) compare by value."""
    a, b = _clean_meta(a or {}), _clean_meta(b or {})
    if set(a) != set(b):
        return False
    for k in a:
        u, v = a[k], b[k]
        if isinstance(u, dict) or isinstance(v, dict):
            if not (isinstance(u, dict) and isinstance(v, dict) and _meta_equal(u, v)):
                return False
        elif isinstance(u, (str, bytes)) or isinstance(v, (str, bytes)):
            if str(u) != str(v):
                return False
        else:
            ua, va = np.asarray(u), np.asarray(v)
            if ua.shape != va.shape or not np.array_equal(ua, va):
                return False
    return True


def graphs_equal(a: Any, b: Any) -> bool:
    """Structural equality of two graphs: node names, types, arrays, metadata, edges."""
    if set(a.nodes) != set(b.nodes) or sorted(map(tuple, a.edges)) != sorted(map(tuple, b.edges)):
        return False
    if not _meta_equal(getattr(a, "metadata", None), getattr(b, "metadata", None)):
        return False
    for k in a.nodes:
        x, y = a.nodes[k], b.nodes[k]
        if type(x) is not type(y):
            return False
        if not _meta_equal(getattr(x, "metadata", None), getattr(y, "metadata", None)):
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
