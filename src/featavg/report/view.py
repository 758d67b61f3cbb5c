"""The report's view model: what the page shows, as plain data for the templates.

Runs (:mod:`featavg.report.view_run`) and sweeps (:mod:`featavg.report.view_sweep`) become
dataclasses of display strings: numbers formatted (:func:`fmt`, :func:`fmt_interval`),
tables as rows of :class:`Cell` (text, a CSS class such as ``num`` or a verdict's ``ok`` /
``dev`` / ``missing``), figures as ``data:`` URIs. No HTML is written here: the templates
under ``templates/`` do that with autoescaping (:mod:`featavg.report.render`), so every
string may hold anything a summary, a config or a CSV file holds.
"""

from __future__ import annotations

import base64
import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featavg.experiments.summary import is_metric_value

MAX_TABLE_ROWS = 200  # CSV / point tables beyond this are cut (the file has them all)
MAX_PER_SEED = 12  # per-seed values listed in full up to this many seeds
CSV_ERRORS = (OSError, csv.Error, UnicodeDecodeError)


# --- what is rendered -------------------------------------------------------------------------


@dataclass
class RunPage:
    """A run directory to render: its summary and when it was written. ``error``: why it
    is refused (it does not match its manifest): then it is shown as one error line, and
    nothing of it is read beyond what checking it needs."""

    directory: Path
    summary: dict[str, Any]
    mtime: float
    anchor: str = ""
    sweep: str | None = None  # the sweep it belongs to, if found inside one
    error: str = ""


@dataclass
class SweepPage:
    """A sweep directory (holds sweep.csv), its cells and its sweep.json; ``error``: why its
    own files are refused (they do not match the sweep's manifest)."""

    directory: Path
    anchor: str = ""
    members: list[RunPage] = field(default_factory=list)
    spec: dict[str, Any] | None = None
    error: str = ""
    verified: bool = False  # its own files are vouched for by a manifest


# --- how it is shown ------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    text: str
    cls: str = ""


@dataclass(frozen=True)
class Cell:
    """A table cell: text, then ``lines`` (each on its own line), then ``code`` (monospace,
    on its own line, breakable after underscores), then ``small`` (an interval or a note, on
    its own line; ``inline``: on the text's line), then a badge; ``cls`` its CSS class.
    With ``more`` (or ``more_code``) the text is the summary of a fold that opens on
    ``more_code`` and ``more``: the detail stays one click away."""

    text: str = ""
    cls: str = ""
    code: str = ""
    small: str = ""
    badge: Badge | None = None
    lines: tuple[str, ...] = ()
    more: str = ""
    more_code: str = ""
    inline: bool = False


@dataclass(frozen=True)
class Table:
    header: list[Cell]
    rows: list[list[Cell]]
    cut: int = 0  # rows left out
    source: str = "the file"  # where the rows left out are


@dataclass(frozen=True)
class Comparison:
    """The answer per radius: ``sentence`` (one line over the radii > 0), ``table`` (a row
    per radius), ``notes`` (the pixel units, rows that could not be read)."""

    question: str
    sentence: str
    table: Table
    notes: list[str]


@dataclass(frozen=True)
class Fold:
    """A collapsed block: its title (text, ``code``, ``after``) and a table, text or list."""

    title: str
    code: str = ""
    after: str = ""
    table: Table | None = None
    pre: str | None = None
    print_open: bool = False  # opened for printing (small blocks only; never CSV tables)
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figure:
    """A figure as a data URI; ``wide``: a dense multi-panel figure, shown a page wide
    (others are shown at most ``58rem`` wide, or side by side)."""

    name: str
    caption: str
    uri: str
    wide: bool = False


@dataclass
class SetupView:
    """One compact block per run: what it ran on, the settings that differ from the paper's
    (each named) and those that are the paper's, the provenance in one line, and, folded,
    what the paper states beside the run's numbers."""

    facts: list[str]
    differs: list[str]
    same: list[str]
    provenance: str
    paper: list[Fold]
    paper_problems: list[str]
    compared: Table | None  # the paper's published numbers beside the run's (if any)


@dataclass
class RunView:
    anchor: str
    title: str
    experiment: str
    data: str
    directory: str
    sweep: str | None
    stand_in: bool
    stand_in_label: str  # what the banner names (the stand-in's label, else the data text)
    claim_heading: str
    paper: str
    beyond: str
    run_notes: list[str]  # the summary's "notes": what this run did not compute, and why
    figures: list[Figure]
    comparison: Comparison | None  # real data: is the 10-class model the more robust?
    problems: list[str]  # checks that could not be made (shown as problems)
    numbers_heading: str  # "Key numbers beside the theory", or without it when none has one
    checks: Table | None
    measured: Table | None  # declared numbers without a closed form
    grids: list[Table]
    folds: list[Fold]
    notes: list[str]
    setup: SetupView


@dataclass
class SweepView:
    anchor: str
    title: str
    directory: str
    meta: str  # after the directory: cells, grid, seeds
    stand_in: str | None  # the data text of a stand-in cell, if any
    claim_title: str
    claim_paper: str
    figures: list[Figure]
    results_heading: str
    results: Table | None
    notes: list[str]
    cells: Table | None
    spec: str | None
    error: str = ""


@dataclass(frozen=True)
class SummaryRow:
    """A line of the summary box: the run (a link to its section), its claim in one line,
    its verdicts, and its key number beside the paper's and the theory's; ``error``: a
    refused directory (then only the directory and why)."""

    anchor: str
    title: str
    name: str
    badges: list[Badge]
    key: Cell
    ours: Cell
    paper: Cell
    theory: Cell
    error: str = ""


@dataclass
class PageView:
    version: str
    generated: str
    counts: str
    totals: list[Badge]
    summary: list[SummaryRow]
    runs: list[RunView]
    sweeps: list[SweepView]


# --- formatting -----------------------------------------------------------------------------


def fmt(value: Any, key: str = "") -> str:
    """A number for the page: 4 significant digits; null -> 'n/a' (for a 50% radius, the
    curve never crossed 50% on the grid)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        # the runner stores inf (a curve that never crossed 50%) as null; CSVs keep 'inf'
        return "n/a (beyond the grid)" if "radius50" in key or "crossing" in key else "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if 1e4 <= abs(value) < 1e9 and value == round(value):
            return f"{value:.0f}"
        return f"{value:.4g}"
    return str(value)


def fmt_interval(ci: Any, key: str = "") -> str:
    """'[lo, hi]' of a ``_ci95`` entry, '' when absent."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"[{fmt(ci[0], key)}, {fmt(ci[1], key)}]"
    return ""


VERDICT_CLASSES = {
    "agrees": "ok",
    "deviates as expected": "exp",
    "deviates": "dev",
    "missing": "missing",
}


def verdict_class(status: str) -> str:
    """CSS class of a verdict (:data:`featavg.report.checks.STATUSES`); '' for none."""
    return VERDICT_CLASSES.get(status, "")


def maybe_number(value: Any) -> Any:
    """CSV cells are text: '0.4427' -> 0.4427 so that they get formatted like numbers."""
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return value


WIDE_PX = 2000  # a PNG at least this wide (many panels) is shown a page wide


def png_data_uri(path: Path) -> str:
    """The PNG file as a data URI, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def png_width(path: Path) -> int:
    """The width in pixels of a PNG file (from its header); 0 when it is not one."""
    with path.open("rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return 0
    return int.from_bytes(head[16:20], "big")


def run_date(mtime: float) -> str:
    """The run's date from summary.json's mtime (written last, so it marks completion)."""
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def figures(directory: Path, captions: dict[str, str]) -> list[Figure]:
    """Every PNG in the directory, the declared figures first in the declared order."""
    pngs = {p.stem: p for p in sorted(directory.glob("*.png")) if p.is_file()}
    order = [n for n in captions if n in pngs] + [n for n in pngs if n not in captions]
    return [
        Figure(n, captions.get(n, ""), png_data_uri(pngs[n]), png_width(pngs[n]) >= WIDE_PX)
        for n in order
    ]


def records_table(records: list[dict[str, Any]], source: str = "the file") -> Table:
    """Table of a list of dicts (CSV rows, summary "points"), cut at MAX_TABLE_ROWS."""
    header: list[str] = []
    for rec in records:
        header += [k for k in rec if k not in header]
    rows = []
    for rec in records[:MAX_TABLE_ROWS]:
        row = []
        for k in header:
            raw = rec.get(k, "")
            value = maybe_number(raw)
            shown = raw != ""  # a missing or empty CSV cell stays empty (null: 'n/a')
            cls = "num" if shown and is_metric_value(value) else ""
            row.append(Cell(fmt(value, k) if shown else "", cls))
        rows.append(row)
    cut = max(len(records) - MAX_TABLE_ROWS, 0)
    return Table([Cell(str(h)) for h in header], rows, cut, source)
