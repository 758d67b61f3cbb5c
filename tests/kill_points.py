"""Known kill points for the kill-and-resume tests: no sleep and no machine speed decides
where a SIGKILL lands.

Two ways to stop a sweep at a chosen point and keep it there until the test has killed it:

* **Claims** (:func:`hold_cells`, :func:`wait_until_waiting`): the test claims cells of the
  sweep as another process computing them would (:mod:`featavg.runs.lock`); a sweep that
  reaches them waits for the claim, so it can neither finish nor pass them. The kernel
  lists a process waiting for a flock in ``/proc/locks``: once the sweep (or one of its
  workers) is listed there, everything it does before those cells is done.
* **A gate in Dask workers** (:func:`close_gate` and :func:`restore`, run on the workers
  with ``client.run``): Dask workers compute into scratch directories the sweep never
  claims, so there the experiment itself is replaced, in the worker's registry, by a copy
  whose run of a chosen config first writes ``<folder>/waiting-<pid>-<n>`` and then waits
  until ``<folder>/open`` exists. The test kills while a task waits there, then opens it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from featavg.experiments import registry
from featavg.experiments.spec import Experiment
from featavg.runs import lock as run_lock

# what a waiting test gives a sweep to reach its kill point: far more than any tiny sweep
# needs on a loaded machine; only a broken sweep waits this long
REACH_S = 600
POLL_S = 0.02  # how often the condition is looked at (it decides nothing)


# ---------------------------------------------------------------- claims


@contextlib.contextmanager
def hold_cells(directories: list[Path]) -> Iterator[list[Path]]:
    """Claim the cell ``directories`` for the block (as a process computing them would);
    yields their lock files, for :func:`wait_until_waiting`."""
    with run_lock.claim(*directories):
        yield [run_lock.lock_path(Path(os.path.abspath(d))) for d in directories]


def lock_waiters(locks: list[Path]) -> set[int]:
    """The pids waiting for a flock on one of the files ``locks`` (``/proc/locks`` lists a
    waiter as ``N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...``)."""
    files = {(os.stat(p).st_ino) for p in locks}
    waiting = set()
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 7 and parts[1] == "->":
                pid, ident = parts[5], parts[6]
                if int(ident.rsplit(":", 1)[1]) in files:
                    waiting.add(int(pid))
    return waiting


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants (a sweep and its pool's workers)."""
    try:
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def alive(pid: int) -> Callable[[], bool]:
    """Whether process ``pid`` still runs (a zombie, ended but not reaped, does not)."""

    def check() -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return check


def wait_for(condition: Callable[[], bool], running: Callable[[], bool], what: str) -> None:
    """Return once ``condition()`` holds; fail if ``running()`` turns false first (the
    process ended, or crashed, before its kill point) or after :data:`REACH_S`."""
    deadline = time.monotonic() + REACH_S
    while not condition():
        assert running(), f"it ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {REACH_S} s"
        time.sleep(POLL_S)


def wait_until_waiting(pid: int, locks: list[Path]) -> None:
    """Return once process ``pid`` or one of its descendants waits for one of ``locks``."""
    wait_for(lambda: bool(_tree(pid) & lock_waiters(locks)), alive(pid), "a wait for a held cell")


def sweep_with_threads(threads: int, *args: Any, **kwargs: Any) -> None:
    """:func:`featavg.sweep.run_sweep` with ``threads`` torch threads in this process and
    the same policy for its workers (the target of a test's sweep process)."""
    from featavg import threads as policy
    from featavg.api import run_sweep

    policy.configure(threads)
    run_sweep(*args, **kwargs)


# ---------------------------------------------------------------- a gate in Dask workers

_originals: dict[str, Experiment] = {}
_count = itertools.count()


def _gated(
    run: Callable[..., Any],
    folder: str,
    key: str,
    value: Any,
    configs: Any,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``run(configs, ...)``, first waiting at the gate if a config has ``key`` ==
    ``value`` (dotted key; ``configs`` one config or a list)."""
    batch = configs if isinstance(configs, list) else [configs]
    if any(_get(c.model_dump(), key) == value for c in batch):
        gate = Path(folder)
        (gate / f"waiting-{os.getpid()}-{next(_count)}").touch()
        while not (gate / "open").exists():
            time.sleep(POLL_S)
    return run(configs, *args, **kwargs)


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def close_gate(name: str, folder: str, key: str, value: Any) -> None:
    """In this process (a Dask worker, through ``client.run``): replace experiment ``name``
    by a copy whose runs of a config with ``key`` == ``value`` wait at the gate in
    ``folder`` (module docstring)."""
    original = _originals.setdefault(name, registry.get_experiment(name))
    gated = dataclasses.replace(
        original,
        run=functools.partial(_gated, original.run, folder, key, value),
        run_batch=None
        if original.run_batch is None
        else functools.partial(_gated, original.run_batch, folder, key, value),
    )
    registry.unregister(name)
    registry.register(gated)


def restore(name: str) -> None:
    """Undo :func:`close_gate` in this process (nothing to undo in a fresh worker)."""
    original = _originals.pop(name, None)
    if original is not None:
        registry.unregister(name)
        registry.register(original)


def waiting(folder: Path) -> list[int]:
    """The pids of the processes waiting (or that waited) at the gate in ``folder``."""
    return [int(p.name.split("-")[1]) for p in sorted(folder.glob("waiting-*"))]
