"""snnc: trained torch ANN -> integer SNN in NIR -> Lava processes or the bit-accurate CPU simulator.

    import snnc
    c = snnc.compile(model, x_calib)               # or an NIR file / nir.NIRGraph from another tool
    r = snnc.simulate(c.int_graph, x_test, steps=32); r.accuracy(y_test), r.spikes_per_layer
    snnc.write(c.int_graph, "model.nir"); g = snnc.read("model.nir")
    rep = snnc.verify(g, x_test[:20], steps=32)    # Lava vs simulator, spike for spike
    e = snnc.energy(g, x_test, steps=8, labels=y_test)

The data flows one way: ``snnc.frontend`` (torch.fx conversion, NIR import) -> ``snnc.ir`` (the NIR graph, its
plan, its ``snnc.`` metadata) -> ``snnc.passes`` (Graph -> Graph) -> ``snnc.backends`` (cpu, lava); ``snnc.pipeline``
orders the stages. Names are loaded on first use, so ``import snnc.ir`` stays light."""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "compile": ("snnc.pipeline", "compile"),
    "CompileOptions": ("snnc.pipeline", "CompileOptions"),
    "Compiled": ("snnc.pipeline", "Compiled"),
    "ConvertOptions": ("snnc.frontend.convert", "ConvertOptions"),
    "ImportOptions": ("snnc.frontend.nir_import", "ImportOptions"),
    "simulate": ("snnc.backends.cpu.simulator", "simulate"),
    "verify": ("snnc.backends.lava", "verify"),
    "run_lava": ("snnc.backends.lava", "run_lava"),
    "energy": ("snnc.analysis.report", "energy"),
    "read": ("snnc.ir.graph", "read"),
    "write": ("snnc.ir.graph", "write"),
    "validate": ("snnc.ir.graph", "validate"),
    "SnncError": ("snnc.ir.errors", "SnncError"),
    "UnsupportedLayerError": ("snnc.ir.errors", "UnsupportedLayerError"),
    "RecurrentTimingError": ("snnc.ir.errors", "RecurrentTimingError"),
    "GraphError": ("snnc.ir.errors", "GraphError"),
    "NIRFileError": ("snnc.ir.errors", "NIRFileError"),
    "QuantizationError": ("snnc.ir.errors", "QuantizationError"),
    "BackendError": ("snnc.ir.errors", "BackendError"),
    "DataError": ("snnc.ir.errors", "DataError"),
    "OverflowEventError": ("snnc.ir.errors", "OverflowEventError"),
    "UsageError": ("snnc.ir.errors", "UsageError"),
    "InternalError": ("snnc.ir.errors", "InternalError"),
    "load_model": ("snnc.model_file", "load_model"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        mod, attr = _PUBLIC[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'snnc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
