"""The ``snnc.`` metadata convention: what snnc stores in NIR node metadata beyond the standard NIR fields.

NIR says everything it can in its own fields (weights, biases, thresholds, shapes). What NIR cannot say lives
in ``node.metadata`` under the keys below (one table in the README, "IR conventions").

Units of an *integer* graph (``snnc.kind == "integer"``), matching Lava 0.10.0 fixed point:
- synapse weights (Affine/Linear/Conv2d ``weight``) hold the *effective* weight ``mant * 2**weight_exp``
  in units of the post-synaptic activation ``a_in`` (integer valued when weight_exp >= 0);
  ``mant`` is the value Lava's Dense/Conv holds (int, ``m * 2**(9 - weight_bits)``, |m| <= 2**(weight_bits-1)-1).
- synapse ``bias`` is an integer in ``a_in`` units; the neuron adds ``bias << 6`` to v every step
  (Lava: ``bias_mant << bias_exp``).
- neuron ``v_threshold`` is Lava's ``vth`` (integer, 17 bits); Lava compares ``v > vth << 6``.
- ``snnc.v_init`` is in ``a_in`` units; the integer potential starts at ``round(v_init * 64)``.
- ``snnc.v_min`` (optional, spiking neurons) is in ``a_in`` units; after the update v = max(v, round(v_min * 64)).
- graph metadata ``snnc.input_scale`` s (graph level: nir 1.0.4's Input node has no metadata): graded input spikes are ``clip(round(x / s), lo, hi)`` with
  ``snnc.input_bits`` bits (signed when ``snnc.input_signed``).
"""
from __future__ import annotations

from typing import Any

import nir
import numpy as np

PREFIX = "snnc."
# graph level
KIND = "snnc.kind"  # "float" (converted, real-valued) or "integer" (quantized for Loihi fixed point)
VERSION = "snnc.version"  # int, convention version
# neuron nodes (IF, LIF, I, CubaLIF, ...)
RESET = "snnc.reset"  # "subtract" (default for converted nets) or "zero" (stock Lava LIF)
V_INIT = "snnc.v_init"  # initial membrane potential, same units as v_threshold (scalar or per neuron)
V_MIN = "snnc.v_min"  # potential floor, same units as v_threshold (scalar or per neuron): v = max(v, v_min)
DU = "snnc.du"  # integer graphs: Lava current decay, 12 bit (4095 = no current memory)
DV = "snnc.dv"  # integer graphs: Lava voltage decay, 12 bit (0 = no leak)
READOUT = "snnc.readout"  # True on the node whose potential is the network output
# synapse nodes (Affine, Linear, Conv2d)
WEIGHT_EXP = "snnc.weight_exp"  # int, Lava weight_exp (a = (mant @ s) << weight_exp, >> floors if < 0)
WEIGHT_BITS = "snnc.weight_bits"  # int 1..8, Lava num_weight_bits
BINARY = "snnc.binary"  # True when the layer's weights are alpha * sign(W)
FROM_BN = "snnc.from_bn"  # True on an affine that came from a BatchNorm layer (fold_batchnorm folds it)
SOURCE = "snnc.source"  # name of the torch module/function the node came from
# graph level, about the Input node (nir 1.0.4's Input has no metadata field)
INPUT_SCALE = "snnc.input_scale"  # float: x_int = round(x / input_scale)
INPUT_BITS = "snnc.input_bits"  # int, bits of graded input spikes (8)
INPUT_SIGNED = "snnc.input_signed"  # bool, graded input may be negative
# threshold balancing record (float graphs)
THRESHOLD_METHOD = "snnc.threshold_method"  # "max", "percentile", "qcfs", ...

CONVENTION_VERSION = 1
FLOAT = "float"
INTEGER = "integer"

# Lava 0.10.0 fixed-point constants
UV_BITS = 24  # u, v: 24-bit signed
V_MAX = 2 ** (UV_BITS - 1) - 1  # v saturates to +-(2**23 - 1)
ACT_SHIFT = 6  # a_in << 6 into u; vth << 6
VTH_MAX = 2 ** 17 - 1  # vth: 17 bits
A_MAX = 2 ** (UV_BITS - 1 - ACT_SHIFT) - 1  # largest |a_in| whose << 6 fits 24 bits without wrapping
BIAS_MANT_MAX = 2 ** 12 - 1  # bias_mant: 13-bit signed
DECAY_UNITY = 4096


def meta(node: Any, key: str, default: Any = None) -> Any:
    """Read a ``snnc.`` metadata entry, decoding HDF5 scalars/bytes back to Python values."""
    md = getattr(node, "metadata", None) or {}
    if key not in md:
        return default
    v = md[key]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def set_meta(node: Any, key: str, value: Any) -> None:
    """Write a ``snnc.`` metadata entry (creating the dict when the node has none)."""
    if getattr(node, "metadata", None) is None:
        node.metadata = {}
    node.metadata[key] = value


def graph_kind(graph: nir.NIRGraph) -> str:
    """``"float"`` or ``"integer"``; graphs from other tools carry no kind and count as float."""
    return meta(graph, KIND, FLOAT)


NEURON_TYPES = (nir.IF, nir.LIF, nir.I, nir.LI, nir.CubaLIF)
SYNAPSE_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.Conv1d)
LINEAR_TYPES = SYNAPSE_TYPES + (nir.Scale, nir.SumPool2d, nir.AvgPool2d, nir.Flatten)


def is_neuron(node: Any) -> bool:
    return isinstance(node, NEURON_TYPES) or (hasattr(nir, "CubaLI") and isinstance(node, getattr(nir, "CubaLI")))


def is_linear(node: Any) -> bool:
    return isinstance(node, LINEAR_TYPES)


def reset_mode(node: Any) -> str:
    """Reset of a neuron node: ``snnc.reset`` when set; else what the installed nir's equations say: v = v_reset
    (``zero``; nir >= 1.0.5 nodes carry ``v_reset``) or v -= v_threshold (``subtract``; nir 1.0.4). Files say it
    explicitly: ``snnc.ir.read`` records the reset of the release that wrote them."""
    r = meta(node, RESET, None)
    if r is not None:
        return r
    return "zero" if getattr(node, "v_reset", None) is not None else "subtract"


def v_init(node: Any, shape: tuple) -> np.ndarray:
    """Initial potential per neuron (float, threshold units), broadcast to ``shape``."""
    v = meta(node, V_INIT, 0.0)
    return np.broadcast_to(np.asarray(v, dtype=np.float64), shape).copy()


def v_min(node: Any, shape: tuple) -> np.ndarray | None:
    """Potential floor per neuron (float, threshold units) broadcast to ``shape``, or None (no floor)."""
    v = meta(node, V_MIN, None)
    if v is None:
        return None
    return np.broadcast_to(np.asarray(v, dtype=np.float64), shape).copy()


def v_min_fixed(node: Any, shape: tuple) -> np.ndarray | None:
    """Integer graphs: the floor in Lava's v units, int64 round(v_min * 64) clipped to -(2**23 - 1) (24-bit);
    None: no floor."""
    v = v_min(node, shape)
    return None if v is None else np.maximum(np.round(v * 64), -V_MAX).astype(np.int64)
