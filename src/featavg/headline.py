"""A run's headline numbers beside the theory, as plain text for the terminal.

``featavg run`` prints them after every run (and on a cache hit), and the reprs of
:class:`~featavg.loading.LoadedRun` and ``featavg.run(...)`` show the first few. The rows are
the report's (:mod:`featavg.report.checks`): every declared check that has a closed form,
then the verdict rows of a table of settings (the ablations), e.g.::

    verdict   measured [95% interval]  theory  diff (tolerance)  check
    agrees    3.836 [0.6711, 7]        3.873   -1.0% (±15%)      binary net: exact median ...
    deviates  8 [8, 8]                 3.873   +106.6% (±25%)    binary net: 50% radius, ...
    checks: 6 agree, 8 deviate, 0 missing

(the check column ends with the closed form, e.g. "; theory √(d/k)").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featavg.experiments.summary import is_number
from featavg.report.checks import ChecksUnavailable, check_rows, experiment_of, grid_rows

HEADER = ("verdict", "measured [95% interval]", "theory", "diff (tolerance)", "check")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Headline:
    """One measured number against its closed form. agrees: None when there is no verdict
    (a missing key, no finite value)."""

    label: str
    value: float | None
    interval: tuple[float | None, float | None] | None
    theory: float | None
    theory_label: str
    tol: float
    relative: bool
    agrees: bool | None
    missing: bool = False

    @property
    def word(self) -> str:
        """agrees, deviates, missing or 'no value'."""
        if self.missing:
            return "missing"
        return {True: "agrees", False: "deviates", None: "no value"}[self.agrees]

    def measured(self) -> str:
        """'3.836 [0.671, 7]' (mean and 95% interval) or '3.836'."""
        text = _num(self.value)
        if self.interval is not None:
            text += f" [{_num(self.interval[0])}, {_num(self.interval[1])}]"
        return text

    def check_text(self) -> str:
        """The check's label and its closed form: 'binary net: ...; theory √(d/k)'."""
        return f"{self.label}; theory {self.theory_label}" if self.theory_label else self.label

    def diff(self) -> str:
        """'+54.9% (±25%)' (relative) or '+0.195 (±0.1)' (absolute); '' without a value."""
        if self.value is None or self.theory is None:
            return ""
        if self.relative and self.theory != 0:
            return f"{(self.value - self.theory) / abs(self.theory):+.1%} (±{self.tol:.0%})"
        return f"{self.value - self.theory:+.3g} (±{self.tol:g})"

    def cells(self) -> tuple[str, str, str, str, str]:
        """The row's cells, in :data:`HEADER` order."""
        return (self.word, self.measured(), _num(self.theory), self.diff(), self.check_text())

    def brief(self) -> str:
        """One short line: 'agrees: label = 3.836 (theory 3.873)'."""
        return f"{self.word}: {self.label} = {_num(self.value)} (theory {_num(self.theory)})"


def _float(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def _interval(ci: Any) -> tuple[float | None, float | None] | None:
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return _float(ci[0]), _float(ci[1])
    return None


def headline_rows(summary: dict[str, Any]) -> list[Headline]:
    """Every check of the run that has a closed form, then its settings' verdict rows.
    Raises :class:`~featavg.report.checks.ChecksUnavailable` when the run's config no
    longer validates under this featavg version."""
    rows = [
        Headline(
            r.check.label,
            r.value,
            r.interval,
            r.theory,
            r.check.theory_label,
            r.check.tol,
            r.check.relative,
            r.agrees,
            bool(r.missing),
        )
        for r in check_rows(summary)
        if r.check.theory is not None
    ]
    exp = experiment_of(summary)
    grid = exp.grid if exp is not None else None
    if grid is not None:
        settings = grid_rows(summary, grid)
        if settings is None:
            label = f"settings table ({grid.entry})"
            rows.append(Headline(label, None, None, None, "", 0.0, False, None, missing=True))
        for g in settings or []:
            theory = _float(g.values.get(grid.row_theory, summary.get(grid.theory_key)))
            rows.append(
                Headline(
                    f"{g.name}: {grid.metric}",
                    _float(g.values.get(grid.metric)),
                    _interval(g.values.get(f"{grid.metric}_ci95")),
                    theory,
                    grid.theory_label,
                    grid.tol,
                    False,
                    g.agrees,
                )
            )
    return rows


def check_counts_line(rows: list[Headline]) -> str:
    """'checks: 6 agree, 8 deviate, 0 missing' (and how many have no value, if any)."""
    words = [r.word for r in rows]
    line = (
        f"checks: {words.count('agrees')} agree, {words.count('deviates')} deviate, "
        f"{words.count('missing')} missing"
    )
    if "no value" in words:
        line += f", {words.count('no value')} without a value"
    return line


def headline_lines(summary: dict[str, Any]) -> list[str]:
    """The aligned table of :func:`headline_rows` and the counting line (nothing when the
    experiment has no closed forms)."""
    try:
        rows = headline_rows(summary)
    except ChecksUnavailable as err:
        return [f"checks: unavailable ({err})"]
    if not rows:
        return []
    table = [HEADER, *(r.cells() for r in rows)]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(HEADER) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=False)), cells[-1]])
        for cells in table
    ]
    return [*lines, check_counts_line(rows)]


def seeds_text(seeds: list[int]) -> str:
    """'1 seed (0)', '10 seeds (0 .. 9)' or '3 seeds (0, 4, 7)'."""
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    which = f"{seeds[0]} .. {seeds[-1]}" if consecutive else ", ".join(map(str, seeds))
    return f"{len(seeds)} seeds ({which})"
