"""``featavg report``: one self-contained report.html over finished runs and sweeps.

A run directory is finished when it holds summary.json (written last by the runner); a
sweep directory holds sweep.csv (and usually sweep.png) with its runs one level below.
Every directory is checked against its manifest.json before anything of it is shown (the
check :func:`featavg.load` makes): one whose files were changed, added or removed since
the run wrote them is refused, and the report shows one line saying what is wrong in its
place, never its numbers. With no run directories given, every run and sweep directly
under ``root`` is found and runs are put in the registry's order
(:data:`featavg.experiments.registry.EXPERIMENTS`, then unknown experiments by name).

Layout: :mod:`featavg.report.checks` holds each number against the theory its experiment
declares, with its verdict; :mod:`~featavg.report.view` holds the view model;
:mod:`~featavg.report.view_summary` builds the summary box at the top,
:mod:`~featavg.report.view_run` a run's section (its checks' tables:
:mod:`~featavg.report.view_checks`; its setup beside the paper's:
:mod:`~featavg.report.view_setup` and :mod:`~featavg.report.paper`; real-data parts:
:mod:`~featavg.report.view_real`), :mod:`~featavg.report.view_sweep` a sweep's; and
:mod:`~featavg.report.render` renders them through the Jinja2 templates in ``templates/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from featavg.config import ConfigError
from featavg.report.checks import Tally, tally
from featavg.report.view import RunPage, SweepPage
from featavg.runs import write_bytes

__all__ = ["add_report_parser", "discover", "report_command", "run_tallies", "write_report"]


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / "summary.json").is_file()


def _is_sweep(path: Path) -> bool:
    return path.is_dir() and (path / "sweep.csv").is_file()


def _children(path: Path) -> list[Path]:
    """Sub-directories, hidden ones (temporary, caches) left out."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _one_line(err: ConfigError) -> str:
    """A refusal in one line, without the directory (the page names it beside)."""
    text = " ".join(str(err).split()).removeprefix("run_dir: ")
    for phrase in (" does not match ", " has no readable "):
        _, found, rest = text.partition(phrase)
        if found:
            return found.strip() + " " + rest
    return text


def _refusal(path: Path) -> str:
    """'' when every file of the run directory matches its manifest.json; else what is
    wrong, in one line (the same check :func:`featavg.load` makes)."""
    from featavg.runs.state import verify_run

    try:
        verify_run(path)
    except ConfigError as err:
        return _one_line(err)
    return ""


SWEEP_FILES = (".csv", ".json", ".png", ".pdf", ".svg")  # a sweep's own result files


def _sweep_refusal(path: Path) -> str:
    """'' when the sweep's own files (sweep.csv, sweep.json, sweep.png, ...) match its
    manifest.json: each listed file there and unchanged, no unlisted result file beside
    them; else what differs, in one line."""
    try:
        listed = json.loads((path / "manifest.json").read_text(encoding="utf-8"))["files"]
        listed = {str(k): str(v) for k, v in listed.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return "has no readable manifest.json"
    problems = []
    for name, digest in listed.items():
        file = path / name
        if "/" in name or name.startswith(".") or not file.is_file() or file.is_symlink():
            problems.append(f"{name} missing")
        elif hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} changed")
    problems += [
        f"stray {p.name}"
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix in SWEEP_FILES and p.name not in listed
        and p.name != "manifest.json" and not p.name.startswith(".")
    ]  # fmt: skip
    if not problems:
        return ""
    more = " ..." if len(problems) > 3 else ""
    return f"does not match its manifest.json ({', '.join(problems[:3])}{more}); run it again"


def _load_run(path: Path, sweep: str | None = None) -> RunPage:
    """The run's summary, once the directory matches its manifest (else a refused page that
    holds only why); a missing directory or summary.json is a one-line ConfigError."""
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise ConfigError(f"report: run directory not found: {path}")
    if not summary_path.is_file():
        raise ConfigError(f"report: {path}: no summary.json (not a finished run directory)")
    mtime = summary_path.stat().st_mtime
    error = _refusal(path)
    if error:
        return RunPage(path, {}, mtime, sweep=sweep, error=error)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"report: {summary_path}: unreadable ({err})") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"report: {summary_path}: expected a JSON object")
    return RunPage(path, summary, mtime, sweep=sweep)


def _read_spec(sweep: Path) -> dict[str, Any] | None:
    """sweep.json (grid, seeds, base config, cells) when present and readable."""
    try:
        spec = json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return spec if isinstance(spec, dict) else None


def _sweep_cells(sweep: Path, spec: dict[str, Any] | None) -> list[Path]:
    """The finished cells of a sweep: the directories sweep.json lists (featavg.sweep puts
    them under cells/), else any run directory one level down or under cells/."""
    cells = spec.get("cells") if spec else None
    listed = [
        sweep / c["directory"]
        for c in cells or []
        if isinstance(c, dict) and isinstance(c.get("directory"), str)
    ]
    if not listed:
        listed = _children(sweep)
        if (sweep / "cells").is_dir():
            listed += _children(sweep / "cells")
    return [p for p in listed if _is_run(p)]  # unfinished cells have no summary yet


def _load_sweep(path: Path) -> SweepPage:
    """A sweep and its finished cells (summarised in the sweep's section, not one each),
    each cell checked against its manifest; the sweep's own files too when it has one (a
    refused sweep shows its cells, found on disk, and nothing of its own files)."""
    verified, error = False, ""
    if (path / "manifest.json").exists():
        error = _sweep_refusal(path)
        verified = not error
    spec = None if error else _read_spec(path)
    cells = [_load_run(p, sweep=path.name) for p in _sweep_cells(path, spec)]
    return SweepPage(path, members=cells, spec=spec, error=error, verified=verified)


def _sweep_of(run_dir: Path) -> str | None:
    """The sweep a run directory is a cell of (<sweep>/cells/<cell> or <sweep>/<cell>)."""
    for parent in (run_dir.parent, run_dir.parent.parent):
        if _is_sweep(parent):
            return parent.name
    return None


def _registry_order(runs: list[RunPage]) -> list[RunPage]:
    """Runs in the registry's order of experiments, unknown experiments after by name."""
    from featavg.experiments.registry import EXPERIMENTS  # lazy: the registry imports torch

    order = list(EXPERIMENTS)

    def key(run: RunPage) -> tuple[int, str, str]:
        name = str(run.summary.get("experiment", ""))
        rank = order.index(name) if name in order else len(order)
        return rank, name, str(run.directory)

    return sorted(runs, key=key)


def discover(root: Path) -> tuple[list[Path], list[Path]]:
    """(run directories, sweep directories) directly under ``root``. A sweep's cells are
    not listed as runs: its section summarises them (pass a cell directory explicitly for a
    full section)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"report: runs root not found: {root} (run `featavg run EXP` first)")
    runs = [p for p in _children(root) if _is_run(p)]
    sweeps = [p for p in _children(root) if _is_sweep(p) and not _is_run(p)]
    return runs, sweeps


def _collect(run_dirs: list[Path] | None, root: Path) -> tuple[list[RunPage], list[SweepPage]]:
    """Load what goes in the report. Explicit directories keep the caller's order (sweep
    directories among them become sweep sections); discovered runs follow the registry's order."""
    runs: list[RunPage] = []
    sweeps: list[SweepPage] = []
    if run_dirs:
        for path in map(Path, run_dirs):
            if _is_sweep(path) and not _is_run(path):
                sweeps.append(_load_sweep(path))
            else:
                runs.append(_load_run(path, sweep=_sweep_of(path)))
    else:
        found, sweep_dirs = discover(root)
        if not found and not sweep_dirs:
            raise ConfigError(
                f"report: no finished runs under {root} (run `featavg run EXP` first)"
            )
        runs = _registry_order([_load_run(p) for p in found])
        sweeps = [_load_sweep(d) for d in sweep_dirs]
    for i, run in enumerate(runs, 1):
        run.anchor = f"run-{i}"
    for i, sweep in enumerate(sweeps, 1):
        sweep.anchor = f"sweep-{i}"
    return runs, sweeps


def run_tallies(run_dirs: list[Path]) -> list[tuple[Path, str, Tally | None, str]]:
    """(directory, experiment, its verdicts, why it is refused) per run directory, counted
    exactly as the report counts them: the same manifest check, the same verdicts. A
    refused directory has no verdicts (None) and the one-line reason; a missing directory
    or summary.json is a ConfigError, as in :func:`write_report`."""
    out: list[tuple[Path, str, Tally | None, str]] = []
    for run in (_load_run(Path(p)) for p in run_dirs):
        if run.error:
            out.append((run.directory, "", None, run.error))
        else:
            name = str(run.summary.get("experiment", run.directory.name))
            out.append((run.directory, name, tally(run.summary), ""))
    return out


def write_report(
    run_dirs: list[Path] | None = None, out: Path | None = None, root: Path = Path("runs")
) -> Path:
    """Write one self-contained report.html and return its path.

    run_dirs: run directories (each holding summary.json) or sweep directories (holding
    sweep.csv); default: every one directly under ``root``. out: the HTML file; default
    ``root/report.html``. A missing directory or one without summary.json raises
    :class:`~featavg.config.ConfigError` naming it.
    """
    from featavg._version import __version__
    from featavg.report.render import render_page

    root = Path(root)
    runs, sweeps = _collect(run_dirs, root)
    out = Path(out) if out is not None else root / "report.html"
    html = render_page(runs, sweeps, __version__, datetime.now().astimezone())
    write_bytes(out, html.encode("utf-8"))  # atomic: never half a report
    return out


def add_report_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "report",
        help="write one self-contained report.html over finished runs and sweeps",
        description="Write one self-contained HTML report (figures embedded, theory beside "
        "every key number). With no RUN_DIR, every run and sweep under --root is included.",
    )
    p.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="run directories (holding summary.json) or sweep directories (holding sweep.csv)",
    )
    p.add_argument("--root", default="runs", metavar="DIR", help="runs root (default: runs)")
    p.add_argument("--out", metavar="FILE", help="the HTML file (default: ROOT/report.html)")
    return p


def report_command(args: argparse.Namespace) -> int:
    """Run ``featavg report``: write the report, print its path; ConfigError propagates (the
    CLI maps it to exit code 2)."""
    path = write_report(
        [Path(p) for p in args.run_dirs] or None,
        Path(args.out) if args.out else None,
        Path(args.root),
    )
    print(path)
    return 0
