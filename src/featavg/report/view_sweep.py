"""The view of one sweep directory: its figure, sweep.csv with folded intervals, every
finished cell beside the theory (its headline check and check counts) and sweep.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featavg.metrics.intervals import plural
from featavg.report.checks import ChecksUnavailable, check_counts, check_rows, claim_of, is_stand_in
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
    verdict_class,
)
from featavg.report.view_run import theory_text

SWEEP_CAPTIONS = {"sweep": "Metrics of every cell against the first grid key."}


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
    head = next((r for r in rows if r.check.theory is not None), None)
    if head is None:
        return Cell("—"), Cell()
    key = head.check.key
    measured = fmt(summary[key], key) if key in summary else "—"
    text = f"{measured} vs {theory_text(head)}"
    if head.missing:
        return Cell(text, code=key), Cell(
            f"missing from the summary: {', '.join(head.missing)}", "missing"
        )
    return Cell(text, code=key), Cell(head.verdict, verdict_class(head.agrees))


def cells_table(sweep: SweepPage) -> Table:
    """Per cell: its grid values, the experiment's headline check and the check counts."""
    values = {}
    for cell in (sweep.spec or {}).get("cells") or []:
        if isinstance(cell, dict) and isinstance(cell.get("directory"), str):
            values[Path(cell["directory"]).name] = cell.get("values")
    rows = []
    for run in sweep.members:
        grid = values.get(run.directory.name)
        grid_text = ", ".join(f"{k}={v}" for k, v in grid.items()) if isinstance(grid, dict) else ""
        ok, dev, missing = check_counts(run.summary)
        counts = f"{ok} agree, {dev} deviate" + (f", {missing} missing" if missing else "")
        badge = Badge("stand-in data", "standin") if is_stand_in(run.summary) else None
        rows.append(
            [
                Cell(code=run.directory.name, badge=badge),
                Cell(grid_text),
                *_headline(run.summary),
                Cell(counts, "num" if not missing else "missing"),
            ]
        )
    header = ["Cell", "Grid values", "Headline check", "Agreement", "All checks"]
    return Table([Cell(h) for h in header], rows)


def sweep_title(sweep: SweepPage) -> str:
    spec = sweep.spec or {}
    grid = spec.get("grid")
    if isinstance(grid, dict) and grid and spec.get("experiment"):
        return f"Sweep of {spec['experiment']} over {', '.join(map(str, grid))}"
    return f"Sweep {sweep.directory.name}"


def sweep_view(sweep: SweepPage) -> SweepView:
    """The sweep's figure(s), its results table, its cells against the theory, sweep.json."""
    d, spec = sweep.directory, sweep.spec or {}
    meta = f"{len(sweep.members)} finished cells"
    if isinstance(spec.get("grid"), dict):
        grid = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in spec["grid"].items())
        meta += f" · grid: {grid}"
    if spec.get("seeds"):
        meta += f" · {plural(int(spec['seeds']), 'seed')} per cell"
    stand_in = [r.summary for r in sweep.members if is_stand_in(r.summary)]
    claim_title = claim_paper = ""
    if spec.get("experiment"):
        claim, _, _ = claim_of(str(spec["experiment"]))
        claim_title, claim_paper = claim.title, claim.paper
    heading, results, notes = "", None, []
    try:
        records = read_csv(d / "sweep.csv")
    except CSV_ERRORS as err:
        notes.append(f"sweep.csv unreadable: {err}")
    else:
        heading = f"Results ({len(records)} cells; mean, 95% interval)"
        if records:
            results = sweep_table(records)
        else:
            notes.append("sweep.csv has no rows.")
    return SweepView(
        anchor=sweep.anchor,
        title=sweep_title(sweep),
        directory=str(d),
        meta=meta,
        stand_in=str(stand_in[0].get("data", "stand-in data")) if stand_in else None,
        claim_title=claim_title,
        claim_paper=claim_paper,
        figures=figures(d, SWEEP_CAPTIONS),
        results_heading=heading,
        results=results,
        notes=notes,
        cells=cells_table(sweep) if sweep.members else None,
        spec=json.dumps(spec, indent=2) if spec else None,
    )
