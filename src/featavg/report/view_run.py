"""The view of one run directory: its claim, key numbers beside the theory (the checks of
:mod:`featavg.report.checks`, as :mod:`featavg.report.view_checks` lays them out), figures,
its setup beside the paper's (:mod:`featavg.report.view_setup`), and, folded, all numbers,
tables and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from featavg.experiments.summary import META_KEYS, metric_keys
from featavg.report.checks import (
    AGREES,
    DEVIATES,
    EXPECTED,
    MISSING,
    NO_THEORY,
    ChecksUnavailable,
    check_rows,
    claim_of,
    experiment_of,
    is_stand_in,
    tally,
)
from featavg.report.paper import same, value_text
from featavg.report.view import (
    CSV_ERRORS,
    MAX_PER_SEED,
    Badge,
    Cell,
    Fold,
    RunPage,
    RunView,
    Table,
    figures,
    fmt,
    fmt_interval,
    read_csv,
    records_table,
    verdict_class,
)
from featavg.report.view_checks import check_table, grid_tables, measured_table
from featavg.report.view_real import comparison_view, stand_in_label
from featavg.report.view_setup import config_text, flatten, setup_view

TITLE_OVERRIDES = 6  # overridden config fields named in a title (the config lists them all)


def all_numbers(summary: dict[str, Any]) -> Fold | None:
    """Every top-level number with its interval and per-seed values."""
    raw_per_seed = summary.get("per_seed")
    per_seed = raw_per_seed if isinstance(raw_per_seed, dict) else {}
    rows = []
    for key in metric_keys(summary):
        seeds = per_seed.get(key) or []
        seeds = seeds if isinstance(seeds, list) else []
        listed = ", ".join(fmt(v, key) for v in seeds[:MAX_PER_SEED])
        if len(seeds) > MAX_PER_SEED:
            listed += f", … ({len(seeds)} seeds)"
        interval = fmt_interval(summary.get(f"{key}_ci95"), key)
        rows.append(
            [
                Cell(code=key),
                Cell(fmt(summary[key], key), "num"),
                Cell(interval, "num"),
                Cell(listed, "num"),
            ]
        )
    if not rows:
        return None
    header = [Cell(h) for h in ("Key", "Mean", "95% interval", "Per seed")]
    return Fold(f"All numbers ({len(rows)})", table=Table(header, rows))


def record_folds(summary: dict[str, Any]) -> list[Fold]:
    """Summary entries holding lists of records (e.g. the scaling "points")."""
    return [
        Fold(f"{key} ({len(value)} rows)", table=records_table(value, "the summary"))
        for key, value in summary.items()
        if key not in META_KEYS
        and isinstance(value, list)
        and value
        and all(isinstance(v, dict) for v in value)
    ]


def csv_folds(directory: Path) -> tuple[list[Fold], list[str]]:
    """(a fold per CSV file, notes on the unreadable ones)."""
    folds, notes = [], []
    for path in sorted(directory.glob("*.csv")):
        try:
            records = read_csv(path)
        except CSV_ERRORS as err:
            notes.append(f"{path.name}: unreadable ({err})")
            continue
        folds.append(Fold("Table", path.name, f"({len(records)} rows)", records_table(records)))
    return folds, notes


def config_overrides(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The dotted config fields where the run differs from its experiment's defaults (a
    field the defaults lack counts too), in the config's order; [] for an unknown
    experiment."""
    exp = experiment_of(summary)
    config = summary.get("config")
    if exp is None or not isinstance(config, dict):
        return []
    try:
        defaults = flatten(exp.config_cls().model_dump(mode="json"))
    except (ValidationError, TypeError):  # a config class without defaults for every field
        return []
    return [
        (key, value)
        for key, value in flatten(config).items()
        if key not in defaults or not same(defaults[key], value)
    ]


def override_text(value: Any) -> str:
    """A config value in a title: lists in brackets ('[0, 2, …, 8 (5 values)]', '[]')."""
    return f"[{value_text(value)}]" if isinstance(value, list | tuple) else value_text(value)


def run_title(summary: dict[str, Any]) -> str:
    """The claim's title; a run off the default config names its overrides, e.g.
    'Title (seeds=10, train.lr=0.01)'."""
    title = claim_of(str(summary.get("experiment", "")))[0].title
    overrides = config_overrides(summary)
    if not overrides:
        return title
    named = [f"{key}={override_text(value)}" for key, value in overrides[:TITLE_OVERRIDES]]
    if len(overrides) > TITLE_OVERRIDES:
        named.append(f"… {len(overrides) - TITLE_OVERRIDES} more in the config")
    return f"{title} ({', '.join(named)})"


def run_view(run: RunPage) -> RunView:
    """One run's section: claim, key numbers beside the theory, figures, its setup beside
    the paper's, and the folded numbers, tables and config."""
    s = run.summary
    name = str(s.get("experiment", run.directory.name))
    claim, captions, generic = claim_of(name)
    problems = []
    try:
        rows = check_rows(s)
    except ChecksUnavailable as err:
        problems.append(
            f"Checks unavailable: {err}. This run's config does not validate under this "
            "featavg version, so its numbers are shown without the theory."
        )
        rows = []
    grids, grid_folds, grid_problems = grid_tables(s)
    exp = experiment_of(s)
    theory = any(r.status != NO_THEORY for r in rows) or (exp is not None and exp.grid is not None)
    folds = [f for f in [all_numbers(s)] if f is not None] + grid_folds + record_folds(s)
    csvs, notes = csv_folds(run.directory)
    return RunView(
        anchor=run.anchor,
        title=run_title(s),
        experiment=name,
        data=str(s.get("data", "unknown")),
        directory=str(run.directory),
        sweep=run.sweep,
        stand_in=is_stand_in(s),
        stand_in_label=stand_in_label(s),
        claim_heading="About this experiment" if generic else "What the paper claims",
        paper=claim.paper,
        beyond=claim.beyond,
        run_notes=[str(n) for n in s.get("notes") or [] if str(n)],
        figures=figures(run.directory, captions),
        comparison=comparison_view(s),
        problems=problems + grid_problems,
        numbers_heading="Key numbers" + (" beside the theory" if theory else ""),
        checks=check_table(s, rows),
        measured=measured_table(s, rows),
        grids=grids,
        folds=folds + csvs + [Fold("Config and provenance", pre=config_text(s), print_open=True)],
        notes=notes,
        setup=setup_view(run),
    )


VERDICT_BADGES = (
    (AGREES, "agree"),
    (EXPECTED, "deviate as expected"),
    (DEVIATES, "deviate"),
    (MISSING, "missing"),
)


def verdict_badges(summary: dict[str, Any]) -> list[Badge]:
    """A badge per verdict the run has: agree, deviate as expected, deviate, missing."""
    counts = tally(summary)
    return [
        Badge(f"{n} {text}", verdict_class(status))
        for status, text in VERDICT_BADGES
        if (n := counts.count(status))
    ]


def run_badges(summary: dict[str, Any]) -> list[Badge]:
    """Badges: stand-in data (naming the stand-in where the summary labels it), then the
    verdict counts."""
    badges = []
    if is_stand_in(summary):
        label = stand_in_label(summary, fallback=False)  # not the data text: too long here
        badges.append(Badge(f"stand-in data: {label}" if label else "stand-in data", "standin"))
    return badges + verdict_badges(summary)
