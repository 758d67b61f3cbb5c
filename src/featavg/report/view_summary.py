"""The summary box at the top of the report: a line per run, read in a minute.

Each line names the experiment's claim in one line (a link to its section), counts its
verdicts (:func:`featavg.report.checks.tally`) and puts its key number beside the paper's
and the theory's. The key number is, for a real-data run, its plain answer to "is the
10-class model more robust?"; otherwise its first check with a closed form, else the first
row of its settings table, else its first declared number. The paper's side is its
published number where it gives one, else what it shows instead (a plot). A refused run
directory is a line of its own that says what is wrong, and nothing else.
"""

from __future__ import annotations

from typing import Any

from featavg.config import ConfigError
from featavg.reference import paper_figure
from featavg.report.checks import (
    AGREES,
    DEVIATES,
    EXPECTED,
    MISSING,
    NO_THEORY,
    STATUSES,
    ChecksUnavailable,
    Tally,
    Verdict,
    check_rows,
    claim_of,
    experiment_of,
    grid_rows,
    tally,
)
from featavg.report.paper import value_text
from featavg.report.view import (
    Badge,
    Cell,
    RunPage,
    SummaryRow,
    fmt,
    fmt_interval,
    verdict_class,
)
from featavg.report.view_checks import theory_text
from featavg.report.view_real import comparison_view
from featavg.report.view_run import run_badges

NO_NUMBER = "no number given"  # the paper's side when its figures give none (plots)


def paper_number(summary: dict[str, Any], key: str) -> str:
    """The paper's published number for a summary key (a result entry of its figures that
    names the key; any result entry for an empty key), else "no number given"; '—' for an
    experiment that reproduces no figure of the paper."""
    exp = experiment_of(summary)
    refs = exp.paper_refs if exp is not None else ()
    for ref in refs:
        try:
            figure = paper_figure(ref)
        except ConfigError:
            continue
        for entry in figure.entries:
            if (
                entry.kind == "result"
                and entry.value is not None
                and (not key or key in entry.ours)
            ):
                return ("≈ " if entry.approx else "") + value_text(entry.value)
    return NO_NUMBER if refs else "—"


def key_number(summary: dict[str, Any]) -> tuple[Cell, Cell, Cell, Cell]:
    """(what, this run's value with its verdict, the paper's, the theory's) of the run's key
    number (see the module docstring)."""
    comparison = comparison_view(summary)
    if comparison is not None:
        paper = paper_number(summary, "")
        return Cell(comparison.question), Cell(comparison.sentence), Cell(paper), Cell("—")
    try:
        rows = check_rows(summary)
    except ChecksUnavailable:
        rows = []
    head = next((r for r in rows if r.status != NO_THEORY), None)
    if head is not None:
        key = head.check.key
        interval = fmt_interval(head.interval, key)
        ours = fmt(head.value, key) + (f" {interval}" if interval else "")
        return (
            Cell(head.check.label, more_code=key, more=head.check.note),
            Cell(ours, f"num {verdict_class(head.status)}", small=head.status, inline=True),
            Cell(paper_number(summary, key)),
            Cell(theory_text(head), "num"),
        )
    exp = experiment_of(summary)
    grid = grid_rows(summary, exp.grid) if exp is not None and exp.grid is not None else None
    if exp is not None and exp.grid is not None and grid:
        g = grid[0]
        theory = fmt(g.theory) + f" = {exp.grid.theory_label}" if g.theory is not None else "—"
        return (
            Cell(f"{g.name}: {exp.grid.metric}"),
            Cell(fmt(g.value), f"num {verdict_class(g.status)}", small=g.status, inline=True),
            Cell(paper_number(summary, exp.grid.metric)),
            Cell(theory, "num"),
        )
    if rows:
        r = rows[0]
        return (
            Cell(r.check.label, more_code=r.check.key, more=r.check.note),
            Cell(fmt(r.value, r.check.key), "num"),
            Cell(paper_number(summary, r.check.key)),
            Cell("—"),
        )
    return Cell("—"), Cell("—"), Cell("—"), Cell("—")


def summary_row(run: RunPage) -> SummaryRow:
    """The run's line of the summary box."""
    if run.error:
        blank = Cell()
        name = run.directory.name
        return SummaryRow(run.anchor, name, name, [], blank, blank, blank, blank, run.error)
    title = claim_of(str(run.summary.get("experiment", "")))[0].title
    key, ours, paper, theory = key_number(run.summary)
    return SummaryRow(
        run.anchor, title, run.directory.name, run_badges(run.summary), key, ours, paper, theory
    )


TOTAL_WORDS = {
    AGREES: "agree",
    EXPECTED: "deviate as the paper or our closed forms predict",
    DEVIATES: "deviate unexpectedly",
    MISSING: "missing",
}


def totals(runs: list[RunPage]) -> tuple[Tally, list[Badge]]:
    """Every verdict of the verified runs, and a badge per verdict over them all (zeros
    included: "0 missing" is news too), then one for the refused directories, if any."""
    verdicts: list[Verdict] = []
    problems = []
    for run in runs:
        if not run.error:
            t = tally(run.summary)
            verdicts += t.verdicts
            problems += [t.problem] if t.problem else []
    total = Tally(tuple(verdicts), "; ".join(problems))
    badges = []
    for status in STATUSES:
        n = total.count(status)
        badges.append(Badge(f"{n} {TOTAL_WORDS[status]}", verdict_class(status) if n else ""))
    refused = sum(bool(r.error) for r in runs)
    if refused:
        badges.append(Badge(f"{refused} refused", "missing"))
    return total, badges
