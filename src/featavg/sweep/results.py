"""A finished sweep: the results table ``sweep.csv`` (mean and 95% interval per cell and
metric), the figure ``sweep.png`` and :class:`SweepResult`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import runs
from featavg.config import ConfigError
from featavg.experiments.summary import is_number, metric_keys
from featavg.faults import is_failure
from featavg.metrics.intervals import seeds_note
from featavg.sweep.grid import cell_label, format_value
from featavg.sweep.plan import SweepCell

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass
class SweepResult:
    """directory: the sweep directory; cells: every cell with its summary; table: sweep.csv
    as a DataFrame (one row per cell)."""

    experiment: str
    directory: Path
    grid: dict[str, list[Any]]
    cells: list[SweepCell]
    table: pd.DataFrame = field(repr=False)

    @property
    def csv_path(self) -> Path:
        """The results table, ``sweep.csv``."""
        return self.directory / "sweep.csv"

    @property
    def data_label(self) -> str:
        """The stand-in or subset label of the cells' data ('' for the paper's own data):
        see :func:`data_label`."""
        return data_label(self.cells)

    @property
    def figure_path(self) -> Path:
        """The figure, ``sweep.png``."""
        return self.directory / "sweep.png"

    def to_frame(self) -> pd.DataFrame:
        """The results table as a (copied) pandas DataFrame."""
        return self.table.copy()

    def __repr__(self) -> str:
        """A few lines: experiment, cells, grid, directory, table and figure."""

        def values(vs: list[Any]) -> str:
            shown = [format_value(v) for v in vs]
            return ", ".join(shown if len(vs) <= 6 else [*shown[:3], "...", shown[-1]])

        cached = sum(c.cached for c in self.cells)
        grid = "; ".join(f"{key} = {values(vs)}" for key, vs in self.grid.items())
        return (
            f"SweepResult {_titled(self.experiment, self.cells)}: {len(self.cells)} cells "
            f"({cached} cached)\n"
            f"  grid: {grid}\n  directory: {self.directory}\n"
            f"  table: sweep.csv ({len(self.table)} rows, {len(self.table.columns)} columns); "
            f"figure: sweep.png"
        )


def data_label(cells: list[SweepCell]) -> str:
    """The labels of the data the finished cells ran on when it is not the paper's own
    (e.g. "MNIST, 5000-digit subset (not the full set)" or a Fashion-MNIST stand-in), each
    once, joined by "; "; '' when every cell ran on the paper's data (or is synthetic)."""
    labels = [_summary(c).get("stand_in_label") for c in cells if c.summary is not None]
    return "; ".join(dict.fromkeys(str(x) for x in labels if x))


def _titled(experiment: str, cells: list[SweepCell]) -> str:
    """The experiment's name, with its data's label when the data are a stand-in or subset."""
    label = data_label(cells)
    return f"{experiment} on {label}" if label else experiment


def _summary(cell: SweepCell) -> dict[str, Any]:
    """The summary of a cell that has run."""
    if cell.summary is None:
        raise ValueError(f"sweep cell {cell.name}: not run yet (no summary)")
    return cell.summary


def _interval(summary: dict[str, Any], key: str) -> tuple[float, float, float]:
    """(mean, lo, hi); lo = hi = mean without a ``<key>_ci95`` (one seed)."""
    mean = summary.get(key)
    mean = math.nan if mean is None else float(mean)
    ci = summary.get(f"{key}_ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        lo, hi = (math.nan if v is None else float(v) for v in ci)
        return mean, lo, hi
    return mean, mean, mean


def _metric_keys(cells: list[SweepCell]) -> list[str]:
    """The scalar metrics of the first cell that did not fail ([] if all failed)."""
    ok = [c for c in cells if not is_failure(_summary(c))]
    return metric_keys(_summary(ok[0])) if ok else []


def table_rows(cells: list[SweepCell]) -> list[dict[str, Any]]:
    """One row per cell: grid values, then ``<key>``, ``<key>_lo``, ``<key>_hi`` for every
    scalar metric (empty for a failed cell), ``status`` ("ok" or "failed"), ``reason`` (the
    one-line reason of a failure; only when a cell failed) and the cell directory name."""
    keys: list[str] = []
    for cell in cells:
        if not is_failure(_summary(cell)):
            keys += [k for k in metric_keys(_summary(cell)) if k not in keys]
    any_failed = any(is_failure(_summary(c)) for c in cells)
    rows = []
    for cell in cells:
        row = dict(cell.values)
        for key in keys:
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = _interval(_summary(cell), key)
        failed = is_failure(_summary(cell))
        row["status"] = "failed" if failed else "ok"
        if any_failed:  # an all-empty column would read back as floats
            row["reason"] = _summary(cell).get("reason", "") if failed else ""
        row["cell"] = cell.name
        rows.append(row)
    return rows


def _default_metrics(cells: list[SweepCell], limit: int = 4) -> list[str]:
    """Up to ``limit`` metrics whose mean varies across cells (else the first ones)."""
    keys = _metric_keys(cells)

    def distinct(key: str) -> int:
        means = (_interval(_summary(c), key)[0] for c in cells)
        return len({m for m in means if not math.isnan(m)})

    return ([k for k in keys if distinct(k) > 1] or keys)[:limit]


def sweep_figure(
    experiment: str,
    grid: dict[str, list[Any]],
    cells: list[SweepCell],
    metrics: list[str] | None = None,
    seeds: int = 1,
) -> Figure:
    """Metric vs the first grid key, with 95% error bars; one line per combination of the
    other grid keys; one panel per metric (default: up to 4 that vary across cells)."""
    from featavg.plots import new_figure

    available = _metric_keys(cells)
    metrics = list(metrics) if metrics else _default_metrics(cells)
    for key in metrics:
        if available and key not in available:  # all cells failed: nothing to check against
            raise ConfigError(
                f"--metric {key}: not a scalar result of {experiment}; "
                f"allowed: {', '.join(available)}"
            )
    x_key, *others = list(grid)
    xs = grid[x_key]
    numeric = all(is_number(v) for v in xs)
    positions = xs if numeric else list(range(len(xs)))
    ncols = min(len(metrics), 2) or 1
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = new_figure(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]

    # cells in grid order: product() varies the last key fastest, so group by the others
    lines: dict[tuple[str, ...], list[SweepCell]] = {}
    for cell in cells:
        lines.setdefault(tuple(json.dumps(cell.values[k]) for k in others), []).append(cell)
    for ax, key in zip(flat, metrics, strict=False):
        for group in lines.values():
            stats = [_interval(_summary(c), key) for c in group]
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
            ax.set_xticks(positions, [format_value(v) for v in xs])
        if others:
            ax.legend(fontsize=7)
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"{_titled(experiment, cells)}: {seeds_note(seeds)} per cell")
    return fig


def _comparisons(cells: list[SweepCell]) -> bool:
    """Whether every finished cell holds a pooled comparison per radius (``more_robust`` rows
    with an interval: the real-data experiments)."""
    ok = [c for c in cells if not is_failure(_summary(c))]
    return bool(ok) and all(
        isinstance(rows := _summary(c).get("more_robust"), list)
        and bool(rows)
        and all(isinstance(r, dict) and "lo" in r for r in rows)
        for c in ok
    )


def gap_sweep_figure(experiment: str, cells: list[SweepCell], seeds: int = 1) -> Figure:
    """The pooled comparison of every cell: the mean gap (10-class minus binary robust
    accuracy) against the radius with its 95% interval over seeds and points as a band,
    one per grid value; above 0 the 10-class model is the more robust."""
    from featavg.plots import new_figure

    fig, ax = new_figure(figsize=(9, 4.6))
    for i, cell in enumerate(c for c in cells if not is_failure(_summary(c))):
        rows = _summary(cell)["more_robust"]
        x = [float(r["radius"]) for r in rows]
        mean = [100 * float(r["difference"]) for r in rows]
        lo = [100 * float(r["lo"]) for r in rows]
        hi = [100 * float(r["hi"]) for r in rows]
        color = f"C{i % 10}"
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        ax.plot(x, mean, color=color, marker="o", ms=3, label=cell_label(cell.values))
    ax.axhline(0.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("radius, normalised units")
    ax.set_ylabel("10-class minus binary robust accuracy (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{_titled(experiment, cells)}: the verdict per grid value,\n"
                 f"{seeds_note(seeds)} per cell (band: 95% interval over seeds and points)",
                 fontsize=10)  # fmt: skip
    return fig


def write_results(
    directory: Path,
    experiment: str,
    grid: dict[str, list[Any]],
    cells: list[SweepCell],
    metrics: list[str] | None = None,
    seeds: int = 1,
) -> SweepResult:
    """Write ``sweep.csv`` and ``sweep.png`` of the finished ``cells``; return the result."""
    import pandas as pd

    rows = table_rows(cells)
    runs.write_csv(directory / "sweep.csv", rows)
    # real-data cells pool their seeds' verdicts: the figure is the gap per radius, one band
    # per grid value (--metric asks for the usual metric panels instead)
    figure = (
        gap_sweep_figure(experiment, cells, seeds)
        if _comparisons(cells) and not metrics
        else sweep_figure(experiment, grid, cells, metrics, seeds)
    )
    runs.write_figure(directory / "sweep.png", figure)
    return SweepResult(experiment, directory, grid, cells, pd.DataFrame(rows))
