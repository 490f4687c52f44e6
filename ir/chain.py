"""Connections of a graph evaluated on torch tensors: the chain of linear nodes from a source (the Input or a neuron
layer) to a target neuron layer, in float (the chain as written) or in Lava's integer arithmetic.

Integer graphs hold one synapse node per connection (``fuse_synapses``):
  Dense (Affine/Linear): a = (mant @ s) << weight_exp   (>> floors when weight_exp < 0), no saturation
  Conv (Conv2d/SumPool2d): a = wrap24(conv(W, s))        (Lava's signed_clamp: [-2**23, 2**23))
with mant = weight / 2**weight_exp (int) and the integer input x_int = ``quantize_input``.
Float chains run every node in float64; their bias part (the chain's output on a zero input) is added at the
neuron, undelayed, as Lava adds a neuron's bias (``Synapse.bias``, ``Synapse.linear``)."""
from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F
from snnc.ir import conventions as cv
from snnc.ir.errors import DataError, GraphError, QuantizationError
from snnc.ir.graph import Graph, conv2d_params, node_output_shape, pool_params
from snnc.ir.plan import Connection, Plan

U_MAX = 2 ** 23  # Lava's 24-bit conv output wraps into [-2**23, 2**23)


def check_samples(x: np.ndarray, what: str = "input data") -> np.ndarray:
    """``x`` as a numeric array of N >= 1 finite samples (N, ...): an empty, non-numeric or NaN/inf array is a
    DataError naming ``what``."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric, has dtype {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{what} holds no samples (shape {x.shape}); it must be (N, ...) with N >= 1")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{what} contains NaN or inf")
    return x


def batched_input(plan: Plan, x: np.ndarray) -> np.ndarray:
    """Static ``x`` as (N, *input shape): one sample gains a batch axis; a shape that does not fit, no samples, NaN/inf
    values, or a sequence (N, T, *input shape: see ``snnc.ir.sequence``) are a DataError (for the runs that take one
    frame per sample)."""
    from snnc.ir.sequence import input_series

    series = input_series(plan.shapes[plan.input], x, plan.input)
    if series.sequence:
        raise DataError(f"input data of shape {tuple(np.shape(x))} is a sequence; this run takes one static frame "
                        f"per sample, shape (N, {', '.join(map(str, plan.shapes[plan.input]))})")
    return series.x


class Synapse:
    """One connection compiled to a callable: float chain, or integer Dense/Conv with Lava's rounding."""

    def __init__(self, graph: Graph, plan: Plan, conn: Connection, integer: bool, dev: torch.device,
                 params: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None):
        """``params``: float chains only, {weighted node name: (weight, bias)} tensors to use instead of the
        graph's arrays (trainable parameters: ``snnc.train.iir``)."""
        self.conn, self.integer, self.dev = conn, integer, dev
        if params is not None and integer:
            raise GraphError("Synapse: parameter tensors replace float weights only")
        src_shape = plan.shapes[conn.src]
        self.kind = "identity"
        self.steps: list = []
        weighted = [n for n in conn.ops if not isinstance(graph.nodes[n], nir.Flatten)]
        shape = src_shape
        if integer:
            if len(weighted) > 1:
                raise GraphError(f"connection {conn.src!r} -> {conn.dst!r}: an integer graph needs exactly one "
                                 f"synapse node per connection, found {weighted} (run the fuse_synapses pass)")
            if not weighted:
                raise GraphError(f"connection {conn.src!r} -> {conn.dst!r} has no synapse node")
        self.bias = np.zeros(plan.shapes[conn.dst], dtype=np.float64)
        for n in conn.ops:
            node = graph.nodes[n]
            if isinstance(node, nir.Flatten):
                out = node_output_shape(n, node, shape)
                self.steps.append(("reshape", out))
                shape = out
                continue
            out = plan.shapes[n]
            if isinstance(node, (nir.Affine, nir.Linear)):
                w = np.asarray(node.weight, dtype=np.float64)
                b = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64) * np.ones(w.shape[0])
                if integer:
                    wexp = int(cv.meta(node, cv.WEIGHT_EXP, 0))
                    mant = w / 2.0 ** wexp
                    if not np.all(mant == np.round(mant)):
                        raise QuantizationError(f"node {n!r}: field 'weight' is not an integer mantissa times "
                                                f"2**snnc.weight_exp ({wexp})")
                    self.steps.append(("dense_int", torch.as_tensor(mant, device=dev), wexp))
                    self.kind = "dense"
                else:
                    wt, bt = params[n] if params and n in params else (torch.as_tensor(w, device=dev),
                                                                        torch.as_tensor(b, device=dev))
                    self.steps.append(("matmul", wt))
                    self.steps.append(("add", bt))
                if integer:
                    self.bias = self.bias + b.reshape(self.bias.shape)
            elif isinstance(node, nir.Conv2d):
                p = conv2d_params(node, n)
                w = np.asarray(node.weight, dtype=np.float64)
                b = np.asarray(node.bias, dtype=np.float64) * np.ones(w.shape[0])
                if integer:
                    if not np.all(w == np.round(w)):
                        raise QuantizationError(f"node {n!r}: field 'weight' must hold integers in an integer "
                                                "graph (Lava's Conv has no weight exponent)")
                    self.bias = self.bias + np.broadcast_to(b[:, None, None], out)
                    self.kind = "conv"
                    self.steps.append(("conv", torch.as_tensor(w, device=dev), None, p))
                    self.steps.append(("wrap24",))
                else:
                    wt, bt = params[n] if params and n in params else (torch.as_tensor(w, device=dev),
                                                                        torch.as_tensor(b, device=dev))
                    self.steps.append(("conv", wt, bt, p))
            elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                p = pool_params(node, n)
                div = 1 if isinstance(node, nir.SumPool2d) else None
                self.steps.append(("pool", p, div))
                if integer:
                    if isinstance(node, nir.AvgPool2d):
                        raise GraphError(f"node {n!r}: AvgPool2d is not integer; quantize turns it into SumPool2d")
                    self.kind = "conv"
                    self.steps.append(("wrap24",))
            elif isinstance(node, nir.Scale):
                if integer:
                    raise GraphError(f"node {n!r}: Scale nodes must be folded before quantization")
                self.steps.append(("scale", torch.as_tensor(np.asarray(node.scale, dtype=np.float64), device=dev)))
            else:
                raise GraphError(f"node {n!r}: {type(node).__name__} inside a connection is not supported")
            shape = out
        if not integer:
            # the bias part of a float chain is added undelayed at the neuron (as Lava adds bias in the neuron)
            zero = torch.zeros((1,) + tuple(src_shape), dtype=torch.float64, device=dev)
            self.bias = self(zero)[0].detach().cpu().numpy()
            self.linear_only = True
        self.out_shape = plan.shapes[conn.dst]
        self.wraps = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, *src_shape) float64 (spikes 0/1 or graded input) -> (B, *dst_shape)."""
        y = x
        for st in self.steps:
            op = st[0]
            if op == "reshape":
                y = y.reshape((y.shape[0],) + tuple(st[1]))
            elif op == "matmul":
                y = y.reshape(y.shape[0], -1) @ st[1].T
            elif op == "add":
                y = y + st[1]
            elif op == "dense_int":
                acc = (y.reshape(y.shape[0], -1) @ st[1].T).round().to(torch.int64)
                e = st[2]
                y = acc << e if e >= 0 else acc >> (-e)
            elif op == "conv":
                _, w, b, p = st
                y = F.conv2d(y.to(w.dtype), w, b, stride=p["stride"], padding=p["padding"],
                             dilation=p["dilation"], groups=p["groups"])
                if self.integer:
                    y = y.round().to(torch.int64)
            elif op == "pool":
                p, div = st[1], st[2]
                y = F.avg_pool2d(y.to(torch.float64), p["kernel_size"], p["stride"], p["padding"],
                                 count_include_pad=True, divisor_override=div)
                if self.integer:
                    y = y.round().to(torch.int64)
            elif op == "wrap24":
                over = (y >= U_MAX) | (y < -U_MAX)
                if bool(over.any()):
                    self.wraps += int(over.sum())
                    y = (y + U_MAX) % (2 * U_MAX) - U_MAX
            elif op == "scale":
                y = y * st[1].to(y)
        return y

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """Float chains: the input-dependent part (bias removed; it is added at the neuron)."""
        if getattr(self, "_bias_t", None) is None or self._bias_t.device != x.device:
            self._bias_t = torch.as_tensor(self.bias, device=x.device)
        return self(x) - self._bias_t


def connection_bias(graph: Graph, plan: Plan, conn: Connection, integer: bool) -> np.ndarray:
    """``Synapse(graph, plan, conn, integer, cpu).bias`` (float64, the target layer's shape) without building the
    synapse: a chain of one Conv2d/Affine/Linear (and Flatten nodes) holds it as that node's bias, broadcast per
    channel; other chains are built and run on a zero input."""
    nodes = [graph.nodes[n] for n in conn.ops]
    weighted = [nd for nd in nodes if not isinstance(nd, nir.Flatten)]
    out = tuple(plan.shapes[conn.dst])
    if len(weighted) == 1 and isinstance(weighted[0], (nir.Affine, nir.Linear, nir.Conv2d)):
        nd = weighted[0]
        c = int(np.shape(nd.weight)[0])
        b = np.asarray(getattr(nd, "bias", 0.0), dtype=np.float64) * np.ones(c)
        if isinstance(nd, nir.Conv2d):
            return np.array(np.broadcast_to(b.reshape((c,) + (1,) * (len(out) - 1)), out))
        return b.reshape(out).copy()
    return Synapse(graph, plan, conn, integer, torch.device("cpu")).bias


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Graded input spikes of an integer graph: clip(round(x / snnc.input_scale)) to snnc.input_bits."""
    scale = cv.meta(graph, cv.INPUT_SCALE)
    if scale is None or not np.isfinite(scale) or scale <= 0:
        raise QuantizationError(f"graph metadata 'snnc.input_scale' must be a positive number in an integer graph, "
                                f"got {scale!r}")
    bits = int(cv.meta(graph, cv.INPUT_BITS, 8))
    signed = bool(cv.meta(graph, cv.INPUT_SIGNED, True))
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / float(scale)), lo, hi)
