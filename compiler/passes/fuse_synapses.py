"""Pass: compose each chain of linear nodes between two neuron layers into one synapse node (Affine or Conv2d).

Lava delivers one synaptic process per connection, so an integer graph needs exactly one weighted node between
a source (Input or neuron layer) and a target neuron layer. Scalar/per-channel Scale, AvgPool/SumPool and
Conv/Affine chains are composed structurally where exact (checked numerically on a random probe), else into an
explicit dense matrix when the target is a vector."""
from __future__ import annotations

import math

import nir
import numpy as np
import torch
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse
from snnc.ir.errors import UnsupportedLayerError
from snnc.ir.graph import Graph, conv2d_params, pool_params, validate
from snnc.ir.nir_compat import make_graph
from snnc.ir.plan import Connection, Plan, build_plan

MAX_DENSE = 64_000_000  # largest explicit matrix (elements) the pass will build


def chain_fn(graph: Graph, plan: Plan, conn: Connection) -> Synapse:
    """The float linear map of one connection's chain (``snnc.ir.chain.Synapse`` on the CPU, float64)."""
    return Synapse(graph, plan, conn, integer=False, dev=torch.device("cpu"))


def _as_conv(node, name: str, in_shape: tuple) -> dict | None:
    """A conv-like op as dict(weight, bias, stride, padding, dilation, groups), or None."""
    if isinstance(node, nir.Conv2d):
        p = conv2d_params(node, name)
        return dict(weight=np.asarray(node.weight, np.float64), bias=np.asarray(node.bias, np.float64)
                    * np.ones(node.weight.shape[0]), **p)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        p = pool_params(node, name)
        k = p["kernel_size"]
        alpha = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
        c = in_shape[0]
        return dict(weight=np.full((c, 1) + k, alpha), bias=np.zeros(c), stride=p["stride"], padding=p["padding"],
                    dilation=(1, 1), groups=c)
    return None


def dense_weight(conv: dict, channels_in: int) -> np.ndarray:
    """Full (out, in, kh, kw) weight of a grouped conv."""
    w, g = conv["weight"], conv["groups"]
    if g == 1:
        return w
    o, ipg = w.shape[0], w.shape[1]
    full = np.zeros((o, channels_in) + w.shape[2:])
    opg = o // g
    for gi in range(g):
        full[gi * opg:(gi + 1) * opg, gi * ipg:(gi + 1) * ipg] = w[gi * opg:(gi + 1) * opg]
    return full


def compose_conv(a: dict, b: dict, c_in: int) -> dict | None:
    """conv b after conv a as one conv, when a or b is a pooling-like op (stride == kernel, no padding)."""
    if a["dilation"] != (1, 1) or b["dilation"] != (1, 1):
        return None
    depthwise_a = a["groups"] == c_in == a["weight"].shape[0] and a["weight"].shape[1] == 1  # a pool: one input each
    wa = a["weight"] if depthwise_a else dense_weight(a, c_in)
    wb = dense_weight(b, a["weight"].shape[0])
    ka, kb = wa.shape[2:], wb.shape[2:]
    sa, sb, pa, pb = a["stride"], b["stride"], a["padding"], b["padding"]
    a_pool_like = tuple(sa) == tuple(ka) and tuple(pa) == (0, 0)  # b runs on a k-times coarser grid
    b_pool_like = tuple(sb) == tuple(kb) and tuple(pb) == (0, 0)
    if not (a_pool_like or b_pool_like):
        return None
    kh, kw = (kb[0] - 1) * sa[0] + ka[0], (kb[1] - 1) * sa[1] + ka[1]
    if depthwise_a and tuple(sa) == tuple(ka):  # disjoint taps: w[o, i, r*s + y, c*s + x] = wb[o, i, r, c] wa[i, y, x]
        w = (wb[:, :, :, None, :, None] * wa[None, :, 0, None, :, None, :]).reshape(wb.shape[0], c_in, kh, kw)
        bias = b["bias"] + wb.sum(axis=(2, 3)) @ a["bias"]
        return dict(weight=w, bias=bias, stride=(sa[0] * sb[0], sa[1] * sb[1]),
                    padding=(pa[0] + sa[0] * pb[0], pa[1] + sa[1] * pb[1]), dilation=(1, 1), groups=1)
    w = np.zeros((wb.shape[0], c_in, kh, kw))
    for r in range(kb[0]):
        for c in range(kb[1]):
            # b's tap (r, c) reads a's output at offset (r, c) -> input offset (r*sa, c*sa)
            if depthwise_a:  # a's channel m reads input channel m only: (o, m) times (m, kh, kw), one product each
                contrib = wb[:, :, r, c][:, :, None, None] * wa[None, :, 0]
            else:
                contrib = np.tensordot(wb[:, :, r, c], wa, axes=(1, 0))  # (o, m) x (m, i, kh, kw): a BLAS GEMM
            w[:, :, r * sa[0]:r * sa[0] + ka[0], c * sa[1]:c * sa[1] + ka[1]] += contrib
    bias = b["bias"] + wb.sum(axis=(2, 3)) @ a["bias"]
    return dict(weight=w, bias=bias, stride=(sa[0] * sb[0], sa[1] * sb[1]),
                padding=(pa[0] + sa[0] * pb[0], pa[1] + sa[1] * pb[1]), dilation=(1, 1), groups=1)


def _conv_then_affine(cd: dict, w: np.ndarray, b: np.ndarray, in_shape: tuple, out_shape: tuple
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) of affine(flatten(conv(x))) as one dense over x (C, H, W): W's rows are the conv's adjoint applied
    to the affine's rows (``conv_transpose2d``, float64), b = w @ (conv bias per position) + b. A pool-like
    conv (VGG's last AvgPool2d, ResNet's global pool) gives each entry as one product w * (1/k**2), the value
    the unit-vector forward gave, at the cost of one transposed conv of n_out rows instead of n_in forwards."""
    if len(in_shape) != 3 or len(out_shape) != 3 or w.shape[1] != math.prod(out_shape):
        return None
    c, h, wd = in_shape
    k = cd["weight"].shape[2:]
    s, pad, dil = tuple(cd["stride"]), tuple(cd["padding"]), tuple(cd["dilation"])
    full = [(out_shape[1 + i] - 1) * s[i] - 2 * pad[i] + dil[i] * (k[i] - 1) + 1 for i in range(2)]
    extra = (h - full[0], wd - full[1])
    if any(e < 0 or e >= max(s[i], dil[i]) for i, e in enumerate(extra)):
        return None
    rows = torch.as_tensor(w.reshape((w.shape[0],) + tuple(out_shape)))
    wc = np.asarray(cd["weight"], np.float64)
    if cd["groups"] == c == wc.shape[0] and wc.shape[1] == 1 and tuple(k) == s and pad == (0, 0) and dil == (1, 1):
        # a pool: each input position feeds one output, m[o, c, y, x] = w[o, c, y // s, x // s] * wc[c, y % s, x % s]
        hp, wp = out_shape[1], out_shape[2]
        r6 = rows.numpy()[:, :, :, None, :, None] * wc[None, :, 0, None, :, None, :]
        m = np.zeros((w.shape[0], c, h, wd))
        m[:, :, :hp * s[0], :wp * s[1]] = r6.reshape(w.shape[0], c, hp * s[0], wp * s[1])
        bias_map = np.repeat(np.asarray(cd["bias"], np.float64), hp * wp)
        return m.reshape(w.shape[0], c * h * wd), w @ bias_map + b
    m = torch.nn.functional.conv_transpose2d(rows, torch.as_tensor(cd["weight"]), None, stride=s, padding=pad,
                                             output_padding=extra, groups=cd["groups"], dilation=dil)
    bias_map = np.repeat(np.asarray(cd["bias"], np.float64), out_shape[1] * out_shape[2])
    return m.reshape(w.shape[0], c * h * wd).numpy(), w @ bias_map + b


def _structural(graph: Graph, plan: Plan, conn: Connection) -> nir.NIRNode | None:
    """Compose the chain without an explicit matrix; None when no rule applies."""
    shape = plan.shapes[conn.src]
    convs: list[dict] = []
    affine = None
    scale_in = 1.0  # scalar scale applied to the input of everything composed so far
    flatten_before_affine = False
    unflat: tuple = ()
    for name in conn.ops:
        node = graph.nodes[name]
        if isinstance(node, nir.Scale):
            s = np.asarray(node.scale, np.float64)
            if s.size == 1:
                s = float(s.reshape(()))
                if affine is not None:
                    affine = (affine[0] * s, affine[1] * s)
                elif convs:
                    convs[-1]["weight"] = convs[-1]["weight"] * s
                    convs[-1]["bias"] = convs[-1]["bias"] * s
                else:
                    scale_in *= s
            else:
                return None
        elif isinstance(node, nir.Flatten):
            if affine is not None:
                return None
            flatten_before_affine = True
            unflat = shape  # the map the flatten reads
        elif isinstance(node, (nir.Affine, nir.Linear)):
            if affine is not None or (convs and not flatten_before_affine):
                return None
            w = np.asarray(node.weight, np.float64) * scale_in
            b = np.asarray(getattr(node, "bias", np.zeros(w.shape[0])), np.float64) * np.ones(w.shape[0])
            if convs:  # conv/pool -> flatten -> affine: one dense over the unpooled map
                affine = _conv_then_affine(convs.pop(), w, b, tuple(plan.shapes[conn.src]), tuple(unflat))
                if affine is None:
                    return None
            else:
                affine = (w, b)
            scale_in = 1.0
        else:
            cd = _as_conv(node, name, shape)
            if cd is None or affine is not None or flatten_before_affine:
                return None
            cd["weight"] = cd["weight"] * scale_in
            scale_in = 1.0
            if convs:
                comp = compose_conv(convs[-1], cd, plan.shapes[conn.src][0] if len(convs) == 1 else
                                     convs[-1]["weight"].shape[1] * convs[-1]["groups"])
                if comp is None:
                    return None
                convs[-1] = comp
            else:
                convs.append(cd)
        shape = plan.shapes[name] if name in plan.shapes else shape
    if affine is not None:
        return nir.Affine(weight=affine[0], bias=affine[1])
    if convs:
        cd = convs[0]
        if scale_in != 1.0:
            cd["weight"] = cd["weight"] * scale_in
        src_shape = plan.shapes[conn.src]
        return nir.Conv2d(input_shape=tuple(src_shape[1:]), weight=cd["weight"], stride=cd["stride"],
                          padding=cd["padding"], dilation=cd["dilation"], groups=cd["groups"], bias=cd["bias"])
    # identity (possibly scaled) connection
    src_shape = plan.shapes[conn.src]
    if len(src_shape) == 3:
        c = src_shape[0]
        return nir.Conv2d(input_shape=tuple(src_shape[1:]), weight=np.full((c, 1, 1, 1), scale_in), stride=1,
                          padding=0, dilation=1, groups=c, bias=np.zeros(c))
    n = math.prod(src_shape)
    return nir.Affine(weight=np.eye(n) * scale_in, bias=np.zeros(n))


def _explicit(graph: Graph, plan: Plan, conn: Connection, fn: Synapse) -> nir.Affine:
    """The chain as an explicit (n_out, n_in) matrix, float64. It is the chain's Jacobian: built row by row as a
    vector-Jacobian product (one backward pass through the chain for all n_out unit vectors at once) when there
    are fewer outputs than inputs, e.g. pool -> flatten -> linear (8192 inputs, 512 outputs: the unit-vector
    forward of all 8192 inputs took 12 s), else column by column on the n_in unit vectors."""
    n_in, n_out = math.prod(plan.shapes[conn.src]), math.prod(plan.shapes[conn.dst])
    if n_in * n_out > MAX_DENSE or len(plan.shapes[conn.dst]) != 1:
        raise UnsupportedLayerError(
            f"connection {conn.src!r} -> {conn.dst!r} through {conn.ops}: this chain of linear layers has no exact "
            "single-synapse form (compose it in the model, e.g. put the pooling right before a Linear)")
    if n_out < n_in:
        x = torch.zeros((n_out,) + tuple(plan.shapes[conn.src]), dtype=torch.float64, requires_grad=True)
        y = fn.linear(x).reshape(n_out, n_out)
        (m,) = torch.autograd.grad(y, x, torch.eye(n_out, dtype=torch.float64))
        m = m.reshape(n_out, n_in).numpy()
    else:
        eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + tuple(plan.shapes[conn.src]))
        m = fn.linear(eye).reshape(n_in, n_out).T.numpy()
    return nir.Affine(weight=m, bias=fn.bias.reshape(-1).copy())


def _check(node: nir.NIRNode, fn: Synapse, plan: Plan, conn: Connection, flat: bool) -> bool:
    """True when ``node`` computes the same as the original chain on a random binary probe (float64)."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((3,) + tuple(plan.shapes[conn.src])) > 0.5, dtype=torch.float64)
    ref = fn(x).reshape(3, -1)
    if isinstance(node, nir.Conv2d):
        if flat:
            return False
        p = conv2d_params(node, "fused")
        out = torch.nn.functional.conv2d(x, torch.as_tensor(node.weight), torch.as_tensor(node.bias),
                                         stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                                         groups=p["groups"])
    else:
        out = x.reshape(3, -1) @ torch.as_tensor(node.weight).T + torch.as_tensor(node.bias)
    out = out.reshape(3, -1)
    return out.shape == ref.shape and bool(torch.allclose(out, ref, rtol=1e-9, atol=1e-9))


def fuse_synapses(graph: Graph) -> Graph:
    """One synapse node per connection: composes Scale/pool/conv/affine chains (exactness checked)."""
    plan = build_plan(graph)
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    keep = {plan.input, *plan.neurons}
    for name, node in graph.nodes.items():
        if name in keep or isinstance(node, nir.Output):
            nodes[name] = node
    uses: dict[str, int] = {}
    for c in plan.connections:
        for op in c.ops:
            uses[op] = uses.get(op, 0) + 1
    for c in plan.connections:
        weighted = [o for o in c.ops if not isinstance(graph.nodes[o], (nir.Flatten, nir.Scale))]
        base = weighted[-1] if weighted else f"{c.src}.to.{c.dst}"
        if weighted and uses[base] > 1:
            base = f"{base}.to.{c.dst}"
        while base in nodes:
            base = base + "_"
        fn = chain_fn(graph, plan, c)
        node = _structural(graph, plan, c)
        flat = isinstance(node, nir.Affine) and len(plan.shapes[c.src]) > 1
        if node is None or not _check(node, fn, plan, c, flat):
            node = _explicit(graph, plan, c, fn)
            flat = len(plan.shapes[c.src]) > 1
        md = {}
        for o in weighted:
            md.update({k: v for k, v in (graph.nodes[o].metadata or {}).items()
                       if k in (cv.SOURCE, cv.BINARY, cv.WEIGHT_BITS)})
        md[cv.FUSED_FROM] = ",".join(c.ops)
        node.metadata = md
        src = c.src
        if flat:
            fl = f"{base}.flatten"
            nodes[fl] = nir.Flatten(input_type={"input": np.array(plan.shapes[c.src])}, start_dim=0, end_dim=-1)
            edges.append((src, fl))
            src = fl
        nodes[base] = node
        edges.append((src, base))
        edges.append((base, c.dst))
    for s, d in graph.edges:
        if isinstance(graph.nodes[d], nir.Output):
            edges.append((s, d))
    # keep neuron order as in the source graph
    out = make_graph(nodes, edges, dict(graph.metadata or {}))
    validate(out)
    return out
