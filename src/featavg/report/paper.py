"""The paper's published values beside a run's, for its compact setup block.

For every figure its experiment names (``Experiment.paper_refs``), the entries of
:mod:`featavg.reference` are sorted by what they offer the reader:

* settings held against the run's config: each is "as in the paper" or named among the
  settings that differ (a null in the config is resolved to what the run used, e.g. its
  radius grid, never shown as null);
* published numbers: a table of the paper's value beside the run's, with the comparison;
* statements and plots without a number: listed, folded, with the run's numbers beside
  them, and the figure's known differences with what we think their reasons are.

Nothing is shown that has nothing to show: a figure with no number gets one line saying so.
Sources are named for an outside reader: the paper's abstract by its sentence; a summary we
worked from (not the paper's own text) as such, without its internal section numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from featavg.config import ConfigError
from featavg.experiments.summary import is_number
from featavg.reference import PaperEntry, PaperFigure, Source, paper_figure
from featavg.report.checks import experiment_of
from featavg.report.view import Cell, Fold, Table, fmt, fmt_interval

LIST_SHOWN = 4  # items of a long list shown before "…"

# Sources of kind "project spec" are summaries we worked from, not the paper's own text;
# their locations are internal, so only what they summarise is named.
SUMMARY_SOURCES = {
    "spec_code": "the authors' code, as summarised for us (not the paper's text)",
}
SUMMARY_SOURCE = "the paper, as summarised for us (its full text was not at hand)"


def source_text(source: Source, where: str = "") -> str:
    """An entry's source as an outside reader can follow it."""
    if source.kind == "project spec":
        return SUMMARY_SOURCES.get(source.key, SUMMARY_SOURCE)
    return f"{source.text}, {where}" if where else source.text


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


def effective(summary: dict[str, Any], dotted: str, value: Any) -> tuple[Any, str]:
    """(the value the run used, a note) for a config field: a null radius grid is the grid
    the run recorded with its curves; anything else is the config's value."""
    curves = summary.get("curves")
    radii = curves.get("radii") if isinstance(curves, dict) else None
    if value is None and dotted.endswith("radii") and isinstance(radii, list) and radii:
        return radii, "the default grid"
    return value, ""


def ours_text(entry: PaperEntry, summary: dict[str, Any]) -> str:
    """The run's numbers an entry names: 'key = value [lo, hi]', ';'-joined ('' for none)."""
    parts = []
    for key in entry.ours:
        if key in summary:
            interval = fmt_interval(summary.get(f"{key}_ci95"), key)
            parts.append(f"{key} = {fmt(summary[key], key)}" + (f" {interval}" if interval else ""))
    return "; ".join(parts)


@dataclass
class PaperSetup:
    """What the run's setup block shows of the paper: settings as in the paper and those
    that differ (each a phrase), the fields they cover, the published numbers compared,
    and a fold per figure with its statements and known differences."""

    same: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    compared: list[list[Cell]] = field(default_factory=list)
    folds: list[Fold] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _setting(entry: PaperEntry, summary: dict[str, Any], setup: PaperSetup) -> str | None:
    """Sort a setting with a config field into same / differs; the statement line of one
    the run's config does not have."""
    found, value = lookup(summary.get("config"), entry.config)
    if not found:
        return f"{entry.label}: {value_text(entry.value)} in the paper (not a setting here)"
    used, note = effective(summary, entry.config, value)
    setup.fields.add(entry.config)
    shown = value_text(used) + (f" ({note})" if note else "")
    if used is not None and same(used, entry.value):
        setup.same.append(f"{entry.label}: {shown}")
        return None
    if used is None:
        shown = "the experiment's default"
    why = f"; {entry.note}" if entry.note else ""
    setup.differs.append(f"{entry.label}: {shown} (the paper: {value_text(entry.value)}{why})")
    return None


def _compared_row(entry: PaperEntry, summary: dict[str, Any]) -> list[Cell]:
    """A published number beside the run's: agrees / differs within the entry's tolerance,
    or why it is not compared."""
    paper = ("≈ " if entry.approx else "") + value_text(entry.value)
    ours = ours_text(entry, summary) or "—"
    text, cls = "not compared: read off a plot", ""
    key = entry.ours[0] if entry.ours else ""
    if entry.tol is not None and is_number(summary.get(key)):
        diff = float(summary[key]) - float(entry.value)
        ok = abs(diff) <= entry.tol
        text = f"{'agrees' if ok else 'differs'} (Δ {diff:+.3g}; tolerance ±{entry.tol:g})"
        cls = "ok" if ok else "dev"
    elif entry.tol is not None:
        text = f"no value of {key} in this run"
    return [Cell(entry.label), Cell(paper, "num"), Cell(ours), Cell(text, cls, small=entry.note)]


def _figure(figure: PaperFigure, summary: dict[str, Any], setup: PaperSetup) -> None:
    """Add one figure's entries to the setup."""
    items = []
    for entry in figure.entries:
        if entry.kind == "setting" and entry.config:
            line = _setting(entry, summary, setup)
            if line:
                items.append(line)
        elif entry.kind == "result" and entry.value is not None:
            setup.compared.append(_compared_row(entry, summary))
        else:
            text = entry.statement or value_text(entry.value)
            if entry.kind == "setting":
                text = f"{value_text(entry.value)}: {text}" if entry.statement else text
            ours = ours_text(entry, summary)
            source = ""
            if entry.source.key != figure.source.key:
                source = f" (source: {source_text(entry.source, entry.where)})"
            items.append(f"{entry.label}: {text}{source}" + (f" This run: {ours}." if ours else ""))
    items += [f"Where we differ: {d}" for d in figure.differences]
    if items:
        where = source_text(figure.source, figure.where)
        setup.folds.append(Fold(figure.title, after=f"({where})", items=tuple(items)))


def paper_setup(summary: dict[str, Any]) -> PaperSetup | None:
    """The paper's side of a run's setup block; None when its experiment names no figure
    of the paper. A name missing from the data file is a problem, not raised."""
    exp = experiment_of(summary)
    refs = exp.paper_refs if exp is not None else ()
    if not refs:
        return None
    setup = PaperSetup()
    for ref in refs:
        try:
            figure = paper_figure(ref)
        except ConfigError as err:
            setup.problems.append(str(err))
            continue
        _figure(figure, summary, setup)
    return setup


COMPARED_HEADER = ("Published number", "The paper", "This run", "Comparison")


def compared_table(setup: PaperSetup) -> Table | None:
    """The paper's published numbers beside the run's; None when the paper gives none."""
    if not setup.compared:
        return None
    return Table([Cell(h) for h in COMPARED_HEADER], setup.compared)
