"""``featavg reproduce``: every experiment with a reproduce preset, each into its own run
directory, then its page ``<root>/reproduce.html`` (``featavg report`` writes
``<root>/report.html``, so neither overwrites the other).

The plan (which experiments, with which overrides) comes from the experiment objects
(:func:`featavg.experiments.registry.reproduce_plan`): by default the synthetic experiments
(about a minute, ``make demo``); with ``real=True`` (``featavg reproduce --real``) also,
after them, the real-data experiments with their ``reproduce_real`` preset (trained image
models, cached under ``<root>/models``; CPU minutes each, or the data's stand-in where the
MNIST / CIFAR-10 files are absent, which the page then says). Runs are content-addressed
(``<root>/<experiment>-<config hash>``), so a second call finds every run cached and only
rewrites the page.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from featavg.experiments.registry import reproduce_plan
from featavg.experiments.runner import RunResult, run_experiment
from featavg.progress import bar as progress_bar
from featavg.progress import in_notebook, on_terminal
from featavg.runs.context import open_context

# the page of `featavg reproduce`; `featavg report` defaults to report.html beside it
REPRODUCE_PAGE = "reproduce.html"


def reproduce(
    out: str | Path = "runs",
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    experiments: list[tuple[str, dict[str, Any]]] | None = None,
    real: bool = False,
) -> tuple[list[RunResult], Path]:
    """Run (or reuse) every experiment of the plan under ``out`` and write the report of
    exactly those runs to ``out/reproduce.html``. ``experiments``: (name, overrides) pairs,
    default :func:`~featavg.experiments.registry.reproduce_plan` ``(real)``; ``real``: include
    the real-data experiments (after the synthetic ones). Returns the run results and the
    report path."""
    from featavg.report import write_report  # the report pulls in its own helpers

    out = Path(out)
    ctx = open_context(device, out)
    results = []
    plan = experiments or reproduce_plan(real)
    # a bar only where it redraws in place: in a log, the lines below say it all (a log
    # bar's closing line, "reproduce: 6/6 it in ...", would only repeat them)
    shown = progress and (on_terminal() or in_notebook())
    bar = progress_bar(plan, desc="reproduce", enabled=shown)
    for name, overrides in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        result = run_experiment(name, overrides=overrides, force=force, ctx=ctx)
        state = "cached" if result.cached else f"{time.perf_counter() - start:.1f} s"
        if progress:
            tqdm.write(f"{name:24s} {state:>8s}  {result.directory}")
        results.append(result)
    report = write_report([r.directory for r in results], out / REPRODUCE_PAGE)
    return results, report


LISTED = 6  # checks named per verdict in the headline; more are counted


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it,
    quoted for the shell where needed."""
    path = Path(path)
    try:
        text = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def open_command(page: Path) -> str:
    """The command that opens the page in a browser on this system."""
    opener = {"darwin": "open", "win32": "start"}.get(sys.platform, "xdg-open")
    return f"{opener} {shown_path(page)}"


def featavg_commands() -> tuple[str, str]:
    """(how to call featavg, how to put it on the PATH): this environment's console script
    ('.venv/bin/featavg') and its activate script, else the interpreter running featavg."""
    bindir = Path(sys.executable).parent
    script = bindir / ("featavg.exe" if os.name == "nt" else "featavg")
    activate = bindir / "activate"
    call = (
        shown_path(script)
        if script.is_file()
        else f"{shown_path(Path(sys.executable))} -m featavg.cli"
    )
    put = f"source {shown_path(activate)}" if activate.is_file() else ""
    return call, put


def _grouped(title: str, items: list[tuple[str, str]]) -> list[str]:
    """'  title:' then a line per experiment naming its checks (at most LISTED each)."""
    if not items:
        return []
    lines = [f"  {title}:"]
    for experiment in dict.fromkeys(e for e, _ in items):
        labels = [label for e, label in items if e == experiment]
        named = "; ".join(labels[:LISTED])
        more = f"; … {len(labels) - LISTED} more" if len(labels) > LISTED else ""
        lines.append(f"    {experiment}: {named}{more}")
    return lines


def headline(run_dirs: list[Path], page: Path, seconds: float) -> list[str]:
    """The lines ``featavg reproduce`` ends with (see the module docstring)."""
    from featavg.report import run_tallies
    from featavg.report.checks import AGREES, DEVIATES, EXPECTED, MISSING

    counts = dict.fromkeys((AGREES, EXPECTED, DEVIATES, MISSING), 0)
    named: dict[str, list[tuple[str, str]]] = {DEVIATES: [], MISSING: [], "refused": []}
    for directory, experiment, tally, error in run_tallies(run_dirs):
        if tally is None:
            named["refused"].append((directory.name, error))
            continue
        for status in counts:
            counts[status] += tally.count(status)
        for status in (DEVIATES, MISSING):
            named[status] += [(experiment, label) for label in tally.labels(status)]
    lines = [
        f"reproduce: {counts[AGREES]} checks agree, {counts[EXPECTED]} deviate as the paper or "
        f"our closed forms predict, {counts[DEVIATES]} deviate unexpectedly, "
        f"{counts[MISSING]} missing ({len(run_dirs)} run{'s' * (len(run_dirs) != 1)}, "
        f"{seconds:.1f} s)"
    ]
    lines += _grouped("deviate unexpectedly", named[DEVIATES])
    lines += _grouped("missing", named[MISSING])
    lines += _grouped("refused: changed since they were written, run them again", named["refused"])
    call, put = featavg_commands()
    lines.append(f"  open the page: {open_command(page)}")
    example = f"report --root {shown_path(page.parent)}"
    also = f"   (or: {put}, then featavg {example})" if put else ""
    lines.append(f"  call featavg:  {call} {example}{also}")
    return lines
