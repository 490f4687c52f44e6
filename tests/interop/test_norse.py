"""Norse 1.1.0 <-> snnc (nox session ``frameworks``): spikes compared on the same input.

Norse's LIFBoxCell steps v += dt·tau_mem_inv·(v_leak − v + i), spikes where v > v_th, resets v = v_reset (0);
IAFCell: v += i, same spike and reset. Norse 1.1.0's ``to_nir`` (measured, nir 1.0.8):
  - 0-d parameters (tau, r, v_leak, v_threshold), which ``nir.write`` cannot store ("Scalar datasets don't
    support chunk/filter options"); snnc's reader broadcasts them to the layer (NIRImportWarning), and
    ``snnc.ir.nir_compat.write`` stores them;
  - the Input type includes the batch dimension ([1, 12]): dropped by snnc (NIRImportWarning);
  - tau = dt/tau_mem_inv (1e-5 s for tau_mem_inv = 100/s, dt = 1e-3 s): NIR's Euler step dt_s/tau equals Norse's
    dt·tau_mem_inv only for dt_s = dt**2, so snnc reads these graphs with ImportOptions(dt=dt**2); with the default
    step the graph is refused by name (tau shorter than dt).
snnc delays every connection by one step; layer k is compared k steps later (``spike_compare``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snnc.frontend.nir_import import ImportOptions, lower, read_any
from snnc.passes.fuse_synapses import fuse_synapses
from snnc.ir import nir_compat
from snnc.ir.errors import NIRImportWarning, UnsupportedLayerError
from spike_compare import compare_and_measure, converted_mlp, measure, mismatches, snnc_rasters

pytestmark = pytest.mark.skipif(importlib.util.find_spec("norse") is None,
                                reason="Norse 1.1.0 not installed: run `nox -s frameworks`")
DATA = Path(__file__).parent.parent / "data" / "nir_paper"
DT = 1e-3  # s, Norse's default step
T = 24


def _version() -> str:
    import norse

    return getattr(norse, "__version__", None) or importlib.metadata.version("norse")


def _rasters(net: torch.nn.Module, x: torch.Tensor, steps: int, cells: tuple) -> dict[str, np.ndarray]:
    """Run a stateful Norse module (SequentialState or from_nir's GraphExecutor) for ``steps`` steps of the static
    input x; spikes of every module of a type in ``cells``, keyed by module name, (steps, N, n) bool."""
    rec: dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: rec.setdefault(k, []).append(o[0].detach().clone()))
             for k, m in net.named_modules() if isinstance(m, cells)]
    state = None
    with torch.no_grad():
        for _ in range(steps):
            _, state = net(x, state)
    for h in hooks:
        h.remove()
    return {k: torch.stack(v).numpy() > 0 for k, v in rec.items()}


def _lif_mlp():
    import norse.torch as nt

    torch.manual_seed(0)
    net = nt.SequentialState(torch.nn.Linear(12, 16, bias=False), nt.LIFBoxCell(),
                             torch.nn.Linear(16, 4, bias=False), nt.LIFBoxCell())
    with torch.no_grad():
        net[0].weight.data = net[0].weight.data.abs() * 8
        net[2].weight.data = net[2].weight.data.abs() * 3.0
    return net


def test_norse_to_snnc(tmp_path):
    """Norse LIFBoxCell MLP -> norse.torch.to_nir -> snnc: every spike equal with dt = dt_norse**2; the export's
    quirks are read with named warnings (not crashes); the graph round-trips through snnc's writer."""
    import norse.torch as nt

    net = _lif_mlp()
    g = nt.to_nir(net, torch.randn(1, 12))
    assert np.ndim(g.nodes["1"].tau) == 0 and float(g.nodes["1"].tau) == pytest.approx(DT / 100)
    with pytest.raises(TypeError, match="Scalar datasets"):
        nir.write(tmp_path / "norse_nir.nir", g)  # nir's own writer (gzip) refuses the 0-d parameters
    nir_compat.write(str(tmp_path / "norse.nir"), g)
    with pytest.raises(UnsupportedLayerError, match=r"node '1': field 'tau' = 1e-05 .*dt = dt_norse\*\*2"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NIRImportWarning)
            lower(g)
    with pytest.warns(NIRImportWarning) as w:
        lg = fuse_synapses(lower(read_any(tmp_path / "norse.nir"), ImportOptions(dt=DT ** 2)))
    msgs = " | ".join(str(x.message) for x in w)
    assert "node 'input': field 'input_type' [1, 12] includes a batch dimension" in msgs
    assert "node '1': fields tau, r, v_leak, v_threshold" in msgs and "node '3': fields" in msgs
    x = torch.rand(16, 12)
    ref = _rasters(net, x, T, (nt.LIFBoxCell,))
    mism = compare_and_measure("Norse", _version(), "Norse -> snnc", "test_norse_to_snnc", ref,
                               snnc_rasters(lg, x.numpy(), T, list(ref)),
                               "LIFBoxCell MLP, to_nir, written by snnc, read with dt = dt_norse**2")
    assert mism == {"1": 0, "3": 0}


def test_norse_runs_paper_lif_like_snnc():
    """The NIR paper's lif_norse.nir (LIF(1), tau 2.5 ms, dt = 1e-4 s), run by Norse's from_nir (dt = 1e-4) and by
    snnc: equal spikes when snnc resets to zero as Norse does; read as the file's nir release says (reset by
    subtraction: no v_reset stored) they differ (measured)."""
    import norse.torch as nt

    raw = read_any(DATA / "lif_norse.nir")
    x = torch.tensor([[0.3], [0.5], [1.0], [2.0]])
    net = nt.from_nir(nir.read(DATA / "lif_norse.nir"), dt=1e-4)
    ref = _rasters(net, x, T, (nt.LIFBoxCell,))
    assert list(ref) == ["1"]
    zero = fuse_synapses(lower(raw, ImportOptions(dt=1e-4, reset="zero")))
    mism = compare_and_measure("Norse", _version(), "paper lif_norse.nir: Norse vs snnc", "test_norse_runs_paper_lif_like_snnc",
                               ref, snnc_rasters(zero, x.numpy(), T, ["1"]), "snnc with reset='zero' (Norse's)")
    assert mism == {"1": 0}
    as_file = mismatches(ref, snnc_rasters(fuse_synapses(lower(raw, ImportOptions(dt=1e-4))), x.numpy(), T, ["1"]))
    measure("Norse", _version(), "paper lif_norse.nir: Norse vs snnc", "test_norse_runs_paper_lif_like_snnc",
            ref["1"].size, as_file["1"], "snnc as the file says (no v_reset: reset by subtraction)")
    assert as_file["1"] > 0


def test_snnc_graph_opens_in_norse():
    """snnc float graph -> norse.torch.from_nir: IF layers become IAFCell (v += i, reset to zero); graphs converted
    with reset 'zero' give every spike equal, subtract-reset graphs differ (measured). Norse has no reader for
    snnc's I readout: from_nir drops it silently (the output is the last synapse's current)."""
    import norse.torch as nt

    for reset in ("zero", "subtract"):
        c, x = converted_mlp(reset)
        net = nt.from_nir(c.float_graph)
        assert "readout" in c.float_graph.nodes and not hasattr(net, "readout")
        ref = _rasters(net, torch.as_tensor(x, dtype=torch.float32), T, (nt.IAFCell,))
        assert set(ref) == {"_1", "_3"}
        mine = snnc_rasters(c.float_graph, x, T, list(ref))
        if reset == "zero":
            mism = compare_and_measure("Norse", _version(), "snnc -> Norse", "test_snnc_graph_opens_in_norse", ref,
                                       mine, "converted MLP, reset zero, from_nir (readout dropped)")
            assert mism == {"_1": 0, "_3": 0}
        else:
            mism = mismatches(ref, mine)
            measure("Norse", _version(), "snnc -> Norse", "test_snnc_graph_opens_in_norse",
                    sum(r.size for r in ref.values()), sum(mism.values()),
                    "converted MLP, reset subtract: Norse's IAF resets to zero")
            assert sum(mism.values()) > 0
