"""Fuzz snnc: random valid graphs (integer vs float simulation, NIR round trips) and mutated NIR files.

(a) valid graphs: random Input -> [Affine -> IF]* -> Affine -> I readout networks (sizes, weights, thresholds,
    initial potentials, weight bits 2..8) are quantized; a float simulation of the *same integer graph* (its
    integer weights, thresholds and input spikes run in float64) must give identical spike counts and exactly
    1/64 of the integer readout potential whenever no wrap/saturation event occurred and no Dense exponent is
    negative (a negative exponent floors, the only rounding left); single-layer graphs are also checked against
    the original float graph within the derived quantization bound (``readout_bound``); both graphs must survive
    write -> read unchanged (``graphs_equal``).
(b) mutated files: a valid NIR file is truncated, bit-flipped, or edited with h5py (delete a dataset/group,
    change a dtype or shape, put NaN/inf in, change a node type or value); reading must give ``NIRFileError`` or a
    valid graph, and a valid graph must simulate or raise an ``SnncError`` -- never another exception.

Usage: python bench/fuzz.py [--valid N] [--mutations N] [--seed S]; ends with one key=value line.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import h5py
import nir
import numpy as np
from snnc.backends.cpu.simulator import simulate
from snnc.ir import NIRFileError, SnncError, graphs_equal, make_graph, read, write
from snnc.ir import conventions as cv
from snnc.ir.chain import quantize_input
from snnc.ir.graph import copy_graph, infer_shapes, input_name
from snnc.pipeline import quantize


def random_float_graph(rng: np.random.Generator, depth: int | None = None) -> nir.NIRGraph:
    """Input (n0,) -> [Affine -> IF] * depth -> Affine -> I readout -> Output; float units, thresholds > 0."""
    # half the graphs keep every potential in range (non-negative hidden weights, thresholds above the largest
    # one-step input) and have a hidden layer (an input layer straight into the readout is sized by the readout's
    # potential range and gets a negative weight exponent, whose floor is the one rounding left): there the
    # integer and float runs of the same integer graph must agree exactly. Single-layer graphs (depth 0) are
    # checked against the float graph within the quantization bound instead.
    tame = bool(rng.random() < 0.5)
    depth = int(rng.integers(1 if tame else 0, 3)) if depth is None else depth
    sizes = [int(rng.integers(1, 9)) for _ in range(depth + 2)]
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges, prev = [], "input"
    for i in range(depth + 1):
        w = rng.normal(0, float(rng.uniform(0.1, 2.0)), (sizes[i + 1], sizes[i]))
        if tame and i < depth:
            w = np.abs(w)
        b = rng.normal(0, 0.1, sizes[i + 1]) * (rng.random() < 0.5) * (not (tame and i < depth))
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=b)
        edges.append((prev, f"fc{i}"))
        if i < depth:
            th = rng.uniform(0.2, 3.0, sizes[i + 1])
            if tame:
                th = th + np.abs(w).sum(1) + (1.0 if i == 0 else 0.0) * np.abs(w).sum(1)
            n = nir.IF(r=np.ones(sizes[i + 1]), v_threshold=th)
            n.metadata = {cv.RESET: str(rng.choice(["subtract", "zero"])), cv.V_INIT: float(rng.uniform(0, 0.5))}
            nodes[f"if{i}"], prev = n, f"if{i}"
        else:
            ro = nir.I(r=np.ones(sizes[-1]))
            ro.metadata = {cv.READOUT: True}
            nodes["readout"], prev = ro, "readout"
        edges.append((f"fc{i}", prev))
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append(("readout", "output"))
    return make_graph(nodes=nodes, edges=edges, metadata={cv.KIND: cv.FLOAT, "fuzz.tame": tame})


def float_twin(gi: nir.NIRGraph) -> nir.NIRGraph:
    """The integer graph relabelled float: the same integer weights, biases and thresholds run in float64."""
    g = copy_graph(gi)
    g.metadata = {k: v for k, v in g.metadata.items() if k != cv.KIND}
    g.metadata[cv.KIND] = cv.FLOAT
    return g


def readout_bound(g: nir.NIRGraph, rep, x: np.ndarray) -> np.ndarray:
    """Per sample, the largest |logit_int - logit_float| of a single-layer graph (Input -> Affine -> I), in ANN
    units: input rounding (s_x / 2 per input) through |W|, weight rounding (unit / 2 / lam per weight) through
    |x|, bias rounding (1 / 2 / lam) and the floor of a negative exponent (2**e / lam per step)."""
    lq = rep.layers[-1]
    syn = lq.synapses["fc0"]
    w = np.abs(np.asarray(g.nodes["fc0"].weight, dtype=np.float64))
    lam, s_x = lq.scale, rep.input_scale
    xq_max = np.abs(x) + s_x / 2
    e = min(syn["weight_exp"], 0)
    unit_w = syn["unit"] / lam / s_x  # weight rounding, in float-weight units
    return (w.sum(1)[None] * s_x / 2 + (unit_w / 2) * xq_max.sum(1)[:, None] + 0.5 / lam + 2.0 ** e / lam).max(1)


def valid_case(seed: int, steps: int = 8, tmpdir: str | None = None) -> dict:
    """One random valid graph: quantize, exact twin check, bound check (single layer), round trip. Returns flags."""
    rng = np.random.default_rng(seed)
    gf = random_float_graph(rng)
    n_in = int(np.asarray(gf.nodes["input"].input_type["input"])[0])
    tame = bool(cv.meta(gf, "fuzz.tame", False))
    x = rng.uniform(0 if tame else -1, 1, (16, n_in)) * (rng.random((16, 1)) < 0.9)
    bits = int(rng.integers(2, 9))
    # tame graphs take few-level input (1 bit: binary events): an 8-bit input into a layer sized by its potential
    # range leaves the input synapse a negative weight exponent (see random_float_graph)
    in_bits = int(rng.integers(1, 4)) if tame else 8
    q = quantize(gf, x, weight_bits=bits, input_bits=in_bits, calib_steps=steps, bias_onset=False)
    gi, rep = q.int_graph, q.report
    ri = simulate(gi, x, steps)
    rt = simulate(float_twin(gi), quantize_input(gi, x), steps)
    out = {"events": ri.total_events() > 0, "floor": any(s["weight_exp"] < 0 for lq in rep.layers
                                                          for s in lq.synapses.values()), "exact": False,
           "bounded": False}
    if not out["events"] and not out["floor"]:
        for n, c in ri.spike_counts.items():
            assert np.array_equal(c, rt.spike_counts[n]), f"seed {seed}: spike counts of {n!r} differ"
        assert np.array_equal(ri.potentials, np.round(rt.potentials * 64)), f"seed {seed}: readout potential differs"
        out["exact"] = True
    if len(rep.layers) == 1 and not out["events"]:
        rf = simulate(gf, x, steps)
        err = np.abs(ri.logits - rf.logits).max(1)
        bound = readout_bound(gf, rep, x)
        assert np.all(err <= bound + 1e-9), f"seed {seed}: |logit error| {err.max()} > bound {bound.max()}"
        out["bounded"] = True
    with tempfile.TemporaryDirectory(dir=tmpdir) as d:
        for g in (gf, gi):
            p = Path(d) / "g.nir"
            write(g, p)
            assert graphs_equal(g, read(p)), f"seed {seed}: write -> read changed the graph"
    return out


# ---- (b) mutated files ----------------------------------------------------------------------------------------
def _items(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda n, o: out.append(n))
    return out


def mutate(data: bytes, path: str, rng: random.Random) -> str:
    """Write a mutated copy of ``data`` (a valid NIR file) to ``path``; returns the mutation's name."""
    k = rng.randrange(8)
    if k == 0:
        Path(path).write_bytes(data[:rng.randrange(len(data))])
        return "truncate"
    if k == 1:
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        Path(path).write_bytes(bytes(b))
        return "flip bytes"
    Path(path).write_bytes(data)
    with h5py.File(path, "a") as f:
        n = rng.choice(_items(f))
        o = f[n]
        if k == 2 or not isinstance(o, h5py.Dataset):
            del f[n]
            return "delete"
        a = np.asarray(o[()])
        del f[n]
        num = a.dtype.kind in "biuf"
        if k == 3:
            f[n] = rng.choice([a.astype(np.float32) if num else np.float64(1.5), np.asarray(b"abc"),
                               a.astype(np.complex128) if num else np.asarray(1 + 2j), np.asarray(True),
                               np.int64(-3), a.astype(str).astype("S") if a.size else np.asarray(b"x")])
            return "change dtype"
        if k == 4:
            f[n] = rng.choice([a.ravel(), a.reshape(-1)[:max(0, a.size - 1)], np.stack([a, a]) if num else a,
                               np.zeros((0,)), np.float64(2.0), np.zeros((3, 7))])
            return "change shape"
        if k == 5:
            if num:
                a = a.astype(np.float64).copy()
                bad = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300])
                if a.size:
                    a.reshape(-1)[rng.randrange(a.size)] = bad
                else:
                    a = np.float64(bad)
            f[n] = a
            return "NaN/inf"
        if k == 6:
            f[n] = rng.choice([b"Bogus", b"LIF", b"NIRGraph", b"CubaLIF", b"Delay", b"Threshold", b"Conv1d", b"",
                               b"IF", b"SumPool2d", b"Affine"]) if n.endswith("type") else a
            return "change type"
        if a.dtype.kind == "f":
            a = a * rng.choice([-1.0, 0.0, 1e6, 2.0 ** 40, 0.5])
        elif a.dtype.kind in "iu":
            a = (a * rng.choice([-1, 0, 2 ** 20, 7])).astype(a.dtype)
        elif a.dtype.kind in "OS" and a.ndim == 0:
            a = np.asarray(rng.choice([b"zero", b"input", b"nope", b"relu1", b"output", b"same", b"valid"]))
        elif a.ndim:
            a = a[::-1]
        f[n] = a
        return "change value"


def mutation_case(data: bytes, path: str, rng: random.Random) -> tuple[str, str]:
    """(mutation, outcome): outcome is 'NIRFileError', 'valid+simulated' or 'valid+SnncError'; any other
    exception propagates (that is a bug)."""
    kind = mutate(data, path, rng)
    try:
        g = read(path)
    except NIRFileError:
        return kind, "NIRFileError"
    shape = infer_shapes(g)[input_name(g)]
    try:
        simulate(g, np.zeros((2,) + tuple(shape)), 2)
    except SnncError:
        return kind, "valid+SnncError"
    return kind, "valid+simulated"


def seed_files(folder: str) -> list[bytes]:
    """Valid NIR files to mutate: a float and an integer random graph, and a small conv graph."""
    out = []
    rng = np.random.default_rng(0)
    gf = random_float_graph(rng, depth=1)
    n_in = int(np.asarray(gf.nodes["input"].input_type["input"])[0])
    gi = quantize(gf, rng.uniform(-1, 1, (8, n_in)), calib_steps=4, bias_onset=False).int_graph
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (2, 1, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=np.zeros(2))
    ro = nir.I(r=np.ones(4))
    ro.metadata = {cv.READOUT: True}
    gc = make_graph(nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}), "conv": conv,
                             "if": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4))),
                             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                                   padding=np.array([0, 0])),
                             "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
                             "fc": nir.Affine(weight=rng.normal(0, 1, (4, 8)), bias=np.zeros(4)), "readout": ro,
                             "output": nir.Output(output_type={"output": np.array([4])})},
                      edges=[("input", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "fc"),
                             ("fc", "readout"), ("readout", "output")], metadata={cv.KIND: cv.FLOAT})
    from snnc.passes.fuse_synapses import fuse_synapses

    for node in gc.nodes.values():  # nir 1.0.4 nodes without a metadata field get one (as read() does)
        if getattr(node, "metadata", None) is None:
            node.metadata = {}
    gci = quantize(fuse_synapses(gc), rng.uniform(0, 1, (8, 1, 4, 4)), calib_steps=4, bias_onset=False).int_graph
    for i, g in enumerate((gf, gi, gc, gci)):
        p = Path(folder) / f"seed{i}.nir"
        write(g, p)
        out.append(p.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--valid", type=int, default=2000, help="random valid graphs")
    ap.add_argument("--mutations", type=int, default=10000, help="mutated NIR files")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    valid, crashes = Counter(), []
    for s in range(args.seed, args.seed + args.valid):
        try:
            r = valid_case(s)
            valid["cases"] += 1
            valid.update(k for k, v in r.items() if v)
        except Exception as e:
            crashes.append(f"valid seed {s}: {type(e).__name__}: {e}")
    t1 = time.perf_counter()
    outcomes, by_kind = Counter(), Counter()
    with tempfile.TemporaryDirectory() as d:
        seeds = seed_files(d)
        rng = random.Random(args.seed)
        path = os.path.join(d, "mutated.nir")
        for i in range(args.mutations):
            data = seeds[i % len(seeds)]
            state = rng.getstate()
            try:
                kind, outcome = mutation_case(data, path, rng)
                outcomes[outcome] += 1
                by_kind[(kind, outcome)] += 1
            except Exception as e:
                crashes.append(f"mutation {i} (rng state hash {hash(state) & 0xffff:x}): {type(e).__name__}: {e}\n"
                               + traceback.format_exc(limit=3))
    t2 = time.perf_counter()
    print(f"valid graphs: {valid['cases']} cases in {t1 - t0:.1f} s; exact twin checks {valid['exact']}, "
          f"single-layer bound checks {valid['bounded']}, with overflow events {valid['events']}, "
          f"with floored exponents {valid['floor']}")
    print(f"mutated files: {sum(outcomes.values())} cases in {t2 - t1:.1f} s")
    for (kind, outcome), n in sorted(by_kind.items()):
        print(f"  {kind:14s} {outcome:16s} {n}")
    for c in crashes[:20]:
        print("CRASH", c)
    total = valid["cases"] + sum(outcomes.values())
    print(f"fuzz_cases={total + len(crashes)} valid_cases={valid['cases']} mutation_cases={sum(outcomes.values())} "
          f"nir_file_errors={outcomes['NIRFileError']} valid_reads={outcomes['valid+simulated'] + outcomes['valid+SnncError']} "
          f"crashes={len(crashes)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
