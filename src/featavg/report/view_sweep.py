"""The view of one sweep directory: its figure, sweep.csv with folded intervals, every
finished cell beside the theory (its headline check and check counts) and sweep.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featavg.metrics.intervals import plural
from featavg.report.checks import (
    MISSING,
    NO_THEORY,
    ChecksUnavailable,
    check_rows,
    claim_of,
    is_stand_in,
    tally,
)
from featavg.report.view import (
    CSV_ERRORS,
    MAX_TABLE_ROWS,
    Badge,
    Cell,
    SweepPage,
    SweepView,
    Table,
    figures,
    fmt,
    fmt_interval,
    maybe_number,
    read_csv,
)
from featavg.report.view_checks import theory_text, verdict_cell
from featavg.report.view_run import verdict_badges

SWEEP_CAPTIONS = {
    "sweep": "Metrics of every cell against the first grid key; for the real-data experiments, "
    "the mean gap (10-class minus binary robust accuracy) against the radius with its 95% "
    "interval over seeds and attacked points, one band per grid value."
}


def sweep_table(records: list[dict[str, str]]) -> Table:
    """sweep.csv with every metric's ``_lo`` / ``_hi`` columns folded into 'mean [lo, hi]'
    (a constant, such as a theory value, shows just the mean); the cell name first."""
    header = list(records[0])
    folded = {c for c in header if f"{c}_lo" in header and f"{c}_hi" in header}
    bounds = {f"{c}_{side}" for c in folded for side in ("lo", "hi")}
    cols = [c for c in header if c == "cell"] + [
        c for c in header if c != "cell" and c not in bounds
    ]
    rows = []
    for rec in records[:MAX_TABLE_ROWS]:
        row = []
        for c in cols:
            raw = rec.get(c) or ""
            value = maybe_number(raw)
            small = ""
            if c in folded and (rec.get(f"{c}_lo") or "") != "":
                lo, hi = maybe_number(rec[f"{c}_lo"]), maybe_number(rec[f"{c}_hi"])
                if (lo, hi) != (value, value):
                    small = fmt_interval([lo, hi], c)
            is_num = raw != "" and not isinstance(value, str)
            row.append(
                Cell(fmt(value, c) if raw != "" else "", "num" if is_num else "", small=small)
            )
        rows.append(row)
    cut = max(len(records) - MAX_TABLE_ROWS, 0)
    return Table([Cell(code=c) for c in cols], rows, cut, "sweep.csv")


def _headline(summary: dict[str, Any]) -> tuple[Cell, Cell]:
    """(the first check with a closed form, its verdict) of a cell's summary."""
    try:
        rows = check_rows(summary)
    except ChecksUnavailable as err:
        return Cell("—"), Cell(f"checks unavailable: {err}", "missing")
    head = next((r for r in rows if r.status != NO_THEORY), None)
    if head is None:
        return Cell("—"), Cell()
    key = head.check.key
    measured = fmt(summary[key], key) if key in summary else "—"
    return Cell(f"{measured} vs {theory_text(head)}", code=key), verdict_cell(head)


def cells_table(sweep: SweepPage) -> Table:
    """Per cell: its grid values, the experiment's headline check and the verdict counts;
    a cell refused by its manifest: what is wrong, and nothing of its numbers."""
    values = {}
    for cell in (sweep.spec or {}).get("cells") or []:
        if isinstance(cell, dict) and isinstance(cell.get("directory"), str):
            values[Path(cell["directory"]).name] = cell.get("values")
    rows = []
    for run in sweep.members:
        grid = values.get(run.directory.name)
        grid_text = ", ".join(f"{k}={v}" for k, v in grid.items()) if isinstance(grid, dict) else ""
        if run.error:
            refused = Cell(f"refused: {run.error}", "missing")
            rows.append(
                [Cell(code=run.directory.name), Cell(grid_text), Cell("—"), refused, Cell()]
            )
            continue
        badge = Badge("stand-in data", "standin") if is_stand_in(run.summary) else None
        counts = ", ".join(b.text for b in verdict_badges(run.summary)) or "—"
        rows.append(
            [
                Cell(code=run.directory.name, badge=badge),
                Cell(grid_text),
                *_headline(run.summary),
                Cell(counts, "missing" if tally(run.summary).count(MISSING) else ""),
            ]
        )
    header = ["Cell", "Grid values", "Headline check", "Verdict", "All checks"]
    return Table([Cell(h) for h in header], rows)


def sweep_title(sweep: SweepPage) -> str:
    spec = sweep.spec or {}
    grid = spec.get("grid")
    if isinstance(grid, dict) and grid and spec.get("experiment"):
        return f"Sweep of {spec['experiment']} over {', '.join(map(str, grid))}"
    return f"Sweep {sweep.directory.name}"


def _results(sweep: SweepPage) -> tuple[str, Table | None, list[str]]:
    """(heading, the table of sweep.csv, notes); nothing of a refused sweep's own files."""
    if sweep.error:
        return "", None, []
    notes = []
    if not sweep.verified:
        notes.append(
            "sweep.csv and sweep.png carry no manifest: each cell below is checked against its own."
        )
    try:
        records = read_csv(sweep.directory / "sweep.csv")
    except CSV_ERRORS as err:
        return "", None, [*notes, f"sweep.csv unreadable: {err}"]
    if not records:
        return "", None, [*notes, "sweep.csv has no rows."]
    heading = f"Results ({len(records)} cells; mean, 95% interval)"
    return heading, sweep_table(records), notes


def sweep_view(sweep: SweepPage) -> SweepView:
    """The sweep's figure(s), its results table, its cells against the theory, sweep.json."""
    d, spec = sweep.directory, sweep.spec or {}
    meta = f"{len(sweep.members)} finished cells"
    if isinstance(spec.get("grid"), dict):
        grid = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in spec["grid"].items())
        meta += f" · grid: {grid}"
    if spec.get("seeds"):
        meta += f" · {plural(int(spec['seeds']), 'seed')} per cell"
    claim_title = claim_paper = ""
    if spec.get("experiment"):
        claim, _, _ = claim_of(str(spec["experiment"]))
        claim_title, claim_paper = claim.title, claim.paper
    heading, results, notes = _results(sweep)
    stand_in = [r.summary for r in sweep.members if not r.error and is_stand_in(r.summary)]
    return SweepView(
        anchor=sweep.anchor,
        title=sweep_title(sweep),
        directory=str(d),
        meta=meta,
        stand_in=str(stand_in[0].get("data", "stand-in data")) if stand_in else None,
        claim_title=claim_title,
        claim_paper=claim_paper,
        figures=[] if sweep.error else figures(d, SWEEP_CAPTIONS),
        results_heading=heading,
        results=results,
        notes=notes,
        cells=cells_table(sweep) if sweep.members else None,
        spec=json.dumps(spec, indent=2) if spec else None,
        error=sweep.error,
    )
