"""Weight storage of an integer graph in bytes: the accounting, and the packed bytes that prove it.

Per synapse (Affine/Linear/Conv2d) with n weights, every layer stores one exponent byte (int8 k: W = q * 2**k):
  binary layer (``snnc.binary``): 1 sign bit per weight + one scale byte per group (uint8 K_g / 2**k; groups =
      output channels for ``snnc.binary_scale`` "channel", 1 for "layer") -> ceil(n / 8) + groups + 1 bytes
  other layers: ``snnc.weight_bits`` b bits per weight (two's complement q) -> ceil(n * b / 8) + 1 bytes
``pack_weights`` writes exactly those bytes from the weight values themselves (failing when a binary group holds
more than two values, or a value does not fit); ``unpack_weights`` inverts it, so a round trip proves the count.
Biases, thresholds and shapes are not weights and are not counted."""
from __future__ import annotations

import math
from dataclasses import dataclass

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import QuantizationError
from snnc.ir.graph import Graph

WEIGHTED = (nir.Affine, nir.Linear, nir.Conv2d)


@dataclass
class LayerStorage:
    """Storage of one synapse: n weights at ``bits_per_weight`` plus ``groups`` scale bytes and 1 exponent byte."""

    name: str
    weights: int
    binary: bool
    bits_per_weight: int
    groups: int
    bytes: int


def _groups(node) -> int:
    return int(np.asarray(node.weight).shape[0]) if cv.meta(node, cv.BINARY_SCALE, "channel") == "channel" else 1


def binary_bytes(weights: int, groups: int) -> int:
    """Bytes of a binary layer: 1 sign bit per weight, 1 scale byte per group, 1 exponent byte."""
    return math.ceil(weights / 8) + groups + 1


def layer_storage(name: str, node, default_bits: int = 8) -> LayerStorage:
    """The accounting for one synapse node, from its metadata (binary flag, scale mode, weight bits)."""
    n = int(np.asarray(node.weight).size)
    if cv.meta(node, cv.BINARY, False):
        g = _groups(node)
        return LayerStorage(name, n, True, 1, g, binary_bytes(n, g))
    b = int(cv.meta(node, cv.WEIGHT_BITS, default_bits))
    return LayerStorage(name, n, False, b, 0, math.ceil(n * b / 8) + 1)


def weight_storage(graph: Graph, default_bits: int = 8) -> list[LayerStorage]:
    """Accounting for every weighted synapse of ``graph`` (float graphs count at ``default_bits``)."""
    return [layer_storage(n, node, default_bits) for n, node in graph.nodes.items() if isinstance(node, WEIGHTED)]


def total_bytes(graph: Graph, default_bits: int = 8) -> int:
    return sum(s.bytes for s in weight_storage(graph, default_bits))


def _common_exp(w: np.ndarray, name: str) -> int:
    """Largest k with every w / 2**k an integer (k in [-64, 64]); 0 for all-zero weights."""
    nz = np.abs(w[w != 0])
    if nz.size == 0:
        return 0
    for k in range(int(math.floor(math.log2(nz.min()))), -65, -1):
        q = w / 2.0 ** k
        if np.all(q == np.round(q)):
            return k
    raise QuantizationError(f"synapse {name!r}: field 'weight' is not a multiple of a power of two >= 2**-64")


def _pack_ints(q: np.ndarray, bits: int) -> bytes:
    u = (q.astype(np.int64) & ((1 << bits) - 1)).ravel()
    return np.packbits(((u[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()).tobytes()


def _unpack_ints(buf: bytes, n: int, bits: int) -> np.ndarray:
    b = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: n * bits].reshape(n, bits).astype(np.int64)
    u = (b << np.arange(bits)).sum(1)
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u)


def pack_weights(graph: Graph, default_bits: int = 8) -> dict[str, bytes]:
    """The bytes of each synapse's integer weights in the layout of the module docstring."""
    out = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, WEIGHTED):
            continue
        acc = layer_storage(name, node, default_bits)
        w = np.asarray(node.weight, dtype=np.float64)
        k = _common_exp(w, name)
        q = np.round(w / 2.0 ** k).astype(np.int64)
        if not -128 <= k <= 127:
            raise QuantizationError(f"synapse {name!r}: weight exponent {k} does not fit one byte")
        if acc.binary:
            groups = q.reshape(acc.groups, -1)
            mags = np.abs(groups).max(1)
            if np.any((groups != mags[:, None]) & (groups != -mags[:, None])):
                bad = int(np.argmax(np.any((groups != mags[:, None]) & (groups != -mags[:, None]), axis=1)))
                raise QuantizationError(f"synapse {name!r}: binary scale group {bad} holds more than two values "
                                        f"{sorted(set(groups[bad].tolist()))[:5]}")
            if mags.max(initial=0) > 255:
                raise QuantizationError(f"synapse {name!r}: binary scale {int(mags.max())} does not fit one byte")
            body = np.packbits((q >= 0).astype(np.uint8).ravel()).tobytes() + mags.astype(np.uint8).tobytes()
        else:
            lim = 2 ** (acc.bits_per_weight - 1)
            if q.size and (q.max() >= lim or q.min() < -lim):
                raise QuantizationError(f"synapse {name!r}: weights need more than snnc.weight_bits = "
                                        f"{acc.bits_per_weight} bits")
            body = _pack_ints(q, acc.bits_per_weight)
        out[name] = np.int8(k).tobytes() + body
    return out


def unpack_weights(graph: Graph, packed: dict[str, bytes], default_bits: int = 8) -> dict[str, np.ndarray]:
    """Weights rebuilt from ``pack_weights`` bytes (shapes and modes from ``graph``)."""
    out = {}
    for name, buf in packed.items():
        node = graph.nodes[name]
        acc = layer_storage(name, node, default_bits)
        shape = np.asarray(node.weight).shape
        k = int(np.frombuffer(buf[:1], dtype=np.int8)[0])
        body = buf[1:]
        if acc.binary:
            nb = math.ceil(acc.weights / 8)
            sign = np.unpackbits(np.frombuffer(body[:nb], dtype=np.uint8))[: acc.weights].astype(np.int64) * 2 - 1
            mags = np.frombuffer(body[nb:], dtype=np.uint8).astype(np.int64)
            q = (sign.reshape(acc.groups, -1) * mags[:, None]).reshape(shape)
        else:
            q = _unpack_ints(body, acc.weights, acc.bits_per_weight).reshape(shape)
        out[name] = q * 2.0 ** k
    return out
