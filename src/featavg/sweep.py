"""Sweeps: one experiment over a grid of config values, run locally or on a Dask cluster.

A *cell* is one grid point; its seeds are not separate cells but one ensemble inside one
run (``seeds=N``), so they share every data pass. Each cell is an ordinary cached run in
``<sweep>/cells/<cell name>`` (``summary.json`` written last marks it finished), which makes
a sweep resumable: after an interruption, even SIGKILL, finished cells are cache hits and a
half-written cell, having no summary, is redone. The results table ``sweep.csv`` (mean and
95% interval per cell and metric) and the figure ``sweep.png`` are rewritten at the end.

Executors: ``local`` (in-process), ``process`` (a spawn process pool) and ``dask`` (an
existing ``distributed`` cluster; optional extra ``featavg[dask]``). All of them call the
same cell function on the same full config, so they give the same numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featavg import __version__, store
from featavg.config import (
    ConfigError,
    add_config_arguments,
    build_config,
    deep_merge,
    parse_overrides,
    parse_value,
)

EXECUTORS = ("local", "process", "dask")
DASK_MISSING = "executor: dask needs the optional dependency: pip install 'featavg[dask]'"
# summary entries that are not metrics even when they are numbers
_NOT_METRICS = {"experiment", "data", "config", "provenance", "per_seed"}


# ---------------------------------------------------------------- grid and cells


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so list values like ``[1,2],[3,4]`` survive."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["train.lr=0.001,0.01", "data.k=4,8"]`` -> ``{"train.lr": [0.001, 0.01],
    "data.k": [4, 8]}``; values parsed like ``--set`` values. Raises :class:`ConfigError`."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. train.lr=1e-3,1e-2")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        if key == "seeds":
            raise ConfigError("--grid seeds: use --seeds N (seeds are batched inside each cell)")
        raw = _split_values(text)
        if any(not v.strip() for v in raw):
            raise ConfigError(f"--grid {item!r}: empty value in the list")
        values = [parse_value(v.strip()) for v in raw]
        canon = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(canon)) != len(canon):  # 0.01 and 1e-2 would be the same cell twice
            raise ConfigError(f"--grid {item!r}: a value is repeated")
        grid[key] = values
    return grid


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"train.lr": 0.01} -> {"train": {"lr": 0.01}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _lookup(nested: dict[str, Any], key: str) -> bool:
    """Whether the dotted ``key`` is set in the nested override dict."""
    node: Any = nested
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _format(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def cell_label(values: dict[str, Any]) -> str:
    """Human-readable ``train.lr=0.01, data.k=4``."""
    return ", ".join(f"{k}={_format(v)}" for k, v in values.items())


def cell_name(values: dict[str, Any]) -> str:
    """Deterministic, filesystem-safe directory name: sanitised label + 8-hex hash.

    The hash keeps names unique when sanitising or truncating maps two cells together."""
    label = "__".join(f"{k}={_format(v)}" for k, v in values.items())
    label = re.sub(r"[^A-Za-z0-9._=+-]", "_", label)[:80]
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{label}-{digest}"


@dataclass
class SweepCell:
    """One grid point: its grid ``values``, its full validated ``config`` (JSON), its run
    ``directory``, and, once run, the ``summary`` and whether it was ``cached``."""

    values: dict[str, Any]
    config: dict[str, Any]
    directory: Path
    summary: dict[str, Any] | None = None
    cached: bool = False

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def overrides(self) -> dict[str, Any]:
        """The grid values as nested overrides."""
        return _nest(self.values)


@dataclass
class SweepResult:
    """directory: the sweep directory; cells: every cell with its summary; table: sweep.csv
    as a DataFrame (one row per cell)."""

    experiment: str
    directory: Path
    grid: dict[str, list]
    cells: list[SweepCell]
    table: Any = field(repr=False)  # pandas.DataFrame (pandas imported lazily)

    @property
    def csv_path(self) -> Path:
        return self.directory / "sweep.csv"

    @property
    def figure_path(self) -> Path:
        return self.directory / "sweep.png"

    def to_frame(self):
        """The results table as a (copied) pandas DataFrame."""
        return self.table.copy()


def plan_sweep(
    experiment: str,
    grid: dict[str, list],
    *,
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    root: str | Path = store.DEFAULT_ROOT,
) -> tuple[Path, dict[str, Any], list[SweepCell]]:
    """(sweep directory, base config, cells), every cell's config validated up front so a
    bad grid value fails before anything runs."""
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,...")
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"--grid {key}: no values")
    base_overrides = dict(overrides or {})
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds: need at least 1, got {seeds}")
        base_overrides["seeds"] = seeds
    for key in grid:
        if _lookup(base_overrides, key):
            raise ConfigError(f"--grid {key}: also given with --set; keep one of them")
    base = build_config(exp.config_cls, base_overrides, config_file).model_dump(mode="json")

    # the sweep's identity: what it runs, not how (executor, workers) it runs; the grid as
    # pairs because its key order matters (the first key is the figure's x axis)
    identity = {"base": base, "grid": [[k, v] for k, v in grid.items()], "seeds": base.get("seeds")}
    digest = store.config_hash(f"sweep:{experiment}", identity)
    directory = Path(out) if out is not None else Path(root) / f"sweep-{experiment}-{digest}"
    cells = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        try:
            # the full base config (not the raw overrides + file) so a cell is self-contained:
            # a remote worker needs neither the config file nor our defaults
            cfg = build_config(exp.config_cls, deep_merge(base, _nest(values)))
        except ConfigError as err:
            raise ConfigError(f"--grid {cell_label(values)}: {err}") from None
        cfg_json = cfg.model_dump(mode="json")
        cells.append(SweepCell(values, cfg_json, directory / "cells" / cell_name(values)))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):  # distinct JSON values hash apart; this is a guard
        raise ConfigError("--grid: two cells map to the same directory name")
    return directory, base, cells


# ---------------------------------------------------------------- running one cell


def run_cells(
    experiment: str,
    configs: list[dict[str, Any]],
    outs: list[str],
    device: str,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run a group of cells into their directories (one ensemble when the experiment can
    batch them, see :func:`plan_groups`) and return their summaries. Every executor ends up
    here, so all give the same numbers."""
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


def plan_groups(experiment: str, cells: list[SweepCell]) -> list[list[SweepCell]]:
    """Cells that differ only in the experiment's ``batch_fields`` (e.g. train.lr,
    net.init_std) form one group, trained as one ensemble; otherwise one cell per group.
    A group's unfinished cells are trained together (see :func:`run_sweep`)."""
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    if exp.run_batch is None:
        return [[c] for c in cells]
    groups: dict[str, list[SweepCell]] = {}
    for cell in cells:
        key = json.loads(json.dumps(cell.config))
        for field_path in exp.batch_fields:
            section, name = field_path.split(".")
            key.get(section, {}).pop(name, None)
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(cell)
    return list(groups.values())


def _store_files(directory: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Write a detached cell's files atomically, summary.json last (it marks completion)."""
    for name, data in files.items():
        if name != "summary.json":
            store.write_bytes(directory / name, data)
    store.write_bytes(directory / "summary.json", files["summary.json"])
    return json.loads(files["summary.json"])


def _run_local(experiment, pending, device, progress, done):
    for group in pending:
        summaries = run_cells(
            experiment,
            [c.config for c in group],
            [str(c.directory) for c in group],
            device,
            progress,
        )
        for cell, summary in zip(group, summaries, strict=True):
            done(cell, summary)


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_process(experiment, pending, device, workers, done):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: fork after torch has started its thread pools can deadlock
    ctx = multiprocessing.get_context("spawn")
    # each worker gets its share of the cores: torch's default (all cores per process)
    # oversubscribes the CPU and its spinning threads slow everything down
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_limit_threads, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(
                run_cells,
                experiment,
                [c.config for c in group],
                [str(c.directory) for c in group],
                device,
            ): group
            for group in pending
        }
        try:
            for future in as_completed(futures):
                for cell, summary in zip(futures[future], future.result(), strict=True):
                    done(cell, summary)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _run_dask(experiment, pending, device, scheduler, done):
    try:
        import distributed
    except ImportError:
        raise ConfigError(DASK_MISSING) from None
    try:
        client = distributed.Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--scheduler {scheduler}: cannot connect: {msg}") from None
    with client:
        futures = {
            client.submit(
                run_cells_detached,
                experiment,
                [c.config for c in group],
                device,
                # a fresh key per submission: two sweeps on one cluster can share cell names
                pure=False,
            ): group
            for group in pending
        }
        try:
            for future in distributed.as_completed(list(futures), loop=client.loop):
                for cell, files in zip(futures[future], future.result(), strict=True):
                    done(cell, _store_files(cell.directory, files))
        except BaseException:
            client.cancel(list(futures))
            raise


# ---------------------------------------------------------------- the sweep


def run_sweep(
    experiment: str,
    grid: dict[str, list],
    *,
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    root: str | Path = store.DEFAULT_ROOT,
    executor: str = "local",
    scheduler: str | None = None,
    workers: int = 2,
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    metrics: list[str] | None = None,
) -> SweepResult:
    """Run ``experiment`` at every point of ``grid`` ({dotted key: values}) with ``seeds``
    replicates per cell, reusing finished cells unless ``force``; write sweep.json,
    cells/<cell>/..., sweep.csv and sweep.png into the sweep directory (``out``, or
    ``root/sweep-<experiment>-<hash>``). ``metrics`` picks the summary keys plotted."""
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: unknown {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ConfigError("--scheduler: required with --executor dask, e.g. tcp://host:8786")
    if executor != "dask" and scheduler:
        raise ConfigError("--scheduler: only used with --executor dask")
    if workers < 1:
        raise ConfigError(f"--workers: need at least 1, got {workers}")
    if executor == "dask":  # fail before any work when the extra is missing
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(DASK_MISSING) from None

    directory, base, cells = plan_sweep(
        experiment,
        grid,
        seeds=seeds,
        overrides=overrides,
        config_file=config_file,
        out=out,
        root=root,
    )
    store.write_json(
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

    bar = tqdm(total=len(cells), desc=f"sweep {experiment}", unit="cell", disable=not progress)
    for cell in cells:
        summary = None if force else store.cached_summary(cell.directory, experiment, cell.config)
        if summary is not None:
            cell.summary, cell.cached = summary, True
    # finished cells are never redone: a group resumed after an interruption trains only
    # its unfinished cells (as a smaller ensemble, equal to an uninterrupted run up to
    # float rounding, ~1e-10 relative)
    pending = [[c for c in group if not c.cached] for group in plan_groups(experiment, cells)]
    pending = [group for group in pending if group]
    bar.update(sum(c.cached for c in cells))

    def done(cell: SweepCell, summary: dict[str, Any]) -> None:
        cell.summary = summary
        bar.set_postfix_str(cell_label(cell.values), refresh=False)
        bar.update(1)

    try:
        if not pending:
            pass  # all cached: no pool to start, no cluster to reach
        elif executor == "local":
            # cells run one after another here, so their own bars can nest under ours
            _run_local(experiment, pending, device, progress, done)
        elif executor == "process":
            _run_process(experiment, pending, device, workers, done)
        else:
            _run_dask(experiment, pending, device, scheduler, done)
    finally:
        bar.close()

    rows = table_rows(cells)
    store.write_csv(directory / "sweep.csv", rows)
    import pandas as pd

    table = pd.DataFrame(rows)
    fig = sweep_figure(experiment, grid, cells, metrics, base.get("seeds") or 1)
    store.write_figure(directory / "sweep.png", fig)
    return SweepResult(experiment, directory, grid, cells, table)


# ---------------------------------------------------------------- table and figure


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_keys(summary: dict[str, Any]) -> list[str]:
    """The scalar metrics of a summary (numbers, or null for a non-finite result)."""
    return [
        k
        for k, v in summary.items()
        if k not in _NOT_METRICS and not k.endswith("_ci95") and (v is None or _is_number(v))
    ]


def _interval(summary: dict[str, Any], key: str) -> tuple[float, float, float]:
    """(mean, lo, hi); lo = hi = mean without a ``<key>_ci95`` (one seed)."""
    mean = summary.get(key)
    mean = math.nan if mean is None else float(mean)
    ci = summary.get(f"{key}_ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        lo, hi = (math.nan if v is None else float(v) for v in ci)
        return mean, lo, hi
    return mean, mean, mean


def table_rows(cells: list[SweepCell]) -> list[dict[str, Any]]:
    """One row per cell: grid values, then ``<key>``, ``<key>_lo``, ``<key>_hi`` for every
    scalar metric, then the cell directory name."""
    keys: list[str] = []
    for cell in cells:
        keys += [k for k in metric_keys(cell.summary) if k not in keys]
    rows = []
    for cell in cells:
        row = dict(cell.values)
        for key in keys:
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = _interval(cell.summary, key)
        row["cell"] = cell.name
        rows.append(row)
    return rows


def _default_metrics(cells: list[SweepCell], limit: int = 4) -> list[str]:
    """Up to ``limit`` metrics whose mean varies across cells (else the first ones)."""
    keys = metric_keys(cells[0].summary)

    def distinct(key: str) -> int:
        means = (_interval(c.summary, key)[0] for c in cells)
        return len({m for m in means if not math.isnan(m)})

    return ([k for k in keys if distinct(k) > 1] or keys)[:limit]


def sweep_figure(experiment, grid, cells, metrics=None, seeds: int = 1):
    """Metric vs the first grid key, with 95% error bars; one line per combination of the
    other grid keys; one panel per metric."""
    from featavg.plots import new_figure

    available = metric_keys(cells[0].summary)
    metrics = list(metrics) if metrics else _default_metrics(cells)
    for key in metrics:
        if key not in available:
            raise ConfigError(
                f"--metric {key}: not a scalar result of {experiment}; "
                f"allowed: {', '.join(available)}"
            )
    x_key, *others = list(grid)
    xs = grid[x_key]
    numeric = all(_is_number(v) for v in xs)
    positions = xs if numeric else list(range(len(xs)))
    ncols = min(len(metrics), 2) or 1
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = new_figure(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]

    # cells in grid order: product() varies the last key fastest, so group by the others
    lines: dict[tuple, list[SweepCell]] = {}
    for cell in cells:
        lines.setdefault(tuple(json.dumps(cell.values[k]) for k in others), []).append(cell)
    for ax, key in zip(flat, metrics, strict=False):
        for group in lines.values():
            stats = [_interval(c.summary, key) for c in group]
            xpos = [positions[xs.index(c.values[x_key])] for c in group]
            mean = [s[0] for s in stats]
            err = [[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]]
            label = cell_label({k: group[0].values[k] for k in others}) or None
            ax.errorbar(xpos, mean, yerr=err, marker="o", capsize=3, label=label)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(x_key)
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")  # e.g. learning rates or init scales over decades
        if not numeric:
            ax.set_xticks(positions, [_format(v) for v in xs])
        if others:
            ax.legend(fontsize=7)
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"{experiment}: mean and 95% interval over {seeds} seed(s) per cell")
    return fig


# ---------------------------------------------------------------- command line


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "replicates per cell (one ensemble)")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a config field and its values, e.g. --grid train.lr=1e-3,1e-2 (repeatable; "
        "the first key is the figure's x axis)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="sweep directory (default: runs/sweep-<experiment>-<hash>)"
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local (in-process, default), process (a process pool) or dask (a cluster)",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786"
    )
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="pool size for --executor process"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="recompute every cell even if cached")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        metavar="KEY",
        help="summary key to plot (repeatable; default: up to 4 that vary across cells)",
    )


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "sweep",
        help="run an experiment over a grid of config values (local, processes or Dask)",
        description="Run an experiment at every point of a grid; cells are cached runs, so "
        "an interrupted sweep resumes where it stopped.",
    )
    _add_sweep_arguments(p)
    return p


def sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep the parsed ``args`` describe; print where the results are. Raises
    :class:`ConfigError` on bad input (the caller maps it to exit code 2)."""
    result = run_sweep(
        args.experiment,
        parse_grid(args.grid),
        seeds=args.seeds,
        overrides=parse_overrides(args.overrides),
        config_file=args.config_file,
        out=args.out,
        executor=args.executor,
        scheduler=args.scheduler,
        workers=args.workers,
        device=args.device,
        force=args.force,
        progress=not args.quiet,
        metrics=args.metrics,
    )
    cached = sum(c.cached for c in result.cells)
    print(
        f"{args.experiment}: {len(result.cells)} cells ({cached} cached) -> {result.csv_path}"
        f" and {result.figure_path.name}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m featavg.sweep EXPERIMENT --grid ...``: the ``featavg sweep`` command."""
    parser = argparse.ArgumentParser(prog="featavg sweep", description=__doc__.splitlines()[0])
    _add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return sweep_command(args)
    except (ConfigError, ValueError) as err:
        print(f"featavg: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # run the imported module's functions, not __main__'s, so worker processes and Dask
    # tasks refer to featavg.sweep.run_cell, which they can import
    from featavg.sweep import main as _main

    sys.exit(_main())
