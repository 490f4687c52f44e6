"""Run samples of an integer graph on Lava's fixed-point CPU models (``Loihi2SimCfg(select_tag="fixed_pt")``).

Samples run one at a time for ``steps + plan.depth`` steps each on one compiled network. A static frame is set
into the input RingBuffer per sample; a sequence (``snnc.ir.sequence``) is laid out once, one slot per step of the
whole run (sample i's slice t in slot i * latency + t, zeros after the presented slices), so nothing is set. At
each sample start every neuron's u is 0 and v its initial value, and every Dense/Conv one-step buffer is empty (Lava's LIFReset
is not equivalent: the synapse buffers would carry spikes across the sample boundary). snnc's SubtractLIF does
this itself (``sample_steps``); for stock LIF layers and their incoming buffers the runner calls set(). Spikes
come back through Extractors, one message per step; the readout potential is read after ``depth`` steps and at
the end, and logits are computed exactly as the CPU simulator does.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from snnc.backends.lava.emit import emit, import_lava
from snnc.backends.lava.layout import from_lava, to_lava
from snnc.ir import conventions as cv
from snnc.ir.chain import quantize_input
from snnc.ir.errors import BackendError, SnncError
from snnc.ir.graph import Graph
from snnc.ir.plan import build_plan
from snnc.ir.sequence import InputSeries, input_series


@dataclass
class LavaResult:
    """Outcome of a Lava run over all samples (fields as in ``snnc.backends.cpu.simulator.SimResult``).

    logits: float (N, n_out), readout potential gained over the last ``steps`` steps / (64 * snnc.scale) / steps
    potentials: int (N, n_out), readout v (24-bit) at the end
    spikes_per_layer: spiking layer -> total spikes; spike_counts: layer -> (N, *shape) int32 (NIR order)
    rasters: layer -> bool (latency_steps, N, *shape), NIR order; final_state: layer -> {"u", "v"}: (N, *shape)
    seconds: wall time of the sample loop (compilation excluded); compile_seconds: first compile and start
    """

    logits: np.ndarray
    potentials: np.ndarray
    steps: int
    latency_steps: int
    samples: int
    spikes_per_layer: dict[str, int]
    spike_counts: dict[str, np.ndarray]
    seconds: float
    compile_seconds: float
    rasters: dict[str, np.ndarray] | None = None
    final_state: dict[str, dict[str, np.ndarray]] | None = None
    neurons_per_layer: dict[str, int] = field(default_factory=dict)
    kind: str = cv.INTEGER
    sequence: bool = False
    input_steps: int | None = None

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.logits.argmax(1) == np.asarray(labels)).mean())

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


@contextlib.contextmanager
def deadline(seconds: float | None, what: str = "Lava run") -> Iterator[None]:
    """Raise ``BackendError`` if the block runs longer than ``seconds`` (SIGALRM; main thread only).

    Nests: an enclosing deadline keeps its own remaining time."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum: int, frame: object) -> None:
        raise BackendError(f"{what} exceeded its time limit of {seconds:g} s (a Lava process is stuck)")

    t0 = time.monotonic()
    old = signal.signal(signal.SIGALRM, _alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:  # give the enclosing deadline what is left of its time (at least a moment)
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 1e-3))


def _kill_runtime(runtime: object) -> None:
    """Terminate the OS processes of a Lava runtime and free its shared memory (when ``stop()`` cannot)."""
    mi = getattr(runtime, "_messaging_infrastructure", None)
    actors = list(getattr(mi, "actors", []) or [])
    for a in actors:
        with contextlib.suppress(Exception):
            if a.is_alive():
                a.terminate()
    for a in actors:
        with contextlib.suppress(Exception):
            mp.Process.join(a, 5)
            if a.is_alive():
                a.kill()
                mp.Process.join(a, 5)
    with contextlib.suppress(Exception):
        mi.smm.shutdown()
    with contextlib.suppress(Exception):
        runtime._watchdog_manager.stop()
    for flag in ("_is_running", "_is_started"):
        with contextlib.suppress(Exception):
            setattr(runtime, flag, False)


def shutdown(process: object, clean: bool = True, timeout_s: float = 30.0) -> None:
    """Stop the Lava runtime ``process`` belongs to: ``stop()`` within ``timeout_s`` when ``clean``, otherwise
    (or when that fails) terminate its processes. Never raises; a no-op when nothing was started."""
    runtime = getattr(process, "runtime", None)
    if runtime is None:
        return
    if clean:
        try:
            with deadline(timeout_s, "Lava stop"):
                process.stop()
            return
        except BaseException:  # noqa: BLE001 - a stuck or failed stop falls through to the kill
            pass
    _kill_runtime(runtime)


def _prepare_input(graph: Graph, series: InputSeries, nd: int) -> np.ndarray:
    """Integer input per sample in Lava layout: (N, *lava_shape) or, for a sequence, (N, T_in, *lava_shape)."""
    return to_lava(quantize_input(graph, series.x).astype(np.int32), nd)


def sequence_source(xl: np.ndarray, shown: int, latency: int) -> np.ndarray:
    """RingBuffer data for a whole sequence run: xl (N, T_in, *lava_shape) -> (*lava_shape, N * latency), sample i's
    slice t (t < ``shown``) in slot i * latency + t, zeros elsewhere."""
    n = xl.shape[0]
    buf = np.zeros((n, latency) + xl.shape[2:], dtype=np.int32)
    buf[:, :shown] = xl[:, :shown]
    return np.ascontiguousarray(np.moveaxis(buf.reshape((n * latency,) + xl.shape[2:]), 0, -1))


def run_lava(graph: Graph, x: np.ndarray, steps: int | None = None, rasters: bool = True,
             record_final: bool = True, progress: bool = True, timeout_s: float | None = None) -> LavaResult:
    """Run ``graph`` (integer) on inputs ``x`` in Lava for ``steps`` + depth steps each: x (N, *input_shape) one
    frame per sample, presented every step, or (N, T_in, *input_shape) a sequence (``snnc.ir.sequence``; steps
    None: T_in), as int32 values ``quantize_input(graph, x)``. Spikes of every layer are
    recorded (counts always, rasters when asked); ``record_final`` reads every layer's final u and v (slow:
    Lava moves Vars element by element). ``timeout_s`` bounds the whole call (compile included). Lava is always
    stopped. Raises BackendError when lava is missing or a process fails, DataError on a wrong input shape."""
    import_lava()
    plan0 = build_plan(graph)
    series = input_series(plan0.shapes[plan0.input], x, plan0.input)  # shape, empty or NaN data: before any process
    steps = series.run_steps(steps)
    from lava.magma.core.run_conditions import RunSteps

    t_start = time.perf_counter()
    with deadline(timeout_s, "Lava run"):
        latency = steps + plan0.depth
        xin = _prepare_input(graph, series, len(plan0.shapes[plan0.input]))
        data = sequence_source(xin, series.presented(steps), latency) if series.sequence else None
        net = emit(graph, sample_steps=latency, record=True, source_data=data)
        N = xin.shape[0]
        plan = net.plan
        readout = net.neurons[plan.readout]
        scale = float(cv.meta(graph.nodes[plan.readout], cv.SCALE, 1.0))
        spiking = [n for n, L in net.neurons.items() if L.spiking]
        nd = {n: len(L.nir_shape) for n, L in net.neurons.items()}
        # state the runner must reset with set(): stock LIF layers and the buffers feeding them
        manual = [n for n in net.neurons if not net.self_resetting(n)]
        manual_bufs = [s for s in net.synapses.values() if s.conn.dst in manual]
        counts = {n: np.zeros((N,) + L.nir_shape, dtype=np.int32) for n, L in net.neurons.items()}
        rast = ({n: np.zeros((latency, N) + L.nir_shape, dtype=bool) for n, L in net.neurons.items()}
                if rasters else None)
        final = ({n: {"u": np.zeros((N,) + L.nir_shape, np.int64), "v": np.zeros((N,) + L.nir_shape, np.int64)}
                  for n, L in net.neurons.items()} if record_final else None)
        logits = np.zeros((N,) + readout.nir_shape)
        potentials = np.zeros((N,) + readout.nir_shape, dtype=np.int64)
        cfg = net.run_cfg()
        anchor = readout.process
        bar = None
        compile_s = 0.0
        t0 = t_start
        ok = False
        try:
            if not series.sequence:
                net.source.data.init = xin[0][..., None]  # sample 0 runs from the initial values
            try:
                anchor.create_runtime(run_cfg=cfg)
            except SnncError:
                raise
            except Exception as e:
                raise BackendError(f"Lava could not compile/start the network: {type(e).__name__}: {e}") from e
            compile_s = time.perf_counter() - t_start
            t0 = time.perf_counter()
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=N, desc="lava", unit="sample")
            for i in range(N):
                try:
                    if i > 0:  # the runtime starts on the first run(); set() needs a started runtime
                        if not series.sequence:
                            net.source.data.set(xin[i][..., None])
                        for n in manual:
                            L = net.neurons[n]
                            L.process.u.set(np.zeros(L.lava_shape, dtype=np.int32))
                            L.process.v.set(L.v0.astype(np.int32))
                        for s in manual_bufs:
                            buf = s.buffer_var
                            buf.set(np.zeros(buf.shape, dtype=np.int32))
                    anchor.run(condition=RunSteps(num_steps=plan.depth), run_cfg=cfg)
                    v_before = from_lava(readout.process.v.get(), nd[plan.readout]).astype(np.int64)
                    anchor.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                    v_end = from_lava(readout.process.v.get(), nd[plan.readout]).astype(np.int64)
                    for n, rec in net.recorders.items():
                        r = np.stack([rec.receive() for _ in range(latency)])  # (latency, *lava_shape)
                        r = from_lava(r, nd[n]) != 0
                        counts[n][i] = r.sum(0)
                        if rast is not None:
                            rast[n][:, i] = r
                    if final is not None:
                        for n, L in net.neurons.items():
                            final[n]["u"][i] = from_lava(L.process.u.get(), nd[n])
                            final[n]["v"][i] = from_lava(L.process.v.get(), nd[n])
                except SnncError:
                    raise
                except Exception as e:
                    raise BackendError(f"Lava failed on sample {i}: {type(e).__name__}: {e}") from e
                potentials[i] = v_end
                logits[i] = (v_end - v_before) / (64.0 * scale) / steps
                if bar is not None:
                    bar.update(1)
            ok = True
        finally:
            if bar is not None:
                bar.close()
            shutdown(anchor, clean=ok)
        seconds = time.perf_counter() - t0
    return LavaResult(
        logits=logits.reshape(N, -1), potentials=potentials.reshape(N, -1), steps=steps, latency_steps=latency,
        samples=N, spikes_per_layer={n: int(counts[n].sum()) for n in spiking},
        spike_counts=counts, seconds=seconds, compile_seconds=compile_s, rasters=rast, final_state=final,
        neurons_per_layer={n: math.prod(L.nir_shape) for n, L in net.neurons.items()},
        sequence=series.sequence, input_steps=series.steps_in)
