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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError
from featavg.experiments.summary import metric_keys

if TYPE_CHECKING:
    import pandas as pd

    from featavg.headline import Headline

# how many headline checks a repr shows
REPR_CHECKS = 3


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/summary.json`` (written last, so its presence marks a finished run); a
    one-line ConfigError if the directory is missing, unfinished or not a featavg run."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise ConfigError(f"run_dir: no such directory: {directory}")
    path = directory / "summary.json"
    if not path.is_file():
        raise ConfigError(f"run_dir: {directory} holds no finished run (no summary.json)")
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"run_dir: {path} is unreadable ({type(err).__name__})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("experiment"), str):
        raise ConfigError(f"run_dir: {path} is not a featavg run summary (no experiment name)")
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


def _files(directory: Path, suffix: str) -> list[Path]:
    """The run's ``*.suffix`` files by name (hidden ones, e.g. half-written, left out)."""
    return [p for p in sorted(directory.glob(f"*.{suffix}")) if not p.name.startswith(".")]


def figure_paths(directory: Path, experiment: str) -> dict[str, Path]:
    """Figure name -> PNG path of every figure in ``directory``, in the experiment's order
    (then any others by name)."""
    pngs = {p.stem: p for p in _files(directory, "png")}
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


def load(run_dir: str | Path) -> LoadedRun:
    """The finished run in ``run_dir``: summary, per-seed frame, every CSV table (the main
    table first) and figure paths. A missing or unfinished directory is a ConfigError."""
    directory = Path(run_dir)
    summary = read_summary(directory)
    experiment = summary["experiment"]
    main = _main_table(experiment)
    csvs = {p.stem: p for p in _files(directory, "csv")}
    tables = {name: _read_csv(csvs[name]) for name in _first(list(csvs), [main] if main else [])}
    return LoadedRun(
        experiment,
        directory,
        summary,
        per_seed_frame(summary),
        tables,
        figure_paths(directory, experiment),
        main if main in tables else None,
    )
