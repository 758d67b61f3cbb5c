"""Executors: where a sweep's groups of cells run, behind one small protocol.

An :class:`Executor` gets the experiment name, the groups of unfinished cells (each group
one ensemble, see :func:`~featavg.sweep.plan.plan_groups`), the device name and a
``done(cell, summary)`` callback it calls once per finished cell, in any order. Every
executor ends in :func:`run_cells` on the same full configs, so all give the same numbers.

``local`` runs in this process, ``process`` in a process pool, ``dask`` on an existing
``distributed`` cluster (optional extra ``featavg[dask]``). Another backend (e.g. submitit
for SLURM) is one class with keyword-only options and a ``run`` method, plus one entry in
:data:`EXECUTORS`; :func:`make_executor` passes it the options the user gave.
Threads: ``process`` workers get :func:`featavg.threads.worker_threads` each; Dask workers
keep their own settings (their nannies set ``OMP_NUM_THREADS=1``).

Crashes and company: every group claims its cell directories (:mod:`featavg.runs.lock`)
around its run, so sweeps and runs of other processes sharing cells compute each cell once;
a cell another process finished since the sweep started (its manifest changed: ``seen``) is
served from there. ``process`` workers die with their parent
(:mod:`~featavg.runs.lifeline`). Dask workers only compute into scratch directories and
send the files back; the client, holding the claims, writes them, so a killed worker or
client never writes a cell, and a task lost with its worker is rerun on another
(``distributed`` reschedules it; :data:`DASK_RETRIES` more tries for errors).
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from featavg import runs
from featavg.config import ConfigError, build_config
from featavg.faults import is_failure
from featavg.runs import door, lock
from featavg.runs.door import SUMMARY, Failed, Made, Slot, install
from featavg.runs.lifeline import init_worker
from featavg.sweep import sharing
from featavg.sweep.plan import SweepCell
from featavg.threads import worker_threads

DASK_MISSING = "executor: dask needs the optional dependency: pip install 'featavg[dask]'"
# extra tries of a Dask task that raised (a task whose worker died is rerun regardless)
DASK_RETRIES = 2
# what the process pool's fork server imports once for all its workers
WORKER_PRELOAD = ("featavg.sweep.executors", "featavg.experiments.registry")

Done = Callable[[SweepCell, dict[str, Any]], None]


class Executor(Protocol):
    """Runs every group and calls ``done(cell, summary)`` for each cell as it finishes."""

    def run(
        self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done
    ) -> None: ...


# ---------------------------------------------------------------- what every executor runs


def run_cells(
    experiment: str,
    configs: list[dict[str, Any]],
    outs: list[str],
    device: str,
    progress: bool = False,
    seen: list[str | None] | None = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run a group of cells into their directories (one ensemble when the experiment can
    batch them) through the run store's one door, and return their summaries. Module-level,
    so process-pool workers and Dask workers can import it.

    Each cell is a :func:`~featavg.sweep.sharing.cell_slot`: claimed with its content key
    (waiting for another process at work on it), served when another process has finished
    it meanwhile, in its directory or elsewhere in the store, else computed. ``force``
    recomputes finished cells, except one another process replaced since ``seen`` (its
    :func:`~featavg.runs.run_token` when the sweep started). Trained models go to the run
    store's ``models`` cache."""
    from featavg.experiments.runner import run_slots
    from featavg.runs.context import open_context

    models = _models(experiment, configs)
    configs = [m.model_dump(mode="json") for m in models]
    baselines = seen if seen is not None else [None] * len(outs)
    slots = [
        sharing.cell_slot(experiment, c, Path(o), b)
        for c, o, b in zip(configs, outs, baselines, strict=True)
    ]
    ctx = open_context(device, sharing.models_store(Path(outs[0])), progress=progress)
    return [r.summary for r in run_slots(experiment, models, slots, ctx, force=force)]


def run_cells_detached(
    experiment: str, configs: list[dict[str, Any]], device: str
) -> list[dict[str, bytes]]:
    """:func:`run_cells` into scratch directories; returns each cell's files (name -> bytes).

    Dask workers need not share our filesystem, so they send the files back and the client
    writes them into the cell directories (:func:`store_files`)."""
    with tempfile.TemporaryDirectory(prefix="featavg-cells-") as tmp:
        outs = [str(Path(tmp) / str(i)) for i in range(len(configs))]
        summaries = run_cells(experiment, configs, outs, device, force=True)
        return [
            {FAILED: json.dumps(s).encode()}  # a failed cell wrote nothing: send its reason
            if is_failure(s)
            else {p.name: p.read_bytes() for p in sorted(Path(o).iterdir()) if p.is_file()}
            for o, s in zip(outs, summaries, strict=True)
        ]


# the one "file" a detached cell that failed sends back (never written anywhere)
FAILED = "failed.json"


def detached_result(files: dict[str, bytes]) -> Made[dict[str, Any]] | Failed:
    """A detached cell's files as the door installs them: its summary, and a writer of the
    other files (the door writes summary.json and the manifest, the same bytes); a failed
    cell's :class:`~featavg.runs.door.Failed`."""
    if FAILED in files:
        failure: dict[str, Any] = json.loads(files[FAILED])
        return Failed(str(failure.get("reason", "")), failure)
    bad = [name for name in files if not runs.is_plain_name(name)]
    if bad:  # a worker's file names become paths: never "../x", "/x" or hidden
        raise ValueError(f"run files: not plain file names: {bad[0]!r}")
    summary: dict[str, Any] = json.loads(files[SUMMARY])

    def write(new: Path) -> None:
        for name, data in files.items():
            if name not in (SUMMARY, runs.MANIFEST):
                runs.write_bytes(new / name, data)

    return Made(summary, write, summary)


def store_files(directory: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Replace the cell directory whole by a detached cell's files (staged beside it and
    renamed into place, as every run is: never a mix of two runs); returns the summary.
    A failed cell's failure summary is returned and nothing is written."""
    slot = Slot("", {}, Path(directory))
    return install(slot, detached_result(files)).summary


# ---------------------------------------------------------------- the executors


@dataclass(frozen=True)
class LocalExecutor:
    """Groups one after another in this process; ``progress`` shows each cell's own bars."""

    progress: bool = False

    def run(self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done) -> None:
        for group in groups:
            configs, outs = [c.config for c in group], [str(c.directory) for c in group]
            seen, force = [c.seen for c in group], any(c.force for c in group)
            summaries = run_cells(experiment, configs, outs, device, self.progress, seen, force)
            for cell, summary in zip(group, summaries, strict=True):
                done(cell, summary)


@dataclass(frozen=True)
class ProcessExecutor:
    """Groups in a pool of ``workers`` spawned processes, each with its share of the cores."""

    workers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers: need at least 1, got {self.workers}")

    def run(self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # never a plain fork: forking after torch has started its thread pools can deadlock.
        # forkserver: one fresh process imports featavg and torch once, then forks each
        # worker (before any torch work), so a pool starts in one import, not one per worker
        ctx: multiprocessing.context.BaseContext
        if "forkserver" in multiprocessing.get_all_start_methods():
            server = multiprocessing.get_context("forkserver")
            server.set_forkserver_preload(list(WORKER_PRELOAD))
            ctx = server
        else:
            ctx = multiprocessing.get_context("spawn")
        # each worker gets its share of this process's threads (featavg.threads: torch's
        # default of all cores per process oversubscribes the CPU)
        threads = worker_threads(self.workers)
        # workers die with this process (lifeline): a killed sweep leaves none writing
        with ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=init_worker,
            initargs=(os.getpid(), threads),
        ) as pool:
            futures = {
                pool.submit(
                    run_cells,
                    experiment,
                    [c.config for c in group],
                    [str(c.directory) for c in group],
                    device,
                    False,
                    [c.seen for c in group],
                    any(c.force for c in group),
                ): group
                for group in groups
            }
            try:
                for future in as_completed(futures):
                    for cell, summary in zip(futures[future], future.result(), strict=True):
                        done(cell, summary)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


@dataclass(frozen=True)
class DaskExecutor:
    """Groups as tasks on the Dask cluster at ``scheduler``; workers send the files back."""

    scheduler: str | None = None

    def __post_init__(self) -> None:
        if not self.scheduler:
            raise ConfigError("--scheduler: required with --executor dask, e.g. tcp://host:8786")
        try:  # fail before any work when the extra is missing
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(DASK_MISSING) from None

    def run(self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done) -> None:
        import distributed

        try:
            client = distributed.Client(self.scheduler, set_as_default=False)
        except (OSError, TimeoutError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"--scheduler {self.scheduler}: cannot connect: {msg}") from None
        cells = [cell for group in groups for cell in group]
        slot_of = {
            id(c): sharing.cell_slot(experiment, c.config, c.directory, c.seen) for c in cells
        }
        force = any(c.force for c in cells)
        # the workers write nowhere we read: this process claims every cell it will write
        # (all at once, in one order, so overlapping sweeps cannot deadlock) and installs
        # what they send back through the one door
        with client, lock.claim(*door.lock_names(list(slot_of.values()))):
            todo = []
            for group in groups:
                left = []
                for cell in group:
                    slot = slot_of[id(cell)]
                    hit, seen = door.lookup(door.SUMMARIES, slot, force)
                    hit = hit or door.finished_meanwhile(door.SUMMARIES, slot, force, seen)
                    if hit is not None:
                        done(cell, hit.summary)
                    else:
                        left.append(cell)
                if left:
                    todo.append(left)
            futures = {
                client.submit(
                    run_cells_detached,
                    experiment,
                    [c.config for c in group],
                    device,
                    # a fresh key per submission: two sweeps on one cluster can share cells
                    pure=False,
                    retries=DASK_RETRIES,
                ): group
                for group in todo
            }
            try:
                for future in distributed.as_completed(list(futures), loop=client.loop):
                    for cell, files in zip(futures[future], future.result(), strict=True):
                        served = door.install(slot_of[id(cell)], detached_result(files))
                        done(cell, served.summary)
            except BaseException:
                client.cancel(list(futures))
                raise


def _models(experiment: str, configs: list[dict[str, Any]]) -> list[Any]:
    """The validated config objects of ``configs``."""
    from featavg.experiments.registry import get_experiment

    cls = get_experiment(experiment).config_cls
    return [build_config(cls, c) for c in configs]


# name -> class: the --executor choices
EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor,
    "process": ProcessExecutor,
    "dask": DaskExecutor,
}


def make_executor(name: str, *, progress: bool = False, **options: Any) -> Executor:
    """The executor ``name`` built from the ``options`` the user gave (None: not given; each
    becomes the ``--option`` of the same name in errors). An option the executor does not
    take is a :class:`ConfigError`; ``progress`` goes to those that take it."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: unknown {name!r}; allowed: {', '.join(EXECUTORS)}")
    cls = EXECUTORS[name]
    accepted = inspect.signature(cls).parameters
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in accepted:
            raise ConfigError(f"--{key}: not used by --executor {name}")
    if "progress" in accepted:
        given["progress"] = progress
    return cls(**given)
