"""A probe kept in a run directory: :func:`probe_cached` wraps the pure
:func:`~featavg.probing.core.probe` with the run store's one door
(:func:`featavg.runs.door.cached_run`): identity, inspect, refuse or replace, claim,
measure, stage, manifest, serve the hit.

The identity (the summary's ``config``, hashed into ``<root>/probe-<hash>``) is the model
(:func:`~featavg.probing.run.model_fingerprint` plus the caller's ``model_info``, e.g. the
checkpoint file's sha256), the data's content fingerprint, the layer, the grouping and the
options. A one-shot iterable's fingerprint is only known after it has been read: such a
probe is measured first and then stored (or, if an identical one was stored meanwhile,
that one is served).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from featavg import runs
from featavg.data.groupings import Grouping
from featavg.probing import run
from featavg.probing.core import ProbeResult, measure, measurement_identity, plan_probe
from featavg.probing.data import ProbeInput
from featavg.probing.options import ProbeOptions, ProbeRun
from featavg.runs import paths
from featavg.runs.door import Door, Made, Slot, cached_run


def _serve(directory: Path, summary: dict[str, Any]) -> ProbeResult | None:
    """A finished probe directory read back (cosines, cells, units; no class means)."""
    units_lead, cos = run.read_matrix(directory / "cosines.csv")
    rows_lead, cells = run.read_matrix(directory / "group_cosines.csv")
    return ProbeResult(
        summary,
        torch.tensor(cos, dtype=torch.float64),
        torch.tensor(cells, dtype=torch.float64),
        rows_lead,
        run.read_rows(directory / "units.csv"),
        None,
        directory,
        True,
        data_fingerprint=str(summary.get("config", {}).get("data_fingerprint", "")),
    )


PROBES: Door[ProbeResult] = Door(_serve)


def _made(result: ProbeResult, identity: dict[str, Any]) -> Made[ProbeResult]:
    """The files of ``result`` (tables, heatmap) for the door, its summary's ``config`` the
    full identity."""
    summary = {**result.summary, "config": identity}
    tables, figure = result.tables or {}, result.figure

    def write(new: Path) -> None:
        for name, rows in tables.items():
            runs.write_csv(new / f"{name}.csv", rows)
        if figure is not None:
            runs.write_figure(new / "heatmap.png", figure)

    result.summary = summary
    return Made(summary, write, result)


def probe_cached(
    model: nn.Module,
    data: ProbeInput,
    grouping: Grouping | str | list[int] = "parity",
    *,
    layer: str,
    fine_labels: torch.Tensor | None = None,
    options: ProbeOptions | None = None,
    how: ProbeRun | None = None,
) -> ProbeResult:
    """:func:`~featavg.probing.core.probe`, kept in a run directory when ``how`` says where
    (``how.out``, else ``<how.root>/probe-<hash>``; neither: nothing is written): an
    identical earlier probe is served unless ``how.force``; the directory is claimed while
    the probe runs. A directory of another kind (a trained model, a run) is never replaced.
    """
    options = options if options is not None else ProbeOptions()
    how = how if how is not None else ProbeRun()
    plan = plan_probe(
        model, data, grouping, layer=layer, fine_labels=fine_labels, options=options,
        device=how.device,
    )  # fmt: skip
    if not how.cached:
        return measure(plan, options, how.progress)
    model_id = {"fingerprint": run.model_fingerprint(model), **(how.model_info or {})}

    def identity(fingerprint: str) -> dict[str, Any]:
        return {"model": model_id, **measurement_identity(plan, options, fingerprint)}

    early: ProbeResult | None = None
    fingerprint = plan.pdata.fingerprint
    if fingerprint is None:  # a one-shot iterable: its hash is known once it is read
        early = measure(plan, options, how.progress)
        fingerprint = early.data_fingerprint
    cfg = identity(fingerprint)
    directory = how.out if how.out is not None else run.probe_directory(cfg, how.root or "runs")
    shown = paths.shown(directory)  # clipped: a long path must not push the reason off
    where = f"--out {shown}" if how.out is not None else f"probe directory {shown}"
    slot = Slot(run.EXPERIMENT, cfg, Path(directory), where)

    def make(_: Slot) -> Made[ProbeResult]:
        return _made(early if early is not None else measure(plan, options, how.progress), cfg)

    served = cached_run(PROBES, slot, make, force=how.force)
    result = served.value
    if result is None:  # a probe never fails softly; a guard for the type checker
        raise RuntimeError(f"probe: nothing served for {directory}")
    result.directory, result.cached = served.directory, served.cached
    return result
