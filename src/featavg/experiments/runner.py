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
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from featavg import runs
from featavg.config import ConfigError, build_config
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import get_experiment
from featavg.experiments.spec import Experiment, SeedRun
from featavg.faults import NumericalFault, RunFailed, failure_summary, one_line
from featavg.progress import bar as progress_bar
from featavg.runs import guards, paths
from featavg.runs.context import RunContext, open_context
from featavg.runs.door import SUMMARIES, Failed, Made, Served, Slot, cached_run, cached_runs

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


def missing_outputs(exp: Experiment[Any], cfg: BaseModel, output: ExperimentOutput) -> list[str]:
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


def verify_output(exp: Experiment[Any], cfg: BaseModel, output: ExperimentOutput) -> None:
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


def check_finite(exp: Experiment[Any], output: ExperimentOutput) -> None:
    """Raise :class:`~featavg.faults.NumericalFault` naming the non-finite results of
    ``output`` that are not legitimately undefined (:func:`non_finite_results`)."""
    bad = non_finite_results(output.numbers)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NumericalFault(
            f"{exp.name}: non-finite result {', '.join(bad[:3])}{more}: a numerical fault "
            "(nothing saved); check the data, the learning rate and the init"
        )


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


#: what a run returns: ``summary`` (summary.json), ``directory``, ``cached`` (an earlier
#: identical run reused) and ``failed`` (the one-line reason a config of a batch failed:
#: its summary is then a :func:`~featavg.faults.failure_summary` and nothing was written)
RunResult = Served[dict[str, Any]]


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
    manifest.json, through the run store's one door (:func:`featavg.runs.door.cached_run`:
    claimed, so two processes asking for one run compute it once). A directory holding
    another run (experiment, config or code) is replaced only with ``force``; files featavg
    did not write or a directory of another kind, never; a config whose estimated memory or
    time exceeds the machine's (:func:`featavg.runs.guards.check`) runs only with
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
    shown = paths.shown(directory)  # clipped: a long path must not push the reason off
    where = f"--out {shown}" if out is not None else f"run directory {shown}"
    run_ctx = ctx if out is None else ctx.with_(root=directory.parent)
    slot = Slot(name, cfg_json, directory, where)
    return cached_run(SUMMARIES, slot, lambda _: _make_one(exp, cfg, run_ctx), force=force)


def run_slots(
    name: str,
    configs: Sequence[BaseModel],
    slots: Sequence[Slot],
    ctx: RunContext,
    *,
    force: bool = False,
) -> list[RunResult]:
    """Run several configs of one experiment into their ``slots`` (e.g. a sweep's cells,
    with their content keys and the other places of the store they may be finished in),
    through the one door: hits served (all recomputed with ``force``), the rest as ONE
    ensemble when the experiment supports it (``run_batch``: configs differing only in its
    ``batch_fields``), else one after another. Resources are the caller's to check (the
    sweep does, for every group at once). Each run's provenance records the batch size and
    the batch's wall time.

    A config whose run fails (:class:`~featavg.faults.RunFailed`, e.g. a diverging learning
    rate, or a :class:`~featavg.config.ConfigError` from the files it reads, e.g. a label out
    of range) does not stop the others: when the ensemble fails, each config is rerun alone,
    and a failing one gets ``failed`` (its one-line reason) with a
    :func:`~featavg.faults.failure_summary`; nothing is written into its directory."""
    exp = get_experiment(name)
    config_of = {slot.directory: cfg for slot, cfg in zip(slots, configs, strict=True)}

    def make(todo: list[Slot]) -> list[Made[dict[str, Any]] | Failed]:
        cfgs = [config_of[slot.directory] for slot in todo]
        if exp.run_batch is not None and len(cfgs) > 1:
            try:
                return list(_make_ensemble(exp, cfgs, ctx))
            except (RunFailed, ConfigError):
                pass  # one member failed the whole ensemble: find it by running each alone
        return [_make_alone(exp, cfg, ctx) for cfg in cfgs]

    return cached_runs(SUMMARIES, slots, make, force=force)


def run_experiment_batch(
    name: str, configs: list[BaseModel], outs: Sequence[str | Path], ctx: RunContext
) -> list[RunResult]:
    """:func:`run_slots` into the directories ``outs``, always recomputed (what they hold is
    replaced, except files featavg did not write), trained models cached in ``ctx.root``."""
    slots = [
        Slot(name, cfg.model_dump(mode="json"), Path(out), replace=True)
        for cfg, out in zip(configs, outs, strict=True)
    ]
    return run_slots(name, configs, slots, ctx, force=True)


def _make_one(exp: Experiment[Any], cfg: BaseModel, ctx: RunContext) -> Made[dict[str, Any]]:
    """Check resources, run (or pool the seeds' runs), check the output; the files to write
    (nothing written yet)."""
    guards.check(exp.name, exp.estimate([cfg]), ctx.device, ctx.allow_large)
    start = time.perf_counter()
    seeds = int(getattr(cfg, "seeds", 1))
    if exp.pool is not None and seeds > 1:
        output = exp.pool(cfg, seed_runs(exp, cfg, ctx), ctx)
    else:
        output = exp.run(cfg, ctx)
    verify_output(exp, cfg, output)
    check_finite(exp, output)
    wall = time.perf_counter() - start
    return made_run(exp, cfg.model_dump(mode="json"), output, ctx.device, wall)


def _make_alone(
    exp: Experiment[Any], cfg: BaseModel, ctx: RunContext
) -> Made[dict[str, Any]] | Failed:
    """One config of a batch on its own; a :class:`RunFailed`, or a :class:`ConfigError`
    from what the run reads (bad data files: the config itself was checked when the batch
    was planned), becomes a :class:`Failed` with its one-line reason."""
    try:
        # resources were checked by the caller (the sweep, for every group at once)
        return _make_one(exp, cfg, ctx.with_(allow_large=True))
    except (RunFailed, ConfigError) as err:
        summary = failure_summary(exp.name, cfg.model_dump(mode="json"), one_line(err))
        return Failed(summary["reason"], summary)


def _make_ensemble(
    exp: Experiment[Any], configs: list[BaseModel], ctx: RunContext
) -> list[Made[dict[str, Any]]]:
    """The configs as one ensemble (``exp.run_batch``); every output is checked before any
    is returned, so a failure leaves every directory as it was."""
    if exp.run_batch is None:  # the caller checked; a guard for the type checker
        raise TypeError(f"{exp.name}: no run_batch")
    start = time.perf_counter()
    outputs = exp.run_batch(configs, ctx)
    wall = time.perf_counter() - start
    for cfg, output in zip(configs, outputs, strict=True):
        verify_output(exp, cfg, output)
        check_finite(exp, output)
    return [
        made_run(exp, cfg.model_dump(mode="json"), output, ctx.device, wall, batch=len(configs))
        for cfg, output in zip(configs, outputs, strict=True)
    ]


def seed_config(exp: Experiment[Any], cfg: BaseModel, seed: int) -> BaseModel:
    """The single-seed run ``seed`` of a config whose seeds are runs (``seed=s, seeds=1``)."""
    return build_config(exp.config_cls, {**cfg.model_dump(mode="json"), "seed": seed, "seeds": 1})


def seed_runs(exp: Experiment[Any], cfg: BaseModel, ctx: RunContext) -> list[SeedRun]:
    """Each seed of ``cfg`` as its own cached run in the run store (served when finished:
    more seeds reuse the runs of fewer), in seed order."""
    first, count = int(getattr(cfg, "seed", 0)), int(getattr(cfg, "seeds", 1))
    try:  # every seed's config checked before the first one trains
        configs = [seed_config(exp, cfg, seed) for seed in range(first, first + count)]
    except ConfigError as err:
        raise ConfigError(f"seeds: seed {first} + seeds {count} - 1: {err}") from None
    out = []
    bar = progress_bar(total=count, desc="seeds", enabled=ctx.progress)
    for one in configs:
        result = run_experiment(exp.name, one, ctx=ctx)
        out.append((result.directory, result.summary))
        bar.update(1)
    bar.close()
    return out


def made_run(
    exp: Experiment[Any],
    cfg_json: dict[str, Any],
    output: ExperimentOutput,
    dev: torch.device,
    wall: float,
    batch: int = 1,
) -> Made[dict[str, Any]]:
    """The summary of a run and the writer of its other files (config.json, <table>.csv,
    <figure>.png); the door stages them, adds summary.json and manifest.json last."""
    seeds = [cfg_json.get("seed", 0) + i for i in range(cfg_json.get("seeds", 1))]
    provenance = runs.provenance(dev, wall, seeds)
    if batch > 1:
        provenance["batched_with_cells"] = batch
    if output.timings:
        provenance["timings_s"] = output.timings
    summary = {
        "experiment": exp.name,
        "data": output.data or exp.data,
        "stand_in": output.stand_in,
        **_finite(output.numbers),
        "config": cfg_json,
        "provenance": provenance,
    }

    def write(new: Path) -> None:
        runs.write_json(new / "config.json", cfg_json)
        for table, rows in output.tables.items():
            runs.write_csv(new / f"{table}.csv", rows)
        for figure, fig in output.figures.items():
            runs.write_figure(new / f"{figure}.png", fig)

    return Made(summary, write, summary)
