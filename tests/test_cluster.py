"""Sharded runs on a local Ray cluster that this module starts (2 workers): results equal the single-process run
(simulate, verify, energy, sweep), a killed worker's shard is redone, an unreachable cluster and a missing Ray
are named errors. Tests that need Ray skip by name without it; the missing-extra tests run either way."""
from __future__ import annotations

import glob
import importlib.util
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest
from snnc import cluster
from snnc.ir.errors import ClusterError, DataError, GraphError, OverflowEventError

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray not installed (pip install 'snnc[cluster]')")
SPEC = "local:2"


@pytest.fixture(scope="module")
def raylet():
    """A 2-worker local Ray for this module; yields the raylet's pid (the parent of every worker process)."""
    import ray

    def parent() -> int:
        return os.getppid()

    cluster.connect(SPEC)
    pid = ray.get(ray.remote(parent).remote())
    yield pid
    cluster.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_run(a, b) -> None:
    """Every field a single process reports, except timing."""
    assert (a.samples, a.steps, a.latency_steps, a.kind) == (b.samples, b.steps, b.latency_steps, b.kind)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.potentials, b.potentials)
    assert a.spikes_per_layer == b.spikes_per_layer
    assert a.spike_counts.keys() == b.spike_counts.keys()
    for n in a.spike_counts:
        np.testing.assert_array_equal(a.spike_counts[n], b.spike_counts[n])
    assert a.events == b.events
    assert a.neurons_per_layer == b.neurons_per_layer


# --- with Ray ------------------------------------------------------------------------------------------------

@needs_ray
def test_simulate_equals_single_process(raylet, digits_compiled, digits_data):
    from snnc.backends.cpu.simulator import simulate

    _, (x, y) = digits_data
    g = digits_compiled.int_graph
    ref = simulate(g, x, 32, batch_size=360)
    shards = []
    got = cluster.simulate(g, x, 32, SPEC, batch_size=360, progress=False, on_shard=shards.append)
    assert len(shards) == 8 and sorted(s.start for s in shards) == list(range(0, 360, 45))
    assert_same_run(ref, got)
    assert got.accuracy(y) == ref.accuracy(y)
    assert ref.total_events() > 0  # T=32 saturates relu1: --strict fails with the single-process message
    with pytest.raises(OverflowEventError) as single:
        simulate(g, x[:120], 32, strict=True)
    with pytest.raises(OverflowEventError) as sharded:
        cluster.simulate(g, x[:120], 32, SPEC, strict=True, progress=False)
    assert str(sharded.value) == str(single.value)
    with pytest.raises(DataError, match="per-sample shape"):  # checked before any task starts
        cluster.simulate(g, x[:, :, :7], 32, SPEC, progress=False)


@needs_ray
def test_energy_equals_single_process(raylet, digits_compiled, digits_data):
    from snnc.analysis.report import energy_report
    from snnc.backends.cpu.simulator import simulate

    _, (x, y) = digits_data
    g = digits_compiled.int_graph
    ref = energy_report(g, x[:200], simulate(g, x[:200], 8), "loihi", y[:200]).as_dict()
    got = cluster.energy(g, x[:200], 8, SPEC, labels=y[:200], model="loihi", shard_size=30, progress=False).as_dict()
    assert got == ref


@needs_ray
def test_verify_equals_single_process(raylet, digits_compiled, digits_data):
    from snnc.backends.lava import verify

    _, (x, _) = digits_data
    g = digits_compiled.int_graph
    ref = verify(g, x[:4], 4, progress=False)
    got = cluster.verify(g, x[:4], 4, SPEC, progress=False)
    assert ref.ok and got.ok
    r, s = ref.as_dict(), got.as_dict()
    for k in ("lava_samples_per_s", "sim_samples_per_s", "lava_compile_s"):
        del r[k], s[k]
    assert s == r and s["spikes_compared"] > 0
    with pytest.raises(GraphError, match="float graph"):
        cluster.verify(digits_compiled.float_graph, x[:2], 4, SPEC, progress=False)


@needs_ray
def test_sweep_equals_single_process(raylet, digits_model, digits_data):
    from snnc.sweep import sweep

    (xtr, _), (x, y) = digits_data
    kw = {"steps": [2, 8], "methods": ["max", "percentile"], "inits": ["half"], "calib_steps": 8}
    ref = sweep(digits_model, xtr[:300], x[:120], y[:120], **kw)
    got = cluster.sweep(digits_model, xtr[:300], x[:120], y[:120], **kw, cluster=SPEC, progress=False)
    assert got == ref and len(got) == 4


@needs_ray
def test_killed_worker_shard_is_redone(raylet, digits_compiled, digits_data):
    """SIGKILL the worker running a simulate shard mid-job: Ray reruns that shard; nothing lost or doubled."""
    from snnc.backends.cpu.simulator import simulate

    _, (x, _) = digits_data
    x = np.concatenate([x] * 2)  # 720 samples, 8 shards of 90
    g = digits_compiled.int_graph
    ref = simulate(g, x, 32, batch_size=360)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for path in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    pid = int(path.split("/")[2])
                    with open(path, "rb") as f:
                        title = f.read()
                    with open(f"/proc/{pid}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == raylet and title.startswith(b"ray::snnc.cluster.simulate"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.005)

    shards = []
    killer = threading.Thread(target=kill_one)
    killer.start()
    got = cluster.simulate(g, x, 32, SPEC, batch_size=90, shard_size=90, progress=False, on_shard=shards.append)
    killer.join()
    assert killed, "no worker was caught running a shard"
    assert sorted(s.index for s in shards) == list(range(8))  # each shard's result taken once
    assert killed[0] not in {s.pid for s in shards}  # the killed worker's shard came from another process
    assert_same_run(ref, got)


@needs_ray
def test_unreachable_cluster_is_named(raylet, digits_compiled, digits_data, capsys):
    from snnc.cli import main
    from snnc.ir import write

    _, (x, _) = digits_data
    addr = f"ray://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at ray://127.0.0.1"):
        cluster.simulate(digits_compiled.int_graph, x[:4], 4, addr, progress=False)
    assert time.monotonic() - t0 < cluster.CONNECT_TIMEOUT_S
    for bad in ("lokal", "local:0", "ray://host", "ray://h:99999"):
        with pytest.raises(ClusterError, match="--cluster"):
            cluster.parse_cluster(bad)
    # the CLI: one line naming the error, its own exit code; the module's local cluster still answers
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"snnc_cluster_{os.getpid()}.nir")
    write(digits_compiled.int_graph, path)
    try:
        assert main(["simulate", path, "--samples", "4", "--steps", "4", "--cluster", addr, "--json"]) == 10
        assert "snnc: ClusterError: cannot reach" in capsys.readouterr().err
    finally:
        os.remove(path)
    assert cluster.connect(SPEC) == 2


# --- without Ray (the extra missing) -------------------------------------------------------------------------

def test_missing_extra_names_the_install(monkeypatch, digits_compiled, digits_data, capsys, tmp_path):
    from snnc.cli import main
    from snnc.ir import write

    _, (x, _) = digits_data
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    for call in (lambda: cluster.simulate(digits_compiled.int_graph, x[:4], 4, "local:2"),
                 lambda: cluster.verify(digits_compiled.int_graph, x[:4], 4, "local")):
        with pytest.raises(ClusterError, match=r"pip install 'snnc\[cluster\]'"):
            call()
    write(digits_compiled.int_graph, tmp_path / "g.nir")
    assert main(["simulate", str(tmp_path / "g.nir"), "--samples", "4", "--cluster", "local:2"]) == 10
    err = capsys.readouterr().err
    assert "snnc: ClusterError:" in err and "pip install 'snnc[cluster]'" in err


def test_exit_code_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "errors.md").read_text()
    assert f"| `ClusterError` | {ClusterError.exit_code} |" in doc and ClusterError.exit_code == 10


def test_merge_verify_renumbers_the_first_divergence():
    from snnc.backends.lava.verification import Divergence, LayerDiff, VerifyReport

    def rep(samples, differ, div):
        return VerifyReport(samples, 4, 10 * samples, differ, 0, 0, {"a": LayerDiff(10 * samples, differ, 0, 0)},
                            div, 2.0, 100.0, 0.5)

    parts = [rep(3, 0, None), rep(3, 2, Divergence("a", (1,), 2, 5, True, False)),
             rep(2, 1, Divergence("a", (0,), 0, 1, False, True))]
    m = cluster.merge_verify(parts, [0, 3, 6])
    assert (m.samples, m.spikes_compared, m.spikes_differ, m.layers["a"].spikes_differ) == (8, 80, 3, 3)
    assert m.first_divergence == Divergence("a", (1,), 5, 5, True, False)
    assert m.lava_samples_per_s == pytest.approx(2.0) and not m.ok


def test_plan_shards_cover_every_sample_once():
    for n, w, k, size in ((360, 2, 4, None), (7, 3, 4, None), (40, 2, 1, None), (1440, 2, 4, 90), (5, 8, 4, None)):
        s = cluster.plan_shards(n, w, k, size)
        assert [i for sh in s for i in range(sh.start, sh.stop)] == list(range(n))
        assert [sh.index for sh in s] == list(range(len(s)))
    with pytest.raises(DataError):
        cluster.plan_shards(10, 2, 4, 0)
