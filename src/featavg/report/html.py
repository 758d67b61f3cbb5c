"""Render run directories and sweeps as one self-contained HTML page.

Everything the page needs is inside it: CSS inline, figures as ``data:image/png;base64``
URIs, links only to anchors within the page; it opens offline and prints (a one-line inline
script opens every collapsed block before printing). All text from summaries, configs and
CSV files goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from featavg.report.claims import (
    Check,
    Claim,
    GridCheck,
    checks_for,
    claim_for,
    is_stand_in,
    verdict,
)

MAX_TABLE_ROWS = 200  # CSV / point tables beyond this are cut (the file has them all)
MAX_PER_SEED = 12  # per-seed values listed in full up to this many seeds
SKIP_KEYS = {"experiment", "data", "config", "provenance", "per_seed"}

CSS = """
:root { --fg: #1b1f24; --muted: #59636e; --line: #d0d7de; --bg2: #f6f8fa;
  --ok: #1a7f37; --dev: #bc4c00; --warn-bg: #fff8c5; --warn-line: #d4a72c; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { margin: 1.4rem 0 .4rem; font-size: 1.05rem; }
code, pre { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--bg2); padding: .6rem; overflow-x: auto; }
.meta, figcaption, .note, footer, header p { color: var(--muted); }
.toc ol { padding-left: 1.4rem; } .toc li { margin: .15rem 0; }
.badge { display: inline-block; font-size: 12px; padding: 0 .45rem; border-radius: 1rem;
  border: 1px solid var(--line); margin-left: .3rem; white-space: nowrap; }
.badge.standin { background: var(--warn-bg); border-color: var(--warn-line); }
.badge.ok { color: var(--ok); } .badge.dev { color: var(--dev); }
.banner { background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 6px;
  padding: .5rem .8rem; margin: .6rem 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto;
  border: 1px solid var(--line); }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; vertical-align: top;
  text-align: left; }
th { background: var(--bg2); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ok { color: var(--ok); } td.dev { color: var(--dev); }
.scroll { overflow-x: auto; }
details { margin: .5rem 0; } summary { cursor: pointer; font-weight: 600; }
section { margin-top: 2.5rem; }
@media print {
  body { max-width: none; font-size: 11pt; }
  section { break-before: page; } figure, table, .banner { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

# Opens collapsed blocks for printing; inline, so the page stays self-contained.
PRINT_SCRIPT = (
    'addEventListener("beforeprint",()=>'
    'document.querySelectorAll("details").forEach(d=>d.open=true));'
)


@dataclass
class RunPage:
    """A finished run directory to render: its summary and when it was written."""

    directory: Path
    summary: dict[str, Any]
    mtime: float
    anchor: str = ""
    sweep: str | None = None  # the sweep it belongs to, if found inside one


@dataclass
class SweepPage:
    """A sweep directory (holds sweep.csv), its finished cells and its sweep.json."""

    directory: Path
    anchor: str = ""
    members: list[RunPage] = field(default_factory=list)
    spec: dict[str, Any] | None = None


# --- small helpers --------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes too: some of it lands in attributes)."""
    return escape(str(value), quote=True)


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


def is_number(value: Any) -> bool:
    """A JSON number or null (null is a measured value that is not available)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def png_data_uri(path: Path) -> str:
    """The PNG file as a data URI, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def run_date(mtime: float) -> str:
    """The run's date from summary.json's mtime (written last, so it marks completion)."""
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None):
    """An HTML table from already-escaped cells; classes per cell (e.g. 'num')."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if classes else [""] * len(row)
        cells = "".join(
            f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
            for v, c in zip(row, cls, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _details(title: str, inner: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{title}</summary>{inner}</details>"


def _records_table(records: list[dict], key_hint: str = "") -> str:
    """Table of a list of dicts (CSV rows, summary "points"), cut at MAX_TABLE_ROWS."""
    header: list[str] = []
    for rec in records:
        header += [k for k in rec if k not in header]
    shown = records[:MAX_TABLE_ROWS]
    rows, classes = [], []
    for rec in shown:
        cells, cls = [], []
        for k in header:
            v = rec.get(k, "")
            cells.append(esc(fmt(_maybe_number(v), k)) if v != "" else "")
            cls.append("num" if is_number(_maybe_number(v)) and v != "" else "")
        rows.append(cells)
        classes.append(cls)
    cut = len(records) - len(shown)
    note = f'<p class="note">{cut} more rows in the file.</p>' if cut > 0 else ""
    return _table([esc(h) for h in header], rows, classes) + note


def _maybe_number(value: Any) -> Any:
    """CSV cells are text: '0.4427' -> 0.4427 so that they get formatted like numbers."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _figures(directory: Path, captions: dict[str, str]) -> str:
    """Every PNG in the directory, the claim's figures first in the claim's order."""
    pngs = {p.stem: p for p in sorted(directory.glob("*.png")) if p.is_file()}
    order = [n for n in captions if n in pngs] + [n for n in pngs if n not in captions]
    out = []
    for name in order:
        caption = f"<code>{esc(name)}.png</code>"
        if captions.get(name):
            caption += f" — {esc(captions[name])}"
        out.append(
            f'<figure><img src="{png_data_uri(pngs[name])}" alt="{esc(name)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return "".join(out)


# --- a run ----------------------------------------------------------------------------------


def run_title(run: RunPage) -> str:
    return claim_for(str(run.summary.get("experiment", ""))).title


def _grid_entries(summary: dict) -> dict[str, dict[str, dict]]:
    """Summary entries that map names to number dicts (e.g. the ablations' "settings")."""
    return {
        key: value
        for key, value in summary.items()
        if key not in SKIP_KEYS
        and isinstance(value, dict)
        and value
        and all(isinstance(v, dict) for v in value.values())
    }


def _grid_verdict(summary: dict, row: dict, grid: GridCheck) -> tuple[bool | None, str]:
    """A settings row's metric against the row's theory value (else the summary's)."""
    t = row.get(grid.row_theory, summary.get(grid.theory_key))
    check = Check(grid.metric, grid.metric, t if is_number(t) else None, "", grid.tol)
    v = row.get(grid.metric)
    return verdict(v if is_number(v) else None, check)


def check_counts(summary: dict) -> tuple[int, int]:
    """(agreeing, deviating) key numbers of a run, for the table of contents."""
    results = [verdict(_measured(summary, c), c)[0] for c in checks_for(summary)]
    grid = claim_for(str(summary.get("experiment", ""))).grid
    if grid is not None:
        for entry in _grid_entries(summary).values():
            results += [_grid_verdict(summary, row, grid)[0] for row in entry.values()]
    return results.count(True), results.count(False)


def _measured(summary: dict, check: Check) -> float | None:
    value = check.value if check.value is not None else summary.get(check.key)
    return float(value) if is_number(value) and value is not None else None


def _checks_table(summary: dict, checks: list[Check]) -> str:
    header = ["Quantity", "Measured (mean)", "95% interval", "Theory", "Agreement", "Note"]
    rows, classes = [], []
    for c in checks:
        value = _measured(summary, c)
        agrees, text = verdict(value, c)
        shown = c.value if c.value is not None else summary.get(c.key)
        theory = "—" if c.theory is None else esc(fmt(c.theory))
        if c.theory is not None and c.theory_label and c.theory_label != fmt(c.theory):
            theory += f" = {esc(c.theory_label)}"
        label = f"{esc(c.label)}<br><code>{esc(c.key)}</code>"
        rows.append(
            [
                label,
                esc(fmt(shown, c.key)),
                esc(fmt_interval(summary.get(f"{c.key}_ci95"), c.key)),
                theory,
                esc(text),
                esc(c.note),
            ]
        )
        state = {True: "ok", False: "dev", None: ""}[agrees]
        classes.append(["", "num", "num", "num", state, "note"])
    return _table(header, rows, classes)


def _grids(summary: dict, claim: Claim) -> str:
    """Tables of every summary entry that maps names to number dicts (e.g. "settings")."""
    out = []
    for key, value in _grid_entries(summary).items():
        cols: list[str] = []
        for row in value.values():
            cols += [
                k
                for k, v in row.items()
                if k not in cols and is_number(v) and not k.startswith("theory_")
            ]
        if not cols:  # e.g. named curves (lists): they are in the figures, not a table
            continue
        grid = claim.grid if claim.grid and claim.grid.metric in cols else None
        header = [esc(key)] + [f"<code>{esc(c)}</code>" for c in cols]
        if grid:
            metric, formula = esc(grid.metric), esc(grid.theory_label)
            header.append(f"Agreement of <code>{metric}</code> with {formula}")
        rows, classes = [], []
        for name, row in value.items():
            cells = [esc(name)]
            for c in cols:
                ci = fmt_interval(row.get(f"{c}_ci95"), c)
                cell = esc(fmt(row.get(c), c)) if c in row else "—"
                cells.append(cell + (f"<br><small>{esc(ci)}</small>" if ci else ""))
            cls = [""] + ["num"] * len(cols)
            if grid:
                agrees, text = _grid_verdict(summary, row, grid)
                cells.append(esc(text))
                cls.append({True: "ok", False: "dev", None: ""}[agrees])
            rows.append(cells)
            classes.append(cls)
        out.append(_table(header, rows, classes))
    return "".join(out)


def _all_numbers(summary: dict) -> str:
    """Every top-level number with its interval and per-seed values."""
    per_seed = summary.get("per_seed") if isinstance(summary.get("per_seed"), dict) else {}
    rows, classes = [], []
    for key, value in summary.items():
        if key in SKIP_KEYS or key.endswith("_ci95") or not is_number(value):
            continue
        seeds = per_seed.get(key) or []
        listed = ", ".join(fmt(v, key) for v in seeds[:MAX_PER_SEED])
        if len(seeds) > MAX_PER_SEED:
            listed += f", … ({len(seeds)} seeds)"
        rows.append(
            [
                f"<code>{esc(key)}</code>",
                esc(fmt(value, key)),
                esc(fmt_interval(summary.get(f"{key}_ci95"), key)),
                esc(listed),
            ]
        )
        classes.append(["", "num", "num", "num"])
    if not rows:
        return ""
    table = _table(["Key", "Mean", "95% interval", "Per seed"], rows, classes)
    return _details(f"All numbers ({len(rows)})", table)


def _record_lists(summary: dict) -> str:
    """Summary entries holding lists of records (e.g. the scaling "points")."""
    out = []
    for key, value in summary.items():
        if key in SKIP_KEYS or not isinstance(value, list) or not value:
            continue
        if all(isinstance(v, dict) for v in value):
            out.append(_details(f"{esc(key)} ({len(value)} rows)", _records_table(value)))
    return "".join(out)


def _csv_tables(directory: Path) -> str:
    out = []
    for path in sorted(directory.glob("*.csv")):
        try:
            records = read_csv(path)
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            out.append(f'<p class="note">{esc(path.name)}: unreadable ({esc(err)})</p>')
            continue
        title = f"Table <code>{esc(path.name)}</code> ({len(records)} rows)"
        out.append(_details(title, _records_table(records)))
    return "".join(out)


def _provenance(run: RunPage) -> str:
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
        rows.append([esc(name), f"<code>{esc(text)}</code>"])
    return _table(["Provenance", ""], rows)


def stand_in_banner(data: Any) -> str:
    return (
        '<div class="banner" role="note"><strong>Stand-in data.</strong> These numbers were '
        f"computed on <em>{esc(data)}</em>, not on the paper's data set: they test the "
        "pipeline and the qualitative effect, and are not comparable with the paper's "
        "figures.</div>"
    )


def render_run(run: RunPage) -> str:
    """One section: title, claims, figures, key numbers beside the theory, all numbers,
    tables, config and provenance."""
    s = run.summary
    name = str(s.get("experiment", run.directory.name))
    claim = claim_for(name)
    parts = [f'<section id="{esc(run.anchor)}"><h2>{esc(claim.title)}</h2>']
    meta = f"experiment <code>{esc(name)}</code> · data: {esc(s.get('data', 'unknown'))}"
    meta += f" · directory <code>{esc(run.directory)}</code>"
    if run.sweep:
        meta += f" · part of sweep <code>{esc(run.sweep)}</code>"
    parts.append(f'<p class="meta">{meta}</p>')
    if is_stand_in(s.get("data")):
        parts.append(stand_in_banner(s.get("data")))
    heading = "What the paper claims" if not claim.generic else "What this experiment does"
    parts.append(f"<h3>{heading}</h3><p>{esc(claim.paper)}</p>")
    if claim.beyond:
        parts.append(f"<h3>What the exact computations add</h3><p>{esc(claim.beyond)}</p>")
    figures = _figures(run.directory, claim.figures)
    if figures:
        parts.append(f"<h3>Figures</h3>{figures}")
    checks = checks_for(s)
    grids = _grids(s, claim)
    if checks or grids:
        parts.append("<h3>Key numbers beside the theory</h3>")
        if checks:
            parts.append(_checks_table(s, checks))
        parts.append(grids)
    parts.append(_all_numbers(s) + _record_lists(s) + _csv_tables(run.directory))
    config = json.dumps(s.get("config", {}), indent=2, sort_keys=False)
    parts.append(_details("Config", f"<pre>{esc(config)}</pre>"))
    parts.append(_provenance(run))
    parts.append("</section>")
    return "".join(parts)


# --- a sweep --------------------------------------------------------------------------------


def _sweep_table(records: list[dict[str, str]]) -> str:
    """sweep.csv with every metric's ``_lo`` / ``_hi`` columns folded into 'mean [lo, hi]'
    (a constant, such as a theory value, shows just the mean); the cell name first."""
    if not records:
        return '<p class="note">sweep.csv has no rows.</p>'
    header = list(records[0])
    folded = {c for c in header if f"{c}_lo" in header and f"{c}_hi" in header}
    bounds = {f"{c}_{side}" for c in folded for side in ("lo", "hi")}
    cols = [c for c in header if c == "cell"] + [
        c for c in header if c != "cell" and c not in bounds
    ]
    rows, classes = [], []
    for rec in records[:MAX_TABLE_ROWS]:
        cells, cls = [], []
        for c in cols:
            value = _maybe_number(rec.get(c, ""))
            text = esc(fmt(value, c)) if rec.get(c, "") != "" else ""
            if c in folded:
                lo, hi = _maybe_number(rec[f"{c}_lo"]), _maybe_number(rec[f"{c}_hi"])
                if rec[f"{c}_lo"] != "" and (lo, hi) != (value, value):
                    text += f"<br><small>{esc(fmt_interval([lo, hi], c))}</small>"
            cells.append(text)
            cls.append("num" if is_number(value) and rec.get(c, "") != "" else "")
        rows.append(cells)
        classes.append(cls)
    cut = len(records) - MAX_TABLE_ROWS
    note = f'<p class="note">{cut} more rows in sweep.csv.</p>' if cut > 0 else ""
    return _table([f"<code>{esc(c)}</code>" for c in cols], rows, classes) + note


def _cells_table(sweep: SweepPage) -> str:
    """Per cell: its grid values, the experiment's headline check and the check counts."""
    values = {}
    for cell in (sweep.spec or {}).get("cells") or []:
        if isinstance(cell, dict) and isinstance(cell.get("directory"), str):
            values[Path(cell["directory"]).name] = cell.get("values")
    rows, classes = [], []
    for run in sweep.members:
        checks = [c for c in checks_for(run.summary) if c.theory is not None]
        head = checks[0] if checks else None
        grid = values.get(run.directory.name)
        grid_text = ", ".join(f"{k}={v}" for k, v in grid.items()) if grid else ""
        row = [f"<code>{esc(run.directory.name)}</code>", esc(grid_text)]
        cls = ["", ""]
        if head is not None:
            value = _measured(run.summary, head)
            agrees, text = verdict(value, head)
            row += [
                f"<code>{esc(head.key)}</code> {esc(fmt(value, head.key))} vs "
                f"{esc(fmt(head.theory))} = {esc(head.theory_label)}",
                esc(text),
            ]
            cls += ["", {True: "ok", False: "dev", None: ""}[agrees]]
        else:
            row += ["—", ""]
            cls += ["", ""]
        ok, dev = check_counts(run.summary)
        row.append(f"{ok} agree, {dev} deviate")
        cls.append("num")
        if is_stand_in(run.summary.get("data")):
            row[0] += '<span class="badge standin">stand-in data</span>'
        rows.append(row)
        classes.append(cls)
    header = ["Cell", "Grid values", "Headline check", "Agreement", "All checks"]
    return _table(header, rows, classes)


def sweep_title(sweep: SweepPage) -> str:
    spec = sweep.spec or {}
    grid = spec.get("grid")
    if isinstance(grid, dict) and grid and spec.get("experiment"):
        return f"Sweep of {spec['experiment']} over {', '.join(map(str, grid))}"
    return f"Sweep {sweep.directory.name}"


def render_sweep(sweep: SweepPage) -> str:
    """The sweep's figure(s), its results table, its cells against the theory, sweep.json."""
    d, spec = sweep.directory, sweep.spec or {}
    parts = [f'<section id="{esc(sweep.anchor)}"><h2>{esc(sweep_title(sweep))}</h2>']
    meta = f"directory <code>{esc(d)}</code> · {len(sweep.members)} finished cells"
    if isinstance(spec.get("grid"), dict):
        grid = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in spec["grid"].items())
        meta += f" · grid: {esc(grid)}"
    if spec.get("seeds"):
        meta += f" · {esc(spec['seeds'])} seed(s) per cell"
    parts.append(f'<p class="meta">{meta}</p>')
    stand_in = [r.summary.get("data") for r in sweep.members if is_stand_in(r.summary.get("data"))]
    if stand_in:
        parts.append(stand_in_banner(stand_in[0]))
    if spec.get("experiment"):
        claim = claim_for(str(spec["experiment"]))
        parts.append(f"<h3>{esc(claim.title)}</h3><p>{esc(claim.paper)}</p>")
    figures = _figures(d, {"sweep": "Metrics of every cell against the first grid key."})
    if figures:
        parts.append(f"<h3>Figures</h3>{figures}")
    try:
        records = read_csv(d / "sweep.csv")
        parts.append(f"<h3>Results ({len(records)} cells; mean, 95% interval)</h3>")
        parts.append(_sweep_table(records))
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        parts.append(f'<p class="note">sweep.csv unreadable: {esc(err)}</p>')
    if sweep.members:
        parts.append("<h3>Cells beside the theory</h3>" + _cells_table(sweep))
    if spec:
        text = json.dumps(spec, indent=2)
        parts.append(
            _details("<code>sweep.json</code> (grid and base config)", f"<pre>{esc(text)}</pre>")
        )
    parts.append("</section>")
    return "".join(parts)


# --- the page -------------------------------------------------------------------------------


def _toc(runs: list[RunPage], sweeps: list[SweepPage]) -> str:
    items = []
    for run in runs:
        badges = ""
        if is_stand_in(run.summary.get("data")):
            badges += '<span class="badge standin">stand-in data</span>'
        ok, dev = check_counts(run.summary)
        if ok:
            badges += f'<span class="badge ok">{ok} agree</span>'
        if dev:
            badges += f'<span class="badge dev">{dev} deviate</span>'
        items.append(
            f'<li><a href="#{esc(run.anchor)}">{esc(run_title(run))}</a> '
            f"<code>{esc(run.directory.name)}</code>{badges}</li>"
        )
    for sweep in sweeps:
        badges = f'<span class="badge">{len(sweep.members)} cells</span>'
        if any(is_stand_in(r.summary.get("data")) for r in sweep.members):
            badges += '<span class="badge standin">stand-in data</span>'
        items.append(
            f'<li><a href="#{esc(sweep.anchor)}">{esc(sweep_title(sweep))}</a> '
            f"<code>{esc(sweep.directory.name)}</code>{badges}</li>"
        )
    return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def render_page(
    runs: list[RunPage], sweeps: list[SweepPage], version: str, generated: datetime
) -> str:
    """The whole report: header, contents, a section per run and per sweep, footer."""
    n_sweeps = f", {len(sweeps)} sweep{'s' * (len(sweeps) != 1)}" if sweeps else ""
    header = (
        "<header><h1>featavg report</h1><p>Feature averaging: an implicit bias of gradient "
        "descent leading to non-robustness in neural networks (Li, Pan, Lyu, Li; ICLR 2025, "
        f"arXiv 2410.10322).<br>featavg {esc(version)} · generated "
        f"{esc(generated.strftime('%Y-%m-%d %H:%M:%S %Z'))} · {len(runs)} "
        f"run{'s' * (len(runs) != 1)}{n_sweeps}</p>"
        '<p class="note">Each section: the paper\'s claim, the figures, the measured numbers '
        "beside the closed forms of featavg.theory (mean over seeds, 95% t-interval when "
        "there are several seeds; “agrees” means within the stated tolerance), the config "
        "and the provenance.</p></header>"
    )
    footer = (
        "<footer><hr>Regenerate with <code>featavg report RUN_DIR ...</code> (or "
        "<code>featavg report --root DIR</code> for every run under DIR; "
        "<code>--out FILE</code> to choose the file). The page is self-contained: figures "
        "are embedded and nothing is fetched from the network.</footer>"
    )
    body = "".join(render_run(r) for r in runs) + "".join(render_sweep(s) for s in sweeps)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>featavg report</title><style>{CSS}</style></head><body>"
        f"{header}{_toc(runs, sweeps)}<main>{body}</main>{footer}"
        f"<script>{PRINT_SCRIPT}</script></body></html>\n"
    )
