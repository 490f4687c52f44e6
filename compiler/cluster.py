"""Sharding snnc's evaluation work over Ray: simulate, verify (Lava vs simulator), energy, sweep grid points.

``cluster`` is ``"local"`` (start Ray on this machine, one worker per core), ``"local:N"`` (N workers) or
``"ray://HOST:PORT"`` (an existing Ray cluster through Ray Client; every node needs ``snnc[cluster]`` with the
same snnc, torch, lava and Ray versions as the caller). An already initialised Ray (``ray.init`` by the caller) is
used as it is; otherwise the first call connects and later calls reuse the connection (``shutdown()`` ends it).

The graph and the data go into Ray's object store once (``ray.put``); each task runs one shard (a contiguous range
of samples, or one sweep grid point) and returns its partial result; the driver merges the shards in sample order.
Hence results equal a single process's run: integer graphs bit for bit in every field (the simulator is exact, so
batch composition and thread count do not matter), every count (spikes, events, ``spikes_differ``) exactly. Float
work is reproducible only for a given thread count and batch (README, "Results"): float-graph logits may differ in
the last bits, and a sweep compiles in workers with Ray's one thread per task.

Faults: a worker process that dies is retried by Ray (``MAX_RETRIES``); the driver takes each shard's result once,
from the attempt that finished, so no sample is lost or counted twice. An error raised by snnc inside a task is
re-raised as itself (not retried). Ray is an optional extra: without it every entry point raises
``ClusterError`` naming ``pip install 'snnc[cluster]'``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from snnc.ir.errors import ClusterError, DataError, OverflowEventError, SnncError
from snnc.ir.graph import Graph

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from snnc.analysis.report import EnergyReport
    from snnc.backends.cpu.simulator import SimResult
    from snnc.backends.lava.verification import VerifyReport
    from snnc.sweep import SweepRow

INSTALL_HINT = "pip install 'snnc[cluster]'"
MAX_RETRIES = 3  # attempts after the first when a worker process dies (Ray's task retry)
CONNECT_TIMEOUT_S = 10.0  # seconds to open a TCP connection to a ray:// address before it counts as unreachable
SHARDS_PER_WORKER = {"simulate": 4, "verify": 1}  # default granularity (see docs/cluster.md)

_SPEC_RE = re.compile(r"^(?:local(?::(?P<n>\d+))?|ray://(?P<host>[^:/\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+))$")


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``cluster`` argument: ``address`` ``"ray://HOST:PORT"`` or None (a local Ray), ``workers`` the
    local worker count (None: one per core)."""

    text: str
    workers: int | None = None
    address: str | None = None
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class Shard:
    """Samples ``start:stop`` of the job, the ``index``-th shard in sample order."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard: which samples (or grid point), the worker process that ran it, its run time in seconds."""

    index: int
    start: int
    stop: int
    pid: int
    seconds: float


_state: dict[str, Any] = {"spec": None}
_remotes: dict[Callable, Any] = {}


def parse_cluster(cluster: str) -> ClusterSpec:
    """``local``, ``local:N`` or ``ray://HOST:PORT`` -> ClusterSpec; anything else is a ClusterError."""
    m = _SPEC_RE.match(str(cluster).strip())
    if m is None:
        raise ClusterError(f"--cluster {cluster!r}: expected local, local:N or ray://HOST:PORT")
    if m["port"] is not None:
        port = int(m["port"])
        if not 0 < port < 65536:
            raise ClusterError(f"--cluster {cluster!r}: port {port} is outside 1..65535")
        return ClusterSpec(str(cluster).strip(), address=str(cluster).strip(), host=m["host"].strip("[]"), port=port)
    n = int(m["n"]) if m["n"] is not None else None
    if n is not None and n < 1:
        raise ClusterError(f"--cluster {cluster!r}: the worker count must be >= 1")
    return ClusterSpec(str(cluster).strip(), workers=n)


def _ray() -> Any:
    """The ray module, or ClusterError with the install hint."""
    try:
        import ray
    except ImportError as e:
        raise ClusterError(f"--cluster needs Ray, which is not installed ({e}); install the extra: "
                           f"{INSTALL_HINT}") from None
    return ray


def _reachable(spec: ClusterSpec) -> None:
    try:
        with socket.create_connection((spec.host, spec.port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {spec.address}: {why} (is a Ray head with a client "
                           f"server running there? `ray start --head` listens on port 10001)") from None


def connect(cluster: str) -> int:
    """Connect to (or start) the cluster ``cluster`` names; returns the number of CPUs (workers) it offers."""
    spec = parse_cluster(cluster)
    ray = _ray()
    if ray.is_initialized():
        if _state["spec"] is None or _state["spec"] == spec:  # the caller's own ray.init, or ours: reuse
            return _workers(ray)
        if spec.address:
            _reachable(spec)  # keep the current connection when the new one cannot work
        shutdown()
    elif spec.address:
        _reachable(spec)
    try:
        if spec.address:
            ray.init(address=spec.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=spec.workers or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - any failure to start/connect is the cluster's
        hint = (" (a cluster with token authentication, Ray's default, also needs RAY_AUTH_MODE=token and its "
                "token here: RAY_AUTH_TOKEN or ~/.ray/auth_token)") if spec.address else ""
        raise ClusterError(f"cannot {'connect to' if spec.address else 'start'} Ray "
                           f"({spec.address or spec.text}): {type(e).__name__}: {e}{hint}") from None
    _state["spec"] = spec
    return _workers(ray)


def _workers(ray: Any) -> int:
    try:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    except Exception as e:  # noqa: BLE001
        raise ClusterError(f"the Ray cluster does not answer: {type(e).__name__}: {e}") from None


def shutdown() -> None:
    """Disconnect from (and, if snnc started it, stop) the Ray cluster; a no-op when none is connected."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
    _state["spec"] = None


def plan_shards(n: int, workers: int, per_worker: int, shard_size: int | None = None) -> list[Shard]:
    """Contiguous shards covering samples 0..n: ``shard_size`` samples each, or about ``workers * per_worker``
    equal shards."""
    if shard_size is not None and shard_size < 1:
        raise DataError(f"shard_size must be >= 1, got {shard_size}")
    size = shard_size or max(1, math.ceil(n / (workers * per_worker)))
    return [Shard(i, s, min(n, s + size)) for i, s in enumerate(range(0, n, size))]


# --- tasks (plain functions; ``_remote`` wraps them for Ray) -------------------------------------------------

def _timed(fn: Callable, *args: Any) -> tuple[Any, int, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, os.getpid(), time.perf_counter() - t0


def _simulate_task(graph: Graph, x: np.ndarray, start: int, stop: int, steps: int,
                   batch_size: int) -> tuple[Any, int, float]:
    from snnc.backends.cpu.simulator import simulate

    graph = copy.deepcopy(graph)  # the object store's arrays are read-only; the backends wrap them as tensors
    return _timed(lambda: simulate(graph, x[start:stop], steps, batch_size=batch_size))


def _verify_task(graph: Graph, x: np.ndarray, start: int, stop: int, steps: int,
                 timeout_s: float | None) -> tuple[Any, int, float]:
    from snnc.backends.lava.verification import verify

    graph = copy.deepcopy(graph)
    return _timed(lambda: verify(graph, x[start:stop], steps, progress=False, timeout_s=timeout_s))


def _compile_task(model: Any, xcal: np.ndarray, point: Any, opts: Any) -> Any:
    from snnc.sweep import compile_point

    return compile_point(model, xcal, point, opts)


def _point_task(compiled: Any, x: np.ndarray, y: np.ndarray, point: Any, opts: Any) -> tuple[Any, int, float]:
    from snnc.sweep import evaluate_point

    return _timed(lambda: evaluate_point(compiled, x, y, point, opts))


def _remote(fn: Callable, name: str) -> Any:
    """``fn`` as a Ray remote function named ``name`` (the worker's process title while it runs: ray::NAME)."""
    ray = _ray()
    if fn not in _remotes:
        _remotes[fn] = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
    return _remotes[fn].options(name=name)


def _unwrap(e: BaseException) -> BaseException:
    """An exception from ray.get -> the snnc error raised in the task, or a ClusterError."""
    ray = _ray()
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None)
        if isinstance(cause, SnncError):
            return cause
        return ClusterError(f"a task failed: {type(cause).__name__ if cause else type(e).__name__}: {cause or e}")
    if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return ClusterError(f"a worker died {MAX_RETRIES + 1} times running the same shard ({e})")
    return ClusterError(f"{type(e).__name__}: {e}")


def _gather(refs: list, shards: Sequence[Shard], desc: str, unit: str, progress: bool,
            on_shard: Callable[[ShardInfo], None] | None) -> list:
    """Wait for every task (each returns (value, pid, seconds)); values in shard order, a bar over the samples."""
    from tqdm import tqdm

    ray = _ray()
    where = {ref: i for i, ref in enumerate(refs)}
    out: list = [None] * len(refs)
    pending = list(refs)
    bar = tqdm(total=sum(s.size for s in shards), desc=desc, unit=unit, disable=not progress)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = where[ref]
                value, pid, secs = ray.get(ref)
                out[i] = value
                bar.update(shards[i].size)
                if on_shard is not None:
                    s = shards[i]
                    on_shard(ShardInfo(s.index, s.start, s.stop, pid, secs))
    except BaseException as e:
        for ref in pending:
            with contextlib.suppress(Exception):  # best effort: the error below is what the caller needs
                ray.cancel(ref)
        if isinstance(e, ray.exceptions.RayError):  # before SnncError: Ray's task errors subclass the cause too
            raise _unwrap(e) from None
        raise
    finally:
        bar.close()
    return out


def _batched(graph: Graph, x: np.ndarray, steps: int | None = None) -> tuple[np.ndarray, int]:
    """(``x`` as (N, *input shape) or a sequence (N, T_in, *input shape), T) checked against the graph here rather
    than in every task (``snnc.ir.sequence``: steps None is T_in for a sequence)."""
    from snnc.ir.plan import build_plan
    from snnc.ir.sequence import input_series

    plan = build_plan(graph)
    series = input_series(plan.shapes[plan.input], x, plan.input)
    if series.x.shape[0] == 0:
        raise DataError("no samples to run (x has 0 rows)")
    return np.ascontiguousarray(series.x), series.run_steps(steps)


# --- merging -------------------------------------------------------------------------------------------------

def merge_sim(parts: Sequence[SimResult], seconds: float) -> SimResult:
    """Shard results (in sample order) -> the single-process SimResult; ``seconds``: the job's wall time."""
    from snnc.backends.cpu.simulator import SimResult

    first = parts[0]
    events: dict[str, dict[str, int]] = {}
    for p in parts:
        for k, d in p.events.items():
            e = events.setdefault(k, {})
            for kind, c in d.items():
                e[kind] = e.get(kind, 0) + int(c)
    return SimResult(
        logits=np.concatenate([p.logits for p in parts]), potentials=np.concatenate([p.potentials for p in parts]),
        steps=first.steps, latency_steps=first.latency_steps, samples=sum(p.samples for p in parts),
        kind=first.kind, spikes_per_layer={n: sum(p.spikes_per_layer[n] for p in parts)
                                           for n in first.spikes_per_layer},
        spike_counts={n: np.concatenate([p.spike_counts[n] for p in parts]) for n in first.spike_counts},
        events=events, seconds=seconds, neurons_per_layer=dict(first.neurons_per_layer), sequence=first.sequence,
        input_steps=first.input_steps)


def merge_verify(parts: Sequence[VerifyReport], starts: Sequence[int]) -> VerifyReport:
    """Shard reports (in sample order; ``starts``: each shard's first sample) -> the single-process report.

    Counts add up; the first divergence is the earliest shard's (samples renumbered to the job). Speeds are per
    worker: samples over the summed per-shard seconds; ``lava_compile_s`` is the mean per shard."""
    from snnc.backends.lava.verification import LayerDiff, VerifyReport

    first = parts[0]
    layers = {n: LayerDiff(**{f.name: sum(getattr(p.layers[n], f.name) for p in parts) for f in fields(LayerDiff)})
              for n in first.layers}
    div = next(((p.first_divergence, s) for p, s in zip(parts, starts) if p.first_divergence is not None), None)
    n = sum(p.samples for p in parts)

    def rate(attr: str) -> float:
        secs = sum(p.samples / getattr(p, attr) for p in parts if getattr(p, attr) > 0)
        return n / secs if secs > 0 else float("inf")

    kw = {}
    for f in fields(VerifyReport):  # counts add up (any count field a report has); the rest is the same per shard
        v = getattr(first, f.name)
        summed = isinstance(v, int) and not isinstance(v, bool) and f.name not in ("steps", "input_steps")
        kw[f.name] = sum(getattr(p, f.name) for p in parts) if summed else v
    kw.update(layers=layers, first_divergence=replace(div[0], sample=div[0].sample + div[1]) if div else None,
              lava_samples_per_s=rate("lava_samples_per_s"), sim_samples_per_s=rate("sim_samples_per_s"),
              lava_compile_s=sum(p.lava_compile_s for p in parts) / len(parts))
    return VerifyReport(**kw)


# --- public API ----------------------------------------------------------------------------------------------

def simulate(graph: Graph, x: np.ndarray, steps: int | None, cluster: str = "local", *, batch_size: int = 256,
             strict: bool = False, device: str = "cpu", shard_size: int | None = None, progress: bool = True,
             on_shard: Callable[[ShardInfo], None] | None = None) -> SimResult:
    """``snnc.backends.cpu.simulator.simulate`` with the samples sharded over ``cluster``'s workers.

    Same result as one process (no rasters, final state or ranges); ``seconds`` is the job's wall time (start-up
    of a new cluster excluded). ``shard_size``: samples per task (default: about 4 shards per worker)."""
    if device != "cpu":
        raise ClusterError(f"--cluster runs the simulator on CPU workers; device {device!r} is not supported")
    x, steps = _batched(graph, x, steps)
    ray = _ray()
    workers = connect(cluster)
    shards = plan_shards(len(x), workers, SHARDS_PER_WORKER["simulate"], shard_size)
    t0 = time.perf_counter()
    g_ref, x_ref = ray.put(graph), ray.put(x)
    fn = _remote(_simulate_task, "snnc.cluster.simulate")
    refs = [fn.remote(g_ref, x_ref, s.start, s.stop, steps, batch_size) for s in shards]
    parts = _gather(refs, shards, f"simulate ({workers} workers)", "sample", progress, on_shard)
    res = merge_sim(parts, time.perf_counter() - t0)
    if strict and res.total_events():
        bad = {k: d for k, d in res.events.items() if sum(d.values())}
        raise OverflowEventError(f"overflow events during simulation (--strict): {bad}")
    return res


def verify(graph: Graph, x: np.ndarray, steps: int | None, cluster: str = "local", *, timeout_s: float | None = None,
           shard_size: int | None = None, progress: bool = True,
           on_shard: Callable[[ShardInfo], None] | None = None) -> VerifyReport:
    """``snnc.backends.lava.verify`` (Lava vs simulator, spike for spike) with the samples sharded over workers.

    Each task compiles and runs its own Lava runtime on its shard (``timeout_s`` bounds each task); counts and the
    first divergence equal one process's. Default: one shard per worker (Lava's start-up is paid per shard)."""
    from snnc.ir import conventions as cv
    from snnc.ir.errors import GraphError

    if cv.graph_kind(graph) != cv.INTEGER:
        raise GraphError("verify runs integer graphs on Lava; this is a float graph")
    x, steps = _batched(graph, x, steps)
    ray = _ray()
    workers = connect(cluster)
    shards = plan_shards(len(x), workers, SHARDS_PER_WORKER["verify"], shard_size)
    g_ref, x_ref = ray.put(graph), ray.put(x)
    fn = _remote(_verify_task, "snnc.cluster.verify")
    refs = [fn.remote(g_ref, x_ref, s.start, s.stop, steps, timeout_s) for s in shards]
    parts = _gather(refs, shards, f"verify ({workers} workers)", "sample", progress, on_shard)
    return merge_verify(parts, [s.start for s in shards])


def energy(graph: Graph, x: np.ndarray, steps: int = 8, cluster: str = "local", *, labels: np.ndarray | None = None,
           model: Any = "cmos45", batch_size: int = 256, shard_size: int | None = None, progress: bool = True,
           on_shard: Callable[[ShardInfo], None] | None = None) -> EnergyReport:
    """``snnc.energy`` (``snnc.analysis.report.energy``) with the simulation sharded over ``cluster``: the
    operation counts come from the merged per-sample spike counts, so they equal one process's. Joules."""
    from snnc.analysis.report import energy_report

    r = simulate(graph, x, steps, cluster, batch_size=batch_size, shard_size=shard_size, progress=progress,
                 on_shard=on_shard)
    return energy_report(graph, _batched(graph, x, steps)[0], r, model, labels)


def sweep(model: torch.nn.Module, xcal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
          methods: list[str], inits: list[str], tune: bool = False, restructure: bool = False,
          integer: bool = True, percentile: float = 99.99, calib_steps: int | None = None,
          floors: Sequence[float | None] = (1.0,), calibrate: bool = False, *, cluster: str = "local",
          progress: bool = True, on_shard: Callable[[ShardInfo], None] | None = None) -> list[SweepRow]:
    """``snnc.sweep.sweep`` with the grid spread over workers: one compile task per variant (per
    variant and T with ``tune``/``calibrate``), one evaluation task per grid point reading its compile from the
    object store. Rows in the single-process order; ``on_shard`` gets the grid point's index as start."""
    from snnc.sweep import SweepOptions, grid

    if not steps or any(t < 1 for t in steps):
        raise DataError(f"steps: every T must be >= 1, got {steps}")
    opts = SweepOptions(tune, restructure, integer, percentile, calib_steps or max(steps), calibrate)
    points = grid(steps, methods, inits, floors, opts)
    ray = _ray()
    workers = connect(cluster)
    m_ref, xcal_ref, x_ref, y_ref = ray.put(model), ray.put(np.asarray(xcal)), ray.put(np.asarray(x)), \
        ray.put(np.asarray(y))
    comp = _remote(_compile_task, "snnc.cluster.sweep_compile")
    compiled: dict[tuple, Any] = {}
    for p in points:
        if p.compile_key not in compiled:
            compiled[p.compile_key] = comp.remote(m_ref, xcal_ref, p, opts)
    fn = _remote(_point_task, "snnc.cluster.sweep_point")
    refs = [fn.remote(compiled[p.compile_key], x_ref, y_ref, p, opts) for p in points]
    shards = [Shard(i, i, i + 1) for i in range(len(points))]
    return _gather(refs, shards, f"sweep ({workers} workers)", "point", progress, on_shard)
