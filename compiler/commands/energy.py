"""snnc energy: synaptic-op energy estimate and spike statistics of a simulated run, SNN vs ANN, with plots."""
from __future__ import annotations

import argparse

from snnc.argspec import MAX_STEPS, Choice, Int, List, OutDir, add
from snnc.commands._common import (
    add_cluster_arg,
    add_json,
    add_sim_args,
    run_inputs,
    seen_in_calib,
)


def _energy_args(p: argparse.ArgumentParser) -> None:
    from snnc.analysis.energy import MODELS

    add_sim_args(p, steps=8)
    add(p, "--energy-model", spec=Choice(choices=tuple(sorted(MODELS))), default="cmos45",
        help="per-op energies: cmos45 (Horowitz 2014) or loihi (Davies 2018)")
    add(p, "--plots", spec=OutDir(), metavar="DIR", help="write the PNG plots into DIR (created)")
    add(p, "--sweep", spec=List(item=Int(lo=1, hi=MAX_STEPS), empty=True), default="", help="comma-separated T "
        "values for the accuracy-vs-energy plot and the 'sweep' JSON key (e.g. 1,4,8,32); each runs the simulator "
        "again")
    add_cluster_arg(p)
    add_json(p)


def run_energy(args: argparse.Namespace) -> int:
    from snnc.analysis.energy import get_model
    from snnc.analysis.report import energy_report
    from snnc.backends.cpu.simulator import simulate

    model = get_model(args.energy_model)
    sweep_ts = args.sweep
    ri = run_inputs(args)
    g, ev, steps, data = ri.graph, ri.evaluation, ri.steps, ri.data
    x, y = ev.x, ev.labels()

    def run(T: int):
        if args.cluster:
            from snnc import cluster

            r = cluster.simulate(g, x, T, args.cluster, batch_size=args.batch, device=args.device,
                                 progress=not args.json)
        else:
            r = simulate(g, x, T, batch_size=args.batch, device=args.device)
        return energy_report(g, x, r, model, y)

    rep = run(steps)
    sweep = [rep if T == steps else run(T) for T in sweep_ts]
    plots = []
    if args.plots:
        from snnc.analysis.plots import write_all

        plots = [str(p) for p in write_all(rep, args.plots, sweep or None)]
    out = rep.as_dict()
    out["graph"] = str(args.graph)
    out["data"] = data
    out["measured_on"] = {"accuracy": "eval", "spikes": "eval", "sops": "eval", "input_macs": "eval",
                          "macs": out["ann_macs_counted_on"]}
    out["plots"] = plots
    out["sweep"] = [{k: s.as_dict()[k] for k in ("steps", "accuracy", "sops", "input_macs", "neuron_updates",
                                                  "macs", "snn_energy_j", "ann_energy_j",
                                                  "energy_ratio_ann_over_snn")} for s in sweep]
    if args.json:
        from snnc.commands._common import print_json

        print_json(out)
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    ratio = out["energy_ratio_ann_over_snn"]
    seen = seen_in_calib(data)
    what = f"sequences of {rep.input_steps} steps" if rep.sequence else "static frames"
    con.print(f"[bold]{args.graph}[/] on {ev.spec} ({what}): T={rep.steps} (run lasts {rep.latency_steps} steps), "
              f"{rep.samples} evaluation samples{f' ({seen} also in the calibration data)' if seen else ''}, "
              f"accuracy {rep.accuracy:.4f}; energy model {model.name} ({model.source})")
    con.print(f"ANN baseline: {rep.macs:.0f} MACs per inference, counted on the {out['ann_macs_counted_on_text']} "
              f"(the compiled graph itself: {rep.macs_compiled_graph:.0f})")
    t = Table(title="per inference")
    for col in ("layer", "neurons", "spikes", "rate", "silent", "saturated", "SOPs", "input MACs",
                "neuron updates", "ANN MACs", "SNN energy (nJ)", "ANN energy (nJ)"):
        t.add_column(col, justify="right")

    def opt(v, fmt="{}"):
        return "-" if v is None else fmt.format(v)

    for r in rep.layers:
        t.add_row(r.name, str(r.neurons), f"{r.spikes:.1f}", opt(r.rate, "{:.4f}"), opt(r.silent),
                  opt(r.saturated), f"{r.sops:.0f}", f"{r.input_macs:.0f}", f"{r.neuron_updates:.0f}",
                  f"{r.macs:.0f}", f"{r.snn_energy_j * 1e9:.3f}", f"{r.ann_energy_j * 1e9:.3f}")
    t.add_row("total", str(sum(r.neurons for r in rep.layers)), f"{rep.spikes:.1f}", "", "", "",
              f"{rep.sops:.0f}", f"{rep.input_macs:.0f}", f"{rep.neuron_updates:.0f}", f"{rep.macs:.0f}",
              f"{rep.snn_energy_j * 1e9:.3f}", f"{rep.ann_energy_j * 1e9:.3f}")
    con.print(t)
    con.print(f"ANN / SNN energy: {ratio:.3f}" if ratio is not None else "SNN energy is 0")
    if sweep:
        st = Table(title="sweep over T")
        for col in ("T", "accuracy", "SOPs", "SNN energy (nJ)", "ANN / SNN energy"):
            st.add_column(col, justify="right")
        for s in out["sweep"]:
            st.add_row(str(s["steps"]), f"{s['accuracy']:.4f}", f"{s['sops']:.0f}", f"{s['snn_energy_j'] * 1e9:.3f}",
                       opt(s["energy_ratio_ann_over_snn"], "{:.3f}"))
        con.print(st)
    for p in plots:
        con.print(f"wrote {p}")
    return 0


COMMANDS = [
    ("energy", "synaptic-op energy estimate and spike statistics of a simulated run, SNN vs ANN, with plots",
     _energy_args, run_energy),
]
