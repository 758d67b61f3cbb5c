"""Crash safety: SIGKILL at any moment never leaves a partial or mixed directory that is read
back as a result; a killed sweep restarted (every executor) ends identical to an
uninterrupted one; the workers of a killed sweep die with it. The full counts (20 kills per
executor) are in scripts/reliability_crash.py."""

import collections
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading

import psutil
import pytest

import featavg
from featavg import runs
from featavg.api import run_sweep
from featavg.config import ConfigError
from featavg.experiments.registry import EXPERIMENTS
from featavg.experiments.runner import run_experiment
from featavg.runs import lock as run_lock
from featavg.runs.context import open_context
from featavg.runs.state import inspect_run
from featavg.sweep import DaskExecutor, plan_sweep
from kill_points import (
    alive,
    close_gate,
    hold_cells,
    restore,
    sweep_with_threads,
    wait_for,
    wait_until_waiting,
    waiting,
)

EXP = "synthetic-robustness"
TINY = dict(EXPERIMENTS[EXP].tiny)
OTHER = {**TINY, "seed": 7}
SWEEP_EXP = "synthetic-alignment"
SMALL = {"data": {"d": 40, "n_train": 60, "n_test": 30}, "train": {"steps": 10}}
# train.lr is a batch field: each data.k is one group of two cells trained as one ensemble
GRID = {"train.lr": [0.001, 0.01], "data.k": [3, 4]}


def contents(directory):
    """{name: bytes} of every regular file in ``directory`` (hidden ones included)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def numbers(summary):
    """A summary without its provenance (wall time, batch size): the results."""
    return {k: v for k, v in summary.items() if k != "provenance"}


def assert_same_run(directory, reference):
    """``directory`` holds the run of ``reference``: same files, equal bytes except the
    summary (equal numbers, its provenance aside) and the manifest that lists it."""
    got, want = contents(directory), contents(reference)
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name in got:
        if name == "summary.json":
            assert numbers(json.loads(got[name])) == numbers(json.loads(want[name])), directory
        elif name != runs.MANIFEST:
            assert got[name] == want[name], f"{directory / name} differs"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Files of two finished tiny runs of one experiment (two configs)."""
    root = tmp_path_factory.mktemp("runs")
    run_experiment(EXP, overrides=TINY, out=root / "old", ctx=open_context("cpu"))
    run_experiment(EXP, overrides=OTHER, out=root / "new", ctx=open_context("cpu"))
    return contents(root / "old"), contents(root / "new")


# ---------------------------------------------------------------- every moment of a write

STEPS = ("write", "replace", "rename", "mkdir", "rmdir", "unlink", "open")


def _write_dying_at(target, files, k, report_fd):
    """In a forked child: replace ``target`` by ``files``, SIGKILLed just before the k-th
    filesystem call (never, for k = 0); report the number of calls made."""
    calls = [0]
    for name in STEPS:
        real = getattr(os, name)

        def step(*args, _real=real, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kwargs)

        setattr(os, name, step)
    runs.write_run_files(target, files)
    os.write(report_fd, str(calls[0]).encode())


def _fork_write(target, files, k):
    """Run :func:`_write_dying_at` in a forked child; (was it killed, calls made)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: file operations only (no torch), then out
        try:
            os.close(read_fd)
            _write_dying_at(target, files, k, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_fd, 64)
    os.close(read_fd)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return killed, int(report) if report else None


@pytest.mark.slow
@pytest.mark.parametrize("fresh", [False, True], ids=["replacing", "fresh"])
def test_a_kill_at_every_moment_of_a_write_leaves_a_whole_run(two_runs, tmp_path, fresh):
    old, new = two_runs
    target = tmp_path / "run"
    if not fresh:
        runs.write_run_files(target, old)
    killed, total = _fork_write(target, new, 0)  # an uninterrupted write, counted
    assert not killed and total and total > 10
    for k in range(1, total + 1):
        shutil.rmtree(target, ignore_errors=True)  # start again from the old state
        if not fresh:
            runs.write_run_files(target, old)
        killed, _ = _fork_write(target, new, k)
        assert killed, f"the child was not killed at step {k}"
        # whole: the old run, the new run, or (fresh, or between the two renames) nothing
        if target.exists():
            assert contents(target) in (old, new), f"mixed directory after a kill at step {k}"
            loaded = featavg.load(target)  # read back: a whole run, never a mix
            assert loaded.summary == json.loads(contents(target)["summary.json"])
        else:
            with pytest.raises(ConfigError):
                featavg.load(target)
        # the next write removes the leftovers and installs the new run
        runs.write_run_files(target, new)
        assert contents(target) == new
        assert not (tmp_path / runs.STAGING).exists()


# ---------------------------------------------------------------- killed and restarted sweeps
# Each kill lands at a chosen point of the sweep, whatever the machine's speed: the sweep is
# held there (tests/kill_points.py) until it is killed. Group 1 is data.k=3, group 2 data.k=4.


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every process here computes with one thread (pool workers take a share of the
    threads, Dask workers have one): results are compared bit for bit, which is promised
    at equal thread counts only."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if before is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def forkserver():
    """A multiprocessing context whose children fork from a server that has featavg and
    torch imported already: a killed sweep restarts in milliseconds, not seconds."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["featavg.sweep", "featavg.experiments.registry", "distributed"])
    return ctx


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep, local executor."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    return run_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=out, progress=False)


@pytest.fixture(scope="module")
def cluster():
    import distributed  # a declared test dependency: fail, never skip, if it is missing

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster


def group(out, k):
    """The cell directories of the group data.k = ``k`` of the sweep into ``out``."""
    _, _, cells = plan_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=out)
    return [c.directory for c in cells if c.values["data.k"] == k]


def finished(out):
    """The cell directories of ``out`` that hold a finished run (summary.json last)."""
    return sorted(p.parent for p in out.glob("cells/*/summary.json"))


def kill_when(ctx, out, options, held=(), ready=lambda: True):
    """Start the sweep into ``out`` in a child process while this process claims the cell
    directories ``held``; SIGKILL it once it (or a worker) waits for one of them and
    ``ready()`` holds (with nothing held: once ``ready()`` holds). Then check that no process
    of the sweep survives and that every cell directory is a whole run or no run."""
    kwargs = {"overrides": SMALL, "out": str(out), "progress": False, **options}
    with hold_cells(list(held)) as locks:
        child = ctx.Process(target=sweep_with_threads, args=(1, SWEEP_EXP, GRID), kwargs=kwargs)
        child.start()
        try:
            if held:
                wait_until_waiting(child.pid, locks)
            wait_for(ready, alive(child.pid), "its kill point")
            workers = psutil.Process(child.pid).children(recursive=True)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL, f"the sweep ended by itself: {child.exitcode}"
    _, survivors = psutil.wait_procs(workers, timeout=60)
    assert not survivors, f"workers outlived the killed sweep: {survivors}"
    for cell in out.glob("cells/*"):
        if cell.name.startswith("."):
            continue
        state = inspect_run(cell, SWEEP_EXP, json.loads((cell / "config.json").read_text()))
        assert state.kind in ("hit", "absent"), f"{cell}: {state.detail}"


def check_resumed(result, reference):
    assert [c.name for c in result.cells] == [c.name for c in reference.cells]
    for cell, ref in zip(result.cells, reference.cells, strict=True):
        assert_same_run(cell.directory, ref.directory)
    assert result.csv_path.read_bytes() == reference.csv_path.read_bytes()
    for directory in (result.directory, result.directory / "cells"):
        assert not (directory / runs.STAGING).exists()
        assert not (directory / run_lock.LOCKS).exists()


@pytest.mark.slow
def test_killed_local_sweep_restarts_to_identical_results(forkserver, reference, tmp_path):
    out = tmp_path / "sweep"
    first, second = group(out, 3), group(out, 4)
    kill_when(forkserver, out, {}, held=first)  # waiting for its first cell: nothing done
    assert finished(out) == []
    kill_when(forkserver, out, {}, held=second)  # group 1 done, waiting for group 2
    assert finished(out) == sorted(first)
    check_resumed(run_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=out, progress=False), reference)


@pytest.mark.slow
def test_killed_process_pool_sweep_leaves_no_worker_and_restarts(forkserver, reference, tmp_path):
    """Killed with both workers alive: one has finished group 1, the other waits for
    group 2; both must die with the sweep."""
    out = tmp_path / "sweep"
    first, second = group(out, 3), group(out, 4)
    options = {"executor": "process", "workers": 2}
    kill_when(forkserver, out, options, second, ready=lambda: finished(out) == sorted(first))
    resumed = run_sweep(SWEEP_EXP, GRID, overrides=SMALL, out=out, progress=False, **options)
    check_resumed(resumed, reference)


@pytest.mark.slow
def test_killed_dask_sweep_restarts_to_identical_results(forkserver, reference, cluster, tmp_path):
    """The client is killed with group 1 written and group 2 in a worker's hands (waiting
    at a gate there): the worker's result goes nowhere, the restart computes it again."""
    import distributed

    out, gate = tmp_path / "sweep", tmp_path / "gate"
    gate.mkdir()
    first = group(out, 3)
    options = {"executor": "dask", "scheduler": cluster.scheduler_address}
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.run(close_gate, SWEEP_EXP, str(gate), "data.k", 4)
        try:
            ready = lambda: finished(out) == sorted(first) and bool(waiting(gate))  # noqa: E731
            kill_when(forkserver, out, options, ready=ready)
            assert finished(out) == sorted(first)
            (gate / "open").touch()
            resumed = run_sweep(
                SWEEP_EXP, GRID, overrides=SMALL, out=out, progress=False, **options
            )
        finally:
            (gate / "open").touch()
            client.run(restore, SWEEP_EXP)
    check_resumed(resumed, reference)


class CountingExecutor:
    """An executor that counts the results it hands back per cell."""

    def __init__(self, inner):
        self.inner, self.calls = inner, collections.Counter()

    def run(self, experiment, groups, device, done):
        def counted(cell, summary):
            self.calls[cell.name] += 1
            done(cell, summary)

        self.inner.run(experiment, groups, device, counted)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_sweep_loses_and_duplicates_nothing(reference, cluster, tmp_path):
    """The worker holding group 2 (waiting at a gate in it) is killed: the task reruns on
    another worker, and every cell is handed back exactly once."""
    import distributed

    gate = tmp_path / "gate"
    gate.mkdir()
    executor = CountingExecutor(DaskExecutor(scheduler=cluster.scheduler_address))
    result = {}

    def sweep():
        result["sweep"] = run_sweep(
            SWEEP_EXP,
            GRID,
            overrides=SMALL,
            out=tmp_path / "sweep",
            executor=executor,
            progress=False,
        )

    thread = threading.Thread(target=sweep)
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.run(close_gate, SWEEP_EXP, str(gate), "data.k", 4)
        try:
            thread.start()
            wait_for(lambda: bool(waiting(gate)), thread.is_alive, "a task at the gate")
            os.kill(waiting(gate)[0], signal.SIGKILL)  # a worker dies with a task in hand
            (gate / "open").touch()
            thread.join(timeout=600)
        finally:
            (gate / "open").touch()
            client.run(restore, SWEEP_EXP)
    assert not thread.is_alive()
    assert executor.calls == {cell.name: 1 for cell in reference.cells}  # none lost, none twice
    check_resumed(result["sweep"], reference)


# the owner of a LocalCluster: starts one, runs long tasks on it, prints the workers' pids
CLUSTER_OWNER = """
import json, os, time
import distributed
if __name__ == "__main__":
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    futures = [client.submit(time.sleep, 120, pure=False) for _ in range(2)]
    print(json.dumps(list(client.run(os.getpid).values())), flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_dask_local_cluster_processes_die_with_their_owner(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(CLUSTER_OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = json.loads(owner.stdout.readline())
    processes = [psutil.Process(pid) for pid in pids]
    processes += psutil.Process(owner.pid).children(recursive=True)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)
    _, alive = psutil.wait_procs(processes, timeout=120)
    assert not alive, f"Dask processes outlived their owner: {alive}"
