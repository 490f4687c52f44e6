"""PNG plots of an energy report (matplotlib, Agg backend): spikes per layer, firing-rate histogram, energy per
layer SNN vs ANN, accuracy vs energy across T."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snnc.ir.atomic import atomic_path  # noqa: E402

from .report import EnergyReport  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix, PNG when none) whole or not at all, and close it."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=Path(path).suffix[1:].lower() or "png")
    finally:
        plt.close(fig)
    return Path(path)


def spikes_per_layer(rep: EnergyReport, path: Path) -> Path:
    """Bar chart: mean spikes per inference of each spiking layer."""
    names = list(rep.stats)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, [rep.stats[n].spikes_per_inference for n in names], color="tab:blue")
    ax.set_ylabel("spikes per inference")
    ax.set_title(f"spikes per layer (T={rep.steps}, {rep.samples} samples)")
    return save_figure(fig, path)


def rate_histogram(rep: EnergyReport, path: Path) -> Path:
    """Histogram of per-neuron firing rates (spikes per neuron per step), one series per layer."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    for n, st in rep.stats.items():
        ax.hist(np.clip(st.rates.ravel(), 0, 1), bins=bins, alpha=0.6,
                label=f"{n} (silent {st.silent}, saturated {st.saturated})")
    ax.set_xlabel("firing rate (spikes / neuron / step)")
    ax.set_ylabel("neurons")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"firing-rate histogram (T={rep.steps})")
    return save_figure(fig, path)


def energy_per_layer(rep: EnergyReport, path: Path) -> Path:
    """Grouped bars: SNN vs ANN energy per inference of each layer (log scale, joules)."""
    names = [r.name for r in rep.layers]
    idx = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(idx - 0.2, [r.snn_energy_j for r in rep.layers], 0.4, label=f"SNN ({rep.model.name})")
    ax.bar(idx + 0.2, [r.ann_energy_j for r in rep.layers], 0.4, label="ANN (MACs)")
    ax.set_xticks(idx, names)
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.legend()
    ax.set_title(f"energy per layer (T={rep.steps})")
    return save_figure(fig, path)


def accuracy_vs_energy(reps: list[EnergyReport], path: Path, ann_accuracy: float | None = None) -> Path:
    """Accuracy against SNN energy per inference, one point per T; the ANN as a reference line/point."""
    reps = sorted(reps, key=lambda r: r.steps)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    e = [r.snn_energy_j for r in reps]
    a = [r.accuracy if r.accuracy is not None else np.nan for r in reps]
    ax.plot(e, a, "o-", label=f"SNN ({reps[0].model.name})")
    for r, ei, ai in zip(reps, e, a):
        ax.annotate(f"T={r.steps}", (ei, ai), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ann_e = reps[0].ann_energy_j
    ax.axvline(ann_e, color="tab:red", ls="--", label="ANN energy")
    if ann_accuracy is not None:
        ax.plot([ann_e], [ann_accuracy], "s", color="tab:red", label="ANN")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("accuracy vs energy across T")
    return save_figure(fig, path)


def write_all(rep: EnergyReport, outdir: str | Path, sweep: list[EnergyReport] | None = None,
              ann_accuracy: float | None = None) -> list[Path]:
    """The four PNGs into ``outdir`` (created); ``sweep`` (reports at several T) for the accuracy-energy plot."""
    d = Path(outdir)
    d.mkdir(parents=True, exist_ok=True)
    return [spikes_per_layer(rep, d / "spikes_per_layer.png"), rate_histogram(rep, d / "rate_histogram.png"),
            energy_per_layer(rep, d / "energy_per_layer.png"),
            accuracy_vs_energy(sweep or [rep], d / "accuracy_vs_energy.png", ann_accuracy)]
