"""Planning a sweep: its directory, one validated config per grid cell (:class:`SweepCell`),
and the groups of cells that train together as one ensemble."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featavg import runs
from featavg.config import ConfigError, build_config, clip, deep_merge, nest, shown
from featavg.sweep.grid import cell_label, cell_name


@dataclass
class SweepCell:
    """One grid point: its grid ``values``, its full validated ``config`` (JSON), its run
    ``directory``, and, once run, the ``summary`` and whether it was ``cached``. ``force``:
    recompute it even when finished (``--force``), unless another process replaced the run
    ``seen`` there when the sweep started (its run token)."""

    values: dict[str, Any]
    config: dict[str, Any]
    directory: Path
    summary: dict[str, Any] | None = None
    cached: bool = False
    force: bool = False
    seen: str | None = None

    @property
    def name(self) -> str:
        """The cell directory's name (see :func:`~featavg.sweep.grid.cell_name`)."""
        return self.directory.name

    @property
    def overrides(self) -> dict[str, Any]:
        """The grid values as nested overrides."""
        return nest(self.values)


def _is_set(nested: dict[str, Any], key: str) -> bool:
    """Whether the dotted ``key`` is set in the nested override dict."""
    node: Any = nested
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def plan_sweep(
    experiment: str,
    grid: dict[str, list[Any]],
    *,
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    root: str | Path = runs.DEFAULT_ROOT,
) -> tuple[Path, dict[str, Any], list[SweepCell]]:
    """(sweep directory, base config, cells), every cell's config validated up front so a
    bad grid value fails before anything runs. Raises :class:`ConfigError`."""
    from featavg.experiments.registry import get_experiment  # loads torch: only when used

    exp = get_experiment(experiment)
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,...")
    for key, choices in grid.items():
        if not isinstance(choices, list | tuple) or not choices:
            raise ConfigError(f"--grid {shown(key)}: give a non-empty list of values")
    base_overrides = dict(overrides or {})
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds: need at least 1, got {seeds}")
        base_overrides["seeds"] = seeds
    for key in grid:
        if not isinstance(key, str):
            raise ConfigError(f"--grid {shown(key)}: keys must be strings")
        if _is_set(base_overrides, key):
            raise ConfigError(f"--grid {shown(key)}: also given with --set; keep one of them")
    base = build_config(exp.config_cls, base_overrides, config_file).model_dump(mode="json")

    # the sweep's identity: what it runs, not how (executor, workers) it runs; the grid as
    # pairs because its key order matters (the first key is the figure's x axis)
    identity = {"base": base, "grid": [[k, v] for k, v in grid.items()], "seeds": base.get("seeds")}
    digest = runs.config_hash(f"sweep:{experiment}", identity)
    directory = Path(out) if out is not None else Path(root) / f"sweep-{experiment}-{digest}"
    cells = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        label = clip(cell_label(values))  # a long value is cut, not echoed whole
        try:
            # the full base config (not the raw overrides + file) so a cell is self-contained:
            # a remote worker needs neither the config file nor our defaults
            cfg = build_config(exp.config_cls, deep_merge(base, nest(values)))
        except ConfigError as err:
            raise ConfigError(f"--grid {label}: {err}") from None
        cfg_json = cfg.model_dump(mode="json")
        # 1 and 1.0, or "none" and null for an optional field, validate to one config: the
        # same run twice under two names
        canon = json.dumps(cfg_json, sort_keys=True)
        if canon in seen:
            other = clip(cell_label(seen[canon]), 60)
            raise ConfigError(f"--grid {label}: the same config as {other}; drop one of them")
        seen[canon] = values
        cells.append(SweepCell(values, cfg_json, directory / "cells" / cell_name(values)))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):  # distinct JSON values hash apart; this is a guard
        raise ConfigError("--grid: two cells map to the same directory name")
    return directory, base, cells


def _without(config: dict[str, Any], dotted: str) -> None:
    """Remove the dotted field from the nested ``config`` in place (if present)."""
    *parents, leaf = dotted.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def plan_groups(experiment: str, cells: list[SweepCell]) -> list[list[SweepCell]]:
    """Cells that differ only in the experiment's ``batch_fields`` (e.g. train.lr,
    net.init_std) form one group, trained as one ensemble; otherwise one cell per group.
    A group's unfinished cells are trained together (see :func:`featavg.sweep.run_sweep`)."""
    from featavg.experiments.registry import get_experiment

    exp = get_experiment(experiment)
    if exp.run_batch is None:
        return [[c] for c in cells]
    groups: dict[str, list[SweepCell]] = {}
    for cell in cells:
        key = copy.deepcopy(cell.config)
        for field_path in exp.batch_fields:
            _without(key, field_path)
        groups.setdefault(json.dumps(key, sort_keys=True), []).append(cell)
    return list(groups.values())
