"""The Python API: every CLI command as a function, sharing the same run cache.

    import featavg
    out = featavg.run("synthetic-robustness", seeds=5, train={"lr": 0.01})
    out.summary["radius50_binary"], out.metrics.head()

Overrides are keyword arguments: nested dicts (``train={"lr": 0.01}``) or double
underscores for dots (``train__lr=0.01``), exactly as ``--set train.lr=0.01``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.config import nest

if TYPE_CHECKING:
    import pandas as pd

    from featavg.sweep import SweepResult


@dataclass
class RunOutput:
    """summary (summary.json), directory, cached, and every CSV table of the run as a pandas
    DataFrame (the experiment's main table first); ``metrics`` is the main table."""

    summary: dict[str, Any]
    directory: Path
    cached: bool
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    main_table: str | None = None

    @property
    def metrics(self) -> pd.DataFrame | None:
        """The main per-step / per-radius / per-setting table (``Experiment.main_table``)."""
        return self.tables.get(self.main_table) if self.main_table else None


def _overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword overrides, ``__`` for dots: ``train__lr=0.01`` -> ``{"train": {"lr": 0.01}}``."""
    return nest(kwargs, sep="__")


def run(
    experiment: str,
    *,
    seeds: int | None = None,
    out: str | Path | None = None,
    root: str | Path = "runs",
    config_file: str | Path | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> RunOutput:
    """``featavg run EXPERIMENT``: run (or reuse the cached run of) one experiment."""
    import pandas as pd

    from featavg.experiments.registry import get_experiment
    from featavg.experiments.runner import run_experiment

    cfg = _overrides(overrides)
    if seeds is not None:
        cfg["seeds"] = seeds
    result = run_experiment(
        experiment,
        overrides=cfg,
        config_file=config_file,
        out=out,
        root=root,
        device=device,
        force=force,
        progress=progress,
    )
    tables = {p.stem: pd.read_csv(p) for p in sorted(result.directory.glob("*.csv"))}
    main = get_experiment(experiment).main_table
    if main in tables:  # the experiment's main table first
        tables = {main: tables[main], **{k: v for k, v in tables.items() if k != main}}
    return RunOutput(result.summary, result.directory, result.cached, tables, main)


def list_experiments() -> list[dict[str, str]]:
    """``featavg list``: name, description, run time and data needs of every experiment."""
    from featavg.experiments.registry import EXPERIMENTS

    return [
        {"name": e.name, "description": e.description, "runtime": e.runtime, "data": e.data}
        for e in EXPERIMENTS.values()
    ]


def show_config(
    experiment: str, config_file: str | Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """``featavg show-config``: the effective config as a dict."""
    from featavg.config import build_config
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    return build_config(exp.config_cls, _overrides(overrides), config_file).model_dump(mode="json")


def reproduce(
    out: str | Path = "runs", device: str = "auto", force: bool = False, progress: bool = True
) -> Path:
    """``featavg reproduce``: every synthetic experiment and the report; returns its path."""
    from featavg.reproduction import reproduce as _reproduce

    return _reproduce(out, device, force, progress)[1]


def write_report(
    run_dirs: list[str | Path] | None = None,
    out: str | Path | None = None,
    root: str | Path = "runs",
) -> Path:
    """``featavg report``: one self-contained report.html over the given run directories."""
    from featavg.report import write_report as _write_report

    return _write_report(
        [Path(p) for p in run_dirs] if run_dirs else None, Path(out) if out else None, Path(root)
    )


def run_sweep(experiment: str, grid: dict[str, list[Any]], **kwargs: Any) -> SweepResult:
    """``featavg sweep``: every grid cell (with ``seeds`` replicates each) into its own
    cached run; see :func:`featavg.sweep.run_sweep` for the arguments."""
    from featavg.sweep import run_sweep as _run_sweep

    return _run_sweep(experiment, grid, **kwargs)
