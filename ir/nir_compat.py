"""What differs between the nir releases snnc supports (``nir>=1.0.4,!=1.0.6,<1.1``; 1.0.8 is the primary target;
nir 1.0.6 is excluded: its IF/LIF/CubaLIF constructors require ``v_reset``, measured in docs/interop.md).

- Graph construction: nir >= 1.0.5 runs its own type inference in ``NIRGraph(...)``. It computes a grouped
  Conv2d's input channels as ``weight.shape[1]`` (not times ``groups``) and the type of a 0-d Scale as ``[]``, so
  it rejects valid graphs; snnc builds graphs with ``type_check=False`` and checks shapes itself
  (``snnc.ir.graph.validate``).
- Node fields: nir 1.0.4 nodes take ``input_type``/``output_type`` as constructor arguments and some types have no
  ``metadata`` field; nir >= 1.0.5 derives the types and every node has metadata. IF, LIF and CubaLIF gained
  ``v_reset`` in nir 1.0.6 (a required argument there; optional, default 0, from 1.0.7).
- Reset semantics: nir <= 1.0.5's equations reset by subtraction (v -= v_threshold); nir >= 1.0.6's set
  v = v_reset. A file tells which release wrote it by whether its spiking nodes store ``v_reset``
  (``reset_from_file``).
- Writing: nir 1.0.8 gzip-compresses datasets, which h5py refuses for 0-d arrays.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import nir
import numpy as np

SPIKING_WITH_RESET = (nir.IF, nir.LIF, nir.CubaLIF)
HAS_V_RESET = any(f.name == "v_reset" for f in dataclasses.fields(nir.IF))  # nir >= 1.0.6
_GRAPH_TYPE_CHECK = "type_check" in inspect.signature(nir.NIRGraph.__init__).parameters
WRITE_COMPRESSION = "compression" in inspect.signature(nir.write).parameters  # nir.write(..., compression=) (1.0.8)


def make_graph(nodes: dict[str, Any], edges: list[tuple[str, str]], metadata: dict | None = None) -> nir.NIRGraph:
    """A ``nir.NIRGraph`` without nir's own type inference (see the module docstring); shapes are snnc's job."""
    kw = {"type_check": False} if _GRAPH_TYPE_CHECK else {}
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in edges], metadata=dict(metadata or {}), **kw)


def has_metadata_field(node: Any) -> bool:
    """nir 1.0.4: Conv2d, Linear, Scale, Input, Output, AvgPool2d have no metadata field."""
    return any(f.name == "metadata" for f in dataclasses.fields(node))


def constructor_fields(cls: type) -> set[str]:
    """Names a node type's constructor takes in this nir release."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def node_kwargs(cls: type, stored: dict) -> dict:
    """The stored fields of one node that this nir release's ``from_dict`` takes: ``input_type``/``output_type``
    written by nir 1.0.4 are dropped where they are derived (nir >= 1.0.5), ``v_reset`` where it does not exist
    (nir <= 1.0.5; ``reset_from_file`` keeps its meaning). Input/Output/Flatten keep their own stored shape fields."""
    if cls in (nir.Input, nir.Output):
        return dict(stored)
    keep = constructor_fields(cls) | {"type"}
    return {k: v for k, v in stored.items() if k in keep}


def reset_from_file(stored: dict) -> tuple[str | None, np.ndarray | None]:
    """Reset of a stored IF/LIF/CubaLIF node by the release that wrote it: ("zero", v_reset) when the node stores
    ``v_reset`` (nir >= 1.0.6: v = v_reset after a spike), ("subtract", None) when it does not (nir <= 1.0.5:
    v -= v_threshold). (None, None) for other node types."""
    if stored.get("type") not in ("IF", "LIF", "CubaLIF"):
        return None, None
    if "v_reset" in stored:
        return "zero", np.asarray(stored["v_reset"], dtype=np.float64)
    return "subtract", None


def write(path: str, graph: nir.NIRGraph, compress: bool = True) -> None:
    """``nir.write``, with gzip when ``compress``, this nir compresses and the graph has no 0-d array (h5py cannot
    filter those)."""
    if not WRITE_COMPRESSION:
        nir.write(path, graph)
        return
    def has_scalar(d: dict) -> bool:
        return any((isinstance(v, np.ndarray) and v.ndim == 0) or (isinstance(v, dict) and has_scalar(v))
                   for v in d.values())

    scalar = has_scalar(graph.metadata or {}) or any(has_scalar(vars(n)) for n in graph.nodes.values())
    nir.write(path, graph, compression="gzip" if compress and not scalar else None)
