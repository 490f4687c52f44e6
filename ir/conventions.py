"""The ``snnc.`` metadata convention: what snnc stores in NIR node metadata beyond the standard NIR fields.

NIR says everything it can in its own fields (weights, biases, thresholds, shapes). What NIR cannot say lives
in ``node.metadata`` under the keys registered below (``KEYS``; the table in docs/conventions.md is checked
against it by a test).

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

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np


@dataclass(frozen=True)
class Key:
    """One ``snnc.`` metadata key: where it sits, its type, its unit or values, what it means.

    on: "graph", "neuron", "spiking neuron", "synapse" or "any"; kind: "str", "int", "real", "bool", "reals"
    (one real or one per neuron), "list" or "dict"; lo/hi: the range ``validate`` enforces for int/real kinds."""

    name: str
    on: str
    kind: str
    unit: str
    doc: str
    lo: float | None = None
    hi: float | None = None


KEYS: dict[str, Key] = {}  # every snnc.* key, in the order of the table in docs/conventions.md


def _key(name: str, on: str, kind: str, unit: str, doc: str, lo: float | None = None,
         hi: float | None = None) -> str:
    KEYS[name] = Key(name, on, kind, unit, doc, lo, hi)
    return name


PREFIX = "snnc."
# graph level
KIND = _key("snnc.kind", "graph", "str", '"float" or "integer"', "float: converted, real-valued; integer: quantized "
            "for Loihi fixed point (absent: float)")
VERSION = _key("snnc.version", "graph", "int", "convention version", "version of this table (1)")
INPUT_SCALE = _key("snnc.input_scale", "graph", "real", "input units per integer step", "integer graphs: graded "
                   "input spikes are clip(round(x / input_scale)) (graph level: nir 1.0.4's Input has no metadata)",
                   1e-300, 1e300)
INPUT_BITS = _key("snnc.input_bits", "graph", "int", "bits", "integer graphs: bits of the graded input spikes", 1, 24)
INPUT_SIGNED = _key("snnc.input_signed", "graph", "bool", "", "integer graphs: graded input may be negative")
NODE_METADATA = _key("snnc.node_metadata", "graph", "dict", "node name -> metadata", "in files only: metadata of "
                     "nodes whose nir type has no metadata field (nir 1.0.4), put back on reading")
TUNED_FOR_STEPS = _key("snnc.tuned_for_steps", "graph", "int", "steps T", "threshold tuning was done for this T")
CALIBRATED_FOR_STEPS = _key("snnc.calibrated_for_steps", "graph", "int", "steps T", "layer calibration was done "
                            "for this T")
RESIDUAL_BALANCED = _key("snnc.residual_balanced", "graph", "bool", "", "residual delays balanced by IF relays")
NIR_DT = _key("snnc.nir_dt", "graph", "real", "seconds per step", "imported NIR graphs: the step dt used to "
              "discretise the time constants")
NIR_DISCRETISATION = _key("snnc.nir_discretisation", "graph", "str", '"euler" or "exp"', "imported NIR graphs: "
                          "how the time constants were discretised")
TARGET = _key("snnc.target", "graph", "str", 'a name in snnc.ir.target.TARGETS', "the deployment target the "
              "integer graph was compiled for (absent: lava)")
READOUT_NODE = _key("snnc.readout_node", "graph", "str", "node name", "graphs exported for other frameworks: the "
                    "IF node that stands for the I readout")
ANN_MACS = _key("snnc.ann_macs", "graph", "dict", "MACs per inference, by neuron layer", "the source network's "
                "multiply-accumulates, counted before fusing (conv, linear, pooling each as its own operation; "
                "BatchNorm folded) and summed over the connections into each neuron layer; snnc energy's ANN baseline")
ANN_MACS_COUNTED_ON = _key("snnc.ann_macs_counted_on", "graph", "str", '"torch" or "nir"', "what snnc.ann_macs was "
                           "counted on: the torch model as converted, or an NIR graph from another tool as imported")
CALIB_SAMPLES = _key("snnc.calib_samples", "graph", "int", "samples", "calibration samples the graph was compiled "
                     "with (thresholds, ranges)", 1, 2 ** 62)
CALIB_SHA256 = _key("snnc.calib_sha256", "graph", "str", "16 hex digits", "sha256 of the calibration inputs (float32 "
                    "bytes), to tell whether evaluation data is the calibration data (snnc.dataspec.fingerprint)")
# neuron nodes (IF, LIF, I, CubaLIF, ...)
RESET = _key("snnc.reset", "neuron", "str", '"subtract" or "zero"', "reset after a spike: v -= threshold, or v = 0 "
             "(absent: nir >= 1.0.6 nodes reset to v_reset, nir <= 1.0.5 ones subtract; files record it on reading)")
V_INIT = _key("snnc.v_init", "neuron", "reals", "threshold units (float) / a_in units (integer)", "initial "
              "membrane potential (0.5 theta: Bu et al. 2022); the integer potential starts at round(v_init * 64)")
V_MIN = _key("snnc.v_min", "spiking neuron", "reals", "as v_init, <= 0", "potential floor: v = max(v, v_min) after "
             "each update (converted nets: -theta); absent: no floor")
DU = _key("snnc.du", "neuron", "int", "12-bit decay", "integer graphs: Lava current decay (4095: no current memory)",
          0, 4095)
DV = _key("snnc.dv", "neuron", "int", "12-bit decay", "integer graphs: Lava voltage decay (0: no leak)", 0, 4095)
RESET_TIMING = _key("snnc.reset_timing", "spiking neuron", "str", '"immediate", "delayed" or "guarded"', "when "
                    "a spike resets v: immediate (NIR's equations, Lava's LIF; absent means this); delayed: at the "
                    "next update, undecayed (snnTorch's reset_delay=True, and its RSynaptic 1.0.0 whatever the flag "
                    "says); guarded: immediate, but while the stored v is still above the threshold the next spike "
                    "is tested on v - threshold (snnTorch's reset_delay=False)")
DRIVE = _key("snnc.drive", "neuron", "bool", "", "a constant-drive neuron (passes/constant_drive.py): fires every "
             "step from its onset and stands for the bias of the leaky layer it feeds (a bias that NIR filters "
             "through the synaptic current); depth 0, no signal")
READOUT = _key("snnc.readout", "neuron", "bool", "", "the non-spiking integrator whose potential is the output")
SCALE = _key("snnc.scale", "neuron", "real", "a_in units per float unit", "integer graphs: the layer's scale "
             "lambda (logits = readout potential / (64 lambda T))", 1e-300, 1e300)
BIAS_ONSET = _key("snnc.bias_onset", "neuron", "bool", "", "v_init holds the bias-onset pre-charge "
                  "v_init - depth * bias")
THRESHOLD_METHOD = _key("snnc.threshold_method", "neuron", "str", '"max", "percentile", "qcfs", "relay"',
                        "how the threshold was chosen")
THRESHOLD_FACTOR = _key("snnc.threshold_factor", "neuron", "real", "factor", "threshold tuning / layer "
                        "calibration scaled theta by this")
BIAS_SHIFT = _key("snnc.bias_shift", "neuron", "list", "activation units per step, per channel", "layer "
                  "calibration's bias correction")
CALIBRATION_MSE = _key("snnc.calibration_mse", "neuron", "real", "activation units squared", "layer calibration: "
                       "the layer's mean squared error against its ANN activations")
NIR_TYPE = _key("snnc.nir_type", "neuron", "str", "NIR type name", "imported NIR graphs: the type the node was "
                "lowered from")
# synapse nodes (Affine, Linear, Conv2d)
WEIGHT_EXP = _key("snnc.weight_exp", "synapse", "int", "exponent", "integer graphs: Lava weight_exp, "
                  "a = (mant @ s) << weight_exp (>> floors when negative); 0 for Conv", -24, 24)
WEIGHT_BITS = _key("snnc.weight_bits", "synapse", "int", "bits", "Lava num_weight_bits", 1, 8)
BINARY = _key("snnc.binary", "synapse", "bool", "", "the weights are alpha * sign(W)")
BINARY_SCALE = _key("snnc.binary_scale", "synapse", "str", '"channel" or "layer"', "one alpha per output channel, "
                    "or one per layer")
FROM_BN = _key("snnc.from_bn", "synapse", "bool", "", "an affine that came from a BatchNorm layer "
               "(fold_batchnorm folds it)")
FOLDED_BN = _key("snnc.folded_bn", "synapse", "str", "node name", "the BatchNorm node folded into this synapse")
FUSED_FROM = _key("snnc.fused_from", "synapse", "str", "comma-separated node names", "the chain fuse_synapses "
                  "composed into this synapse")
# any node
SOURCE = _key("snnc.source", "any", "str", "torch name", "the torch module or function the node came from")



def markdown_table() -> str:
    """The registry as the markdown table of docs/conventions.md (a test keeps the two equal)."""
    rows = ["| key | on | type | unit / values | meaning |", "| --- | --- | --- | --- | --- |"]
    for k in KEYS.values():
        rows.append(f"| `{k.name}` | {k.on} | {k.kind} | {k.unit} | {k.doc} |")
    return "\n".join(rows)


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
    (``zero``; nir >= 1.0.6 nodes carry ``v_reset``) or v -= v_threshold (``subtract``; nir <= 1.0.5). Files say it
    explicitly: ``snnc.ir.read`` records the reset of the release that wrote them."""
    r = meta(node, RESET, None)
    if r is not None:
        return r
    return "zero" if getattr(node, "v_reset", None) is not None else "subtract"


RESET_TIMINGS = ("immediate", "delayed", "guarded")


def reset_timing(node: Any) -> str:
    """``snnc.reset_timing`` of a neuron node ("immediate" when absent)."""
    return meta(node, RESET_TIMING, "immediate")


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
