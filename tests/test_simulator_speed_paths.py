"""The simulator's fast exact engine: bit-identical to the int64 reference on random graphs, every path covered
(float32 / float64 connections, conv wrap, u wrap, v saturation, decays, zero reset; on CIFAR-shaped graphs the
planned kernels: pool-then-conv and pool-then-dense for fused kernels, int8 with the shift and bias folded in, and
the same graphs with float32 kernels only), memory flat in T."""
from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import nir
import numpy as np
import pytest
import snnc
import torch
import torch.nn as nn
import torch.nn.functional as F
from snnc.backends.cpu import exact_engine as ee
from snnc.backends.cpu.simulator import Layer, simulate
from snnc.ir import conventions as cv
from snnc.ir.chain import Synapse, quantize_input
from snnc.ir.graph import copy_graph
from snnc.ir.plan import build_plan
from snnc.zoo import randomize_batchnorm


@functools.lru_cache(maxsize=None)
def _random_int_graph(seed: int):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    c1, c2 = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    model = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(c2 * 9, 5)).eval()
    x = rng.random((24, 1, 6, 6)).astype(np.float32) * (1 if seed % 2 else 2) - (0 if seed % 2 else 1)
    return snnc.compile(model, x, calib_steps=8).int_graph, x


def _variant(g, kind: str, rng: np.random.Generator):
    """Push a compiled integer graph onto the engine's slow paths (all edits keep it a valid integer graph)."""
    g = copy_graph(g)
    plan = build_plan(g)
    convs = [n for n, nd in g.nodes.items() if isinstance(nd, nir.Conv2d)]
    spiking = [n for n in plan.neurons if n != plan.readout]
    if kind in ("big", "all"):  # accumulators beyond 2**23: float64 connections, conv wraps, v saturation
        for n in convs:  # Lava's Conv field holds |w| <= 2**16
            g.nodes[n].weight = rng.integers(-2 ** 16, 2 ** 16 + 1, np.shape(g.nodes[n].weight)).astype(float)
    if kind in ("decay", "all"):  # carried current (du < 4095), leak (dv > 0): the float64 general path
        for n in spiking:
            g.nodes[n].metadata[cv.DU] = int(rng.integers(0, 4000))
            g.nodes[n].metadata[cv.DV] = int(rng.integers(1, 300))
    if kind in ("zero", "all"):
        g.nodes[spiking[-1]].metadata[cv.RESET] = "zero"
    return g


def _assert_same(a, b):
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.potentials, b.potentials)
    for n in b.spike_counts:
        np.testing.assert_array_equal(a.spike_counts[n], b.spike_counts[n], err_msg=n)
    ev = lambda r: {k: {kk: vv for kk, vv in d.items() if vv} for k, d in r.events.items()}  # noqa: E731
    assert ev(a) == ev(b)
    if b.rasters is not None:
        for n in b.rasters:
            np.testing.assert_array_equal(a.rasters[n], b.rasters[n], err_msg=n)


def _plans(g, x, batch=None):
    plan = build_plan(g)
    dev = torch.device("cpu")
    syn = [Synapse(g, plan, c, True, dev) for c in plan.connections]
    layers = {n: Layer(n, g.nodes[n], plan.shapes[n], True,
                        sum((syn[i].bias for i in plan.incoming[n]), np.zeros(plan.shapes[n])), dev)
              for n in plan.neurons}
    xin = quantize_input(g, x)
    conns = ee.plan_connections(syn, plan, float(np.abs(xin).max()), dev, in_nonneg=bool(xin.min() >= 0),
                                batch=batch)
    return conns, ee.plan_layers(layers, plan, conns, dev)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["plain", "big", "decay", "zero", "all"])
def test_fast_engine_bit_exact_on_random_graphs(seed, kind):
    g0, x = _random_int_graph(seed)
    g = _variant(g0, kind, np.random.default_rng(seed))
    steps = 6 + seed
    fast = simulate(g, x, steps, batch_size=10, rasters=seed == 0, engine="fast")
    ref = simulate(g, x, steps, batch_size=10, rasters=seed == 0, engine="reference")
    _assert_same(fast, ref)
    conns, layers = _plans(g, x)
    if kind == "plain":  # compiled graphs run entirely in float32
        assert all(c.dtype == torch.float32 and not c.wrap for c in conns[:-1])
    if kind in ("big", "all"):
        assert any(c.wrap and c.dtype == torch.float64 for c in conns)
        assert kind == "all" or any(L.u_check for L in layers.values())  # u = a << 6 checked, wrapped in place
        assert sum(d.get("v_saturate", 0) + d.get("conv_wrap", 0) for d in ref.events.values()) > 0
    if kind in ("decay", "all"):
        assert any(L.u_wrap_possible and L.dtype == torch.float64 for L in layers.values())


@pytest.mark.parametrize("batch_size", [1, 3])
def test_fast_engine_batches_do_not_share_state(batch_size):
    """Single-sample and ragged batches: every batch starts from the layers' initial potentials (a batch of one
    must not update the plan's v0 in place)."""
    g, x = _random_int_graph(0)
    g = _variant(g, "plain", np.random.default_rng(0))
    _assert_same(simulate(g, x, 7, batch_size=batch_size, rasters=True, engine="fast"),
                 simulate(g, x, 7, batch_size=batch_size, rasters=True, engine="reference"))


def _worst_accumulator(g, plan, c, in_max: float, nonneg: bool) -> tuple[float, torch.Tensor]:
    """The largest |accumulator| a connection can reach and an input that reaches it, found here by construction
    (independent of the engine's bound): for each output neuron the input at the corner of the input box that
    matches its weights' signs, evaluated with the integer chain in float64; the maximum over outputs."""
    syn = Synapse(g, plan, c, True, torch.device("cpu"))
    src = tuple(plan.shapes[c.src])
    n_out = int(np.prod(plan.shapes[c.dst]))
    lin = [st for st in syn.steps if st[0] in ("conv", "dense_int")][0]
    x = torch.zeros((1,) + src, dtype=torch.float64, requires_grad=True)
    w = lin[1].to(torch.float64)

    def acc_of(v: torch.Tensor) -> torch.Tensor:
        if lin[0] == "conv":
            p = lin[3]
            return torch.nn.functional.conv2d(v, w, None, stride=p["stride"], padding=p["padding"],
                                              dilation=p["dilation"], groups=p["groups"]).reshape(-1)
        return (v.reshape(1, -1) @ w.T).reshape(-1)

    y = acc_of(x)
    best, arg = 0.0, None
    for o in range(n_out):  # d y_o / d x = the weights output o reads, per input position
        (gr,) = torch.autograd.grad(y[o], x, retain_graph=True)
        for sign in (1.0, -1.0):
            hi = (gr * sign > 0).to(torch.float64) * in_max
            lo = (gr * sign < 0).to(torch.float64) * (0.0 if nonneg else -in_max)
            xin = (hi + lo).detach()
            with torch.no_grad():
                acc = acc_of(xin)[o]
            if abs(float(acc)) > best:
                best, arg = abs(float(acc)), xin
    return best, arg


def test_float32_bound_is_checked_per_connection():
    """A connection runs in float32 only when no input can take its accumulator to 2**23 (where float32 stops
    holding every integer): the worst case is constructed here, independently of the engine's bound, and the engine's
    bound must cover it; in the "big" variant some connection reaches 2**23 and must run in float64."""
    plan_dtypes = {}
    for kind in ("plain", "big", "near"):
        g0, x = _random_int_graph(5)
        g = g0 if kind == "plain" else _variant(g0, "big", np.random.default_rng(0))
        if kind == "near":  # the input conv's worst case just above 2**23 (x 1.2): float32 would round there
            g = copy_graph(g0)
            plan0 = build_plan(g)
            first = [c for c in plan0.connections if c.src == plan0.input][0].ops[-1]
            w = np.asarray(g.nodes[first].weight)
            in_max = float(np.abs(quantize_input(g, x)).max())
            g.nodes[first].weight = np.full(w.shape, float(np.ceil(1.2 * 2 ** 23 / (w[0].size * in_max))))
        plan = build_plan(g)
        conns, _ = _plans(g, x)
        in_max = float(np.abs(quantize_input(g, x)).max())
        for c, cp in zip(plan.connections, conns):
            assert cp.wrap == (cp.bound >= 2 ** 23 and cp.wexp is None)  # dense connections shift, never wrap
            if cp.wexp is not None and c.src != plan.input:
                continue  # the pooled dense head: covered by the bit-exact tests
            worst, _ = _worst_accumulator(g, plan, c, in_max if c.src == plan.input else 1.0,
                                          c.src != plan.input or bool(quantize_input(g, x).min() >= 0))
            assert cp.bound >= worst, (kind, c.src, c.dst, cp.bound, worst)
            if cp.dtype == torch.float32:
                assert worst < 2 ** 23, (kind, c.src, c.dst, worst)
            plan_dtypes[(kind, c.src, c.dst)] = (cp.dtype, worst)
    for kind in ("big", "near"):
        assert any(dt == torch.float64 and w >= 2 ** 23 for (k, *_), (dt, w) in plan_dtypes.items() if k == kind)
    assert all(dt == torch.float32 for (k, *_), (dt, w) in plan_dtypes.items() if k == "plain")


@functools.lru_cache(maxsize=None)
def _cifar_graph(kind: str, seed: int = 0):
    """A small CIFAR-shaped net (3x16x16 input) compiled with the default options: "vgg" has AvgPool2d -> conv
    (fused into a 6x6 stride-2 kernel) and pool -> flatten -> linear (a dense over the unpooled map); "resnet" has
    basic blocks (residual fan-in, a strided 1x1 shortcut, identity shortcuts) and a global pool -> linear."""
    from snnc.zoo import BasicBlock

    torch.manual_seed(seed)
    bn = nn.BatchNorm2d
    if kind == "vgg":
        m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), bn(6), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1, bias=False), bn(6), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(6, 8, 3, padding=1, bias=False), bn(8), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 5))
    else:
        m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), bn(8), nn.ReLU(), BasicBlock(8, 8),
                          BasicBlock(8, 12, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))
    m = randomize_batchnorm(m, seed)
    x = np.random.default_rng(seed).standard_normal((16, 3, 16, 16)).astype(np.float32)
    return snnc.compile(m, x, calib_steps=16).int_graph, x[:11]


@pytest.mark.parametrize("kind", ["vgg", "resnet"])
@pytest.mark.parametrize("int8", [None, False])
def test_planned_kernels_bit_exact_on_cifar_shaped_graphs(kind, int8):
    """Pool-then-op and the int8 kernels (int8=None: where they run here) against the int64 reference, with a
    ragged last batch (the int8 kernels are prepared for the first batch's size)."""
    from snnc.backends.cpu import kernels as kn

    g, x = _cifar_graph(kind)
    prev = kn.use_int8(int8)
    try:
        fast = simulate(g, x, 10, batch_size=4, rasters=True, engine="fast")
        conns, layers = _plans(g, x, batch=4)
    finally:
        kn.use_int8(prev)
    _assert_same(fast, simulate(g, x, 10, batch_size=4, rasters=True, engine="reference"))
    assert sum(int(c.sum()) for c in fast.spike_counts.values()) > 0
    ops = [c.ops[-1][1] for c in conns if c.ops and c.ops[-1][0] == "w"]
    if kind == "vgg":  # the fused 6x6/2 conv and the pooled dense run as pool-then-op
        assert any(op.pool == 2 and op.kind == "conv" for op in ops) and any(op.pool > 1 and op.kind == "dense"
                                                                             for op in ops)
    else:
        assert any(op.pool == 8 and op.kind == "dense" for op in ops)  # global pool -> linear
    if int8 is False or not kn.int8_available(torch.device("cpu")):
        assert not any(c.int8 for c in conns)
    else:
        assert all(c.int8 for c in conns if c.src != build_plan(g).input)
        assert any(c.scaled for c in conns) and any(L.bias_conn is not None for L in layers.values())


def test_factored_kernels_equal_the_fused_ones():
    """factor_conv / factor_dense on block-constant integer weights reproduce the fused op exactly; a weight that
    is not block-constant is not factored."""
    from snnc.backends.cpu import kernels as kn

    g = torch.Generator().manual_seed(0)
    small = torch.randint(-50, 51, (5, 4, 3, 3), generator=g).double()
    fused = small.repeat_interleave(2, 2).repeat_interleave(2, 3)  # (5, 4, 6, 6), constant on 2x2 blocks
    p = dict(stride=(2, 2), padding=(2, 2), dilation=(1, 1), groups=1)
    x = (torch.rand(3, 4, 12, 12, generator=g) < 0.4).double()
    s, ws, ps = kn.factor_conv(fused, p, (12, 12))
    op = kn.Weighted("conv", s, ws, ps)
    assert s == 2 and torch.equal(kn.run_weighted(op, x), F.conv2d(x, fused, None, 2, 2))
    op8 = kn.Weighted("conv", s, ws, ps)
    if kn.int8_available(torch.device("cpu")):
        assert kn.plan_int8(op8, (4, 6, 6), 3, 4.0)
        x8 = x.to(torch.uint8).contiguous(memory_format=torch.channels_last)
        assert torch.equal(kn.run_weighted(op8, x8).double(), F.conv2d(x, fused, None, 2, 2))
    bad = fused.clone()
    bad[0, 0, 0, 1] += 1
    assert kn.factor_conv(bad, p, (12, 12)) is None
    wd = torch.randint(-9, 10, (7, 4, 3, 3), generator=g).double()
    dense = wd.repeat_interleave(4, 2).repeat_interleave(4, 3).reshape(7, -1)  # over a (4, 12, 12) map
    s, w_s = kn.factor_dense(dense, (4, 12, 12))
    assert s == 4 and torch.equal(w_s, wd.reshape(7, -1))
    assert kn.factor_dense(dense + (torch.arange(dense.numel()).reshape(dense.shape) == 5), (4, 12, 12)) is None


def test_int8_weight_split():
    from snnc.backends.cpu import kernels as kn

    for w, g in (([-127.0, 4.0], 1.0), ([-128.0, 4.0], 2.0), ([8.0 * 127, -24.0], 8.0), ([0.0, 0.0], 1.0)):
        m, gg = kn.int8_weight(torch.tensor(w))
        assert gg == g and torch.equal(m.double() * gg, torch.tensor(w, dtype=torch.float64))
    assert kn.int8_weight(torch.tensor([255.0, 1.0])) is None  # needs g = 4, which does not divide 1


def test_auto_engine_matches_reference_on_cli_defaults():
    g, x = _random_int_graph(7)
    _assert_same(simulate(g, x, 12), simulate(g, x, 12, engine="reference"))


def test_bad_engine_name_is_rejected():
    g, x = _random_int_graph(0)
    with pytest.raises(ValueError, match="engine"):
        simulate(g, x, 4, engine="turbo")


_MEM = textwrap.dedent("""
    import sys, numpy as np, torch, nir
    from snnc.backends.cpu.simulator import simulate
    from snnc.ir import make_graph
    from snnc.ir import conventions as cv
    n = 4096
    rng = np.random.default_rng(0)
    w1 = rng.integers(-3, 4, (n, 64)).astype(float)
    w2 = rng.integers(-3, 4, (4, n)).astype(float)
    md = {cv.WEIGHT_EXP: 0, cv.WEIGHT_BITS: 8}
    g = make_graph(nodes={"input": nir.Input(np.array([64])), "fc1": nir.Linear(w1),
        "l1": nir.IF(r=np.ones(n), v_threshold=np.full(n, 40.0)), "fc2": nir.Linear(w2),
        "ro": nir.I(r=np.ones(4)), "output": nir.Output(np.array([4]))},
        edges=[("input", "fc1"), ("fc1", "l1"), ("l1", "fc2"), ("fc2", "ro"), ("ro", "output")],
        metadata={cv.KIND: cv.INTEGER, cv.INPUT_SCALE: 1.0, cv.INPUT_BITS: 8, cv.INPUT_SIGNED: False,
                  "snnc.node_metadata": {"fc1": md, "fc2": md}})
    for k in ("fc1", "fc2"):
        g.nodes[k].metadata = dict(md)
    x = rng.integers(0, 4, (128, 64)).astype(float)
    steps, rasters = int(sys.argv[1]), sys.argv[2] == "1"
    simulate(g, x, 2, batch_size=128)  # warm up: imports, allocator pools
    def hwm():  # VmHWM belongs to this process's memory map; ru_maxrss inherits the parent's at fork+exec
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    base = hwm()
    simulate(g, x, steps, batch_size=128, rasters=rasters)
    print(hwm() - base)
""")


def test_peak_memory_does_not_grow_with_steps():
    """Storing B x T x neurons would cost 128 x 4096 x 4 bytes (2 MiB) more per step: 120 MiB more at T=64."""
    def grow(steps: int, rasters: bool) -> int:
        """Peak-RSS growth of one run in a fresh process (high-water marks are per process)."""
        out = subprocess.run([sys.executable, "-c", _MEM, str(steps), "1" if rasters else "0"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    g4, g64, g64r = grow(4, False), grow(64, False), grow(64, True)
    grow_steps, grow_rasters = g64 - g4, g64r - g64
    per_step = 128 * 4096 * 4
    # O(T) float storage would add 60 x per_step (120 MiB) from T=4 to T=64; the bound leaves room for allocator
    # noise (growths of -9.6 to +10.3 MiB were seen between identical runs on a loaded machine)
    assert grow_steps < 12 * per_step, (g4, g64, g64r)
    assert grow_rasters > 8 * per_step, (g4, g64, g64r)  # the measurement does see O(T) storage (bool rasters) when asked for


def test_cuda_style_sync_free_counting_is_exact(monkeypatch):
    """The CUDA code path (events counted in device tensors, no silent-layer shortcut) run on CPU against the
    reference run with host counting."""
    from snnc.ir.neuron import EventCounter

    g0, x = _random_int_graph(1)
    g = _variant(g0, "all", np.random.default_rng(1))
    ref = simulate(g, x, 9, engine="reference")
    orig = EventCounter.__init__

    def sync_free(self, dev=None):
        orig(self, dev) if dev is not None else orig(self)
        self.sync_free = True

    monkeypatch.setattr(EventCounter, "__init__", sync_free)
    _assert_same(simulate(g, x, 9, engine="fast"), ref)
    assert ref.total_events() > 0


def test_simulator_and_compiler_do_not_import_lava():
    code = ("import sys, snnc.backends.cpu.simulator, snnc.pipeline, snnc.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lava'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
