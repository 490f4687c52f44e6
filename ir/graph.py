"""The snnc graph: a ``nir.NIRGraph`` plus a networkx view for order, validation and shape inference.

Shapes exclude the batch dimension: an image is (C, H, W), a vector (N,)."""
from __future__ import annotations

import math
import os
from typing import Any

import networkx as nx
import nir
import numpy as np

from . import conventions as cv
from .errors import GraphError, UnsupportedLayerError

Graph = nir.NIRGraph


def to_networkx(graph: Graph) -> nx.DiGraph:
    """Directed graph of node names; each networkx node carries ``node=<NIRNode>``. Unknown edge ends raise."""
    g = nx.DiGraph()
    for name, node in graph.nodes.items():
        g.add_node(name, node=node)
    for src, dst in graph.edges:
        for end, field in ((src, "source"), (dst, "target")):
            if end not in graph.nodes:
                raise GraphError(f"edge {src!r} -> {dst!r}: {field} node {end!r} does not exist")
        g.add_edge(src, dst)
    return g


def back_edges(graph: Graph) -> list[tuple[str, str]]:
    """The edges that close a cycle (recurrent edges), found by a depth-first search from the Input (then from any
    node it does not reach), following edges in the graph's order: removing them leaves a DAG whose order is the
    feed-forward order. Empty for a feed-forward graph. A cycle through linear nodes only (an algebraic loop: no
    neuron to delay it) raises ``GraphError`` naming it."""
    g = to_networkx(graph)
    if nx.is_directed_acyclic_graph(g):
        return []
    linear = g.subgraph([n for n in g if not cv.is_neuron(graph.nodes[n])])
    try:
        cyc = nx.find_cycle(linear)
        names = " -> ".join(a for a, _ in cyc) + f" -> {cyc[0][0]}"
        raise GraphError(f"cycle {names} passes through no neuron layer (an algebraic loop); a recurrent loop "
                         "must go through a neuron, whose spikes the connection delays by one step")
    except nx.NetworkXNoCycle:
        pass
    adj: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for s, d in graph.edges:
        adj[s].append(d)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    back: list[tuple[str, str]] = []
    for root in inputs + list(graph.nodes):
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(adj[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.append((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(adj[nxt])))
    return back


def topo_order(graph: Graph) -> list[str]:
    """Node names in feed-forward order: a topological order of the graph without its recurrent edges
    (``back_edges``); for a feed-forward graph, networkx's topological order."""
    g = to_networkx(graph)
    g.remove_edges_from(back_edges(graph))
    return list(nx.topological_sort(g))


def predecessors(graph: Graph, name: str) -> list[str]:
    return [s for s, d in graph.edges if d == name]


def successors(graph: Graph, name: str) -> list[str]:
    return [d for s, d in graph.edges if s == name]


def input_name(graph: Graph) -> str:
    """The single Input node's name (snnc graphs have one input)."""
    names = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(names) != 1:
        raise GraphError(f"graph must have exactly one Input node, found {len(names)}: {names}")
    return names[0]


def output_name(graph: Graph) -> str:
    names = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(names) != 1:
        raise GraphError(f"graph must have exactly one Output node, found {len(names)}: {names}")
    return names[0]


def _pair(v: Any, name: str, field: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints >= ``minimum`` (stride, dilation, kernel: 1; padding: 0)."""
    arr = np.atleast_1d(np.asarray(v))
    if arr.dtype.kind not in "biuf" or arr.ndim != 1 or not np.all(np.isfinite(arr)) \
            or not np.all(arr == np.round(arr)):
        raise GraphError(f"node {name!r}: field {field!r} must be an int or a pair of ints, got {v!r}")
    a = arr.astype(np.int64).tolist()
    if len(a) == 1:
        a = a * 2
    if len(a) != 2 or min(a) < minimum:
        raise GraphError(f"node {name!r}: field {field!r} must be an int or a pair of ints >= {minimum}, got {v!r}")
    return int(a[0]), int(a[1])


def conv2d_padding(node: nir.Conv2d, name: str) -> tuple[int, int]:
    """Numeric padding of a Conv2d (resolves 'same'/'valid' for odd kernels)."""
    p = node.padding
    if isinstance(p, bytes):
        p = p.decode()
    if isinstance(p, np.ndarray) and p.dtype.kind in "SUO":
        p = str(p.item() if p.ndim == 0 else p[0])
        p = p.decode() if isinstance(p, bytes) else p
    if isinstance(p, str):
        if p == "valid":
            return 0, 0
        if p == "same":
            kh, kw = node.weight.shape[-2:]
            dh, dw = _pair(node.dilation, name, "dilation")
            if (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
                raise GraphError(f"node {name!r}: padding 'same' with an even kernel is not supported")
            return dh * (kh - 1) // 2, dw * (kw - 1) // 2
        raise GraphError(f"node {name!r}: padding must be 'same', 'valid' or integers, got {p!r}")
    return _pair(p, name, "padding", 0)


def conv2d_params(node: nir.Conv2d, name: str) -> dict:
    """stride, padding, dilation, groups of a Conv2d as ints/pairs."""
    return dict(
        stride=_pair(node.stride, name, "stride"),
        padding=conv2d_padding(node, name),
        dilation=_pair(node.dilation, name, "dilation"),
        groups=_groups(node, name),
    )


def _groups(node: Any, name: str) -> int:
    g = np.asarray(node.groups)
    if g.size != 1 or g.dtype.kind not in "biu" or int(g.item()) < 1:
        raise GraphError(f"node {name!r}: field 'groups' must be one int >= 1, got {node.groups!r}")
    n_out = np.asarray(node.weight).shape[0] if np.ndim(node.weight) else 0
    if n_out % int(g.item()):
        raise GraphError(f"node {name!r}: field 'groups' ({int(g.item())}) does not divide the {n_out} output "
                         "channels")
    return int(g.item())


def pool_params(node: Any, name: str) -> dict:
    return dict(
        kernel_size=_pair(node.kernel_size, name, "kernel_size"),
        stride=_pair(node.stride, name, "stride"),
        padding=_pair(node.padding, name, "padding", 0),
    )


def _out_len(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def node_output_shape(name: str, node: Any, in_shape: tuple | None) -> tuple:
    """Output shape of one node given its input shape (None for the Input node)."""
    if isinstance(node, nir.Input):
        return tuple(int(x) for x in np.asarray(node.input_type["input"]).ravel())
    if in_shape is None:
        raise GraphError(f"node {name!r} has no input edge")
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise GraphError(f"node {name!r}: field 'weight' must be 2-D (out, in), has shape {w.shape}")
        if math.prod(in_shape) != w.shape[1] or len(in_shape) != 1:
            raise GraphError(
                f"node {name!r}: field 'weight' expects {w.shape[1]} inputs, gets shape {in_shape} "
                "(insert a Flatten before it)" if len(in_shape) != 1 else
                f"node {name!r}: field 'weight' expects {w.shape[1]} inputs, gets {in_shape[0]}")
        if isinstance(node, nir.Affine) and np.asarray(node.bias).shape not in ((w.shape[0],), ()):
            raise GraphError(f"node {name!r}: field 'bias' has shape {np.shape(node.bias)}, expected ({w.shape[0]},)")
        return (w.shape[0],)
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        if w.ndim != 4:
            raise GraphError(f"node {name!r}: field 'weight' must be 4-D (out, in, kh, kw), has shape {w.shape}")
        if len(in_shape) != 3:
            raise GraphError(f"node {name!r}: Conv2d needs a (C, H, W) input, gets shape {in_shape}")
        p = conv2d_params(node, name)
        if np.shape(node.bias) not in ((w.shape[0],), ()):
            raise GraphError(f"node {name!r}: field 'bias' has shape {np.shape(node.bias)}, expected ({w.shape[0]},)")
        if in_shape[0] != w.shape[1] * p["groups"]:
            raise GraphError(f"node {name!r}: field 'weight' expects {w.shape[1] * p['groups']} input channels, "
                             f"gets {in_shape[0]}")
        h = _out_len(in_shape[1], w.shape[2], p["stride"][0], p["padding"][0], p["dilation"][0])
        ww = _out_len(in_shape[2], w.shape[3], p["stride"][1], p["padding"][1], p["dilation"][1])
        if h <= 0 or ww <= 0:
            raise GraphError(f"node {name!r}: output would be empty for input shape {in_shape}")
        return (w.shape[0], h, ww)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(in_shape) != 3:
            raise GraphError(f"node {name!r}: pooling needs a (C, H, W) input, gets shape {in_shape}")
        p = pool_params(node, name)
        k, s, pd = p["kernel_size"], p["stride"], p["padding"]
        out = (in_shape[0], _out_len(in_shape[1], k[0], s[0], pd[0]), _out_len(in_shape[2], k[1], s[1], pd[1]))
        if min(out[1:]) <= 0:
            raise GraphError(f"node {name!r}: output would be empty for input shape {in_shape}")
        return out
    if isinstance(node, nir.Flatten):
        nd = len(in_shape)
        for field in ("start_dim", "end_dim"):
            d = np.asarray(getattr(node, field))
            if d.size != 1 or d.dtype.kind not in "iu":
                raise GraphError(f"node {name!r}: field {field!r} must be one int, got {getattr(node, field)!r}")
        s, e = int(np.asarray(node.start_dim).item()), int(np.asarray(node.end_dim).item())
        s = s + nd if s < 0 else s
        e = e + nd if e < 0 else e
        if not (0 <= s <= e < nd):
            raise GraphError(f"node {name!r}: start_dim/end_dim {node.start_dim}/{node.end_dim} "
                             f"do not fit input shape {in_shape}")
        return tuple(in_shape[:s]) + (math.prod(in_shape[s:e + 1]),) + tuple(in_shape[e + 1:])
    if isinstance(node, nir.Scale):
        sc = np.asarray(node.scale)
        if sc.size == 0:
            raise GraphError(f"node {name!r}: field 'scale' is empty")
        if sc.size > 1 and np.broadcast_shapes(sc.shape, in_shape) != tuple(in_shape):
            raise GraphError(f"node {name!r}: field 'scale' shape {sc.shape} does not broadcast to {in_shape}")
        return tuple(in_shape)
    if cv.is_neuron(node) or isinstance(node, (nir.Output, nir.Threshold, nir.Delay)):
        for field in ("v_threshold", "r", "tau", "tau_mem", "tau_syn", "v_leak"):
            arr = getattr(node, field, None)
            if arr is not None and np.asarray(arr).size != 1:
                try:
                    fits = np.broadcast_shapes(np.shape(arr), tuple(in_shape)) == tuple(in_shape)
                except ValueError:
                    fits = False
                if not fits:
                    raise GraphError(f"node {name!r}: field {field!r} has shape {np.shape(arr)}, "
                                     f"input has shape {in_shape}")
        return tuple(in_shape)
    raise GraphError(f"node {name!r}: node type {type(node).__name__} is not supported by snnc")


def infer_shapes(graph: Graph) -> dict[str, tuple]:
    """Output shape (no batch dim) of every node; fan-in edges must agree in shape (recurrent edges included:
    they are checked once their source's shape is known)."""
    shapes: dict[str, tuple] = {}
    back = set(back_edges(graph))
    for name in topo_order(graph):
        node = graph.nodes[name]
        preds = predecessors(graph, name)
        in_shape = None
        for p in preds:
            if (p, name) in back:
                continue
            s = shapes[p]
            if in_shape is not None and math.prod(s) != math.prod(in_shape):
                raise GraphError(f"node {name!r}: fan-in shapes disagree ({in_shape} from one edge, {s} from {p!r})")
            in_shape = s if in_shape is None or len(s) >= len(in_shape) else in_shape
        if isinstance(node, nir.Input) and preds:
            raise GraphError(f"Input node {name!r} has incoming edges from {preds}")
        shapes[name] = node_output_shape(name, node, in_shape)
    for p, name in back:
        ins = [shapes[q] for q in predecessors(graph, name) if (q, name) not in back]
        if ins and math.prod(shapes[p]) != math.prod(ins[0]):
            raise GraphError(f"node {name!r}: recurrent edge from {p!r} carries shape {shapes[p]}, the node's input "
                             f"has shape {ins[0]}")
    return shapes


def _check_finite(name: str, node: Any) -> None:
    for field, val in vars(node).items():
        if field in ("input_type", "output_type", "metadata"):
            continue
        if isinstance(val, np.ndarray) and val.dtype.kind == "f" and not np.all(np.isfinite(val)):
            if field == "v_threshold" and np.all(np.isfinite(val) | (val == np.inf)):
                continue  # an infinite threshold never fires: allowed
            raise GraphError(f"node {name!r}: field {field!r} contains NaN or inf")


def _scalar(where: str, key: str, v: Any, kind: str, lo: float | None = None, hi: float | None = None) -> None:
    """One ``snnc.`` metadata value: kind "int", "real", "bool" or "str"; raises GraphError naming it."""
    a = np.asarray(v)
    ok = a.ndim == 0 and (
        (kind == "int" and a.dtype.kind in "iu") or (kind == "real" and a.dtype.kind in "iuf" and np.isfinite(a))
        or (kind == "bool" and (a.dtype.kind == "b" or (a.dtype.kind in "iu" and int(a) in (0, 1))))
        or (kind == "str" and isinstance(v, str)))
    if ok and lo is not None and not lo <= float(a) <= hi:
        ok = False
    if not ok:
        rng = f" in [{lo:g}, {hi:g}]" if lo is not None else ""
        raise GraphError(f"{where}: metadata field {key!r} must be a single {kind}{rng}, got {v!r}")


# the scalar keys of the registry (conventions.KEYS), checked by type and range wherever they appear
GRAPH_META = {k.name: (k.kind, k.lo, k.hi) for k in cv.KEYS.values()
              if k.on == "graph" and k.kind in ("str", "int", "real", "bool")}
NODE_META = {k.name: (k.kind, k.lo, k.hi) for k in cv.KEYS.values()
             if k.on != "graph" and k.kind in ("str", "int", "real", "bool")}


def _check_metadata(graph: Graph, shapes: dict[str, tuple]) -> None:
    """Types and ranges of the ``snnc.`` metadata that snnc itself reads (conventions.py)."""
    for key, spec in GRAPH_META.items():
        if key in (graph.metadata or {}):
            _scalar("graph", key, cv.meta(graph, key), *spec)
    macs = cv.meta(graph, cv.ANN_MACS)
    if macs is not None and not (isinstance(macs, dict) and all(
            isinstance(k, str) and np.asarray(v).ndim == 0 and np.asarray(v).dtype.kind in "iu" and int(v) >= 0
            for k, v in macs.items())):
        raise GraphError(f"graph: metadata field {cv.ANN_MACS!r} must map neuron layer names to MAC counts "
                         f"(integers >= 0), got {macs!r}"[:300])
    kind = cv.meta(graph, cv.KIND, cv.FLOAT)
    if kind not in (cv.FLOAT, cv.INTEGER):
        raise GraphError(f"graph: metadata field {cv.KIND!r} must be 'float' or 'integer', got {kind!r}")
    for name, node in graph.nodes.items():
        md = getattr(node, "metadata", None) or {}
        if not isinstance(md, dict):
            raise GraphError(f"node {name!r}: field 'metadata' must be a dict, got {type(md).__name__}")
        for key, spec in NODE_META.items():
            if key in md:
                _scalar(f"node {name!r}", key, cv.meta(node, key), *spec)
        if cv.RESET in md and cv.reset_mode(node) not in ("subtract", "zero"):
            raise GraphError(f"node {name!r}: metadata field {cv.RESET!r} must be 'subtract' or 'zero', "
                             f"got {cv.reset_mode(node)!r}")
        v_reset = getattr(node, "v_reset", None)
        if v_reset is not None and cv.reset_mode(node) == "zero" and np.any(np.asarray(v_reset) != 0):
            raise UnsupportedLayerError(f"node {name!r}: field 'v_reset' is nonzero ({np.asarray(v_reset).max():g} "
                                        "at most); snnc and Lava reset to 0 or by subtraction")
        for key in (cv.V_INIT, cv.V_MIN):
            if key not in md:
                continue
            a = np.asarray(cv.meta(node, key))
            if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or (
                    a.ndim and a.shape != tuple(shapes[name]) and a.size != math.prod(shapes[name])):
                raise GraphError(f"node {name!r}: metadata field {key!r} must be finite numbers, one or one per "
                                 f"neuron {tuple(shapes[name])}, got {a.dtype} {a.shape}")
            if key == cv.V_MIN and (not isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)) or np.any(a > 0)
                                    or (kind == cv.INTEGER and np.any(np.abs(a) * 64 > cv.V_MAX))):
                raise GraphError(f"node {name!r}: metadata field {key!r} must be <= 0, within the 24-bit potential, "
                                 f"on a spiking neuron (IF, LIF, CubaLIF); got {type(node).__name__}, "
                                 f"min {float(a.min()):g}, max {float(a.max()):g}")


DENSE_MANT_MAX = 2 ** 8  # Lava Dense: 8-bit signed weight mantissa (m * 2**(9 - bits))
CONV_WEIGHT_MAX = 2 ** 16  # Lava Conv: integer weights (snnc folds the exponent in: m * 2**(9 - bits + e))
BIAS_MAX = 2 ** 20  # bias_mant (13 bits) << bias_exp (<= 7)


def _check_integer_fields(graph: Graph) -> None:
    """Integer graphs: synapse weights and biases are integers (times 2**weight_exp) inside Lava's fields."""
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            continue
        w = np.asarray(node.weight, dtype=np.float64)
        if isinstance(node, nir.Conv2d):
            field, vals, lim = "weight", w, CONV_WEIGHT_MAX
        else:
            field, vals, lim = "weight (mantissa)", w / 2.0 ** int(cv.meta(node, cv.WEIGHT_EXP, 0)), DENSE_MANT_MAX
        vmax = max(float(vals.max()), -float(vals.min())) if vals.size else 0.0  # no |w| copy of large weights
        if vmax > lim:
            raise GraphError(f"node {name!r}: field {field!r} holds {vmax:g}, beyond Lava's field "
                             f"(|value| <= {lim}) in an integer graph")
        b = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64)
        if b.size and (np.abs(b).max() > BIAS_MAX or np.any(b != np.round(b))):
            raise GraphError(f"node {name!r}: field 'bias' must hold integers with |bias| <= {BIAS_MAX} in an "
                             "integer graph")


def validate(graph: Graph) -> dict[str, tuple]:
    """Check edges, cycles (only through neuron layers), one Input/Output, shapes, finite arrays, ``snnc.`` metadata; returns the shapes."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    input_name(graph)
    output_name(graph)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise GraphError(f"node {name!r} is a nested NIRGraph; flatten subgraphs before compiling")
        _check_finite(name, node)
    shapes = infer_shapes(graph)
    _check_metadata(graph, shapes)
    if cv.graph_kind(graph) == cv.INTEGER:
        _check_integer_fields(graph)
    g = to_networkx(graph)
    out = output_name(graph)
    for name in graph.nodes:
        if name != out and g.out_degree(name) == 0:
            raise GraphError(f"node {name!r} has no outgoing edge (dangling)")
    return shapes


def copy_graph(graph: Graph, share_arrays: bool = False) -> Graph:
    """Deep copy (passes never mutate their input graph). ``share_arrays``: the nodes and their metadata dicts
    are copies but their arrays are the input graph's, for passes that only ever assign new arrays (never write
    into one): copying VGG-16's 230 MB of weights took as long as quantizing them."""
    import copy

    if not share_arrays:
        return copy.deepcopy(graph)
    nodes = {}
    for name, node in graph.nodes.items():
        c = copy.copy(node)
        if isinstance(getattr(node, "metadata", None), dict):
            c.metadata = copy.deepcopy({k: v for k, v in node.metadata.items() if not isinstance(v, np.ndarray)})
            c.metadata.update({k: v for k, v in node.metadata.items() if isinstance(v, np.ndarray)})
        nodes[name] = c
    from .nir_compat import make_graph

    return make_graph(nodes, [tuple(e) for e in graph.edges], copy.deepcopy(dict(graph.metadata or {})))


def read(path: str | os.PathLike) -> Graph:
    """Read an NIR HDF5 file; a missing, non-HDF5, truncated or malformed file raises ``NIRFileError``."""
    from .nirfile import read_nir

    return read_nir(path)


def write(graph: Graph, path: str | os.PathLike, compress: bool | None = None) -> None:
    """Write an NIR HDF5 file atomically (temporary file + rename): a failure never leaves a partial file.
    compress: gzip the arrays (True), or not (False); None: gzip when they total at most ``nirfile.COMPRESS_BYTES``
    (gzip writes about 50 MB/s here: VGG-16's 230 MB of integer weights take 6 s gzipped, 0.4 s plain)."""
    from .nirfile import write_nir

    write_nir(graph, path, compress)
