"""A finished run read back from its directory: :func:`load` and :class:`LoadedRun`.

    run = featavg.load("runs/synthetic-robustness-1e4937995d26")
    run                      # experiment, directory, seeds, headline checks, tables, figures
    run.per_seed             # one row per seed s, one column per metric
    run.metrics              # the experiment's main table (``Experiment.main_table``)
    run.tables["robustness"], run.figures["robustness"]

The experiment's declaration (its main table, figure order and checks) comes from the
registry; a run of an experiment this featavg does not know still loads, with its tables in
name order. ``featavg.run(...)`` returns the same object with ``cached`` added
(:class:`featavg.api.RunOutput`).

Only a whole run is read back: :func:`load` checks every file against ``manifest.json``
(:func:`verify_run`) and reads only the files it lists, so a truncated, tampered or mixed
directory is a one-line :class:`~featavg.config.ConfigError`, never a result.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import runs
from featavg.config import ConfigError
from featavg.experiments.summary import metric_keys
from featavg.runs import paths as out_paths
from featavg.runs.state import verify_run

if TYPE_CHECKING:
    import pandas as pd

    from featavg.headline import Headline

# how many headline checks a repr shows
REPR_CHECKS = 3


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/summary.json`` (written last, so its presence marks a finished run); a
    one-line ConfigError if the directory is missing, unfinished or not a featavg run."""
    directory = Path(run_dir)
    shown = out_paths.shown(directory)
    if not directory.is_dir():
        raise ConfigError(f"run_dir: no such directory: {shown}")
    path = directory / "summary.json"
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise ConfigError(f"run_dir: {shown} holds no finished run (no summary.json)") from None
    if not stat.S_ISREG(mode):  # a link or FIFO is never read (could point anywhere, block)
        raise ConfigError(f"run_dir: {shown}/summary.json is {out_paths.kind_of(mode)}")
    data = runs.read_regular(path)
    if data is None:
        raise ConfigError(f"run_dir: {shown}/summary.json is unreadable (too large?)")
    try:
        summary = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ConfigError(
            f"run_dir: {shown}/summary.json is unreadable ({type(err).__name__})"
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("experiment"), str):
        raise ConfigError(
            f"run_dir: {shown}/summary.json is not a featavg run summary (no experiment name)"
        )
    return summary


def run_seeds(summary: dict[str, Any]) -> list[int]:
    """The replicate seeds of a run: its provenance, else seed, seed + 1, ... of its config."""
    seeds = (summary.get("provenance") or {}).get("seeds")
    if isinstance(seeds, list) and seeds:
        return [int(s) for s in seeds]
    config = summary.get("config") or {}
    return [int(config.get("seed", 0)) + i for i in range(int(config.get("seeds", 1)))]


def per_seed_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per seed (index ``seed``), one column per metric: the summary's ``per_seed``
    entries. A one-seed run without them gets its scalar metrics as the single row; a
    several-seed run without them gets no columns (its per-seed values were not kept)."""
    import pandas as pd

    seeds = run_seeds(summary)
    raw = summary.get("per_seed")
    columns: dict[str, list[Any]] = {}
    if isinstance(raw, dict) and raw:
        columns = {k: v for k, v in raw.items() if isinstance(v, list) and len(v) == len(seeds)}
    elif len(seeds) == 1:
        columns = {k: [summary[k]] for k in metric_keys(summary)}
    return pd.DataFrame(columns, index=pd.Index(seeds, name="seed"))


def _files(directory: Path, suffix: str, listed: dict[str, str] | None = None) -> list[Path]:
    """The run's ``*.suffix`` files by name (hidden ones, e.g. half-written, left out); only
    those in ``listed`` (the manifest's files) when given."""
    paths = [p for p in sorted(directory.glob(f"*.{suffix}")) if not p.name.startswith(".")]
    return paths if listed is None else [p for p in paths if p.name in listed]


def figure_paths(
    directory: Path, experiment: str, listed: dict[str, str] | None = None
) -> dict[str, Path]:
    """Figure name -> PNG path of every figure in ``directory`` (of those in ``listed``,
    the manifest's files, when given), in the experiment's order, then any others by name."""
    pngs = {p.stem: p for p in _files(directory, "png", listed)}
    return {name: pngs[name] for name in _first(list(pngs), _figure_order(experiment))}


def _main_table(experiment: str) -> str | None:
    from featavg.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS.get(experiment)
    return exp.main_table if exp is not None else None


def _figure_order(experiment: str) -> list[str]:
    from featavg.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS.get(experiment)
    return list(exp.figures) if exp is not None else []


def _first(names: list[str], wanted: list[str]) -> list[str]:
    """``names`` with those in ``wanted`` first, in ``wanted``'s order, then the rest."""
    return [n for n in wanted if n in names] + [n for n in names if n not in wanted]


@dataclass(repr=False)
class LoadedRun:
    """A finished run. summary: summary.json; per_seed: one row per seed, one column per
    metric; tables: every CSV of the run as a DataFrame, the experiment's main table first;
    figures: figure name -> PNG path, in the experiment's order."""

    experiment: str
    directory: Path
    summary: dict[str, Any]
    per_seed: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    main_table: str | None = None

    @property
    def metrics(self) -> pd.DataFrame | None:
        """The main per-step / per-radius / per-setting table (``Experiment.main_table``)."""
        return self.tables.get(self.main_table) if self.main_table else None

    @property
    def config(self) -> dict[str, Any]:
        """The run's effective config (as in config.json)."""
        config = self.summary.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def seeds(self) -> list[int]:
        """The replicate seeds."""
        return run_seeds(self.summary)

    def checks(self) -> list[Headline]:
        """The measured numbers beside their closed forms, with verdicts: the rows
        ``featavg run`` prints (:func:`featavg.headline.headline_rows`)."""
        from featavg.headline import headline_rows

        return headline_rows(self.summary)

    def _state(self) -> str:
        return ""

    def __repr__(self) -> str:
        from featavg.headline import check_counts_line, headline_rows, seeds_text
        from featavg.report.checks import ChecksUnavailable

        lines = [
            f"{type(self).__name__} {self.experiment}{self._state()}: {seeds_text(self.seeds)}",
            f"  directory: {self.directory}",
        ]
        try:
            rows = headline_rows(self.summary)
        except ChecksUnavailable as err:
            lines.append(f"  checks: unavailable ({err})")
            rows = []
        if rows:
            lines.append(f"  {check_counts_line(rows)}")
            lines += [f"    {row.brief()}" for row in rows[:REPR_CHECKS]]
            if len(rows) > REPR_CHECKS:
                lines.append(f"    ... {len(rows) - REPR_CHECKS} more: .checks()")
        tables = [
            f"{name} ({len(df)} rows{', main' if name == self.main_table else ''})"
            for name, df in self.tables.items()
        ]
        lines.append(f"  tables: {', '.join(tables) or 'none'}")
        lines.append(f"  figures: {', '.join(self.figures) or 'none'}")
        return "\n".join(lines)


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV table; an empty file (a table without rows) is an empty frame."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (ValueError, UnicodeDecodeError) as err:  # vouched for by the manifest: rare
        shown = out_paths.shown(path)
        raise ConfigError(f"run_dir: {shown}: unreadable CSV ({type(err).__name__})") from None


def load(run_dir: str | Path) -> LoadedRun:
    """The finished run in ``run_dir``: summary, per-seed frame, every CSV table (the main
    table first) and figure paths, each checked against the run's manifest
    (:func:`verify_run`); files it does not list are left out. A missing, unfinished,
    damaged or mixed directory is a one-line ConfigError."""
    directory = Path(run_dir)
    summary = read_summary(directory)
    listed = verify_run(directory)
    experiment = summary["experiment"]
    main = _main_table(experiment)
    csvs = {p.stem: p for p in _files(directory, "csv", listed)}
    tables = {name: _read_csv(csvs[name]) for name in _first(list(csvs), [main] if main else [])}
    return LoadedRun(
        experiment,
        directory,
        summary,
        per_seed_frame(summary),
        tables,
        figure_paths(directory, experiment, listed),
        main if main in tables else None,
    )
