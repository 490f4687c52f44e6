"""Emit Lava processes from an integer snnc graph and connect their ports.

Mapping (see ``snnc.ir.conventions`` for the units):
  Input                    -> lava.proc.io.source.RingBuffer, int32 values, Lava layout: one slot (a static frame,
                              set per sample) or a whole run's sequence (``source_data``); graded messages, or
                              binary spikes (num_message_bits 0) when the graph's input is 1-bit unsigned events
  Affine / Linear          -> lava Dense (weights = mantissas, weight_exp, num_weight_bits, num_message_bits)
  Flatten -> Affine/Linear -> Dense on the flattened source port, columns permuted from NIR (C,H,W) order
                              to Lava's (W,H,C) order
  Conv2d                   -> lava Conv (weights transposed/flipped to Lava's true convolution)
  SumPool2d                -> lava Conv with a ones kernel per channel (groups = C)
  no synapse (identity)    -> Dense with an identity matrix
  IF, snnc.reset "zero"    -> stock lava LIF (one vth per population)
  IF, snnc.reset "subtract"-> SubtractLIF (per-neuron vth)
  snnc.reset_timing delayed/guarded -> SubtractLIF with that timing (and reset_zero for reset "zero")
  LIF/CubaLIF/LI           -> the same processes: their decays are snnc.du/dv
  I (readout)              -> SubtractLIF(spiking=0)
Fan-in: every connection into a neuron layer connects to its a_in port; Lava sums them. A recurrent connection is
one more Dense/Conv into the same a_in port: Lava's one-step synapse buffer is its delay.
Recording: a lava.proc.io.extractor.Extractor per neuron layer receives its s_out every step (one message per
step; Var.get() moves arrays element by element and is far too slow for rasters).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
from snnc.backends.lava.layout import (
    conv_weight_to_lava,
    flat_permutation,
    lava_shape,
    to_lava,
    ungroup_conv_weight,
)
from snnc.ir import conventions as cv
from snnc.ir.errors import (
    BackendError,
    GraphError,
    QuantizationError,
    UnsupportedLayerError,
)
from snnc.ir.graph import Graph, conv2d_params, pool_params
from snnc.ir.plan import Connection, Plan, build_plan

LAVA_INT8_MAX = 127  # Lava's Conv stores groups, kernel size, stride, padding, dilation as int8


def import_lava() -> Any:
    """Import lava (lazily); a missing or broken install raises ``BackendError``.

    Lava calls ``multiprocessing.set_start_method('fork')`` on import, which raises when anything in the process
    has already fixed the start method (even to 'fork'); that case is let through when the method is 'fork'."""
    import multiprocessing as mp

    orig = mp.set_start_method

    def _set_start_method(method: str, force: bool = False) -> None:
        if not force and mp.get_start_method(allow_none=True) == method:
            return
        orig(method, force=force)

    mp.set_start_method = _set_start_method
    try:
        import lava.magma.core.run_configs  # noqa: F401
        import lava.proc.conv.process  # noqa: F401
        import lava.proc.dense.process  # noqa: F401
        import lava.proc.io.extractor  # noqa: F401
        import lava.proc.io.source  # noqa: F401
        import lava.proc.lif.process  # noqa: F401
    except Exception as e:  # ImportError, or lava failing on import (wrong numpy, Python version)
        raise BackendError(f"the Lava backend needs lava-nc 0.10.0 (pip install lava-nc==0.10.0 on Python 3.10) "
                           f"and the 'fork' multiprocessing start method; importing it failed: "
                           f"{type(e).__name__}: {e}") from None
    finally:
        mp.set_start_method = orig
    import lava

    return lava


@dataclass
class NeuronLayer:
    """One neuron layer as a Lava process: shapes, and the state it starts each sample with (Lava layout)."""

    name: str
    process: Any
    nir_shape: tuple
    lava_shape: tuple
    v0: np.ndarray  # int, 24-bit initial v = round(snnc.v_init * 64), Lava layout
    spiking: bool
    reset: str  # "subtract" or "zero"


@dataclass
class Synapse:
    """One connection as a Lava Dense or Conv process; ``buffer_var`` is its one-step buffer Var name."""

    key: str  # synapse node name, or "src->dst" for an identity connection
    process: Any
    kind: str  # "dense" or "conv"
    conn: Connection

    @property
    def buffer_var(self) -> Any:
        return self.process.a_buff if self.kind == "dense" else self.process.a_buf


@dataclass
class LavaNetwork:
    """The emitted Lava network of an integer graph.

    source: RingBuffer feeding graded int32 input (Lava layout, one time slot, set per sample)
    neurons: neuron layer name -> NeuronLayer; synapses: connection key -> Synapse
    recorders: neuron layer name -> Extractor receiving its s_out every step (buffer: ``sample_steps`` steps)
    sample_steps: steps per sample; SubtractLIF layers restart every ``sample_steps`` steps (0: never)
    """

    graph: Graph
    plan: Plan
    source: Any
    neurons: dict[str, NeuronLayer]
    synapses: dict[str, Synapse]
    recorders: dict[str, Any]
    sample_steps: int
    input_lava_shape: tuple

    def processes(self) -> dict[str, Any]:
        """Every Lava process by name (neurons, synapses, source, sinks)."""
        out = {n: L.process for n, L in self.neurons.items()}
        out.update({k: s.process for k, s in self.synapses.items()})
        out["<input>"] = self.source
        out.update({f"<recorder {n}>": r for n, r in self.recorders.items()})
        return out

    def self_resetting(self, layer: str) -> bool:
        """True when ``layer`` restarts itself at sample boundaries (SubtractLIF with sample_steps > 0)."""
        from snnc.backends.lava.processes import SubtractLIF

        return self.sample_steps > 0 and isinstance(self.neurons[layer].process, SubtractLIF)

    def run_cfg(self) -> Any:
        """``Loihi2SimCfg(select_tag="fixed_pt")``; snnc's neuron model and the (untagged) Extractor model are
        mapped per process instance."""
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import PyLoihiExtractorModel
        from snnc.backends.lava.processes import PySubtractLIFModelFixed, SubtractLIF

        exc: dict[Any, Any] = {L.process: PySubtractLIFModelFixed for L in self.neurons.values()
                               if isinstance(L.process, SubtractLIF)}
        exc.update({r: PyLoihiExtractorModel for r in self.recorders.values()})
        return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=exc)


def bias_to_lava(bias: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer bias B (a_in units) -> (bias_mant, bias_exp) with bias_mant << bias_exp == B << 6.

    bias_mant is 13-bit signed, bias_exp 3-bit: exp 6 with mant B when |B| <= 4095; exp 7 with mant B/2 when
    B is even and |B/2| <= 4095; anything else is not representable."""
    b = np.asarray(bias, dtype=np.float64)
    if not np.all(b == np.round(b)):
        raise QuantizationError(f"node {name!r}: field 'bias' must hold integers in an integer graph")
    b = b.astype(np.int64)
    small = np.abs(b) <= cv.BIAS_MANT_MAX
    halvable = (b % 2 == 0) & (np.abs(b // 2) <= cv.BIAS_MANT_MAX)
    if not np.all(small | halvable):
        bad = b[~(small | halvable)].ravel()[0]
        raise QuantizationError(f"node {name!r}: field 'bias' value {int(bad)} does not fit Lava's 13-bit "
                                f"bias_mant with bias_exp <= 7 (|bias| <= {cv.BIAS_MANT_MAX}, or even and "
                                f"<= {2 * cv.BIAS_MANT_MAX})")
    mant = np.where(small, b, b // 2).astype(np.int32)
    exp = np.where(small, 6, 7).astype(np.int32)
    return mant, exp


def _int_meta(node: Any, key: str, default: int, lo: int, hi: int, name: str) -> int:
    v = cv.meta(node, key, default)
    if not isinstance(v, (int, np.integer, float)) or float(v) != int(v) or not lo <= int(v) <= hi:
        raise QuantizationError(f"node {name!r}: field {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


def _split_ops(graph: Graph, conn: Connection) -> tuple[str | None, str | None]:
    """(flatten node, synapse node) of a connection: [Flatten] -> at most one synapse node."""
    ops = list(conn.ops)
    flat = None
    if ops and isinstance(graph.nodes[ops[0]], nir.Flatten):
        flat = ops.pop(0)
    if len(ops) > 1 or any(isinstance(graph.nodes[o], nir.Flatten) for o in ops):
        raise UnsupportedLayerError(f"connection {conn.src!r} -> {conn.dst!r}: chain {conn.ops} is not one "
                                    "Lava synapse; the Lava backend takes [Flatten ->] one of Affine, Linear, "
                                    "Conv2d, SumPool2d between neuron layers")
    syn = ops[0] if ops else None
    if syn is not None and not isinstance(graph.nodes[syn], (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d)):
        kind = type(graph.nodes[syn]).__name__
        raise UnsupportedLayerError(f"node {syn!r}: {kind} has no Lava synapse (the integer graph must hold "
                                    "Affine, Linear, Conv2d or SumPool2d only)")
    return flat, syn


def _dense_mantissa(node: Any, name: str) -> tuple[np.ndarray, int, int]:
    """Lava Dense weights (int mantissas), weight_exp and num_weight_bits of an integer Affine/Linear.

    Checks that the mantissas survive Lava's clip to 8 bits and truncation to num_weight_bits unchanged."""
    from lava.utils.weightutils import (
        clip_weights,
        determine_sign_mode,
        truncate_weights,
    )

    w = np.asarray(node.weight, dtype=np.float64)
    wexp = _int_meta(node, cv.WEIGHT_EXP, 0, -8, 7, name)
    bits = _int_meta(node, cv.WEIGHT_BITS, 8, 1, 8, name)
    mant = w / 2.0 ** wexp
    if not np.all(mant == np.round(mant)):
        raise QuantizationError(f"node {name!r}: field 'weight' is not an integer mantissa times "
                                f"2**snnc.weight_exp ({wexp})")
    mant = mant.astype(np.int32)
    mode = determine_sign_mode(mant)
    lava_w = truncate_weights(clip_weights(mant, mode, num_bits=8), mode, bits)
    if not np.array_equal(lava_w, mant):
        i = np.argwhere(lava_w != mant)[0]
        raise QuantizationError(
            f"node {name!r}: field 'weight' mantissa {int(mant[tuple(i)])} at {tuple(int(k) for k in i)} becomes "
            f"{int(lava_w[tuple(i)])} in Lava's Dense ({mode.name.lower()} sign mode, {bits} weight bits); "
            f"mantissas must be multiples of 2**(9 - weight_bits) within 8 bits")
    return mant, wexp, bits


def _conv_spec(graph: Graph, name: str, in_shape: tuple) -> tuple[np.ndarray, dict]:
    """NIR-order integer weight (out, in/g, kh, kw) and params of a Conv2d or SumPool2d node."""
    node = graph.nodes[name]
    if isinstance(node, nir.Conv2d):
        p = conv2d_params(node, name)
        w = np.asarray(node.weight, dtype=np.float64)
        if not np.all(w == np.round(w)):
            raise QuantizationError(f"node {name!r}: field 'weight' must hold integers in an integer graph "
                                    "(Lava's Conv has no weight exponent)")
        return w.astype(np.int64), p
    pp = pool_params(node, name)
    c = int(in_shape[0])
    w = np.ones((c, 1) + tuple(pp["kernel_size"]), dtype=np.int64)
    return w, dict(stride=pp["stride"], padding=pp["padding"], dilation=(1, 1), groups=c)


def input_is_binary(graph: Graph) -> bool:
    """The integer graph's input is 1-bit unsigned (binary events, sent as spikes)."""
    return int(cv.meta(graph, cv.INPUT_BITS, 8)) == 1 and not bool(cv.meta(graph, cv.INPUT_SIGNED, True))


def emit(graph: Graph, sample_steps: int = 0, record: bool = False,
         source_data: np.ndarray | None = None) -> LavaNetwork:
    """Build (uncompiled) Lava processes for the integer ``graph`` and connect their ports.

    source_data: the RingBuffer's initial data, int32 (*Lava input shape, slots): one slot per step (a sequence run,
    ``runner``); None: one zero slot, set per sample.

    sample_steps > 0: SubtractLIF layers restart every sample_steps steps (see ``processes``); stock LIF layers
    and the buffers feeding them must be reset with set() by the runner. record: an Extractor on every neuron
    layer's s_out, buffering up to sample_steps (at least 1) steps.
    Raises GraphError / QuantizationError / UnsupportedLayerError naming the node, BackendError without lava."""
    import_lava()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from snnc.backends.lava.processes import SubtractLIF

    if cv.graph_kind(graph) != cv.INTEGER:
        raise GraphError("the Lava backend runs integer graphs (graph metadata 'snnc.kind' == 'integer'); "
                         "run the quantize pass first")
    plan = build_plan(graph)
    in_shape = plan.shapes[plan.input]
    in_lshape = lava_shape(in_shape, plan.input)
    in_bits = _int_meta(graph, cv.INPUT_BITS, 8, 1, 24, "<graph>")  # input metadata is graph level
    if source_data is None:
        source_data = np.zeros(in_lshape + (1,), dtype=np.int32)
    elif tuple(source_data.shape[:-1]) != tuple(in_lshape):
        raise GraphError(f"source data of shape {source_data.shape} does not fit the input {in_lshape} (Lava order)")
    source = Source(data=np.asarray(source_data, dtype=np.int32))
    binary_in = input_is_binary(graph)

    # synapses (biases collected per target neuron, NIR order)
    biases = {n: np.zeros(plan.shapes[n]) for n in plan.neurons}
    synapses: dict[str, Synapse] = {}
    for conn in plan.connections:
        flat, syn = _split_ops(graph, conn)
        src_shape = plan.shapes[conn.src]
        dst_shape = plan.shapes[conn.dst]
        graded = conn.src == plan.input and not binary_in
        msg_bits = in_bits if graded else 0
        node = graph.nodes[syn] if syn is not None else None
        key = syn if syn is not None else f"{conn.src}->{conn.dst}"
        if node is None or isinstance(node, (nir.Affine, nir.Linear)):
            if len(dst_shape) != 1:
                raise UnsupportedLayerError(f"connection {key!r}: a dense connection must feed a vector layer, "
                                            f"{conn.dst!r} has shape {dst_shape}")
            if node is None:
                if tuple(src_shape) != tuple(dst_shape) and flat is None:
                    raise GraphError(f"connection {key!r}: identity between shapes {src_shape} and {dst_shape}")
                mant, wexp, bits = np.eye(int(np.prod(dst_shape)), dtype=np.int32), 0, 8
            else:
                mant, wexp, bits = _dense_mantissa(node, syn)
                b = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64) * np.ones(mant.shape[0])
                biases[conn.dst] = biases[conn.dst] + b
            if len(src_shape) == 3:
                if flat is None:
                    raise GraphError(f"node {key!r}: a dense synapse over a (C, H, W) source needs a Flatten")
                mant = np.ascontiguousarray(mant[:, flat_permutation(src_shape)])
            proc = Dense(weights=mant, weight_exp=wexp, num_weight_bits=bits, num_message_bits=msg_bits,
                         name=key)
            synapses[key] = Synapse(key, proc, "dense", conn)
        else:
            if flat is not None or len(src_shape) != 3:
                raise UnsupportedLayerError(f"node {syn!r}: {type(node).__name__} needs a (C, H, W) source "
                                            f"without Flatten, gets {src_shape}")
            w, p = _conv_spec(graph, syn, src_shape)
            if isinstance(node, nir.Conv2d):
                b = np.asarray(node.bias, dtype=np.float64) * np.ones(w.shape[0])
                biases[conn.dst] = biases[conn.dst] + np.broadcast_to(b[:, None, None], dst_shape)
            groups = int(p["groups"])
            if groups > LAVA_INT8_MAX:
                w, groups = ungroup_conv_weight(w, groups), 1
            for f in ("stride", "padding", "dilation"):
                if max(p[f]) > LAVA_INT8_MAX:
                    raise UnsupportedLayerError(f"node {syn!r}: field {f!r} {p[f]} exceeds Lava's int8 field")
            proc = Conv(weight=conv_weight_to_lava(w).astype(np.int32), input_shape=lava_shape(src_shape, syn),
                        padding=tuple(p["padding"][::-1]), stride=tuple(p["stride"][::-1]),
                        dilation=tuple(p["dilation"][::-1]), groups=groups, num_message_bits=msg_bits,
                        name=key)
            if tuple(proc.output_shape) != lava_shape(dst_shape, conn.dst):
                raise GraphError(f"node {syn!r}: Lava's Conv output shape {tuple(proc.output_shape)} (W, H, C) "
                                 f"does not match {conn.dst!r} shape {dst_shape} (C, H, W)")
            synapses[key] = Synapse(key, proc, "conv", conn)

    # neurons
    neurons: dict[str, NeuronLayer] = {}
    for n in plan.neurons:
        node = graph.nodes[n]
        shape = tuple(plan.shapes[n])
        lshape = lava_shape(shape, n)
        readout = isinstance(node, (nir.I, nir.LI)) or bool(cv.meta(node, cv.READOUT, False))
        if not isinstance(node, (nir.IF, nir.I, nir.LIF, nir.CubaLIF, nir.LI)):  # leaky: decays in snnc.du/dv
            raise UnsupportedLayerError(f"node {n!r}: the Lava backend runs IF, LIF, CubaLIF, LI and I neurons, "
                                        f"not {type(node).__name__}")
        if isinstance(node, (nir.IF, nir.I)) and not np.all(np.asarray(node.r) == 1):
            raise QuantizationError(f"node {n!r}: field 'r' must be 1 in an integer graph")
        reset = cv.reset_mode(node)
        if reset not in ("subtract", "zero"):
            raise GraphError(f"node {n!r}: field 'snnc.reset' must be 'subtract' or 'zero', got {reset!r}")
        du = _int_meta(node, cv.DU, 4095, 0, 4095, n)
        dv = _int_meta(node, cv.DV, 0, 0, 4095, n)
        mant, bexp = bias_to_lava(biases[n], n)
        v0 = np.round(cv.v_init(node, shape) * 64)
        if np.any(np.abs(v0) > cv.V_MAX):
            raise QuantizationError(f"node {n!r}: field 'snnc.v_init' * 64 exceeds the 24-bit potential")
        v0 = to_lava(v0.astype(np.int32), len(shape))
        mant, bexp = to_lava(mant, len(shape)), to_lava(bexp, len(shape))
        common = dict(shape=lshape, u=0, v=v0, du=du, dv=dv, bias_mant=mant, bias_exp=bexp, name=n)
        if readout:
            proc = SubtractLIF(vth=0, spiking=0, sample_steps=sample_steps, **common)
        else:
            vth = np.broadcast_to(np.asarray(node.v_threshold, dtype=np.float64), shape)
            if np.any(vth != np.round(vth)) or np.any(vth < 0) or np.any(vth > cv.VTH_MAX):
                raise QuantizationError(f"node {n!r}: field 'v_threshold' must hold integers in "
                                        f"[0, {cv.VTH_MAX}] in an integer graph")
            vth = vth.astype(np.int32)
            vmin = cv.v_min_fixed(node, shape)
            timing = cv.RESET_TIMINGS.index(cv.reset_timing(node)) if cv.reset_timing(node) in cv.RESET_TIMINGS \
                else None
            if timing is None:
                raise GraphError(f"node {n!r}: field 'snnc.reset_timing' must be one of {cv.RESET_TIMINGS}, got "
                                 f"{cv.reset_timing(node)!r}")
            if reset == "zero" and timing == 0:
                if vmin is not None:
                    raise BackendError(f"node {n!r}: field 'snnc.v_min' (a potential floor) needs snnc's "
                                       "SubtractLIF; Lava's LIF (reset 'zero') has none: use reset 'subtract' "
                                       "or convert without a floor")
                if np.any(vth != vth.flat[0]):
                    raise BackendError(f"node {n!r}: Lava's LIF (reset to zero) has one 'v_threshold' per "
                                       "layer; this layer has several (use reset 'subtract' or one threshold)")
                proc = LIF(vth=int(vth.flat[0]), **common)
            else:
                floor = {} if vmin is None else {"v_min": to_lava(vmin.astype(np.int32), len(shape))}
                proc = SubtractLIF(vth=to_lava(vth, len(shape)), spiking=1, sample_steps=sample_steps, **common,
                                   reset_zero=int(reset == "zero"), timing=timing, **floor)
        neurons[n] = NeuronLayer(n, proc, shape, lshape, v0, not readout, reset)

    # ports
    for s in synapses.values():
        c = s.conn
        out = source.s_out if c.src == plan.input else neurons[c.src].process.s_out
        if s.kind == "dense" and len(plan.shapes[c.src]) != 1:
            out = out.flatten()
        out.connect(s.process.s_in)
        s.process.a_out.connect(neurons[c.dst].process.a_in)
    recorders: dict[str, Any] = {}
    if record:
        for n, L in neurons.items():  # the readout too: its (absent) spikes are measured, not assumed
            recorders[n] = Extractor(shape=L.lava_shape, buffer_size=max(1, int(sample_steps)))
            L.process.s_out.connect(recorders[n].in_port)
    return LavaNetwork(graph, plan, source, neurons, synapses, recorders, int(sample_steps), in_lshape)
