"""A run's measured numbers held against the theory its experiment declares.

The experiment object (:class:`featavg.experiments.spec.Experiment`) lists its checks for the
run's config; here each is resolved against the run's summary into a :class:`CheckRow`
(value, interval, theory, verdict). A declared key that the summary lacks is never dropped:
the row stays, marked missing, and counts as a problem. Summary keys ``K`` with a
``theory_K`` beside them that no declared check covers get a generic row, so an experiment
(or an unknown one, e.g. from a newer featavg) is checked with no further configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from featavg.experiments.spec import Check, Claim, Experiment, GridCheck
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


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def verdict(value: float | None, theory: float | None, check: Check) -> tuple[bool | None, str]:
    """(agrees?, text) of a measured value against the theory within the check's tolerance;
    None when there is nothing to compare."""
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
        return ok, f"{'agrees' if ok else 'deviates'} ({rel:+.1%}; tolerance ±{check.tol:.0%})"
    ok = abs(diff) <= check.tol
    return ok, f"{'agrees' if ok else 'deviates'} (Δ {diff:+.3g}; tolerance ±{check.tol:g})"


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
    """One setting of a :class:`GridCheck` table with its verdict."""

    name: str
    values: dict[str, Any]
    agrees: bool | None
    verdict: str


def grid_rows(summary: dict[str, Any], grid: GridCheck) -> list[GridRow] | None:
    """The grid check's rows, or None when the summary lacks its entry."""
    entry = summary.get(grid.entry)
    if not isinstance(entry, dict):
        return None
    rows = []
    for name, row in entry.items():
        row = row if isinstance(row, dict) else {}
        t = row.get(grid.row_theory, summary.get(grid.theory_key))
        check = Check(grid.metric, grid.metric, _number(t), grid.theory_label, grid.tol)
        agrees, text = verdict(_number(row.get(grid.metric)), _number(t), check)
        rows.append(GridRow(str(name), row, agrees, text))
    return rows


def check_counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    """(agreeing, deviating, missing) of a run's checks and grid rows, for the contents."""
    try:
        rows = check_rows(summary)
    except ChecksUnavailable:
        return 0, 0, 1
    results = [r.agrees for r in rows]
    missing = sum(bool(r.missing) for r in rows)
    exp = experiment_of(summary)
    if exp is not None and exp.grid is not None:
        grid = grid_rows(summary, exp.grid)
        if grid is None:
            missing += 1
        else:
            results += [g.agrees for g in grid]
    return results.count(True), results.count(False), missing
