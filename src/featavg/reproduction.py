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

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from featavg.experiments.registry import reproduce_plan
from featavg.experiments.runner import RunResult, run_experiment
from featavg.progress import bar as progress_bar
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
    bar = progress_bar(plan, desc="reproduce", enabled=progress)
    for name, overrides in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        result = run_experiment(name, overrides=overrides, force=force, ctx=ctx)
        state = "cached" if result.cached else f"{time.perf_counter() - start:.1f} s"
        tqdm.write(f"{name:24s} {state:>8s}  {result.directory}")
        results.append(result)
    report = write_report([r.directory for r in results], out / REPRODUCE_PAGE)
    return results, report
