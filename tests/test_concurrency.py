"""Concurrency: processes sharing one run store compute each run and cell once, never
corrupt or mix a directory, and a process that waited serves the finished run as a hit."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from featavg import runs
from featavg.api import run_sweep
from featavg.experiments.registry import EXPERIMENTS
from featavg.experiments.runner import run_experiment
from featavg.runs import lock as run_lock
from featavg.runs.context import open_context
from featavg.runs.door import lock_names
from featavg.sweep.plan import plan_sweep
from featavg.sweep.sharing import cell_slot
from kill_points import hold_cells, wait_for, wait_until_waiting

EXP = "synthetic-robustness"
TINY = dict(EXPERIMENTS[EXP].tiny)
SWEEP_EXP = "synthetic-alignment"
SMALL = {"data": {"d": 40, "k": 3, "n_train": 60, "n_test": 30}, "train": {"steps": 10}}

# a worker that claims DIR, then does a read-modify-write of DIR.count (a lost update shows
# mutual exclusion failing) and logs "in"/"out" lines (interleaving shows it too)
CLAIMER = """
import os, sys, time
from pathlib import Path
from featavg.runs import lock as run_lock
directory, rounds = Path(sys.argv[1]), int(sys.argv[2])
count, log = Path(str(directory) + ".count"), Path(str(directory) + ".log")
for _ in range(rounds):
    with run_lock.claim(directory):
        with open(log, "a") as f:
            f.write(f"in {os.getpid()}\\n")
        n = int(count.read_text()) if count.exists() else 0
        time.sleep(0.002)  # widens the window a broken exclusion would show in; decides nothing
        count.write_text(str(n + 1))
        with open(log, "a") as f:
            f.write(f"out {os.getpid()}\\n")
"""

# a run through the API that prints whether it was a cache hit
RUNNER = """
import json, sys
from featavg.experiments.runner import run_experiment
from featavg.runs import open_context
ctx = open_context("cpu")
result = run_experiment(sys.argv[1], overrides=json.loads(sys.argv[2]), out=sys.argv[3], ctx=ctx)
print(json.dumps({"cached": result.cached}))
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_claims_exclude_other_processes_and_lose_no_update(tmp_path):
    directory = tmp_path / "run"
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, str(directory), "15"], env=_env())
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert (tmp_path / "run.count").read_text() == "60"  # no lost read-modify-write
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert len(lines) == 120
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):  # never interleaved
        assert enter.startswith("in ") and leave == "out " + enter[3:]
    # every holder deleted its lock file: nothing left beside the run
    assert not (tmp_path / run_lock.LOCKS).exists()


def test_claims_are_reentrant_and_exclusive_between_threads(tmp_path, monkeypatch):
    directory = tmp_path / "run"
    order = []
    contended = threading.Event()

    class Announcing:
        """A claim's per-path thread lock that says when a thread must wait for it."""

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            if not self.lock.acquire(blocking=False):
                contended.set()
                self.lock.acquire()

        def __exit__(self, *exc):
            self.lock.release()

    thread_lock = run_lock._thread_lock
    monkeypatch.setattr(run_lock, "_thread_lock", lambda key: Announcing(thread_lock(key)))

    def other():
        with run_lock.claim(directory):
            order.append("other")

    with run_lock.claim(directory):
        with run_lock.claim(directory, tmp_path / "b"):  # re-entrant, plus a new one
            assert run_lock.held(directory) and run_lock.held(tmp_path / "b")
        assert run_lock.held(directory) and not run_lock.held(tmp_path / "b")
        thread = threading.Thread(target=other)
        thread.start()
        # no sleep decides the overlap: wait until the other thread has found the claim
        # taken (or, were claims not exclusive, has got it and finished)
        wait_for(lambda: contended.is_set() or not thread.is_alive(), lambda: True, "a claim")
        order.append("first")
    thread.join(timeout=600)
    assert order == ["first", "other"]
    assert not run_lock.held(directory)


def test_a_killed_holder_never_blocks_the_next_claim(tmp_path):
    directory = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from featavg.runs import lock as run_lock\n"
            "with run_lock.claim(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        env=_env(),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    lock = run_lock.lock_path(directory)
    assert lock.exists()
    fd = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # held: a non-blocking lock is refused
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        # the kernel dropped the dead holder's lock: free at once, no waiting
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    with run_lock.claim(directory):
        assert run_lock.held(directory)
    # a lock file a killed holder left (unlocked) is removed with the other leftovers
    lock.parent.mkdir(exist_ok=True)
    lock.write_text("")
    assert lock in runs.clean_leftovers(tmp_path)
    assert not lock.parent.exists()


@pytest.mark.slow
def test_a_process_waiting_for_a_run_serves_it_as_a_hit(tmp_path):
    """This process claims the run and computes it while another asks for the same run:
    the other waits for the claim, then finds the run finished (a cache hit)."""
    out = tmp_path / "run"
    with hold_cells([out]) as locks:
        other = subprocess.Popen(
            [sys.executable, "-c", RUNNER, EXP, json.dumps(TINY), str(out)],
            stdout=subprocess.PIPE,
            env=_env(),
        )
        wait_until_waiting(other.pid, locks)  # the other process waits for the run
        assert not run_experiment(EXP, overrides=TINY, out=out, ctx=open_context("cpu")).cached
    stdout, _ = other.communicate(timeout=300)
    assert other.returncode == 0
    assert json.loads(stdout.decode().strip().splitlines()[-1]) == {"cached": True}
    assert run_experiment(
        EXP, overrides=TINY, out=out, ctx=open_context("cpu")
    ).cached  # whole, unmixed
    assert not (tmp_path / runs.STAGING).exists() and not (tmp_path / run_lock.LOCKS).exists()


# a training through the API that prints whether its model was a cache hit
TRAINER = """
import json, sys
from featavg.runs import open_context
from featavg.trained_models import job_config, train_model
trained = train_model(job_config(None, json.loads(sys.argv[1])), open_context("cpu", sys.argv[2]))
print(json.dumps({"cached": trained.cached, "directory": str(trained.directory)}))
"""
MODEL = {
    "dataset": "fashion-mnist",
    "model": "mlp",
    "train_size": 200,
    "test_size": 100,
    "sgd": {"epochs": 1},
}


@pytest.mark.slow
def test_two_processes_asking_for_one_model_train_it_once(tmp_path):
    """Trained models go through the same door as runs: while this process trains a model
    (holding its claim), another process asking for it waits, then is served the model
    this one wrote (it never trains it too)."""
    from featavg.trained_models import job_config, load_job_data, model_directory, train_model

    cfg = job_config(None, MODEL)
    directory = model_directory(cfg, load_job_data(cfg), tmp_path / "models")
    with hold_cells([directory]) as locks:
        other = subprocess.Popen(
            [sys.executable, "-c", TRAINER, json.dumps(MODEL), str(tmp_path)],
            stdout=subprocess.PIPE,
            env=_env(),
        )
        wait_until_waiting(other.pid, locks)  # the other process waits for the model
        mine = train_model(cfg, open_context("cpu", tmp_path))
        assert not mine.cached and mine.directory == directory
    stdout, _ = other.communicate(timeout=300)
    assert other.returncode == 0
    served = json.loads(stdout.decode().strip().splitlines()[-1])
    assert served == {"cached": True, "directory": str(directory)}
    assert [p.name for p in (tmp_path / "models").iterdir()] == [directory.name]


SWEEPER = """
import json, sys
from featavg.api import run_sweep
grid, out = json.loads(sys.argv[1]), sys.argv[2]
result = run_sweep("synthetic-alignment", grid, overrides=json.loads(sys.argv[3]), out=out,
                   progress=False)
print(json.dumps({c.name: c.cached for c in result.cells}))
"""


@pytest.mark.slow
def test_same_and_overlapping_sweeps_compute_each_cell_once(tmp_path):
    """While this process runs a sweep (holding its cells), another process runs the same
    sweep: it waits and computes nothing. An overlapping sweep in another directory of the
    same store then computes only its new cell and takes the shared one from the first."""
    same, overlap = {"net.m": [2]}, {"net.m": [2, 3]}  # one cell shared
    first = tmp_path / "a"
    _, _, cells = plan_sweep(SWEEP_EXP, same, overrides=SMALL, out=first)
    held = lock_names([cell_slot(SWEEP_EXP, c.config, c.directory) for c in cells])
    with hold_cells(held) as locks:
        other = subprocess.Popen(
            [sys.executable, "-c", SWEEPER, json.dumps(same), str(first), json.dumps(SMALL)],
            stdout=subprocess.PIPE,
            env=_env(),
        )
        wait_until_waiting(other.pid, locks)  # the other sweep waits for a cell
        mine = run_sweep(SWEEP_EXP, same, overrides=SMALL, out=first, progress=False)
        manifests = {c.name: runs.sha256_file(c.directory / runs.MANIFEST) for c in mine.cells}
    assert not any(c.cached for c in mine.cells)
    stdout, _ = other.communicate(timeout=300)
    assert other.returncode == 0
    served = json.loads(stdout.decode().strip().splitlines()[-1])
    assert served == {c.name: False for c in mine.cells}  # nothing was finished when it planned
    # yet it computed nothing: every cell still holds exactly the run this process wrote
    assert manifests == {c.name: runs.sha256_file(c.directory / runs.MANIFEST) for c in mine.cells}

    second = run_sweep(SWEEP_EXP, overlap, overrides=SMALL, out=tmp_path / "b", progress=False)
    shared = [c for c in second.cells if c.name in manifests][0]
    assert runs.sha256_file(shared.directory / runs.MANIFEST) == manifests[shared.name]
    new = [c for c in second.cells if c.name not in manifests][0]
    assert new.summary["provenance"]["wall_time_s"] > 0
    for directory in (first, tmp_path / "b"):
        assert not (directory / "cells" / runs.STAGING).exists()
        assert not (directory / "cells" / run_lock.LOCKS).exists()
