"""Run an experiment into its run directory: cache check, refusal to overwrite another
run, timing, the output checked against what the experiment declares, and the whole
directory written at once (:func:`featavg.store.staged_dir`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from featavg import store
from featavg.config import build_config
from featavg.device import resolve_device
from featavg.experiments.output import ExperimentOutput
from featavg.experiments.registry import get_experiment
from featavg.experiments.spec import Experiment
from featavg.run_state import check_replaceable, inspect_run


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


@dataclass
class RunResult:
    """summary: the contents of summary.json; directory: the run directory; cached: whether
    the summary came from an earlier identical run."""

    summary: dict[str, Any]
    directory: Path
    cached: bool


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None: JSON holds numbers or an explicit null, never NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def run_experiment(
    name: str,
    *,
    config: BaseModel | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    root: str | Path = store.DEFAULT_ROOT,
    device: str = "auto",
    force: bool = False,
    progress: bool = False,
) -> RunResult:
    """Validate the config, reuse a finished identical run unless ``force``, else run and
    replace the directory by config.json, <table>.csv, <figure>.png, summary.json and
    manifest.json. A directory holding another run (experiment, config or code) is replaced
    only with ``force``; files featavg did not write, never (both a
    :class:`~featavg.config.ConfigError` before anything runs)."""
    exp = get_experiment(name)
    cfg = config if config is not None else build_config(exp.config_cls, overrides, config_file)
    cfg_json = cfg.model_dump(mode="json")
    directory = Path(out) if out is not None else store.run_dir(name, cfg_json, root)
    state = inspect_run(directory, name, cfg_json)
    if state.kind == "hit" and not force and state.summary is not None:
        return RunResult(state.summary, directory, cached=True)
    where = f"--out {directory}" if out is not None else f"run directory {directory}"
    check_replaceable(state, where, force)

    dev = resolve_device(device)
    start = time.perf_counter()
    with store.using_runs_root(root if out is None else directory.parent):
        output = exp.run(cfg, dev, progress=progress)
    verify_output(exp, cfg, output)
    summary = _write_run(exp, cfg_json, output, directory, dev, time.perf_counter() - start)
    return RunResult(summary, directory, cached=False)


def run_experiment_batch(
    name: str,
    configs: list[BaseModel],
    outs: Sequence[str | Path],
    *,
    device: str = "auto",
    progress: bool = False,
) -> list[RunResult]:
    """Run several configs of one experiment into their own directories, as one ensemble
    when the experiment supports it (``run_batch``: configs differing only in its
    ``batch_fields``), else one after another. Always recomputes (the caller decides what
    is cached) and replaces what the directories hold, except files featavg did not write
    (:func:`~featavg.run_state.check_replaceable`). Each run's provenance records the batch
    size and the batch's wall time."""
    exp = get_experiment(name)
    for cfg, out in zip(configs, outs, strict=True):
        state = inspect_run(Path(out), name, cfg.model_dump(mode="json"))
        check_replaceable(state, f"run directory {out}", force=True)
    if exp.run_batch is None or len(configs) == 1:
        return [
            run_experiment(name, config=c, out=o, device=device, force=True, progress=progress)
            for c, o in zip(configs, outs, strict=True)
        ]
    dev = resolve_device(device)
    start = time.perf_counter()
    with store.using_runs_root(Path(outs[0]).parent):
        outputs = exp.run_batch(configs, dev, progress=progress)
    wall = time.perf_counter() - start
    results = []
    for cfg, out, output in zip(configs, outs, outputs, strict=True):
        verify_output(exp, cfg, output)
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
    and (last) manifest.json, written beside it first (:func:`featavg.store.staged_dir`)."""
    seeds = [cfg_json.get("seed", 0) + i for i in range(cfg_json.get("seeds", 1))]
    provenance = store.provenance(dev, wall, seeds)
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
    with store.staged_dir(directory) as new:
        store.write_json(new / "config.json", cfg_json)
        for table, rows in output.tables.items():
            store.write_csv(new / f"{table}.csv", rows)
        for figure, fig in output.figures.items():
            store.write_figure(new / f"{figure}.png", fig)
        store.write_json(new / "summary.json", summary)
        store.write_manifest(new)
    return summary
