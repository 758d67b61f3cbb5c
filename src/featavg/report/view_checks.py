"""A run's key numbers beside the theory, as compact tables: one line per check.

A check with a closed form gets a row of four cells: the quantity (its summary key and
note one click away), the verdict (agrees, deviates as expected with the reason one click
away, deviates, missing) with the difference and tolerance, the measured mean with its 95%
interval, and the theory. Declared numbers without a closed form go to a second, two-column
table, so no column of "—" is ever shown. A table of settings (the ablations) shows its
verdict column and first metrics; its further columns are folded.
"""

from __future__ import annotations

from typing import Any

from featavg.experiments.summary import META_KEYS, is_metric_value
from featavg.report.checks import (
    EXPECTED,
    MISSING,
    NO_THEORY,
    NO_VALUE,
    CheckRow,
    GridRow,
    experiment_of,
    grid_rows,
)
from featavg.report.view import Cell, Fold, Table, fmt, fmt_interval, verdict_class

GRID_COLUMNS = 4  # metric columns of a settings table shown unfolded


def theory_text(row: CheckRow) -> str:
    if row.theory is None:
        return "—"
    label = row.check.theory_label
    return fmt(row.theory) + (f" = {label}" if label and label != fmt(row.theory) else "")


def status_cell(status: str, verdict: str, reason: str = "", missing: tuple[str, ...] = ()) -> Cell:
    """The verdict: its word and class, the difference and tolerance beside it; an expected
    deviation's reason one click away; a missing check names the keys the summary lacks."""
    if status == MISSING:
        return Cell(f"missing from the summary: {', '.join(missing)}", "missing")
    if status == NO_VALUE:
        return Cell("no value to compare", small=verdict)
    return Cell(status, verdict_class(status), small=verdict, inline=True, more=reason)


def verdict_cell(row: CheckRow) -> Cell:
    """The verdict of a check (see :func:`status_cell`)."""
    expected = row.check.expected
    reason = expected.reason if expected is not None and row.status == EXPECTED else ""
    return status_cell(row.status, row.verdict, reason, row.missing)


def quantity_cell(label: str, key: str, note: str = "") -> Cell:
    """A quantity: its label, with its summary key and note one click away."""
    return Cell(label, more=note, more_code=key)


def measured_cell(summary: dict[str, Any], key: str, interval: Any) -> Cell:
    text = fmt(summary[key], key) if key in summary else "—"
    return Cell(text, "num", small=fmt_interval(interval, key), inline=True)


def check_table(summary: dict[str, Any], rows: list[CheckRow]) -> Table | None:
    """The checks with a closed form (or missing): quantity, verdict, measured, theory."""
    header = ["Quantity", "Verdict", "Measured (mean, 95% interval)", "Theory"]
    out = [
        [
            quantity_cell(r.check.label, r.check.key, r.check.note),
            verdict_cell(r),
            measured_cell(summary, r.check.key, r.interval),
            Cell(theory_text(r), "num"),
        ]
        for r in rows
        if r.status != NO_THEORY
    ]
    return Table([Cell(h) for h in header], out) if out else None


def measured_table(summary: dict[str, Any], rows: list[CheckRow]) -> Table | None:
    """The declared numbers without a closed form: quantity and measured value only."""
    out = [
        [
            quantity_cell(r.check.label, r.check.key, r.check.note),
            measured_cell(summary, r.check.key, r.interval),
        ]
        for r in rows
        if r.status == NO_THEORY
    ]
    header = ["Measured (no closed form to hold it against)", "Mean, 95% interval"]
    return Table([Cell(h) for h in header], out) if out else None


def _tabular(value: Any) -> bool:
    """A summary entry mapping names to dicts of numbers (e.g. the ablations' "settings")."""
    return (
        isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())
    )


def _columns(value: dict[str, Any]) -> list[str]:
    cols: list[str] = []
    for row in value.values():
        if isinstance(row, dict):
            cols += [
                k
                for k, v in row.items()
                if k not in cols and is_metric_value(v) and not k.startswith("theory_")
            ]
    return cols


def _settings_table(
    key: str,
    value: dict[str, Any],
    cols: list[str],
    verdicts: dict[str, GridRow] | None,
    against: str = "",
) -> Table:
    header = [Cell(key)]
    if verdicts is not None:
        header.append(Cell(f"Verdict against {against}" if against else "Verdict"))
    header += [Cell(code=c) for c in cols]
    rows: list[list[Cell]] = []
    for name, row in value.items():
        row = row if isinstance(row, dict) else {}
        cells = [Cell(str(name))]
        if verdicts is not None:
            g = verdicts[str(name)]
            reason = g.expected.reason if g.expected is not None and g.status == EXPECTED else ""
            cells.append(status_cell(g.status, g.verdict, reason))
        for c in cols:
            text = fmt(row[c], c) if c in row else "—"
            small = fmt_interval(row.get(f"{c}_ci95"), c)
            cells.append(Cell(text, "num", small=small, inline=True))
        rows.append(cells)
    return Table(header, rows)


def grid_tables(summary: dict[str, Any]) -> tuple[list[Table], list[Fold], list[str]]:
    """(tables, folds, problems): a table per entry of settings, the experiment's grid check
    as its verdict column, its first GRID_COLUMNS metrics (the checked one first) shown and
    the rest folded; a declared grid entry the summary lacks is a problem."""
    exp = experiment_of(summary)
    grid = exp.grid if exp is not None else None
    problems, verdicts = [], {}
    if grid is not None:
        grid_check_rows = grid_rows(summary, grid)
        if grid_check_rows is None:
            problems.append(f"missing from the summary: the settings table {grid.entry!r}")
        else:
            verdicts = {r.name: r for r in grid_check_rows}
    tables, folds = [], []
    for key, value in summary.items():
        is_grid = grid is not None and key == grid.entry and bool(verdicts)
        if key in META_KEYS or not (_tabular(value) or is_grid):
            continue
        cols = _columns(value)
        if grid is not None and is_grid and grid.metric in cols:
            cols = [grid.metric] + [c for c in cols if c != grid.metric]
        if not cols and not is_grid:  # e.g. named curves (lists): they are in the figures
            continue
        shown, rest = cols[:GRID_COLUMNS], cols[GRID_COLUMNS:]
        label = grid.theory_label if grid is not None else ""
        tables.append(_settings_table(key, value, shown, verdicts if is_grid else None, label))
        if rest:
            more = _settings_table(key, value, rest, None)
            folds.append(Fold(f"{key}: {len(rest)} more columns", table=more))
    return tables, folds, problems
