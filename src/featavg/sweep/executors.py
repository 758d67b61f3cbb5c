"""Executors: where a sweep's groups of cells run, behind one small protocol.

An :class:`Executor` gets the experiment name, the groups of unfinished cells (each group
one ensemble, see :func:`~featavg.sweep.plan.plan_groups`), the device name and a
``done(cell, summary)`` callback it calls once per finished cell, in any order. Every
executor ends in :func:`run_cells` on the same full configs, so all give the same numbers.

``local`` runs in this process, ``process`` in a spawn process pool, ``dask`` on an existing
``distributed`` cluster (optional extra ``featavg[dask]``). Another backend (e.g. submitit
for SLURM) is one class with keyword-only options and a ``run`` method, plus one entry in
:data:`EXECUTORS`; :func:`make_executor` passes it the options the user gave.
Threads: ``process`` workers get :func:`featavg.threads.worker_threads` each; Dask workers
keep their own settings (their nannies set ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from featavg import store
from featavg.config import ConfigError, build_config
from featavg.sweep.plan import SweepCell
from featavg.threads import configure as configure_threads
from featavg.threads import worker_threads

DASK_MISSING = "executor: dask needs the optional dependency: pip install 'featavg[dask]'"

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
) -> list[dict[str, Any]]:
    """Run a group of cells into their directories (one ensemble when the experiment can
    batch them) and return their summaries. Module-level, so process-pool workers (spawn)
    and Dask workers can import it."""
    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import run_experiment_batch

    cls = get_experiment(experiment).config_cls
    models = [build_config(cls, c) for c in configs]
    results = run_experiment_batch(experiment, models, outs, device=device, progress=progress)
    return [r.summary for r in results]


def run_cells_detached(
    experiment: str, configs: list[dict[str, Any]], device: str
) -> list[dict[str, bytes]]:
    """:func:`run_cells` into scratch directories; returns each cell's files (name -> bytes).

    Dask workers need not share our filesystem, so they send the files back and the client
    writes them into the cell directories."""
    with tempfile.TemporaryDirectory(prefix="featavg-cells-") as tmp:
        outs = [str(Path(tmp) / str(i)) for i in range(len(configs))]
        run_cells(experiment, configs, outs, device)
        return [
            {p.name: p.read_bytes() for p in sorted(Path(o).iterdir()) if p.is_file()} for o in outs
        ]


def store_files(directory: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Replace the cell directory whole by a detached cell's files (staged beside it and
    renamed into place, as the runner does: never a mix of two runs); returns the summary."""
    store.write_run_files(directory, files)
    return json.loads(files["summary.json"])


# ---------------------------------------------------------------- the executors


@dataclass(frozen=True)
class LocalExecutor:
    """Groups one after another in this process; ``progress`` shows each cell's own bars."""

    progress: bool = False

    def run(self, experiment: str, groups: list[list[SweepCell]], device: str, done: Done) -> None:
        for group in groups:
            configs, outs = [c.config for c in group], [str(c.directory) for c in group]
            summaries = run_cells(experiment, configs, outs, device, self.progress)
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

        # spawn: fork after torch has started its thread pools can deadlock
        ctx = multiprocessing.get_context("spawn")
        # each worker gets its share of this process's threads (featavg.threads: torch's
        # default of all cores per process oversubscribes the CPU)
        threads = worker_threads(self.workers)
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=configure_threads, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(
                    run_cells,
                    experiment,
                    [c.config for c in group],
                    [str(c.directory) for c in group],
                    device,
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
        with client:
            futures = {
                client.submit(
                    run_cells_detached,
                    experiment,
                    [c.config for c in group],
                    device,
                    # a fresh key per submission: two sweeps on one cluster can share cells
                    pure=False,
                ): group
                for group in groups
            }
            try:
                for future in distributed.as_completed(list(futures), loop=client.loop):
                    for cell, files in zip(futures[future], future.result(), strict=True):
                        done(cell, store_files(cell.directory, files))
            except BaseException:
                client.cancel(list(futures))
                raise


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
