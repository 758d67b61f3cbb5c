"""The view of "The paper beside us": the paper's published values beside a run's.

For every figure its experiment names (``Experiment.paper_refs``), the entries of
:mod:`featavg.reference` become a table: what the paper states (a value, or what it shows
when it gives no number) with its source; this run's value (its config for a setting, the
named summary keys for a result or a claim); and the comparison: a setting is "same" or
"differs" from the run's config, a published number with a tolerance "agrees" or "differs",
and everything else says why there is nothing to compare. Below it, the figure's known
differences and what we think their reasons are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from featavg.config import ConfigError
from featavg.experiments.summary import is_number
from featavg.reference import PaperEntry, PaperFigure, paper_figure
from featavg.report.checks import experiment_of
from featavg.report.view import Cell, Table, fmt, fmt_interval

LIST_SHOWN = 4  # items of a long list shown before "…"


@dataclass(frozen=True)
class PaperFigureView:
    title: str
    citation: str
    table: Table
    differences: list[str]


@dataclass
class PaperView:
    figures: list[PaperFigureView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def value_text(value: Any) -> str:
    """A value of the data file or a config for the page. An evenly spaced list of five or
    more numbers reads '0, 2, …, 58 (30 values)'; other long lists are cut after
    LIST_SHOWN items."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        items = list(value)
        if len(items) >= 5 and all(is_number(v) for v in items):
            pairs = zip(items, items[1:], strict=False)
            if len({round(float(b) - float(a), 12) for a, b in pairs}) == 1:
                first, second, last = (fmt(items[i]) for i in (0, 1, -1))
                return f"{first}, {second}, …, {last} ({len(items)} values)"
        shown = ", ".join(value_text(v) for v in items[:LIST_SHOWN])
        return shown + (f", … ({len(items)} values)" if len(items) > LIST_SHOWN else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items())
    return fmt(value)


def same(a: Any, b: Any) -> bool:
    """Equal as settings: numbers to rounding, lists item by item."""
    if is_number(a) and is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def lookup(config: Any, dotted: str) -> tuple[bool, Any]:
    """(found?, value) of a dotted field such as 'attack.radii' in a run's config."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def paper_cell(entry: PaperEntry, figure_citation: str = "") -> Cell:
    """What the paper states, with its source underneath unless it is the figure's own
    (named once above the table)."""
    small = f"Source: {entry.citation}" if entry.citation != figure_citation else ""
    if entry.kind == "statement" and entry.value is None:
        return Cell(entry.statement, small=small)
    if entry.value is None:
        return Cell("not given", lines=(entry.statement,), small=small)
    text = ("≈ " if entry.approx else "") + value_text(entry.value)
    return Cell(text, lines=(entry.statement,) if entry.statement else (), small=small)


def ours_cell(entry: PaperEntry, summary: dict[str, Any]) -> Cell:
    """This run's side: its config field for a setting, else the named summary keys it has."""
    if entry.kind == "setting":
        if not entry.config:
            return Cell("—")
        found, value = lookup(summary.get("config"), entry.config)
        if not found:
            return Cell("—", code=entry.config, small="not a field of this run's config")
        return Cell(value_text(value), code=entry.config)
    lines = []
    for key in entry.ours:
        if key in summary:
            interval = fmt_interval(summary.get(f"{key}_ci95"), key)
            lines.append(f"{key} = {fmt(summary[key], key)}" + (f" {interval}" if interval else ""))
    return Cell(lines=tuple(lines)) if lines else Cell("—")


def comparison_cell(entry: PaperEntry, summary: dict[str, Any]) -> Cell:
    """Same / differs / agrees, or why there is nothing to compare; the entry's note below."""
    text, cls = "", ""
    if entry.kind == "setting" and entry.config:
        found, value = lookup(summary.get("config"), entry.config)
        if not found:
            text = "—"
        elif value is None:
            text = "not set in this run: the experiment's default applies"
        elif same(value, entry.value):
            text, cls = "same", "ok"
        else:
            text, cls = "differs", "dev"
    elif entry.kind == "result" and entry.value is None:
        text = "nothing to compare: the paper gives no number"
    elif entry.kind == "result" and entry.tol is not None:
        key = entry.ours[0]
        ours = summary.get(key)
        if not isinstance(ours, int | float) or isinstance(ours, bool):
            text = f"no value of {key} in this run"
        else:
            diff = float(ours) - float(entry.value)
            ok = abs(diff) <= entry.tol
            text = f"{'agrees' if ok else 'differs'} (Δ {diff:+.3g}; tolerance ±{entry.tol:g})"
            cls = "ok" if ok else "dev"
    return Cell(text or "—", cls, small=entry.note)


def figure_view(figure: PaperFigure, summary: dict[str, Any]) -> PaperFigureView:
    header = [Cell(h) for h in ("Quantity", "The paper", "This run", "Comparison")]
    rows = [
        [
            Cell(entry.label),
            paper_cell(entry, figure.citation),
            ours_cell(entry, summary),
            comparison_cell(entry, summary),
        ]
        for entry in figure.entries
    ]
    table = Table(header, rows)
    return PaperFigureView(figure.title, figure.citation, table, list(figure.differences))


def paper_view(summary: dict[str, Any]) -> PaperView | None:
    """The block of a run whose experiment names paper figures; None when it names none. A
    name missing from the data file is shown as a problem, not raised."""
    exp = experiment_of(summary)
    refs = exp.paper_refs if exp is not None else ()
    if not refs:
        return None
    view = PaperView()
    for ref in refs:
        try:
            view.figures.append(figure_view(paper_figure(ref), summary))
        except ConfigError as err:
            view.problems.append(str(err))
    return view
