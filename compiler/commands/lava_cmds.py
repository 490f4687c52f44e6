"""``snnc run`` (a graph on Lava or the CPU simulator) and ``snnc verify`` (Lava vs simulator, spike for spike)."""
from __future__ import annotations

import argparse

from snnc.argspec import Choice, Float, InFile, Int, add, constrain
from snnc.commands._common import (
    add_cluster_arg,
    add_data_args,
    add_json,
    add_steps_arg,
    data_fits_graph,
    print_spike_table,
    run_inputs,
)
from snnc.ir.errors import NIRFileError

DEFAULT_TIMEOUT_S = 3600.0


def _common_args(p: argparse.ArgumentParser, backend: bool = False) -> None:
    add(p, "graph", spec=InFile(what="NIR file", error=NIRFileError), help="integer NIR file written by snnc compile")
    add_data_args(p, calib=False)
    add(p, "--samples", spec=Int(lo=1), default=20, help="number of evaluation samples (Lava runs them one at a time)")
    add_steps_arg(p, 32)
    add(p, "--timeout", spec=Float(lo=0, open_lo=True), default=DEFAULT_TIMEOUT_S,
        help="seconds before a stuck Lava run is stopped (BackendError)")
    add_json(p)
    if backend:
        add(p, "--backend", spec=Choice(choices=("lava", "cpu")), default="lava", help="where to run (default lava)")
    constrain(p, data_fits_graph(labels=backend, integer=True))
    constrain(p, _lava_present)


def _lava_present(args: argparse.Namespace) -> None:
    """Lava is importable when the command will run it (BackendError saying how to install it otherwise)."""
    if getattr(args, "backend", "lava") == "lava":
        from snnc.backends.lava.emit import import_lava

        import_lava()


def _verify_args(p: argparse.ArgumentParser) -> None:
    _common_args(p)
    add_cluster_arg(p)


def _run_args(p: argparse.ArgumentParser) -> None:
    _common_args(p, backend=True)


def run_run(args: argparse.Namespace) -> int:
    """Accuracy, spikes per layer and samples/s of one backend."""
    ri = run_inputs(args)  # an integer snnc graph (data_fits_graph): run as compiled
    g, ev, steps, data = ri.graph, ri.evaluation, ri.steps, ri.data
    x, y = ev.x, ev.labels()
    if args.backend == "lava":
        from snnc.backends.lava import run_lava

        r = run_lava(g, x, steps, rasters=False, record_final=False, progress=not args.json,
                     timeout_s=args.timeout)
    else:
        from snnc.backends.cpu.simulator import simulate

        r = simulate(g, x, steps, progress=not args.json)
    acc = r.accuracy(y)
    out = {"backend": args.backend, "accuracy": acc, "samples": r.samples, "steps": r.steps,
           "latency_steps": r.latency_steps, "sequence": r.sequence, "input_steps": r.input_steps,
           "spikes_per_layer": r.spikes_per_layer,
           "samples_per_s": r.samples_per_s, "seconds": r.seconds, "data": data, "measured_on": {"accuracy": "eval"}}
    if args.json:
        from snnc.commands._common import print_json

        print_json(out)
        return 0
    print_spike_table(r, f"[bold]{args.graph}[/] on {args.backend}: accuracy {acc:.4f} over {r.samples} samples "
                         f"of {ev.spec}, T={r.steps} (run lasts {r.latency_steps} steps), "
                         f"{r.samples_per_s:.2f} samples/s", events=False)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Lava vs simulator on the same samples; exit 0 only when every spike and potential agrees."""
    from snnc.backends.lava import verify

    ri = run_inputs(args, report=False)
    g, x, steps = ri.graph, ri.evaluation.x, ri.steps
    if args.cluster:
        from snnc import cluster

        rep = cluster.verify(g, x, steps, args.cluster, timeout_s=args.timeout, progress=not args.json)
    else:
        rep = verify(g, x, steps, progress=not args.json, timeout_s=args.timeout)
    if args.json:
        from snnc.commands._common import print_json

        print_json(rep.as_dict())
        return 0 if rep.ok else 1
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"{args.graph}: Lava vs CPU simulator, {rep.samples} samples, T={rep.steps}")
    for col in ("layer", "spikes compared", "spikes differing", "final u differing", "final v differing"):
        t.add_column(col)
    for n, d in rep.layers.items():
        t.add_row(n, str(d.spikes_compared), str(d.spikes_differ), str(d.u_differ), str(d.v_differ))
    con.print(t)
    con.print(f"spikes compared {rep.spikes_compared}, spikes differing {rep.spikes_differ}, "
              f"output potentials differing {rep.potentials_differ}, final states differing {rep.state_differ}")
    con.print(f"Lava {rep.lava_samples_per_s:.2f} samples/s (compile {rep.lava_compile_s:.1f} s), "
              f"simulator {rep.sim_samples_per_s:.1f} samples/s")
    if rep.first_divergence is not None:
        d = rep.first_divergence
        con.print(f"[red]first divergence:[/] layer {d.layer}, neuron {d.neuron}, sample {d.sample}, step {d.step} "
                  f"(simulator {'spike' if d.sim else 'no spike'}, Lava {'spike' if d.lava else 'no spike'})")
    if not rep.ok:
        con.print("[red]MISMATCH[/]")
        return 1
    con.print("[green]OK[/]: Lava and the simulator agree on every spike and potential")
    return 0


COMMANDS = [
    ("run", "run an integer NIR graph on Lava (fixed point) or the CPU simulator: accuracy, spikes, samples/s",
     _run_args, run_run),
    ("verify", "run the same samples on Lava and the CPU simulator and compare every spike and potential",
     _verify_args, run_verify),
]
