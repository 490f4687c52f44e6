"""Independent readings of a recurrent NIR graph (the NIR paper's braille nets), stepped on the raw file's nodes.

The frameworks' timing: within a step every node runs in feed-forward order with no delay; an edge that closes a
loop (a recurrent edge) carries its source's value of the previous step. snnc delays every connection by one step,
so its layer at forward depth k spikes k steps later (``shifted``). Two CubaLIF readings with an immediate reset
(nir-paper.md), in float64 with the file's parameters (dt = the files' 1e-4 s):
  "a" (Lava's order, snnc's):  I = I + dt/tau_syn (-I + w_in x);  v = v + dt/tau_mem (v_leak - v + r I)  (new I)
  "c" (the paper's numpy reference, paper/03_rnn/extras/debug_CubaLIF/nir_reference_impl.py): the same with the
      previous step's I in the v update (explicit Euler)
then spike where v > v_threshold and reset: v -= v_threshold ("subtract") or v = 0 ("zero").
snnTorch 1.0.0 (reading "b") is run by ``snntorch_braille``: its own RSynaptic and Synaptic modules.
Imported as a top-level module (pytest puts ``tests/`` on sys.path).
"""
from __future__ import annotations

import networkx as nx
import nir
import numpy as np
import torch


def _a(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


def _back_edges(graph: nir.NIRGraph) -> set[tuple[str, str]]:
    from snnc.ir.graph import back_edges

    return set(back_edges(graph))


def run_cuba_reading(graph: nir.NIRGraph, x: np.ndarray, reading: str, reset: str, dt: float = 1e-4
                     ) -> dict[str, np.ndarray]:
    """Spikes (T, N, n) of every CubaLIF of a flattened recurrent NIR graph of Affine/Linear and CubaLIF nodes for
    the sequence ``x`` (N, T, n_in), in the frameworks' timing; ``reading`` "a" or "c" (module docstring)."""
    from snnc.frontend.nir_import import flatten_subgraphs

    g = flatten_subgraphs(graph)
    back = _back_edges(g)
    fwd = nx.DiGraph([e for e in map(tuple, g.edges) if e not in back])
    order = list(nx.topological_sort(fwd))
    preds = {n: [s for s, d in map(tuple, g.edges) if d == n] for n in g.nodes}
    N, T = x.shape[:2]
    cur: dict[str, np.ndarray] = {}  # node -> output this step
    prev: dict[str, np.ndarray] = {}  # node -> output of the previous step (for recurrent edges)
    state: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out: dict[str, list] = {}
    for t in range(T):
        for n in order:
            node = g.nodes[n]
            if isinstance(node, nir.Input):
                cur[n] = x[:, t].astype(np.float64)
                continue
            h = 0.0
            for p in preds[n]:
                if (p, n) not in back:
                    h = h + cur[p]
                elif p in prev:
                    h = h + prev[p]
                elif isinstance(g.nodes[p], nir.Affine):  # before the first step the loop's spikes are 0
                    h = h + _a(g.nodes[p].bias)
            if isinstance(node, (nir.Affine, nir.Linear)):
                y = np.broadcast_to(np.asarray(h, np.float64), (N, _a(node.weight).shape[1])) @ _a(node.weight).T
                cur[n] = y + _a(node.bias) if isinstance(node, nir.Affine) else y
            elif isinstance(node, nir.CubaLIF):
                i0, v0 = state.get(n, (np.zeros((N,) + _a(node.v_threshold).shape),) * 2)
                i1 = i0 + dt / _a(node.tau_syn) * (-i0 + _a(node.w_in) * h)
                drive = i1 if reading == "a" else i0
                v1 = v0 + dt / _a(node.tau_mem) * (_a(node.v_leak) - v0 + _a(node.r) * drive)
                s = v1 > _a(node.v_threshold)
                v1 = v1 - s * _a(node.v_threshold) if reset == "subtract" else np.where(s, 0.0, v1)
                state[n] = (i1, v1)
                cur[n] = s.astype(np.float64)
                out.setdefault(n, []).append(s)
            elif isinstance(node, nir.Output):
                cur[n] = h
            else:
                raise TypeError(f"reference: no rule for {type(node).__name__} ({n!r})")
        prev = dict(cur)
    return {n: np.stack(v) for n, v in out.items()}


def snntorch_braille(graph: nir.NIRGraph, x: np.ndarray, reset: str) -> dict[str, np.ndarray]:
    """snnTorch 1.0.0 running a braille graph as the paper's training notebook builds it (fc1 -> RSynaptic with an
    all-to-all recurrent Linear -> fc2 -> Synaptic, reset_delay=False, the file's alpha/beta/weights/biases);
    spikes (T, N, n) keyed "lif1.lif" and "lif2"."""
    import snntorch as snn

    g = graph
    sub = g.nodes["lif1"] if "lif1" in g.nodes and isinstance(g.nodes["lif1"], nir.NIRGraph) else None
    from snnc.frontend.nir_import import flatten_subgraphs

    g = flatten_subgraphs(graph) if sub is not None else graph
    fc1, rec, lif1, fc2, lif2 = (g.nodes[k] for k in ("fc1", "lif1.w_rec", "lif1.lif", "fc2", "lif2"))
    dt = 1e-4

    def lin(node) -> torch.nn.Linear:
        w = torch.as_tensor(_a(node.weight))
        m = torch.nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine)).double()
        with torch.no_grad():
            m.weight.copy_(w)
            if isinstance(node, nir.Affine):
                m.bias.copy_(torch.as_tensor(_a(node.bias)))
        return m

    def ab(node):
        return (torch.as_tensor(1 - dt / _a(node.tau_syn)), torch.as_tensor(1 - dt / _a(node.tau_mem)))

    a1, b1 = ab(lif1)
    a2, b2 = ab(lif2)
    n1 = _a(lif1.v_threshold).size
    l1 = snn.RSynaptic(alpha=a1, beta=b1, linear_features=n1, reset_mechanism=reset, reset_delay=False,
                       threshold=torch.as_tensor(_a(lif1.v_threshold))).double()
    l1.recurrent = _Float64(lin(rec))  # snnTorch's spikes come out float32; the run is float64 throughout
    l2 = snn.Synaptic(alpha=a2, beta=b2, reset_mechanism=reset, reset_delay=False,
                      threshold=torch.as_tensor(_a(lif2.v_threshold))).double()
    f1, f2 = lin(fc1), lin(fc2)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    s1r, s2r = [], []
    with torch.no_grad():
        # zero states of the right shape: RSynaptic 1.0.0 with reset_delay=False computes spk - reset from its
        # spk argument, which fails on init_rsynaptic()'s empty tensors
        spk1, syn1, mem1 = (torch.zeros((xt.shape[0], n1), dtype=torch.float64) for _ in range(3))
        syn2, mem2 = l2.init_synaptic()
        for t in range(xt.shape[1]):
            spk1, syn1, mem1 = l1(f1(xt[:, t]), spk1, syn1, mem1)
            spk2, syn2, mem2 = l2(f2(spk1.double()), syn2, mem2)
            s1r.append(spk1.numpy() > 0)
            s2r.append(spk2.numpy() > 0)
    return {"lif1.lif": np.stack(s1r), "lif2": np.stack(s2r)}


class _Float64(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.double())


def shifted(rasters: dict[str, np.ndarray], depths: dict[str, int], steps: int) -> dict[str, np.ndarray]:
    """snnc rasters (latency, N, ...) cut to the frameworks' timing: layer at depth d from step d, ``steps`` long."""
    return {n: r[depths[n]:depths[n] + steps] for n, r in rasters.items() if n in depths}
