"""The bias-onset pre-charge (v_init - depth * bias) of deep layers must fit Lava's 24-bit potential: quantize
sizes such layers' scale for it, and the pass refuses, by name, an integer graph where it would not fit (Lava
would saturate v, cut the pre-charge and the neuron would fire before its input arrives)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import snnc
import torch
from snnc.backends.cpu.simulator import simulate
from snnc.ir import conventions as cv
from snnc.ir.errors import QuantizationError
from snnc.ir.plan import build_plan
from snnc.passes.bias_onset import compensate_bias_onset

DEPTH = 20


def _deep_mlp_with_bias() -> tuple[torch.nn.Module, np.ndarray]:
    """A 20-hidden-layer MLP, non-negative weights; the last hidden layer is driven mostly by a positive bias."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(DEPTH):
        lin = torch.nn.Linear(6, 6)
        with torch.no_grad():
            lin.weight.abs_().mul_(0.3)
            lin.bias.zero_()
        layers += [lin, torch.nn.ReLU()]
    with torch.no_grad():
        layers[-2].bias.fill_(2.0)
    m = torch.nn.Sequential(*layers, torch.nn.Linear(6, 3)).eval()
    return m, np.random.default_rng(0).random((32, 6)).astype(np.float32)


def test_quantize_leaves_room_for_the_onset_precharge() -> None:
    m, x = _deep_mlp_with_bias()
    c = snnc.compile(m, x)
    gi = c.int_graph
    plan = build_plan(gi)
    deep = plan.neurons[DEPTH - 1]  # the last hidden IF layer, depth 20
    assert plan.depths[deep] == DEPTH
    rep = {lq.name: lq for lq in c.report.layers}
    assert rep[deep].limit == "bias onset pre-charge"
    for n in plan.neurons:
        v0 = cv.v_init(gi.nodes[n], plan.shapes[n]) * 64
        assert v0.min() >= -cv.V_MAX, n
    # the integer net spikes like the float one (a cut pre-charge fires ~ depth * bias / theta spikes early)
    T = 8
    rf, ri = simulate(c.float_graph, x, T), simulate(gi, x, T)
    assert np.abs(rf.spike_counts[deep].astype(int) - ri.spike_counts[deep]).max() <= 1
    assert not sum(ri.events[deep].values())  # its potential never saturates


def test_bias_onset_refuses_a_precharge_outside_24_bits() -> None:
    m, x = _deep_mlp_with_bias()
    c = snnc.compile(m, x, bias_onset=False)
    gi = copy.deepcopy(c.int_graph)
    plan = build_plan(gi)
    deep = plan.neurons[DEPTH - 1]
    syn = plan.connections[plan.incoming[deep][0]].ops[-1]
    gi.nodes[syn].bias = np.full_like(np.asarray(gi.nodes[syn].bias, dtype=np.float64), 16000.0)  # 13-bit << 1
    with pytest.raises(QuantizationError, match=rf"{deep!r}.*snnc.v_init.*24-bit"):
        compensate_bias_onset(gi)
