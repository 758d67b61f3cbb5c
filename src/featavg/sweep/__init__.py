"""Sweeps: one experiment over a grid of config values, run locally or on a Dask cluster.

A *cell* is one grid point. Its seeds are one ensemble inside one run (``seeds=N``) for
the synthetic experiments, so they share every data pass; for the real-data ones (those
with ``Experiment.pool``) each seed is a cached single-seed run of its own, computed side
by side as cells of their own first, and the cell pools them. Each cell is an ordinary cached run in
``<sweep>/cells/<cell name>`` (``summary.json`` written last marks it finished), which makes
a sweep resumable: after an interruption, even SIGKILL, finished cells are cache hits and a
half-written cell, having no summary, is redone. The results table ``sweep.csv`` (mean and
95% interval per cell and metric) and the figure ``sweep.png`` are rewritten at the end.

What lives where:

* :mod:`~featavg.sweep.grid`: ``--grid`` parsing (:func:`parse_grid`), cell names and labels;
* :mod:`~featavg.sweep.plan`: the sweep directory, one validated config per cell
  (:class:`SweepCell`, :func:`plan_sweep`) and the cells trained as one ensemble
  (:func:`plan_groups`);
* :mod:`~featavg.sweep.executors`: the :class:`Executor` protocol and ``local``,
  ``process`` and ``dask`` (:data:`EXECUTORS`); all run the same cell function on the same
  full config, so they give the same numbers;
* :mod:`~featavg.sweep.results`: ``sweep.csv``, ``sweep.png`` and :class:`SweepResult`;
* here: :func:`run_sweep`, which ties them together. The ``featavg sweep`` command is in
  :mod:`featavg.cli`.

Guards: a grid of more than :data:`featavg.runs.guards.MAX_SWEEP_CELLS` cells, or a group of
cells (times the pool size of the process executor) estimated beyond the machine's memory or
time, is refused before anything runs unless ``allow_large``. A cell whose run fails
(:class:`~featavg.faults.RunFailed`, e.g. a diverging learning rate) is recorded in
``sweep.csv`` with status "failed" and its one-line reason; the other cells complete, and
nothing is written into the failed cell's directory, so the next run of the sweep retries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featavg import runs
from featavg._version import __version__
from featavg.config import ConfigError, build_config
from featavg.device import check_device_name
from featavg.faults import is_failure
from featavg.runs import guards
from featavg.runs.guards import check_grid
from featavg.sweep import sharing
from featavg.sweep.executors import (
    DASK_MISSING,
    EXECUTORS,
    DaskExecutor,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    make_executor,
    run_cells,
    run_cells_detached,
)
from featavg.sweep.grid import cell_label, cell_name, parse_grid
from featavg.sweep.plan import SweepCell, plan_groups, plan_sweep
from featavg.sweep.record import check_sweep_dir
from featavg.sweep.results import SweepResult, sweep_figure, table_rows, write_results

__all__ = [
    "DASK_MISSING",
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "SweepCell",
    "SweepOptions",
    "SweepResult",
    "cell_label",
    "cell_name",
    "make_executor",
    "parse_grid",
    "plan_groups",
    "plan_sweep",
    "run_cells",
    "run_cells_detached",
    "run_sweep",
    "sweep_figure",
    "table_rows",
    "write_results",
]


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (never what it computes). ``executor``: a name in :data:`EXECUTORS`
    (with ``scheduler`` for dask, ``workers`` for process, default 2) or an
    :class:`Executor`; ``device`` for every cell; ``force`` redoes finished cells;
    ``progress`` shows a bar; ``metrics`` picks the summary keys plotted (default: the
    experiment's main ones); ``allow_large`` lifts the size guards (module docstring)."""

    executor: str | Executor = "local"
    scheduler: str | None = None
    workers: int | None = None
    device: str = "auto"
    force: bool = False
    progress: bool = True
    metrics: list[str] | None = None
    allow_large: bool = False


def run_sweep(
    experiment: str,
    grid: dict[str, list[Any]],
    *,
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    root: str | Path = runs.DEFAULT_ROOT,
    options: SweepOptions = SweepOptions(),
) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` ({dotted key: values}) with ``seeds``
    replicates per cell, reusing finished cells unless ``options.force``; write sweep.json,
    cells/<cell>/..., sweep.csv and sweep.png into the sweep directory (``out``, or
    ``root/sweep-<experiment>-<hash>``). Bad input, and a grid or cells too large for the
    machine without ``options.allow_large`` (module docstring), raise :class:`ConfigError`
    before anything runs. A failing cell is recorded as failed (module docstring).
    :func:`featavg.run_sweep` takes the options as plain keywords."""
    from featavg.progress import bar as progress_bar

    executor, device, force, progress = (
        options.executor,
        options.device,
        options.force,
        options.progress,
    )
    check_device_name(device)
    if isinstance(executor, str):
        executor = make_executor(
            executor, progress=progress, scheduler=options.scheduler, workers=options.workers
        )
    elif options.scheduler is not None or options.workers is not None:
        raise ConfigError("scheduler, workers: pass them to the executor object instead")
    check_grid(grid, options.allow_large)  # before a config is built for every cell
    directory, base, cells = plan_sweep(
        experiment,
        grid,
        seeds=seeds,
        overrides=overrides,
        config_file=config_file,
        out=out,
        root=root,
    )
    for cell in cells:
        summary = None if force else runs.cached_summary(cell.directory, experiment, cell.config)
        if summary is not None:
            cell.summary, cell.cached = summary, True
        cell.force, cell.seen = force, runs.run_token(cell.directory) if force else None
    # finished cells are never redone: a group resumed after an interruption trains only
    # its unfinished cells (as a smaller ensemble, equal to an uninterrupted run up to
    # float rounding, ~1e-10 relative)
    pending = [[c for c in group if not c.cached] for group in plan_groups(experiment, cells)]
    pending = [group for group in pending if group]
    if not isinstance(executor, DaskExecutor):  # a cluster's memory is not ours to measure
        pool = executor.workers if isinstance(executor, ProcessExecutor) else 0
        _check_groups(experiment, pending, device, pool, options.allow_large)

    # written once the sweep is accepted: a refused sweep leaves nothing behind
    check_sweep_dir(directory, experiment, grid, base, force)  # before anything is written
    runs.write_json(
        directory / "sweep.json",
        {
            "experiment": experiment,
            "featavg_version": __version__,
            "grid": grid,
            "seeds": base.get("seeds"),
            "base_config": base,
            "cells": [
                {"name": c.name, "values": c.values, "directory": f"cells/{c.name}"} for c in cells
            ],
        },
    )

    bar = progress_bar(total=len(cells), desc=f"sweep {experiment}", unit="cell", enabled=progress)
    bar.update(sum(c.cached for c in cells))

    def done(cell: SweepCell, summary: dict[str, Any]) -> None:
        cell.summary = summary  # a failed cell's is a failure summary (status "failed")
        failed = " failed" if is_failure(summary) else ""
        bar.set_postfix_str(cell_label(cell.values) + failed, refresh=False)
        bar.update(1)

    try:
        pooling: list[list[SweepCell]] = []
        if pending and not isinstance(executor, LocalExecutor):
            pooled = _seed_runs_first(experiment, [c for g in pending for c in g], executor, device)
            # a cell that pools seed runs only reads them, and they are in this store, which
            # a Dask worker's scratch directory is not: pooled here (cheap) instead of there
            pooling = [g for g in pending if all(id(c) in pooled for c in g)]
            pending = [g for g in pending if not all(id(c) in pooled for c in g)]
        if pending:  # all cached: no pool to start, no cluster to reach
            executor.run(experiment, pending, device, done)
        if pooling:
            LocalExecutor(progress=False).run(experiment, pooling, device, done)
    finally:
        bar.close()
    return write_results(
        directory, experiment, grid, cells, options.metrics, base.get("seeds") or 1
    )


def _seed_runs_first(
    experiment: str, cells: list[SweepCell], executor: Executor, device: str
) -> set[int]:
    """For an experiment whose seeds are separate runs (``Experiment.pool``, the real-data
    ones): the single-seed runs of every pending cell, as cells of their own, so that a
    process pool or a cluster computes them side by side; each cell then pools its seeds'
    runs, served from the run store (the numbers one process gives). Returns the ``id`` of
    every cell that pools seeds."""
    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import seed_config

    exp = get_experiment(experiment)
    if exp.pool is None:
        return set()
    wanted: dict[str, SweepCell] = {}
    pooled: set[int] = set()
    for cell in cells:
        cfg = build_config(exp.config_cls, cell.config)
        first, count = int(cell.config.get("seed", 0)), int(cell.config.get("seeds", 1))
        if count < 2:
            continue
        pooled.add(id(cell))
        for seed in range(first, first + count):
            one = seed_config(exp, cfg, seed).model_dump(mode="json")
            where = runs.run_dir(experiment, one, sharing.models_store(cell.directory))
            wanted.setdefault(str(where), SweepCell({"seed": seed}, one, where))
    todo = [
        [c]
        for c in wanted.values()
        if runs.cached_summary(c.directory, experiment, c.config) is None
    ]
    if todo:  # a seed that fails is retried, and reported, by the cell that pools it
        executor.run(experiment, todo, device, lambda cell, summary: None)
    return pooled


def _check_groups(
    experiment: str, groups: list[list[SweepCell]], device: str, pool: int, allow_large: bool
) -> None:
    """Refuse (:func:`featavg.runs.guards.check`) pending groups that cannot fit: each group
    is one ensemble; in this process one at a time (``pool`` = 0), in a process pool
    ``pool`` at once, so the ``pool`` largest estimates must fit together, each worker with
    its own interpreter (:data:`featavg.runs.guards.WORKER_OVERHEAD`)."""
    if not groups or allow_large:
        return
    from featavg.device import resolve_device
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    models = [[build_config(exp.config_cls, c.config) for c in group] for group in groups]
    known = sorted((exp.estimate(cfgs) for cfgs in models), key=lambda e: -e.memory)
    at_once = known[: max(1, min(pool, len(known)))]
    workers = len(at_once) * guards.WORKER_OVERHEAD if pool else 0
    memory = sum(e.memory for e in at_once) + workers
    host = sum(e.host for e in at_once) + workers
    # the memory of the groups running at once; the time of the longest group alone
    longest = max(known, key=lambda e: e.flops)
    together = guards.ResourceEstimate(memory, host, longest.flops, at_once[0].what)
    guards.check(f"sweep {experiment}", together, resolve_device(device), allow_large)
