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
from featavg.runs import lock as run_lock
from featavg.runs.lifeline import init_worker
from featavg.runs.state import check_replaceable, inspect_run
from featavg.sweep import sharing
from featavg.sweep.plan import SweepCell
from featavg.sweep.sharing import finished_elsewhere, tokens
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
) -> list[dict[str, Any]]:
    """Run a group of cells into their directories (one ensemble when the experiment can
    batch them) and return their summaries. Module-level, so process-pool workers (spawn)
    and Dask workers can import it.

    The cells are claimed for the run (:func:`featavg.sweep.sharing.claims`, waiting for
    another process at work on one). ``seen``: :func:`~featavg.sweep.sharing.tokens` of the
    cells when the sweep started; a cell another process has finished since, in its
    directory or elsewhere in the store, is served from there, not computed again
    (:func:`~featavg.sweep.sharing.finished_elsewhere`). Without ``seen`` every cell is
    computed."""
    from featavg.experiments.runner import run_experiment_batch
    from featavg.runs.context import open_context

    models = _models(experiment, configs)
    configs = [m.model_dump(mode="json") for m in models]
    with run_lock.claim(*sharing.claims(experiment, configs, outs)):
        summaries = finished_elsewhere(experiment, configs, outs, seen)
        todo = [i for i, summary in enumerate(summaries) if summary is None]
        if todo:
            ctx = open_context(device, progress=progress)
            results = run_experiment_batch(
                experiment, [models[i] for i in todo], [outs[i] for i in todo], ctx
            )
            for i, result in zip(todo, results, strict=True):
                summaries[i] = result.summary
    return [summary for summary in summaries if summary is not None]


def run_cells_detached(
    experiment: str, configs: list[dict[str, Any]], device: str
) -> list[dict[str, bytes]]:
    """:func:`run_cells` into scratch directories; returns each cell's files (name -> bytes).

    Dask workers need not share our filesystem, so they send the files back and the client
    writes them into the cell directories."""
    with tempfile.TemporaryDirectory(prefix="featavg-cells-") as tmp:
        outs = [str(Path(tmp) / str(i)) for i in range(len(configs))]
        summaries = run_cells(experiment, configs, outs, device)
        return [
            {FAILED: json.dumps(s).encode()}  # a failed cell wrote nothing: send its reason
            if is_failure(s)
            else {p.name: p.read_bytes() for p in sorted(Path(o).iterdir()) if p.is_file()}
            for o, s in zip(outs, summaries, strict=True)
        ]


# the one "file" a detached cell that failed sends back (never written anywhere)
FAILED = "failed.json"


def store_files(directory: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Replace the cell directory whole by a detached cell's files (staged beside it and
    renamed into place, as the runner does: never a mix of two runs); returns the summary.
    A failed cell's failure summary is returned and nothing is written."""
    if FAILED in files:
        summary: dict[str, Any] = json.loads(files[FAILED])
        return summary
    runs.write_run_files(directory, files)
    return json.loads(files["summary.json"])


# ---------------------------------------------------------------- the executors


@dataclass(frozen=True)
class LocalExecutor:
    """Groups one after another in this process; ``progress`` shows each cell's own bars."""

    progress: bool = False

    def run(self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done) -> None:
        seen = [tokens(experiment, group) for group in groups]
        for group, before in zip(groups, seen, strict=True):
            configs, outs = [c.config for c in group], [str(c.directory) for c in group]
            summaries = run_cells(experiment, configs, outs, device, self.progress, before)
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
                    tokens(experiment, group),
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
        seen = dict(zip((id(c) for c in cells), tokens(experiment, cells), strict=True))
        outs = [str(c.directory) for c in cells]
        held = sharing.claims(experiment, [c.config for c in cells], outs)
        # the workers write nowhere we read: this process claims every cell it will write
        # (all at once, in one order, so overlapping sweeps cannot deadlock) and writes them
        with client, run_lock.claim(*held):
            todo = []
            for group in groups:
                found = finished_elsewhere(
                    experiment,
                    [c.config for c in group],
                    [str(c.directory) for c in group],
                    [seen[id(c)] for c in group],
                )
                for cell, summary in zip(group, found, strict=True):
                    if summary is not None:
                        done(cell, summary)
                left = [c for c, summary in zip(group, found, strict=True) if summary is None]
                for cell in left:  # as the runner does: never over files featavg did not write
                    state = inspect_run(cell.directory, experiment, cell.config)
                    check_replaceable(state, f"run directory {cell.directory}", force=True)
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
                        done(cell, store_files(cell.directory, files))
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
