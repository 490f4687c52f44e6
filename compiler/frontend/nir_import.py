"""NIR import: lower any NIR graph the SNN ecosystem writes (snnTorch, Sinabs, Norse, ...) to snnc's IR.

The lowered graph is a *float* snnc graph in canonical discrete time (one step = one simulator/Lava step):
  IF       -> nir.IF(r=1, v_threshold); a gain r*dt != 1 moves into a Scale node before the neuron.
  LIF      -> nir.LIF(tau=T, r=T, v_leak=0): v <- (1 - 1/T) v + a, i.e. beta = 1 - 1/T, unit input gain.
  CubaLIF  -> nir.CubaLIF(tau_syn=S, tau_mem=T, r=T, w_in=S): u <- (1 - 1/S) u + a, v <- (1 - 1/T) v + u.
  LI / CubaLI -> the same without threshold; allowed only as the readout (the node the Output reads).
  Threshold -> LIF with T = 1 (no memory: v = a every step).
  Delay(d)  -> d relay IF layers (threshold 0.5, reset to zero), each one step; d = delay / dt steps.
  Conv1d    -> a dense Affine on the flattened (C, L) tensor (exact; every 2-D tensor is carried flat).
The discrete decays come from the source's continuous time constants with step ``dt``:
  "euler" (NIR's snnTorch convention): beta = 1 - dt/tau, input gain r*dt/tau (current: w_in*dt/tau_syn)
  "exp"   (Sinabs' LIF/ExpLeak):        beta = exp(-dt/tau), same gains
``dt=None`` takes dt = tau/r when every leaky node agrees on that ratio and r != 1 (snnTorch writes r = tau/dt
so that its input gain is 1), else dt = 1 step. Input gains fold into a Scale before the neuron (fuse_synapses
composes it into the synapse). Lava integer form (quantize): dv = round(4096 (1 - beta)), du = round(4096
(1 - alpha)) - 1 (Lava adds ds_offset = 1 to du), both 12-bit: what does not fit is a named QuantizationError.

Not expressible (named errors, GraphError/UnsupportedLayerError): recurrent cycles, v_leak != 0, beta outside
[0, 1], a bias into a CubaLIF (NIR filters it through the current, Lava adds it to v), non-uniform or
non-integer delays, a Delay/spiking input that is not a spike train, LI anywhere but the readout.
A spiking node read by the Output gets an ``I`` readout after it (one more step): logits = its spike rate.

Biases into leaky layers (LIF, CubaLIF, LI) become constant-drive inputs (passes/constant_drive.py): exact, into
the current, from the layer's onset. Recurrent graphs (snnTorch's RLeaky/RSynaptic subgraphs ``lif -> w_rec ->
lif``): every connection in snnc delays by one step (as Lava's Dense/Conv), which is exactly the frameworks' one
step on a recurrent edge when the loop goes through one neuron layer. A loop through k > 1 neuron layers takes k
steps in snnc but one in a framework (it evaluates the loop's feed-forward part within the step), so it is refused
by name (``RecurrentTimingError``, ``check_loop_timing``) unless ``ImportOptions(loops="per_connection")`` accepts
one step per connection.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import networkx as nx
import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError, NIRImportWarning, RecurrentTimingError, SnncError, UnsupportedLayerError
from snnc.ir.nir_compat import make_graph

DISCRETISATIONS = ("euler", "exp")
CUBA_LI = getattr(nir, "CubaLI", None)
LEAKY = (nir.LIF, nir.LI, nir.CubaLIF) + ((CUBA_LI,) if CUBA_LI else ())
SPIKING = (nir.IF, nir.LIF, nir.CubaLIF, nir.Threshold)
NEURON_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in", "threshold")


@dataclass
class ImportOptions:
    """dt: seconds per step (None: inferred, see module docstring); discretisation: "euler" or "exp";
    reset: None keeps each spiking node's reset as the graph says it (``snnc.reset``, else v = v_reset on
    nir >= 1.0.6 nodes, v -= threshold on files of nir <= 1.0.5); "subtract" or "zero" sets every spiking node's reset
    (for a file whose training used another reset than its nir release says, e.g. the NIR paper's
    ``braille_noDelay_bias_zero.nir``, written by nir 1.0.x but trained with reset to zero);
    reset_timing: "immediate", "delayed" or "guarded" for every spiking node, or {node name: timing} for the named
    ones (``snnc.reset_timing``: snnTorch's reset_delay=True is "delayed", and so is its RSynaptic 1.0.0 whatever
    the flag says; reset_delay=False is "guarded"); None: immediate (NIR's equations, Lava's LIF);
    loops: "exact" refuses a recurrent loop through more than one neuron layer (``check_loop_timing``);
    "per_connection" runs it with one step per connection."""

    dt: float | None = None
    discretisation: str = "euler"
    reset: str | None = None
    reset_timing: str | dict | None = None
    loops: str = "exact"


# ---------------------------------------------------------------------------------------------- reading
def _np(v: Any) -> Any:
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().numpy().astype(np.float64)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        return v.astype(np.float64)
    return v


def _to_numpy(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Torch tensors (graphs straight from snnTorch/Sinabs) -> float64 numpy arrays, in place."""
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            _to_numpy(node)
            continue
        for f, v in list(vars(node).items()):
            if f not in ("input_type", "output_type", "metadata"):
                setattr(node, f, _np(v))
        if getattr(node, "metadata", None) is None:
            node.metadata = {}  # nir 1.0.4: some node types have no metadata field (snnc.ir.nirfile)
    return graph


def read_any(path: str | os.PathLike) -> nir.NIRGraph:
    """Read any NIR file without snnc's validation (nested graphs, Conv1d, Delay...); NIRFileError on damage.
    Each spiking node's reset is explicit in ``snnc.reset`` (``snnc.ir.nirfile.read_foreign``)."""
    from snnc.ir.nirfile import read_foreign

    return read_foreign(path)


def flatten_subgraphs(graph: nir.NIRGraph, prefix: str = "") -> nir.NIRGraph:
    """Inline nested NIRGraph nodes (snnTorch's RLeaky/RSynaptic): node ``g`` -> ``g.<inner>``."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub = flatten_subgraphs(node)
            ins = [n for n, v in sub.nodes.items() if isinstance(v, nir.Input)]
            outs = [n for n, v in sub.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise GraphError(f"node {name!r}: nested NIRGraph needs one Input and one Output to be inlined")
            for n, v in sub.nodes.items():
                if n not in (ins[0], outs[0]):
                    nodes[f"{name}.{n}"] = v
            entry[name] = [f"{name}.{d}" for s, d in sub.edges if s == ins[0]]
            exit_[name] = [f"{name}.{s}" for s, d in sub.edges if d == outs[0]]
            for s, d in sub.edges:
                if s != ins[0] and d != outs[0]:
                    edges.append((f"{name}.{s}", f"{name}.{d}"))
        else:
            nodes[name] = node
    for s, d in graph.edges:
        for a in exit_.get(s, [s]):
            for b in entry.get(d, [d]):
                edges.append((a, b))
    return make_graph(nodes, edges, dict(getattr(graph, "metadata", None) or {}))


LOOP_MODES = ("exact", "per_connection")


def check_loop_timing(graph: nir.NIRGraph, mode: str = "exact") -> list[list[str]]:
    """The recurrent loops of a lowered graph (neuron layers in order, ``snnc.ir.plan.Plan.loops``); with
    ``mode`` "exact" a loop through more than one neuron layer raises ``RecurrentTimingError`` naming it: snnc
    delays each of its k connections by one step (k steps around the loop), the framework that wrote the file
    takes one step around it."""
    from snnc.ir.plan import build_plan

    if mode not in LOOP_MODES:
        raise GraphError(f"loops must be one of {LOOP_MODES}, got {mode!r}")
    loops = build_plan(graph).loops
    long = [lp for lp in loops if len(lp) > 1]
    if long and mode == "exact":
        lp = long[0]
        raise RecurrentTimingError(
            f"recurrent loop {' -> '.join(lp + [lp[0]])} goes through {len(lp)} neuron layers: snnc (like Lava) "
            f"delays each connection by one step, so the loop takes {len(lp)} steps where the framework that wrote "
            "the graph takes 1; only loops through one layer (lif -> w_rec -> lif) keep its timing exactly "
            "(ImportOptions(loops='per_connection') runs it with one step per connection)")
    return loops


# ---------------------------------------------------------------------------------------------- shapes
def _shape_of(node: Any) -> tuple | None:
    it = getattr(node, "input_type", None) or {}
    v = it.get("input") if isinstance(it, dict) else None
    if v is None:
        return None
    a = np.asarray(v).ravel()
    return tuple(int(x) for x in a) if a.size else None


def _conv1d_out(node: nir.Conv1d, name: str, in_shape: tuple) -> tuple:
    w = np.asarray(node.weight)
    if len(in_shape) != 2:
        raise GraphError(f"node {name!r}: Conv1d needs a (C, L) input, gets shape {in_shape}")
    k, s, p, d = w.shape[2], _int1(node.stride), _pad1(node, name), _int1(node.dilation)
    return (w.shape[0], (in_shape[1] + 2 * p - d * (k - 1) - 1) // s + 1)


def _int1(v: Any) -> int:
    return int(np.atleast_1d(np.asarray(v)).ravel()[0])


def _pad1(node: nir.Conv1d, name: str) -> int:
    p = node.padding
    if isinstance(p, (bytes, np.bytes_)):
        p = p.decode()
    if isinstance(p, np.ndarray) and p.dtype.kind in "SUO":
        p = str(p.ravel()[0]) if p.dtype.kind != "S" else p.ravel()[0].decode()
    if isinstance(p, str):
        if p == "valid":
            return 0
        k, d = np.asarray(node.weight).shape[2], _int1(node.dilation)
        if p != "same" or (d * (k - 1)) % 2:
            raise GraphError(f"node {name!r}: field 'padding' {p!r} is not supported for Conv1d")
        return d * (k - 1) // 2
    return _int1(p)


def _logical_shapes(graph: nir.NIRGraph) -> dict[str, tuple]:
    """Shapes of a raw NIR graph (Conv1d and Delay included; recurrent edges ignored), batch dim excluded."""
    from snnc.ir.graph import node_output_shape

    shapes: dict[str, tuple] = {}
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for s, d in graph.edges:
        preds[d].append(s)
    from snnc.ir.graph import topo_order

    for name in topo_order(graph):  # feed-forward order: recurrent edges left out (their source comes later)
        node = graph.nodes[name]
        ins = [shapes[p] for p in preds[name] if p in shapes]
        in_shape = ins[0] if ins else None
        if isinstance(node, nir.Conv1d):
            shapes[name] = _conv1d_out(node, name, in_shape)
        elif isinstance(node, (nir.Threshold, nir.Delay)) or (CUBA_LI and isinstance(node, CUBA_LI)):
            shapes[name] = tuple(in_shape)
        elif isinstance(node, nir.Flatten) and len(in_shape or ()) == 1:
            shapes[name] = tuple(in_shape)
        else:
            shapes[name] = node_output_shape(name, node, in_shape)
    return shapes


# ---------------------------------------------------------------------------------------------- lowering
def _arr(node: Any, field: str, default: float | None = None) -> np.ndarray:
    v = getattr(node, field, default)
    if v is None:
        v = default
    return np.asarray(v, dtype=np.float64)


def _infer_dt(graph: nir.NIRGraph) -> float:
    ratios = []
    for node in graph.nodes.values():
        if isinstance(node, LEAKY):
            tau = _arr(node, "tau_mem" if hasattr(node, "tau_mem") else "tau")
            r = _arr(node, "r", 1.0)
            if np.all(r == 1):
                return 1.0
            ratios.append(np.asarray(tau / r).ravel())
    if not ratios:
        return 1.0
    allr = np.concatenate(ratios)
    if np.all(np.isfinite(allr)) and allr.size and np.allclose(allr, allr[0], rtol=1e-5) and allr[0] > 0:
        return float(allr[0])
    return 1.0


def _decay(tau: np.ndarray, dt: float, how: str, name: str, field: str) -> np.ndarray:
    """Per-step decay factor of a time constant (1 = no leak)."""
    if np.any(~(tau > 0)):
        raise GraphError(f"node {name!r}: field {field!r} must be > 0 (got min {float(np.min(tau))})")
    d = np.exp(-dt / tau) if how == "exp" else 1.0 - dt / tau
    if np.any(d < -1e-12):
        raise UnsupportedLayerError(f"node {name!r}: field {field!r} = {float(np.min(tau)):g} is shorter than the "
                                    f"step dt = {dt:g}: the forward-Euler decay 1 - dt/tau is negative (pass the "
                                    "file's step as ImportOptions(dt=seconds), or discretisation 'exp'; Norse "
                                    "1.1.0 writes tau = dt/tau_mem_inv, so its graphs need dt = dt_norse**2)")
    return np.clip(d, 0.0, 1.0)


def _scalar_or(a: np.ndarray) -> np.ndarray:
    """A 0-d array when all values agree (nir needs arrays), else the array."""
    a = np.asarray(a, dtype=np.float64)
    if a.size and np.all(a == a.ravel()[0]):
        return np.array(a.ravel()[0])
    return a


def _steps(beta: np.ndarray | float) -> np.ndarray:
    """Canonical (dt = 1, Euler) time constant T with 1 - 1/T = beta."""
    b = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore"):
        t = 1.0 / (1.0 - b)
    return _scalar_or(t) if np.all(np.isfinite(t)) else _scalar_or(np.where(np.isfinite(t), t, np.inf))


@dataclass
class _Lowered:
    """What one NIR node becomes: a node (or None: identity), a gain to put before it, extra relay layers."""

    node: Any
    gain: Any = 1.0
    relays: int = 0
    note: str = ""


def spiking_reset(name: str, node: Any, override: str | None = None) -> str:
    """The reset a spiking node is lowered with (``ImportOptions.reset``); v = v_reset needs v_reset = 0."""
    if override not in (None, "subtract", "zero"):
        raise GraphError(f"reset must be 'subtract', 'zero' or None (as the graph says), got {override!r}")
    reset = override or cv.reset_mode(node)
    vr = getattr(node, "v_reset", None)
    if reset == "zero" and vr is not None and np.any(np.asarray(vr) != 0):
        raise UnsupportedLayerError(f"node {name!r}: field 'v_reset' must be 0 with reset to a potential (snnc and "
                                    "Lava reset to 0 or by subtraction)")
    return reset


def reset_timing_of(name: str, option: str | dict | None) -> str:
    """ImportOptions.reset_timing for one spiking node: one timing for all, or the node's entry of a dict."""
    t = option.get(name, "immediate") if isinstance(option, dict) else (option or "immediate")
    if t not in cv.RESET_TIMINGS:
        raise GraphError(f"reset_timing must be one of {cv.RESET_TIMINGS} (or {{node name: timing}}), got {t!r}")
    return t


def lower_node(name: str, node: Any, dt: float, how: str, readout: bool, reset: str | None = None,
               reset_timing: str | dict | None = None) -> _Lowered:
    """Lower one NIR node to snnc's canonical form; raises a named error when Loihi/snnc cannot express it.
    ``reset``, ``reset_timing``: ImportOptions' (None: as the node says; immediate)."""
    md = dict(getattr(node, "metadata", None) or {})
    tname = type(node).__name__
    if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
        md[cv.RESET] = spiking_reset(name, node, reset)
        timing = reset_timing_of(name, reset_timing)
        if timing != "immediate":
            md[cv.RESET_TIMING] = timing
    if isinstance(node, (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Conv2d, nir.SumPool2d,
                         nir.AvgPool2d, nir.Flatten, nir.Conv1d)):
        return _Lowered(node, note="kept")
    if isinstance(node, nir.I):
        if not readout:
            raise UnsupportedLayerError(f"node {name!r}: I emits its potential, not spikes; snnc connections "
                                        "carry spikes, so an I node must be the readout (feed the Output)")
        return _Lowered(node, note="readout")
    if isinstance(node, nir.IF):
        r = _arr(node, "r", 1.0)
        th = _arr(node, "v_threshold")
        out = nir.IF(r=np.ones(np.broadcast_shapes(r.shape, th.shape)), v_threshold=th + np.zeros_like(r), metadata=md)
        return _Lowered(out, gain=_scalar_or(r * dt) if not np.all(r * dt == 1) else 1.0, note="IF, gain r*dt")
    if isinstance(node, nir.Threshold):
        th = _arr(node, "threshold")
        md.update({cv.NIR_TYPE: "Threshold", cv.RESET: "zero"})
        return _Lowered(nir.LIF(tau=np.ones_like(th), r=np.ones_like(th), v_leak=np.zeros_like(th), v_threshold=th, metadata=md),
                        note="Threshold -> memoryless LIF (T = 1)")
    if isinstance(node, nir.Delay):
        d = _arr(node, "delay") / dt
        if d.size == 0 or np.any(d != d.ravel()[0]):
            raise UnsupportedLayerError(f"node {name!r}: field 'delay' differs between neurons; snnc delays whole "
                                        "layers (per-synapse delays need Lava's DelayDense)")
        k = float(d.ravel()[0])
        if k < 0 or abs(k - round(k)) > 1e-6:
            raise UnsupportedLayerError(f"node {name!r}: field 'delay' = {k:g} steps (dt = {dt:g}) is not a "
                                        "whole number of steps")
        return _Lowered(None, relays=int(round(k)), note=f"{int(round(k))} relay layer(s)")
    if isinstance(node, LEAKY):
        cuba = hasattr(node, "tau_syn")
        tau = _arr(node, "tau_mem" if cuba else "tau")
        r = _arr(node, "r", 1.0)
        vl = _arr(node, "v_leak", 0.0)
        if np.any(vl != 0):
            raise UnsupportedLayerError(f"node {name!r}: field 'v_leak' must be 0; Lava's LIF decays toward 0 "
                                        "(a leak potential would be a bias, which NIR cannot attach here)")
        beta = _decay(tau, dt, how, name, "tau_mem" if cuba else "tau")
        gain = r * dt / tau
        spiking = isinstance(node, (nir.LIF, nir.CubaLIF))
        if not spiking and not readout:
            raise UnsupportedLayerError(f"node {name!r}: {tname} emits its potential, not spikes; snnc connections "
                                        "carry spikes, so it must be the readout (feed the Output)")
        th = _arr(node, "v_threshold") if spiking else None
        md[cv.NIR_TYPE] = tname
        fields = [tau, r, vl] + ([th] if spiking else []) + ([_arr(node, "tau_syn"), _arr(node, "w_in", 1.0)]
                                                             if cuba else [])
        shp = np.broadcast_shapes(*(np.shape(f) for f in fields))  # nir wants equal shapes
        full = lambda a: np.broadcast_to(np.asarray(a, np.float64), shp).copy()  # noqa: E731
        if cuba:
            ts = _arr(node, "tau_syn")
            alpha = _decay(ts, dt, how, name, "tau_syn")
            gain = gain * _arr(node, "w_in", 1.0) * dt / ts
            s, t = full(_steps(alpha)), full(_steps(beta))
            if not spiking:
                md[cv.READOUT] = True
                th = np.inf
            out = nir.CubaLIF(tau_syn=s, tau_mem=t, r=t, v_leak=full(0.0), v_threshold=full(th), w_in=s, metadata=md)
        elif spiking:
            t = full(_steps(beta))
            out = nir.LIF(tau=t, r=t, v_leak=full(0.0), v_threshold=full(th), metadata=md)
        else:
            t = full(_steps(beta))
            out = nir.LI(tau=t, r=t, v_leak=full(0.0), metadata=md)
        g = _scalar_or(gain)
        return _Lowered(out, gain=1.0 if g.ndim == 0 and abs(float(g) - 1) < 1e-12 else g,
                        note=f"{tname}: decay {'exp' if how == 'exp' else 'Euler'} dt={dt:g}")
    raise UnsupportedLayerError(f"node {name!r}: NIR node type {tname} has no integer Loihi meaning in snnc "
                                "(supported: Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, "
                                "AvgPool2d, Flatten, IF, LIF, LI, CubaLIF, CubaLI, I, Threshold, Delay)")


def _conv1d_dense(node: nir.Conv1d, name: str, in_shape: tuple) -> nir.Affine:
    """The exact dense matrix of a Conv1d on a flattened (C, L) input (NIR (C, L) row-major order)."""
    import torch

    c, n = in_shape
    eye = torch.eye(c * n, dtype=torch.float64).reshape(c * n, c, n)
    y = torch.nn.functional.conv1d(eye, torch.as_tensor(np.asarray(node.weight, np.float64)), None,
                                   stride=_int1(node.stride), padding=_pad1(node, name),
                                   dilation=_int1(node.dilation), groups=_int1(node.groups))
    w = y.reshape(c * n, -1).T.numpy()
    b = np.repeat(np.asarray(node.bias, np.float64) * np.ones(y.shape[1]), y.shape[2])
    return nir.Affine(weight=w, bias=b)


def _normalise_input(graph: nir.NIRGraph) -> None:
    """Drop a leading batch dimension of 1 that exporters without ``ignore_dims`` write into the Input."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            shape = _shape_of(node) or ()
            succ = [graph.nodes[d] for s, d in graph.edges if s == name]
            if (len(shape) == 4 and shape[0] == 1) or (len(shape) == 2 and shape[0] == 1 and succ and all(
                    isinstance(x, (nir.Affine, nir.Linear)) and np.asarray(x.weight).shape[1] == shape[1]
                    for x in succ)):
                node.input_type = {"input": np.array(shape[1:])}
                warnings.warn(f"node {name!r}: field 'input_type' {list(shape)} includes a batch dimension of 1 "
                              "(Norse 1.1.0's and Rockpool 3.1.0's to_nir write one); read as "
                              f"{list(shape[1:])}", NIRImportWarning, stacklevel=3)
            node.output_type = {"output": np.array(node.input_type["input"])}


def _per_neuron(graph: nir.NIRGraph, shapes: dict[str, tuple]) -> None:
    """Broadcast every neuron parameter to its layer's shape, in place. Parameters stored with another shape
    (Norse 1.1.0 writes 0-d tau/r/v_leak/v_threshold, beside per-neuron arrays) get a NIRImportWarning naming
    node and fields; a shape that does not broadcast is a GraphError."""
    for name, node in graph.nodes.items():
        if not isinstance(node, SPIKING + LEAKY + (nir.I,)) or name not in shapes:
            continue
        odd = []
        for f in NEURON_FIELDS:
            v = getattr(node, f, None)
            if v is None or np.shape(v) == tuple(shapes[name]):
                continue
            try:
                b = np.broadcast_to(np.asarray(v, np.float64), shapes[name]).copy()
            except ValueError:
                raise GraphError(f"node {name!r}: field {f!r} has shape {list(np.shape(v))}, which does not "
                                 f"broadcast to the layer's shape {list(shapes[name])}") from None
            if isinstance(v, (np.ndarray, np.generic)):  # stored by an exporter, not a Python default (w_in = 1.0)
                odd.append(f)
            setattr(node, f, b)
        if odd:
            warnings.warn(f"node {name!r}: fields {', '.join(odd)} do not have the layer's shape "
                          f"{list(shapes[name])} (Norse 1.1.0's to_nir writes 0-d parameters); broadcast to every "
                          "neuron", NIRImportWarning, stacklevel=3)


def prepare(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Torch tensors -> numpy, nested graphs inlined, batch dim dropped (recurrent loops are checked after
    lowering, ``check_loop_timing``)."""
    import copy

    g = flatten_subgraphs(_to_numpy(copy.deepcopy(graph)))
    _normalise_input(g)
    return g


def lower(graph: nir.NIRGraph, options: ImportOptions | None = None) -> nir.NIRGraph:
    """Any supported NIR graph -> snnc float graph in canonical discrete time (module docstring)."""
    from snnc.ir.graph import validate

    o = options or ImportOptions()
    if o.discretisation not in DISCRETISATIONS:
        raise GraphError(f"discretisation must be one of {DISCRETISATIONS}, got {o.discretisation!r}")
    g = prepare(graph)
    dt = float(o.dt) if o.dt is not None else _infer_dt(g)
    if not dt > 0:
        raise GraphError(f"dt must be > 0, got {dt}")
    shapes = _logical_shapes(g)
    _per_neuron(g, shapes)
    outs = [n for n, v in g.nodes.items() if isinstance(v, nir.Output)]
    if len(outs) != 1:
        raise GraphError(f"graph must have exactly one Output node, found {len(outs)}: {outs}")
    out = outs[0]
    out_preds = [s for s, d in g.edges if d == out]
    flat = any(isinstance(v, nir.Conv1d) for v in g.nodes.values())
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    rename: dict[str, str] = {}  # original name -> name of the node its *output* now comes from
    entry: dict[str, str] = {}  # original name -> name its *input* edges go to

    def fresh(base: str) -> str:
        while base in g.nodes or base in nodes:
            base += "_"
        return base

    for name, node in g.nodes.items():
        readout = name in out_preds
        low = lower_node(name, node, dt, o.discretisation, readout, o.reset, o.reset_timing)
        in_shape = shapes[[s for s, d in g.edges if d == name][0]] if not isinstance(node, nir.Input) else None
        n = low.node
        if isinstance(node, nir.Delay):
            src_nodes = [g.nodes[s] for s, d in g.edges if d == name]
            if low.relays and not all(isinstance(x, SPIKING) for x in src_nodes):
                raise UnsupportedLayerError(f"node {name!r}: a Delay must follow a spiking layer (snnc delays "
                                            "spike trains with relay neurons)")
            chain = []
            rshape = (int(np.prod(shapes[name])),) if flat and len(shapes[name]) == 2 else tuple(shapes[name])
            for i in range(low.relays):
                rn = fresh(f"{name}.relay{i}")
                nodes[rn] = nir.IF(r=np.ones(rshape), v_threshold=np.full(rshape, 0.5),
                                   metadata={cv.RESET: "zero", cv.NIR_TYPE: "Delay"})
                chain.append(rn)
            if chain:
                edges.extend(zip(chain, chain[1:]))
                entry[name], rename[name] = chain[0], chain[-1]
            else:
                entry[name] = rename[name] = name
                nodes[name] = nir.Scale(scale=np.array(1.0))
            continue
        if isinstance(node, nir.Conv1d):
            n = _conv1d_dense(node, name, in_shape)
        elif flat and isinstance(node, nir.Flatten) and len(in_shape) <= 2:
            n = nir.Scale(scale=np.array(1.0))  # the tensor is already carried flat
        elif flat and isinstance(node, nir.Input) and len(shapes[name]) == 2:
            nodes[name] = node
            fl = fresh(f"{name}.flatten")
            nodes[fl] = nir.Flatten(input_type={"input": np.array(shapes[name])}, start_dim=0, end_dim=-1)
            edges.append((name, fl))
            rename[name], entry[name] = fl, name
            continue
        if flat and cv.is_neuron(n) and len(shapes[name]) == 2:
            for f in ("v_threshold", "r", "tau", "tau_mem", "tau_syn", "w_in"):
                a = getattr(n, f, None)
                if a is not None and np.asarray(a).size > 1:
                    setattr(n, f, np.asarray(a).reshape(-1))
        nodes[name] = n
        entry[name] = rename[name] = name
        if not (isinstance(low.gain, float) and low.gain == 1.0):
            sc = fresh(f"{name}.gain")
            gain = np.asarray(low.gain, np.float64)
            if gain.ndim and flat and len(shapes[name]) == 2:
                gain = gain.reshape(-1)
            nodes[sc] = nir.Scale(scale=gain)
            edges.append((sc, name))
            entry[name] = sc
    for s, d in g.edges:
        edges.append((rename[s], entry[d]))
    # the Output reads a potential: give spiking or linear outputs an integrating readout
    src = out_preds[0] if len(out_preds) == 1 else None
    if src is None:
        raise GraphError(f"Output node {out!r} must have exactly one input, has {out_preds}")
    last = nodes[rename[src]]
    if not (isinstance(last, nir.I) or isinstance(last, (nir.LI,)) or
            (cv.is_neuron(last) and bool(cv.meta(last, cv.READOUT, False)))):
        ro = fresh(f"{src}.readout")
        shp = shapes[src]
        n_ro = int(np.prod(shp)) if flat and len(shp) == 2 else None
        nodes[ro] = nir.I(r=np.ones(n_ro) if n_ro else np.ones(tuple(shp)),
                          metadata={cv.READOUT: True, cv.SOURCE: f"nir_import: integrates the output of {src!r}"})
        edges = [(a, b) for a, b in edges if not (a == rename[src] and b == entry[out])]
        edges += [(rename[src], ro), (ro, out)]
    if flat and len(shapes[src]) == 2:
        nodes[out] = nir.Output(output_type={"output": np.array([int(np.prod(shapes[src]))])})
    md = dict(getattr(g, "metadata", None) or {})
    md.update({cv.NIR_DT: dt, cv.NIR_DISCRETISATION: o.discretisation})
    md.setdefault(cv.KIND, cv.FLOAT)
    res = make_graph(nodes, edges, md)
    validate(res)
    if isinstance(o.reset_timing, dict):
        unknown = sorted(set(o.reset_timing) - set(g.nodes))
        if unknown:
            raise GraphError(f"ImportOptions.reset_timing names node(s) {unknown} that the graph does not have")
    from snnc.passes.constant_drive import add_constant_drives

    res = add_constant_drives(res)
    check_loop_timing(res, o.loops)
    return res


def check_cuba_bias(graph: nir.NIRGraph) -> None:
    """A fused graph: a bias into a CubaLIF is refused (NIR filters it through the current; Lava adds it to v)."""
    from snnc.ir.plan import build_plan

    plan = build_plan(graph)
    for c in plan.connections:
        if isinstance(graph.nodes[c.dst], nir.CubaLIF):
            for o in c.ops:
                b = getattr(graph.nodes[o], "bias", None)
                if b is not None and np.any(np.asarray(b) != 0):
                    raise UnsupportedLayerError(f"node {o!r}: field 'bias' into CubaLIF {c.dst!r} is nonzero; NIR "
                                                "filters a bias through the synaptic current, Lava adds it to v "
                                                "(import the graph with snnc.frontend.nir_import: it lowers the "
                                                "bias to a constant-drive input)")


def import_graph(source: str | os.PathLike | nir.NIRGraph, options: ImportOptions | None = None) -> nir.NIRGraph:
    """An NIR file (path) or graph from any tool -> snnc float graph in canonical discrete time (``lower``)."""
    raw = source if isinstance(source, nir.NIRGraph) else read_any(source)
    return lower(raw, options)


def deployability(graph: nir.NIRGraph, options: ImportOptions | None = None) -> list[dict]:
    """Per node: name, type, deployable (bool), reason (what it lowers to, or the named error). Nodes on a
    recurrent loop say so: through one neuron layer the loop is exact (one step, as in the framework); through
    more it is a ``RecurrentTimingError`` unless ``options.loops`` is "per_connection"."""
    o = options or ImportOptions()
    rows = []
    try:
        g = prepare(graph)
        graph_err = None
    except SnncError as e:
        g, graph_err = flatten_subgraphs(_to_numpy(__import__("copy").deepcopy(graph))), f"{type(e).__name__}: {e}"
    dt = float(o.dt) if o.dt is not None else _infer_dt(g)
    outs = {s for s, d in g.edges if isinstance(g.nodes.get(d), nir.Output)}
    loop_note: dict[str, str] = {}
    loop_err: dict[str, str] = {}
    try:
        cycles = list(nx.simple_cycles(nx.DiGraph(list(map(tuple, g.edges)))))
    except Exception:  # noqa: BLE001 - a damaged graph: the per-node rows say what is wrong
        cycles = []
    for cyc in cycles:
        layers = [n for n in cyc if isinstance(g.nodes.get(n), SPIKING + LEAKY + (nir.IF, nir.I))]
        if layers:  # start the loop at a neuron layer
            k = cyc.index(layers[0])
            cyc = cyc[k:] + cyc[:k]
        text = " -> ".join(cyc + [cyc[0]])
        for n in cyc:
            if not layers:
                loop_err[n] = f"GraphError: cycle {text} passes through no neuron layer (an algebraic loop)"
            elif len(layers) > 1 and o.loops == "exact":
                loop_err[n] = (f"RecurrentTimingError: loop {text} goes through {len(layers)} neuron layers: snnc "
                               f"takes {len(layers)} steps around it, the framework 1")
            else:
                loop_note[n] = (f"recurrent loop {text}: one step per connection"
                                + (" (the framework's timing)" if len(layers) == 1 else ""))
    for name, node in g.nodes.items():
        row = {"name": name, "type": type(node).__name__}
        try:
            low = lower_node(name, node, dt, o.discretisation, name in outs, o.reset, o.reset_timing)
            if name in loop_err:
                raise _Refused(loop_err[name])
            if graph_err and not isinstance(node, (nir.Input, nir.Output)):
                raise _Refused(graph_err)
            if isinstance(node, nir.Threshold):
                row["deployable"] = False
                row["reason"] = ("float simulator only: a memoryless neuron needs dv = 4096, Lava's dv is 12-bit "
                                 "(max 4095)")
            else:
                row["deployable"] = True
                row["reason"] = low.note + (f"; {loop_note[name]}" if name in loop_note else "")
        except _Refused as e:
            row["deployable"] = False
            row["reason"] = str(e)
        except SnncError as e:
            row["deployable"] = False
            row["reason"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    return rows


class _Refused(Exception):
    """A deployability row's reason that is already written out."""
