"""Run an experiment into its run directory: cache check, refusal to overwrite another
run, a resource check before anything is allocated (:mod:`featavg.runs.guards`), timing, the
output checked against what the experiment declares and for non-finite numbers, and the
whole directory written at once (:func:`featavg.runs.staged_dir`).

A run that fails numerically (:class:`~featavg.faults.RunFailed`: training diverged, NaN in
the data, a non-finite headline number) writes nothing. Non-finite summary numbers are
refused except under the keys of :data:`UNDEFINED_OK`, where they are legitimately
undefined and stored as JSON null.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from featavg import runs
from featavg.config import build_config
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import get_experiment
from featavg.experiments.spec import Experiment
from featavg.faults import NumericalFault, RunFailed, failure_summary, one_line
from featavg.runs import guards
from featavg.runs.context import RunContext, open_context
from featavg.runs.lock import claim
from featavg.runs.state import check_replaceable, inspect_run

# Summary keys (shell patterns on the innermost dict key) whose values may legitimately be
# inf or NaN, stored as null: a radius that is never crossed on the grid or a point that
# cannot be flipped (inf), the interval of such a mean, a clean accuracy when the radius
# grid lacks 0, a ratio or a fraction with a zero denominator, a slope fitted to fewer than
# two finite points. Anything else non-finite (a loss, an accuracy, a cosine, a bias, a
# theory value) is a numerical fault: the run fails and nothing is saved.
UNDEFINED_OK = (
    "*radius*",
    "*radii*",
    "*_ci95",
    "clean_acc_*",
    "gain_*",
    "slope_*",
    "*more_robust_fraction",
)


class UndeclaredOutput(RuntimeError):
    """A run did not produce a key, table, column or figure its experiment declares (a bug
    in the experiment: the report would otherwise lose a check)."""


def missing_outputs(exp: Experiment, cfg: BaseModel, output: ExperimentOutput) -> list[str]:
    """What the experiment declares for ``cfg`` and ``output`` lacks: summary keys (of its
    checks, ``summary_keys`` and grid), figures, tables and their columns."""
    missing = [f"summary key {k}" for k in exp.declared_keys(cfg) if k not in output.numbers]
    missing += [f"figure {f}" for f in exp.figures if f not in output.figures]
    for table, columns in exp.tables.items():
        rows = output.tables.get(table)
        if not rows:
            missing.append(f"table {table}")
            continue
        have = {c for row in rows for c in row}
        missing += [f"column {table}.{c}" for c in columns if c not in have]
    return missing


def verify_output(exp: Experiment, cfg: BaseModel, output: ExperimentOutput) -> None:
    """Raise :class:`UndeclaredOutput` listing everything :func:`missing_outputs` finds."""
    missing = missing_outputs(exp, cfg, output)
    if missing:
        raise UndeclaredOutput(f"{exp.name}: the run did not produce {', '.join(missing)}")


def non_finite_results(numbers: dict[str, Any]) -> list[str]:
    """Paths (``per_seed.bias_mean_binary[1]``) of the non-finite floats in ``numbers``
    whose innermost key is not in :data:`UNDEFINED_OK`."""
    found: list[str] = []

    def walk(obj: Any, key: str, path: str) -> None:
        if isinstance(obj, float | np.floating) and not math.isfinite(obj):
            if not any(fnmatchcase(key, pattern) for pattern in UNDEFINED_OK):
                found.append(path)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, str(k), f"{path}.{k}" if path else str(k))
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                walk(v, key, f"{path}[{i}]")

    walk(numbers, "", "")
    return found


def check_finite(exp: Experiment, output: ExperimentOutput) -> None:
    """Raise :class:`~featavg.faults.NumericalFault` naming the non-finite results of
    ``output`` that are not legitimately undefined (:func:`non_finite_results`)."""
    bad = non_finite_results(output.numbers)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NumericalFault(
            f"{exp.name}: non-finite result {', '.join(bad[:3])}{more}: a numerical fault "
            "(nothing saved); check the data, the learning rate and the init"
        )


@dataclass
class RunResult:
    """summary: the contents of summary.json; directory: the run directory; cached: whether
    the summary came from an earlier identical run. failed: the one-line reason a config of
    a batch failed (:func:`run_experiment_batch`; its summary is then a
    :func:`~featavg.faults.failure_summary` and nothing was written); None for a result."""

    summary: dict[str, Any]
    directory: Path
    cached: bool
    failed: str | None = None


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None: JSON holds numbers or an explicit null, never NaN.
    By the time a summary is written only the legitimately undefined values of
    :data:`UNDEFINED_OK` are left (:func:`check_finite` refused the others)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def run_experiment(
    name: str,
    config: BaseModel | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    force: bool = False,
    ctx: RunContext | None = None,
) -> RunResult:
    """Validate the config, reuse a finished identical run unless ``force``, else run and
    replace the directory by config.json, <table>.csv, <figure>.png, summary.json and
    manifest.json. A directory holding another run (experiment, config or code) is replaced
    only with ``force``; files featavg did not write, never; a config whose estimated memory
    or time exceeds the machine's (:func:`featavg.runs.guards.check`) runs only with
    ``ctx.allow_large`` (all a :class:`~featavg.config.ConfigError` before anything runs). A
    numerical fault raises :class:`~featavg.faults.RunFailed` and writes nothing.

    ``ctx``: device, run store, progress (default: ``auto`` device, ``runs`` store). The run
    goes to ``out``, else ``ctx.root/<experiment>-<hash>``; the models it trains are cached
    in the run store of its directory (``out``'s parent for an explicit ``out``)."""
    ctx = ctx if ctx is not None else open_context()
    exp = get_experiment(name)
    cfg = config if config is not None else build_config(exp.config_cls, overrides, config_file)
    cfg_json = cfg.model_dump(mode="json")
    directory = Path(out) if out is not None else runs.run_dir(name, cfg_json, ctx.root)
    state = inspect_run(directory, name, cfg_json)
    if state.kind == "hit" and not force and state.summary is not None:
        return RunResult(state.summary, directory, cached=True)
    where = f"--out {directory}" if out is not None else f"run directory {directory}"
    check_replaceable(state, where, force)

    with claim(directory):  # one process computes a run; one that waited finds it finished
        done = None if force else runs.cached_summary(directory, name, cfg_json)
        if done is not None:
            return RunResult(done, directory, cached=True)
        guards.check(exp.name, guards.estimate(exp, [cfg]), ctx.device, ctx.allow_large)
        start = time.perf_counter()
        output = exp.run(cfg, ctx if out is None else ctx.with_(root=directory.parent))
        verify_output(exp, cfg, output)
        check_finite(exp, output)
        wall = time.perf_counter() - start
        summary = _write_run(exp, cfg_json, output, directory, ctx.device, wall)
    return RunResult(summary, directory, cached=False)


def run_experiment_batch(
    name: str, configs: list[BaseModel], outs: Sequence[str | Path], ctx: RunContext
) -> list[RunResult]:
    """Run several configs of one experiment into their own directories, as one ensemble
    when the experiment supports it (``run_batch``: configs differing only in its
    ``batch_fields``), else one after another. Always recomputes (the caller decides what
    is cached, and checks resources: :func:`featavg.sweep.run_sweep` does, before the sweep
    starts) and replaces what the directories hold, except files featavg did not write
    (:func:`~featavg.runs.state.check_replaceable`). Each run's provenance records the batch
    size and the batch's wall time.

    A config whose run fails (:class:`~featavg.faults.RunFailed`, e.g. a diverging learning
    rate) does not stop the others: when the ensemble fails, each config is rerun alone,
    and a failing one gets ``RunResult.failed`` (its one-line reason) with a
    :func:`~featavg.faults.failure_summary`; nothing is written into its directory."""
    exp = get_experiment(name)
    for cfg, out in zip(configs, outs, strict=True):
        state = inspect_run(Path(out), name, cfg.model_dump(mode="json"))
        check_replaceable(state, f"run directory {out}", force=True)
    if exp.run_batch is not None and len(configs) > 1:
        try:
            return _run_ensemble(exp, configs, outs, ctx)
        except RunFailed:
            pass  # one member failed the whole ensemble: find it by running each alone
    return [_run_alone(name, c, o, ctx) for c, o in zip(configs, outs, strict=True)]


def _run_alone(name: str, cfg: BaseModel, out: str | Path, ctx: RunContext) -> RunResult:
    """One config of a batch on its own; a :class:`RunFailed` becomes a failed result."""
    try:
        # resources were checked by the caller (the sweep, for every group at once)
        return run_experiment(name, cfg, out=out, force=True, ctx=ctx.with_(allow_large=True))
    except RunFailed as err:
        summary = failure_summary(name, cfg.model_dump(mode="json"), one_line(err))
        return RunResult(summary, Path(out), cached=False, failed=summary["reason"])


def _run_ensemble(
    exp: Experiment, configs: list[BaseModel], outs: Sequence[str | Path], ctx: RunContext
) -> list[RunResult]:
    """The configs as one ensemble (``exp.run_batch``); every output is checked before any
    is written, so a failure leaves every directory as it was."""
    dev = ctx.device
    start = time.perf_counter()
    if exp.run_batch is None:  # the caller checked; a guard for the type checker
        raise TypeError(f"{exp.name}: no run_batch")
    outputs = exp.run_batch(configs, ctx.with_(root=Path(outs[0]).parent))
    wall = time.perf_counter() - start
    for cfg, output in zip(configs, outputs, strict=True):
        verify_output(exp, cfg, output)
        check_finite(exp, output)
    results = []
    for cfg, out, output in zip(configs, outs, outputs, strict=True):
        cfg_json = cfg.model_dump(mode="json")
        summary = _write_run(exp, cfg_json, output, Path(out), dev, wall, batch=len(configs))
        results.append(RunResult(summary, Path(out), cached=False))
    return results


def _write_run(
    exp: Experiment,
    cfg_json: dict[str, Any],
    output: ExperimentOutput,
    directory: Path,
    dev: torch.device,
    wall: float,
    batch: int = 1,
) -> dict[str, Any]:
    """Replace ``directory`` whole by config.json, <table>.csv, <figure>.png, summary.json
    and (last) manifest.json, written beside it first (:func:`featavg.runs.staged_dir`)."""
    seeds = [cfg_json.get("seed", 0) + i for i in range(cfg_json.get("seeds", 1))]
    provenance = runs.provenance(dev, wall, seeds)
    if batch > 1:
        provenance["batched_with_cells"] = batch
    summary = {
        "experiment": exp.name,
        "data": output.data or exp.data,
        "stand_in": output.stand_in,
        **_finite(output.numbers),
        "config": cfg_json,
        "provenance": provenance,
    }
    with runs.staged_dir(directory) as new:
        runs.write_json(new / "config.json", cfg_json)
        for table, rows in output.tables.items():
            runs.write_csv(new / f"{table}.csv", rows)
        for figure, fig in output.figures.items():
            runs.write_figure(new / f"{figure}.png", fig)
        runs.write_json(new / "summary.json", summary)
        runs.write_manifest(new)
    return summary
