"""A run's measured numbers held against the theory its experiment declares.

The experiment object (:class:`featavg.experiments.spec.Experiment`) lists its checks for the
run's config; here each is resolved against the run's summary into a :class:`CheckRow`
(value, interval, theory, verdict). A declared key that the summary lacks is never dropped:
the row stays, marked missing, and counts as a problem. Summary keys ``K`` with a
``theory_K`` beside them that no declared check covers get a generic row, so an experiment
(or an unknown one, e.g. from a newer featavg) is checked with no further configuration.

Every row ends in one of four verdicts (:data:`STATUSES`): it agrees with its closed form;
it deviates as expected (the check declares an :class:`~featavg.experiments.spec.Expected`
deviation, and the value lies on the predicted side); it deviates (unexpectedly); or it is
missing. :func:`tally` counts them for a run: the report's summary and contents, and the
last line of ``featavg reproduce``, all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from featavg.experiments.spec import Check, Claim, Expected, Experiment, GridCheck
from featavg.experiments.summary import is_number

# Tolerance of the generic rows: unknown quantities, unknown scale (relative, absolute at 0).
GENERIC_TOL = 0.10

# Older summaries carry no "stand_in" flag; their "data" text then decides.
STAND_IN_MARKERS = ("stand-in", "standin", "synthetic cifar", "fashion-mnist")


def is_stand_in(summary: dict[str, Any]) -> bool:
    """Whether the summary's numbers come from stand-in data: its ``stand_in`` flag (True /
    False, a label naming the stand-in, e.g. "Fashion-MNIST (stand-in for MNIST)", or null
    for the real data) or its ``stand_in_label``; a summary without either: its ``data``
    text."""
    flag = summary.get("stand_in")
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, str) and flag.strip():
        return True
    label = summary.get("stand_in_label")
    if isinstance(label, str) and label.strip():
        return True
    if "stand_in" in summary:  # null: the real data set (a summary that says so)
        return False
    text = str(summary.get("data") or "").lower()
    return any(marker in text for marker in STAND_IN_MARKERS)


def experiment_of(summary: dict[str, Any]) -> Experiment[Any] | None:
    """The registered experiment that wrote the summary (None if unknown)."""
    from featavg.experiments.registry import EXPERIMENTS

    return EXPERIMENTS.get(str(summary.get("experiment", "")))


def claim_of(name: str) -> tuple[Claim, dict[str, str], bool]:
    """(claim, figure captions, generic?) of an experiment; an unknown one gets a generic
    claim naming it."""
    from featavg.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS.get(name)
    if exp is None:
        text = "No claim is recorded for this experiment in this featavg version."
        return Claim(name or "unknown experiment", text), {}, True
    return exp.claim, dict(exp.figures), False


# the verdicts of a check, in the order the report counts them
AGREES, EXPECTED, DEVIATES, MISSING = "agrees", "deviates as expected", "deviates", "missing"
NO_VALUE = "no value"  # a closed form, but no finite measured value to hold against it
NO_THEORY = "no closed form"  # measured only
STATUSES = (AGREES, EXPECTED, DEVIATES, MISSING)


def status_of(
    agrees: bool | None,
    value: float | None,
    theory: float | None,
    expected: Expected | None,
    missing: bool = False,
) -> str:
    """The verdict of a compared value: a deviation is "as expected" when the check declares
    it and the value lies on the predicted side of the theory."""
    if missing:
        return MISSING
    if agrees is None:
        return NO_THEORY if theory is None else NO_VALUE
    if agrees:
        return AGREES
    if expected is None or value is None or theory is None:
        return DEVIATES
    side = "above" if value > theory else "below"
    return EXPECTED if expected.side in ("either", side) else DEVIATES


@dataclass(frozen=True)
class CheckRow:
    """A check resolved against one summary. ``missing``: summary keys the check reads that
    the summary lacks (then value or theory is None and ``agrees`` is None)."""

    check: Check
    value: float | None
    interval: tuple[float | None, float | None] | None
    theory: float | None
    agrees: bool | None
    verdict: str
    missing: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`, or :data:`NO_VALUE` / :data:`NO_THEORY`."""
        expected = self.check.expected
        return status_of(self.agrees, self.value, self.theory, expected, bool(self.missing))


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def verdict(value: float | None, theory: float | None, check: Check) -> tuple[bool | None, str]:
    """(agrees?, the difference and the tolerance, e.g. '+3.1% (±15%)') of a
    measured value against the theory; None (and why) when there is nothing to compare."""
    if theory is None:
        return None, "— (no closed form)"
    if value is None or not math.isfinite(value):
        return None, "no value to compare"
    diff = value - theory
    if check.relative:
        if theory == 0:
            return None, "—"
        rel = diff / abs(theory)
        ok = abs(rel) <= check.tol
        return ok, f"{rel:+.1%} (±{check.tol:.0%})"
    ok = abs(diff) <= check.tol
    return ok, f"Δ {diff:+.3g} (±{check.tol:g})"


def resolve(check: Check, summary: dict[str, Any]) -> CheckRow:
    """The check's row for this summary."""
    missing = tuple(k for k in check.keys() if k not in summary)
    value = _number(summary.get(check.key))
    theory = _number(summary.get(check.theory)) if isinstance(check.theory, str) else check.theory
    ci = summary.get(f"{check.key}_ci95")
    interval = (_number(ci[0]), _number(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None
    if missing:
        return CheckRow(check, value, interval, theory, None, "missing from the summary", missing)
    agrees, text = verdict(value, theory, check)
    return CheckRow(check, value, interval, theory, agrees, text)


class ChecksUnavailable(ValueError):
    """The run's config does not validate under this featavg version's experiment."""


def declared_checks(summary: dict[str, Any]) -> list[Check]:
    """The checks the run's experiment declares for the run's config. Raises
    :class:`ChecksUnavailable` when that config no longer validates."""
    exp = experiment_of(summary)
    if exp is None:
        return []
    try:
        cfg = exp.config_cls.model_validate(summary.get("config") or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ChecksUnavailable(f"config field {where}: {first['msg']}") from None
    return exp.checks(cfg)


def check_rows(summary: dict[str, Any]) -> list[CheckRow]:
    """Declared checks (missing keys marked), then a generic row per uncovered ``K`` that has
    a ``theory_K``."""
    rows = [resolve(c, summary) for c in declared_checks(summary)]
    seen = {r.check.key for r in rows}
    for key, value in summary.items():
        tkey = f"theory_{key}"
        if key in seen or key.startswith("theory_") or tkey not in summary:
            continue
        if value is None or is_number(value):
            t = _number(summary[tkey])
            rows.append(
                resolve(Check(key, key, tkey, tkey, GENERIC_TOL, relative=bool(t)), summary)
            )
    return rows


@dataclass(frozen=True)
class GridRow:
    """One setting of a :class:`GridCheck` table with its verdict; ``expected``: the
    deviation its experiment predicts for this setting, if any."""

    name: str
    values: dict[str, Any]
    agrees: bool | None
    verdict: str
    expected: Expected | None = None
    value: float | None = None
    theory: float | None = None

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`, or :data:`NO_VALUE` / :data:`NO_THEORY`."""
        return status_of(self.agrees, self.value, self.theory, self.expected)


def grid_expectations(summary: dict[str, Any], grid: GridCheck) -> dict[str, Expected]:
    """The settings the experiment predicts to deviate, for the run's config ({} when the
    config no longer validates: its checks are then reported unavailable)."""
    exp = experiment_of(summary)
    if exp is None:
        return {}
    try:
        cfg = exp.config_cls.model_validate(summary.get("config") or {})
    except ValidationError:
        return {}
    return dict(grid.expected(cfg))


def grid_rows(summary: dict[str, Any], grid: GridCheck) -> list[GridRow] | None:
    """The grid check's rows, or None when the summary lacks its entry."""
    entry = summary.get(grid.entry)
    if not isinstance(entry, dict):
        return None
    expected = grid_expectations(summary, grid)
    rows = []
    for name, row in entry.items():
        row = row if isinstance(row, dict) else {}
        t = _number(row.get(grid.row_theory, summary.get(grid.theory_key)))
        value = _number(row.get(grid.metric))
        check = Check(grid.metric, grid.metric, t, grid.theory_label, grid.tol)
        agrees, text = verdict(value, t, check)
        rows.append(GridRow(str(name), row, agrees, text, expected.get(str(name)), value, t))
    return rows


@dataclass(frozen=True)
class Verdict:
    """One counted verdict of a run: what was checked (a check's label, or a setting and
    its metric) and its status."""

    label: str
    status: str


@dataclass(frozen=True)
class Tally:
    """A run's verdicts, counted: every declared check with a closed form and every row
    of its settings table. ``problem``: why the checks could not be made at all."""

    verdicts: tuple[Verdict, ...] = ()
    problem: str = ""

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.verdicts) + (
            status == MISSING and bool(self.problem)
        )

    def labels(self, status: str) -> list[str]:
        """The labels of the verdicts with this status (the problem, for missing)."""
        labels = [v.label for v in self.verdicts if v.status == status]
        return labels + ([self.problem] if status == MISSING and self.problem else [])


def tally(summary: dict[str, Any]) -> Tally:
    """Every verdict of a run (its checks, then its settings table), as the report shows
    them; checks without a closed form are not counted."""
    try:
        rows = check_rows(summary)
    except ChecksUnavailable as err:
        return Tally(problem=f"checks unavailable ({err})")
    verdicts = [Verdict(r.check.label, r.status) for r in rows if r.status != NO_THEORY]
    exp = experiment_of(summary)
    if exp is not None and exp.grid is not None:
        grid = grid_rows(summary, exp.grid)
        if grid is None:
            verdicts.append(Verdict(f"the settings table {exp.grid.entry!r}", MISSING))
        else:
            verdicts += [Verdict(f"{g.name}: {exp.grid.metric}", g.status) for g in grid]
    return Tally(tuple(verdicts))


def check_counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    """(agreeing, deviating, missing) of a run's checks and grid rows; deviating counts
    the expected deviations too (the terminal's 'checks:' line counts so)."""
    t = tally(summary)
    return t.count(AGREES), t.count(EXPECTED) + t.count(DEVIATES), t.count(MISSING)
