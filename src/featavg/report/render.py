"""The report page from the Jinja2 templates under ``templates/``.

The views of :mod:`featavg.report.view_run` and :mod:`featavg.report.view_sweep` hold only
display strings; the templates turn them into HTML with autoescaping on, so no text from a
summary, config or CSV file can become markup. ``page.html`` includes the CSS
(``report.css``), the summary box, ``run.html`` and ``sweep.html``; ``macros.html`` holds
tables, collapsed blocks, figures, the setup block and the stand-in banner.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from featavg.report.checks import is_stand_in
from featavg.report.view import Badge, Cell, PageView, RunPage, SummaryRow, SweepPage
from featavg.report.view_run import run_view
from featavg.report.view_summary import summary_row, totals
from featavg.report.view_sweep import sweep_title, sweep_view


@cache
def environment() -> Environment:
    """The templates' environment: autoescaping everywhere, an undefined name is an error."""
    return Environment(
        loader=PackageLoader("featavg.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def sweep_rows(sweeps: list[SweepPage]) -> list[SummaryRow]:
    """A summary line per sweep: its cells (their verdicts are in its section)."""
    rows = []
    for sweep in sweeps:
        badges = [Badge(_plural(len(sweep.members), "cell"))]
        if any(is_stand_in(r.summary) for r in sweep.members if not r.error):
            badges.append(Badge("stand-in data", "standin"))
        refused = sum(bool(r.error) for r in sweep.members)
        if refused:
            badges.append(Badge(f"{refused} refused", "missing"))
        blank = Cell()
        rows.append(
            SummaryRow(
                sweep.anchor,
                sweep_title(sweep),
                sweep.directory.name,
                badges,
                blank,
                blank,
                blank,
                blank,
                sweep.error,
            )
        )
    return rows


def page_view(
    runs: list[RunPage], sweeps: list[SweepPage], version: str, generated: datetime
) -> PageView:
    counts = _plural(len(runs), "run") + (f", {_plural(len(sweeps), 'sweep')}" if sweeps else "")
    _, badges = totals(runs)
    return PageView(
        version=version,
        generated=generated.strftime("%Y-%m-%d %H:%M:%S %Z"),
        counts=counts,
        totals=badges,
        summary=[summary_row(r) for r in runs] + sweep_rows(sweeps),
        runs=[run_view(r) for r in runs if not r.error],
        sweeps=[sweep_view(s) for s in sweeps],
    )


def render_page(
    runs: list[RunPage], sweeps: list[SweepPage], version: str, generated: datetime
) -> str:
    """The whole report: header, summary box, a section per run and per sweep, footer."""
    page = page_view(runs, sweeps, version, generated)
    return environment().get_template("page.html").render(page=page)
