"""The view of one run directory: its claim, figures, key numbers beside the theory (the
checks of :mod:`featavg.report.checks`), all numbers, tables, config and provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from featavg.experiments.summary import META_KEYS, is_metric_value, is_number, metric_keys
from featavg.report.checks import (
    CheckRow,
    ChecksUnavailable,
    check_counts,
    check_rows,
    claim_of,
    experiment_of,
    grid_rows,
    is_stand_in,
)
from featavg.report.paper import paper_view, same, value_text
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
    run_date,
    verdict_class,
)
from featavg.report.view_real import comparison_view, stand_in_label

GRID_COLUMNS = 4  # metric columns per settings table
TITLE_OVERRIDES = 6  # overridden config fields named in a title (the config lists them all)


def theory_text(row: CheckRow) -> str:
    if row.theory is None:
        return "—"
    label = row.check.theory_label
    return fmt(row.theory) + (f" = {label}" if label and label != fmt(row.theory) else "")


def verdict_cell(row: CheckRow) -> Cell:
    """The verdict of a check; a check whose keys the summary lacks names them, as a problem."""
    if row.missing:
        return Cell(f"missing from the summary: {', '.join(row.missing)}", "missing")
    return Cell(row.verdict, verdict_class(row.agrees))


def check_table(summary: dict[str, Any], rows: list[CheckRow]) -> Table:
    """Key numbers beside the theory, four columns that fit a printed page: the quantity
    (label, summary key, the check's note), the verdict, the measured mean with its 95%
    interval underneath, the theory. A row whose keys the summary lacks says which."""
    header = ["Quantity", "Agreement", "Measured (mean, 95% interval)", "Theory"]
    out = []
    for r in rows:
        key = r.check.key
        out.append(
            [
                Cell(r.check.label, code=key, small=r.check.note),
                verdict_cell(r),
                Cell(
                    fmt(summary[key], key) if key in summary else "—",
                    "num",
                    small=fmt_interval(r.interval, key),
                ),
                Cell(theory_text(r), "num"),
            ]
        )
    return Table([Cell(h) for h in header], out)


def _tabular(value: Any) -> bool:
    """A summary entry mapping names to dicts of numbers (e.g. the ablations' "settings")."""
    return (
        isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())
    )


def grid_tables(summary: dict[str, Any]) -> tuple[list[Table], list[str]]:
    """(tables, problems): a table per entry of settings, the experiment's grid check as a
    verdict column; a declared grid entry the summary lacks is a problem."""
    exp = experiment_of(summary)
    grid = exp.grid if exp is not None else None
    problems, verdicts = [], {}
    if grid is not None:
        grid_check_rows = grid_rows(summary, grid)
        if grid_check_rows is None:
            problems.append(f"missing from the summary: the settings table {grid.entry!r}")
        else:
            verdicts = {r.name: r for r in grid_check_rows}
    tables = []
    for key, value in summary.items():
        is_grid = grid is not None and key == grid.entry and bool(verdicts)
        if key in META_KEYS or not (_tabular(value) or is_grid):
            continue
        cols: list[str] = []
        for row in value.values():
            if isinstance(row, dict):
                cols += [
                    k
                    for k, v in row.items()
                    if k not in cols and is_metric_value(v) and not k.startswith("theory_")
                ]
        if not cols and not is_grid:  # e.g. named curves (lists): they are in the figures
            continue
        # a page holds GRID_COLUMNS metrics: more go to further tables, the setting repeated
        chunks = [cols[i : i + GRID_COLUMNS] for i in range(0, len(cols), GRID_COLUMNS)] or [[]]
        for part, chunk in enumerate(chunks):
            with_verdict = is_grid and part == 0
            header = [Cell(key if part == 0 else f"{key} (continued)")]
            if with_verdict and grid is not None:
                header.append(Cell(f"Agreement with {grid.theory_label}", code=grid.metric))
            header += [Cell(code=c) for c in chunk]
            rows: list[list[Cell]] = []
            for name, row in value.items():
                row = row if isinstance(row, dict) else {}
                cells = [Cell(str(name))]
                if with_verdict:
                    g = verdicts[str(name)]
                    cells.append(Cell(g.verdict, verdict_class(g.agrees)))
                for c in chunk:
                    text = fmt(row[c], c) if c in row else "—"
                    cells.append(Cell(text, "num", small=fmt_interval(row.get(f"{c}_ci95"), c)))
                rows.append(cells)
            tables.append(Table(header, rows))
    return tables, problems


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


def provenance_table(run: RunPage) -> Table:
    prov = run.summary.get("provenance")
    prov = dict(prov) if isinstance(prov, dict) else {}
    first = [
        ("featavg version", prov.pop("featavg_version", None)),
        ("git commit", prov.pop("git_commit", None)),
        ("seeds", prov.pop("seeds", None)),
        ("device", prov.pop("device", None)),
        ("wall time", prov.pop("wall_time_s", None)),
        ("run finished", run_date(run.mtime)),
    ]
    rows = []
    for name, value in first + sorted(prov.items()):
        if value is None:
            continue
        if name == "wall time" and is_number(value):
            text = f"{fmt(float(value))} s"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        rows.append([Cell(str(name)), Cell(code=text)])
    return Table([Cell("Provenance"), Cell()], rows)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.01}} -> {'train.lr': 0.01}; lists are values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_overrides(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The dotted config fields where the run differs from its experiment's defaults (a
    field the defaults lack counts too), in the config's order; [] for an unknown
    experiment."""
    exp = experiment_of(summary)
    config = summary.get("config")
    if exp is None or not isinstance(config, dict):
        return []
    try:
        defaults = _flatten(exp.config_cls().model_dump(mode="json"))
    except (ValidationError, TypeError):  # a config class without defaults for every field
        return []
    return [
        (key, value)
        for key, value in _flatten(config).items()
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
    """One run's section: claim, figures, key numbers beside the theory, the paper's
    published values beside the run's, all numbers, tables, config and provenance."""
    s = run.summary
    name = str(s.get("experiment", run.directory.name))
    claim, captions, generic = claim_of(name)
    problems, checks = [], None
    try:
        rows = check_rows(s)
    except ChecksUnavailable as err:
        problems.append(
            f"Checks unavailable: {err}. This run's config does not validate under this "
            "featavg version, so its numbers are shown without the theory."
        )
        rows = []
    if rows:
        checks = check_table(s, rows)
    grids, grid_problems = grid_tables(s)
    folds = [f for f in [all_numbers(s)] if f is not None] + record_folds(s)
    csvs, notes = csv_folds(run.directory)
    config = json.dumps(s.get("config", {}), indent=2, sort_keys=False)
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
        checks=checks,
        grids=grids,
        beside=paper_view(s),
        folds=folds + csvs + [Fold("Config", pre=config, print_open=True)],
        notes=notes,
        provenance=provenance_table(run),
    )


def run_badges(summary: dict[str, Any]) -> list[Badge]:
    """Contents badges: stand-in data (naming the stand-in where the summary labels it),
    agreeing, deviating and missing checks."""
    badges = []
    if is_stand_in(summary):
        label = stand_in_label(summary, fallback=False)  # not the data text: too long here
        badges.append(Badge(f"stand-in data: {label}" if label else "stand-in data", "standin"))
    ok, dev, missing = check_counts(summary)
    for n, text, cls in (
        (ok, "agree", "ok"),
        (dev, "deviate", "dev"),
        (missing, "missing", "missing"),
    ):
        if n:
            badges.append(Badge(f"{n} {text}", cls))
    return badges
