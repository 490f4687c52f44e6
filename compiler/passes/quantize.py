"""Pass: float graph -> integer graph for Loihi/Lava fixed point (8-bit mantissa weights + exponent per layer).

Per neuron layer n with float threshold theta, a common scale lam (a_in units per float unit) is chosen as the
largest value for which (checked per layer, recorded in the report):
  vth = round(theta * lam) <= 2**17 - 1                       (Lava vth: 17 bits)
  worst-case |a_in| = lam * max_i sum_j |W'_ij| * in_max < 2**17  (u = a_in << 6 never wraps, any input)
  v_need * lam * 64 <= 0.9 * (2**23 - 1)   readout: v_need = observed max |v| (never saturates on calibration
      data); spiking layers: v_need = min(observed max v, theta + observed max |a_in|) -- above theta + a_in a
      neuron fires every step whatever v is. Spiking layers may saturate (downward for neurons driven negative
      for long, upward for neurons at rate 1): counted by the simulator as events, identical in Lava.
  |bias| * lam <= 8190                                         (bias_mant 13 bits, bias_exp <= 7)
  (depth * bias - v_init) * lam * 64 <= 0.9 * (2**23 - 1)      IF/I layers: the bias-onset pre-charge fits v
Each synapse then gets weight_exp e and mantissas m, |m| <= 2**(bits-1) - 1, with
  W_eff = m * 2**(9 - bits + e)  (Lava Dense holds m * 2**(9 - bits), valid unchanged in every sign mode)
Conv synapses keep e >= bits - 9 (Lava's Conv has no exponent: its weights are W_eff, integers).
Binary synapses (``snnc.binary``, passes/binarize.py) keep exactly two integer values +-K per scale group: per-layer
alpha is folded into lam (alpha*lam = 2**k; m = +-1 in a 2-bit Dense field), per-channel alpha keeps mantissas +-m_c.
  |v_init| * lam * 64 <= 0.9 * (2**23 - 1)                     the initial potential fits v (e.g. a constant
      drive's hold-back, passes/constant_drive.py)
Input: graded 8-bit spikes x_int = clip(round(x / s_x)), s_x = max|x_calib| / 127 (255 when x >= 0); binary
calibration data (every value 0 or 1: events) gives 1-bit input, s_x = 1, which Lava sends as spikes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import nir
import numpy as np
from snnc.ir import conventions as cv
from snnc.ir.errors import GraphError, QuantizationError
from snnc.ir.graph import Graph, copy_graph, validate
from snnc.ir.plan import build_plan

E_MIN, E_MAX = -8, 7  # weight_exp range used by snnc (Loihi: signed 4-bit-ish exponent)


@dataclass
class LayerQuant:
    """Quantization record of one neuron layer and its incoming synapses."""

    name: str
    scale: float  # lam: a_in units per float unit
    vth: int | None
    limit: str  # which constraint set lam
    synapses: dict[str, dict] = field(default_factory=dict)  # synapse -> {weight_exp, bits, max_rel_error}
    worst_a: int = 0
    observed_v: float = 0.0  # in a_in units (x lam)
    # overflow accounting in Lava's own units vs its fields: u_worst/u_observed (a_in << 6, 24-bit, wraps at
    # 2**23), v_observed (24-bit, saturates at 2**23 - 1), bias_max (a_in units; bias_mant 13 bits << bias_exp 7)
    ranges: dict[str, float] = field(default_factory=dict)

    def max_rel_error(self) -> float:
        return max((s["max_rel_error"] for s in self.synapses.values()), default=0.0)


@dataclass
class QuantReport:
    input_scale: float
    input_signed: bool
    layers: list[LayerQuant]

    def as_dict(self) -> dict:
        return asdict(self)


def synapse_of(graph: Graph, ops: list[str]) -> str:
    """The one weighted node (Affine/Linear/Conv2d) of a fused connection's ``ops`` (Flatten may sit beside it)."""
    ws = [o for o in ops if not isinstance(graph.nodes[o], nir.Flatten)]
    if len(ws) != 1 or not isinstance(graph.nodes[ws[0]], (nir.Affine, nir.Linear, nir.Conv2d)):
        raise GraphError(f"connection through {ops}: needs exactly one Affine/Linear/Conv2d per "
                         "connection (run fuse_synapses first)")
    return ws[0]


def _row_abs_sum(node, w: np.ndarray, signed: bool = False) -> np.ndarray:
    """Per output neuron, the worst |a| per unit of input magnitude: for inputs in [0, m] (spikes, unsigned graded
    input) max(sum of positive, sum of negative weights); for signed inputs in [-m, m] the sum of |w|."""
    w = w.reshape(w.shape[0], -1)
    if signed:
        return np.abs(w).sum(1)
    tmp = np.maximum(w, 0)  # one temporary, reused: the same sums as clip(w, 0) and clip(-w, 0), negated exactly
    pos = tmp.sum(1)
    np.minimum(w, 0, out=tmp)
    return np.maximum(pos, -tmp.sum(1))


def leaky_decays(n: str, node) -> tuple[int, int]:
    """Lava (du, dv) of a canonical leaky neuron (nir_import's form: dt = 1 step, r = tau, w_in = tau_syn).

    dv = round(4096 / tau_mem) (v <- v (4096 - dv) / 4096); du = round(4096 / tau_syn) - 1 (Lava adds ds_offset
    1); a LIF/LI has no current memory (du = 4095). Both are 12-bit and one value per layer."""
    cuba = isinstance(node, nir.CubaLIF)

    def one(field: str, gain_field: str, offset: int) -> int:
        tau = np.asarray(getattr(node, field), dtype=np.float64)
        gain = np.asarray(getattr(node, gain_field), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = np.where(np.isinf(tau), np.isinf(gain), np.isclose(gain, tau, rtol=1e-9))
        if not np.all(ok):
            raise QuantizationError(f"layer {n!r}: field {gain_field!r} must equal {field!r} (unit input gain; "
                                    "lower NIR graphs with snnc.frontend.nir_import first)")
        if tau.size > 1 and np.ptp(tau) > 0:
            raise QuantizationError(f"layer {n!r}: field {field!r} differs between neurons; Lava's "
                                    "du/dv are one value per layer")
        t = float(tau.ravel()[0])
        d = int(round(cv.DECAY_UNITY / t)) - offset if np.isfinite(t) else -offset
        if not 0 <= d <= cv.DECAY_UNITY - 1:
            raise QuantizationError(
                f"layer {n!r}: field {field!r} = {t:g} steps needs {'du' if offset else 'dv'} = {d}, outside "
                f"Lava's 12-bit [0, 4095]" + (" (a memoryless neuron, tau = 1 step, is not expressible)"
                                              if d > 4095 else " (Lava's current always decays by >= 1/4096)"))
        return d

    dv = one("tau_mem" if cuba else "tau", "r", 0)
    du = one("tau_syn", "w_in", 1) if cuba else cv.DECAY_UNITY - 1
    return du, dv


def _onset_precharge(node, shape: tuple, depth: int, bias: np.ndarray) -> float:
    """How far below zero (float units) the bias-onset pre-charge v_init - depth * bias goes (passes/bias_onset.py).

    bias: summed bias of the layer's incoming synapses, per neuron or per channel. Lava saturates v at
    -(2**23 - 1), so a deep layer with a large positive bias needs a scale small enough for its pre-charge;
    otherwise the onset is cut and the neuron fires early (measured: 48 layers of a restructured ResNet-110 cut,
    integer accuracy 10 % against float 72 %)."""
    bias = np.asarray(bias, dtype=np.float64)
    if depth <= 0 or not isinstance(node, (nir.IF, nir.I)) or not np.any(bias > 0):
        return 0.0
    return max(0.0, float(depth * np.max(bias) - np.min(cv.v_init(node, shape))))


def _is_pow2(x: float) -> bool:
    return x > 0 and math.isfinite(x) and abs(math.log2(x) - round(math.log2(x))) < 1e-9


def _snap_binary_scale(g: Graph, weights: dict, lam: float, limit: str) -> tuple[float, str]:
    """Fold a per-layer binary alpha into the layer's scale: the largest lam' <= lam with alpha*lam' = 2**k.

    Then the layer's integer weights are +-2**k exactly (the threshold round(theta*lam') absorbs alpha).
    Only the first per-layer binary synapse into a layer can be snapped; lam' > lam/2 keeps every range safe."""
    for sname, (w, _) in weights.items():
        snode = g.nodes[sname]
        if cv.meta(snode, cv.BINARY, False) and cv.meta(snode, cv.BINARY_SCALE) == "layer":
            alpha = float(np.abs(w).max()) if w.size else 0.0
            if alpha > 0 and alpha * lam >= 1:
                return 2.0 ** math.floor(math.log2(alpha * lam)) / alpha, limit + " (binary alpha folded)"
            break
    return lam, limit


def _quantize_synapses(g: Graph, n: str, weights: dict, originals: dict, lam: float, limit: str, obs_v: float,
                       weight_bits: int | dict, signed: bool, input_node: str, in_levels: int, input_bits: int
                       ) -> tuple["LayerQuant", list[str], int]:
    """Quantize the synapses into layer ``n`` at scale ``lam`` (from their float ``originals``); returns the layer's
    record, the synapses holding integer biases, and the exact worst-case |a| of the integer weights (a_in units:
    every corner of the input domain, the floor of a negative exponent included)."""
    lq = LayerQuant(name=n, scale=lam, vth=None, limit=limit, worst_a=0, observed_v=obs_v * lam)
    bias_ints = []
    int_worst = 0
    for sname, (w, c) in weights.items():
        snode = g.nodes[sname]
        snode.weight, snode.metadata = originals[sname][0], dict(originals[sname][2])
        if originals[sname][1] is not None:
            snode.bias = originals[sname][1]
        bits = weight_bits.get(sname, 8) if isinstance(weight_bits, dict) else int(weight_bits)
        if not 1 <= bits <= 8:
            raise QuantizationError(f"synapse {sname!r}: weight bits must be 1..8, got {bits}")
        binary = bool(cv.meta(snode, cv.BINARY, False))
        if binary:
            # +-alpha: per-layer alpha with alpha*lam = 2**k (snapped above) is m = +-1 in a 2-bit Lava field
            # (1-bit mixed-sign Dense holds only {-256, 0}); per-channel alpha keeps `bits`-bit mantissas +-m_c
            bits = 2 if _is_pow2(float(np.abs(w).max()) * lam) and cv.meta(snode, cv.BINARY_SCALE) \
                == "layer" else max(bits, 2)
        qmax = 2 ** (bits - 1) - 1
        if qmax < 1:
            raise QuantizationError(f"synapse {sname!r}: 1 weight bit holds no nonzero signed weight (Lava's 1-bit "
                                    "mixed-sign field is {-256, 0}); use 2..8 bits, or binarize the layer")
        # max|w * lam| = max|w| * lam (rounding is monotone): no |w * lam| array
        amax = max(float(w.max()), -float(w.min())) * lam if w.size else 0.0
        unit_shift = 9 - bits
        e = math.ceil(math.log2(amax / qmax)) - unit_shift if amax > 0 else 0
        e_lo = -unit_shift if isinstance(snode, nir.Conv2d) else E_MIN
        e = int(min(max(e, e_lo), E_MAX))
        unit = 2.0 ** (unit_shift + e)
        # t = (w * lam) / unit computed as w * (lam / unit): the same floats (unit is a power of two); m and the
        # rounding error (t - m, times unit: exact) in place: 6 passes over w instead of 11 (VGG-16: 27 M weights)
        t = np.multiply(w, lam / unit)
        m = np.round(t)
        np.clip(m, -qmax, qmax, out=m)
        if binary:  # never round a binary weight to 0: each scale group keeps exactly two values +-m_c
            m = np.where(t > 0, np.maximum(m, 1), np.where(t < 0, np.minimum(m, -1), 0))
        if amax / unit > qmax + 0.5:
            raise QuantizationError(f"synapse {sname!r}: weights need exponent > {E_MAX} at {bits} bits")
        mant_max = max(float(m.max()), -float(m.min())) if m.size else 0
        np.subtract(t, m, out=t)
        err = max(float(t.max()), -float(t.min())) * unit / amax if amax > 0 else 0.0
        del t
        w_eff = np.multiply(m, unit, out=m)
        snode.weight = w_eff
        in_max = (2 ** (input_bits - 1) if signed else in_levels) if c.src == input_node else 1
        rows = _row_abs_sum(snode, w_eff, signed and c.src == input_node) * in_max
        int_worst += int(math.ceil(rows.max())) + (1 if e < 0 and not isinstance(snode, nir.Conv2d) else 0) \
            if rows.size else 0
        b = np.asarray(getattr(snode, "bias", np.zeros(w.shape[0])), dtype=np.float64) * lam
        b_int = np.round(b)
        if isinstance(snode, (nir.Affine, nir.Conv2d)):
            snode.bias = b_int * np.ones(w.shape[0])
            bias_ints.append(sname)
        snode.metadata = dict(snode.metadata or {})
        snode.metadata.update({cv.WEIGHT_EXP: int(e + unit_shift) if isinstance(snode, nir.Conv2d) else int(e),
                               cv.WEIGHT_BITS: int(bits)})
        if isinstance(snode, nir.Conv2d):
            # Lava's Conv has no exponent: the integer weight is W_eff itself
            snode.metadata[cv.WEIGHT_EXP] = 0
        lq.synapses[sname] = {"weight_exp": int(snode.metadata[cv.WEIGHT_EXP]), "bits": int(bits),
                              "unit": unit, "max_rel_error": err,
                              "mant_max": int(mant_max), "mant_limit": int(qmax)}
    lq.worst_a = int_worst
    return lq, bias_ints, int_worst


def quantize_with_report(graph: Graph, weight_bits: int | dict[str, int] = 8, calib: np.ndarray | None = None,
                         ranges: dict[str, dict[str, float]] | None = None, input_bits: int | None = None,
                         v_margin: float = 0.9) -> tuple[Graph, QuantReport]:
    """Quantize a fused float graph; returns the integer graph and a per-layer report.

    weight_bits: 1..8 for every synapse, or {synapse name: bits}
    calib: float inputs (N, ...) or sequences (N, T, ...) that set the input scale (max |x|, and whether x can be
        negative)
    input_bits: bits of the integer input; None: 1 when every calibration value is 0 or 1 (binary events), else 8
    ranges: the float graph's observed ranges on calibration data, per neuron layer {"a": max |a + bias| per step,
        "v": max v before the reset (max |v| for the readout)}, float units: the pipeline's ``ranges`` stage
        (``snnc.backends.cpu.ranges.calibration_ranges``); None sizes potentials from the threshold alone."""
    if cv.graph_kind(graph) == cv.INTEGER:
        raise QuantizationError("graph is already an integer graph")
    if input_bits is not None and not 1 <= int(input_bits) <= 16:
        raise QuantizationError(f"input bits must be 1..16 (Lava's graded spikes), got {input_bits}")
    plan = build_plan(graph)
    g = copy_graph(graph, share_arrays=True)  # every array it changes it replaces
    for c in plan.connections:
        synapse_of(g, c.ops)
    if calib is not None:
        calib = np.asarray(calib, dtype=np.float64)
        xmax, signed = (float(np.abs(calib).max()), bool(calib.min() < 0)) if calib.size else (1.0, True)
    else:
        xmax, signed = 1.0, True
    if input_bits is None:
        binary = calib is not None and calib.size > 0 and bool(np.all((calib == 0) | (calib == 1)))
        input_bits, xmax = (1, 1.0) if binary else (8, xmax)
    if not np.isfinite(xmax) or xmax <= 0:
        xmax = 1.0
    if signed and input_bits < 2:
        raise QuantizationError("input bits 1 (binary events) need non-negative calibration data; it has negative "
                                "values")
    in_levels = 2 ** (input_bits - 1) - 1 if signed else 2 ** input_bits - 1
    s_x = xmax / in_levels
    observed = ranges
    missing = [n for n in plan.neurons if observed is not None and n not in observed]
    if missing:
        raise QuantizationError(f"ranges: no observed range for neuron layer(s) {missing}")
    layers = []
    for n in plan.neurons:
        node = g.nodes[n]
        readout = isinstance(node, (nir.I, nir.LI)) or bool(cv.meta(node, cv.READOUT, False))
        decays = leaky_decays(n, node) if isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)) else None
        if isinstance(node, nir.IF):
            th = np.asarray(node.v_threshold, dtype=np.float64)  # per-neuron thresholds share one layer scale
            theta = float(th.max())
            if not np.isfinite(theta) or theta <= 0:
                raise QuantizationError(f"layer {n!r}: field 'v_threshold' must be positive and finite, got {theta}")
            if not np.all(np.asarray(node.r) == 1):
                raise QuantizationError(f"layer {n!r}: field 'r' must be 1 to quantize (scale weights instead)")
        elif isinstance(node, nir.I) or (decays is not None and readout):
            theta = 0.0
        elif decays is not None:
            theta = float(np.asarray(node.v_threshold, dtype=np.float64).max())
            if not np.isfinite(theta) or theta <= 0:
                raise QuantizationError(f"layer {n!r}: field 'v_threshold' must be positive and finite, got {theta}")
        else:
            raise QuantizationError(f"layer {n!r}: {type(node).__name__} cannot be quantized "
                                    "(IF, LIF, CubaLIF and the I/LI readout are supported)")
        worst = 0.0
        bias_sum = 0.0
        bias_vec = np.zeros(())
        weights = {}
        for i in plan.incoming[n]:
            c = plan.connections[i]
            sname = synapse_of(g, c.ops)
            snode = g.nodes[sname]
            w = np.asarray(snode.weight, dtype=np.float64)
            if c.src == plan.input:  # graded input: quantize_input clips to [-2**(bits-1), 2**(bits-1) - 1] signed
                w = w * s_x
                in_max = 2 ** (input_bits - 1) if signed else in_levels
            else:
                in_max = 1.0
            weights[sname] = (w, c)
            worst_rows = _row_abs_sum(snode, w, signed and c.src == plan.input) * in_max
            worst += float(worst_rows.max()) if worst_rows.size else 0.0
            b = np.asarray(getattr(snode, "bias", 0.0), dtype=np.float64)
            bias_sum += float(np.abs(b).max()) if b.size else 0.0
            bias_vec = bias_vec + b
        if decays is not None:  # a current with memory sums up to 4096 / (du + 1) steps of input
            worst *= cv.DECAY_UNITY / (decays[0] + 1)
        onset = _onset_precharge(node, plan.shapes[n], plan.depths.get(n, 0), bias_vec) if decays is None else 0.0
        obs_v = observed[n]["v"] if observed else 0.0
        if not readout and observed:
            # a spiking neuron's potential only needs theta + one step of input: above that it fires every step
            # whatever v is (an upward saturation cannot change its spikes while its input stays that high)
            obs_v = min(obs_v, theta + observed[n]["a"])
        v_init_max = float(np.max(np.abs(cv.v_init(node, plan.shapes[n])))) if cv.V_INIT in (node.metadata or {}) \
            else 0.0
        cands = {"a_in range (worst case)": cv.A_MAX / worst if worst > 0 else math.inf,
                 "initial potential": v_margin * cv.A_MAX / v_init_max if v_init_max > 0 else math.inf,
                 "v range (observed)": v_margin * cv.A_MAX / obs_v if obs_v > 0 else math.inf,
                 "bias field": 2 * cv.BIAS_MANT_MAX / bias_sum if bias_sum > 0 else math.inf,
                 "bias onset pre-charge": v_margin * cv.A_MAX / onset if onset > 0 else math.inf}
        for sname, (w, _c) in weights.items():  # largest W_eff a weight field holds: qmax * 2**(9 - bits + E_MAX)
            b = weight_bits.get(sname, 8) if isinstance(weight_bits, dict) else int(weight_bits)
            wmax = float(np.abs(w).max()) if w.size else 0.0
            if wmax > 0 and 1 <= b <= 8:
                cands["weight field"] = min(cands.get("weight field", math.inf),
                                            (2 ** (b - 1) - 1) * 2.0 ** (9 - b + E_MAX) / wmax)
        if not readout:
            cands["vth field"] = cv.VTH_MAX / theta
            if observed is None:
                cands["v range (4x threshold, no calibration)"] = v_margin * cv.A_MAX / (4 * theta)
        limit = min(cands, key=cands.get)
        lam = cands[limit]
        if not np.isfinite(lam):
            lam = 1.0
        lam, limit = _snap_binary_scale(g, weights, lam, limit)
        originals = {sname: (g.nodes[sname].weight, getattr(g.nodes[sname], "bias", None),
                             dict(g.nodes[sname].metadata or {})) for sname in weights}
        for _attempt in range(8):  # rounding can lift the integer worst case above the float one: shrink lam
            lq, bias_ints, int_worst = _quantize_synapses(g, n, weights, originals, lam, limit, obs_v, weight_bits,
                                                          signed, plan.input, in_levels, input_bits)
            gain = cv.DECAY_UNITY / (decays[0] + 1) if decays is not None else 1.0  # a current with memory
            if int_worst * gain <= cv.A_MAX:
                break
            # a coarse mantissa can hold the rounded worst case still for a small shrink: shrink faster each try
            lam *= min(0.999 * cv.A_MAX / (int_worst * gain), 0.99 ** (2 ** _attempt - 1))
            limit = "a_in range (worst case, after rounding)"
        else:
            raise QuantizationError(f"layer {n!r}: the worst-case input current does not fit Lava's 24-bit u")
        # the summed bias must fit bias_mant << bias_exp with bias_exp <= 7
        total = sum(np.asarray(g.nodes[s].bias) * 1.0 for s in bias_ints) if bias_ints else 0.0
        if bias_ints:
            total = np.asarray(total)
            fix = (np.abs(total) > cv.BIAS_MANT_MAX) & (total % 2 != 0)
            if fix.any():
                first = g.nodes[bias_ints[0]]
                first.bias = np.asarray(first.bias) - np.where(fix, np.sign(total), 0)
                total = sum(np.asarray(g.nodes[s].bias) * 1.0 for s in bias_ints)
            if np.abs(total).max() > 2 * cv.BIAS_MANT_MAX:
                raise QuantizationError(f"layer {n!r}: bias {np.abs(total).max()} does not fit Lava's 13-bit bias "
                                        "mantissa with exponent 7")
        if isinstance(node, nir.IF) or (decays is not None and not readout):
            vth = np.maximum(np.round(np.asarray(node.v_threshold, dtype=np.float64) * lam), 1)
            node.v_threshold = vth
            lq.vth = int(vth.max())
        vi = np.asarray(cv.meta(node, cv.V_INIT, 0.0), dtype=np.float64) * lam
        node.metadata = dict(node.metadata or {})
        node.metadata[cv.V_INIT] = np.round(vi * 64) / 64 if vi.ndim else float(np.round(vi * 64) / 64)
        if cv.V_MIN in node.metadata:  # the floor in a_in units, on the 1/64 grid of the integer potential
            vm = np.maximum(np.round(np.asarray(cv.meta(node, cv.V_MIN), dtype=np.float64) * lam * 64), -cv.V_MAX) / 64
            node.metadata[cv.V_MIN] = vm if vm.ndim else float(vm)
        if decays is not None:
            node.metadata[cv.DU], node.metadata[cv.DV] = decays
        node.metadata.setdefault(cv.DU, 4095)
        node.metadata.setdefault(cv.DV, 0)
        node.metadata[cv.SCALE] = float(lam)
        bias_now = float(np.abs(np.asarray(total)).max()) if bias_ints else 0.0
        lq.ranges = {"u_worst": lq.worst_a * 64, "u_observed": (observed[n]["a"] * lam * 64) if observed else None,
                     "u_limit": 2 ** (cv.UV_BITS - 1), "v_observed": lq.observed_v * 64, "v_limit": cv.V_MAX,
                     "bias_max": bias_now, "bias_limit": 2 * cv.BIAS_MANT_MAX}
        layers.append(lq)
    g.metadata = dict(g.metadata or {})
    g.metadata.update({cv.INPUT_SCALE: float(s_x), cv.INPUT_BITS: int(input_bits), cv.INPUT_SIGNED: signed})
    g.metadata[cv.KIND] = cv.INTEGER
    validate(g)
    return g, QuantReport(input_scale=float(s_x), input_signed=signed, layers=layers)
