"""Cells computed once per run store: finished elsewhere, then reused.

Several processes may run the same sweep, overlapping sweeps (two grids sharing points) or
plain runs of a cell's config into one run store (the directory holding runs and sweeps).
Before a group of cells is computed, :func:`claims` names what its process must hold:

* each cell directory (two processes running the same sweep);
* each cell's *content key* ``<store>/cell-<run hash>`` (a lock name, never a directory):
  two sweeps whose cells share a config (same experiment, config and code) wait for each
  other, wherever their cell directories are.

With the claims held, :func:`finished_elsewhere` looks for each cell's run already finished
(a cache hit: this config, this code, every file as its manifest lists it), first in its
own directory if that changed since the sweep started (:func:`tokens`: another process of
the same sweep finished it), then in the store's other places for it: the run directory
``featavg run`` gives that config, and the same cell of every other sweep in the store. A
run found elsewhere is copied whole into the cell directory (staged and renamed, manifest
included), so it is computed once and every sweep still owns a complete directory.

A cell that was already a hit when the sweep started and still came to be run was forced
(``--force``): it is recomputed, never taken from elsewhere.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from featavg import runs
from featavg.runs.state import inspect_run, listed_files
from featavg.sweep.plan import SweepCell

CELLS = "cells"


def run_store(cell_dir: str | Path) -> Path | None:
    """The run store of a sweep cell ``<store>/<sweep>/cells/<cell>``, or None for a
    directory that is not a sweep cell (e.g. a worker's scratch directory)."""
    path = Path(cell_dir)
    return path.parent.parent.parent if path.parent.name == CELLS else None


def content_key(experiment: str, config: dict[str, Any], cell_dir: str | Path) -> Path | None:
    """``<store>/cell-<run hash>``: the name two processes computing the same run in two
    directories of one store both claim (see :mod:`featavg.runs.lock`); None off a store."""
    root = run_store(cell_dir)
    return None if root is None else root / f"cell-{runs.config_hash(experiment, config)}"


def claims(experiment: str, configs: list[dict[str, Any]], outs: list[str]) -> list[Path]:
    """Everything a process computing the cells ``outs`` with ``configs`` claims: each
    directory and each content key."""
    keys = [content_key(experiment, c, o) for c, o in zip(configs, outs, strict=True)]
    return [Path(o) for o in outs] + [k for k in keys if k is not None]


def _candidates(experiment: str, config: dict[str, Any], cell_dir: Path) -> list[Path]:
    """Where else in the store this cell's run may be finished: ``featavg run``'s directory
    for the config, then the same cell in every other sweep of the store."""
    root = run_store(cell_dir)
    if root is None:
        return []
    found = [runs.run_dir(experiment, config, root)]
    pattern = f"*/{CELLS}/{glob.escape(cell_dir.name)}"  # a value may hold [ or *
    found += sorted(p for p in root.glob(pattern) if p != cell_dir)
    return found


def copy_run(source: Path, target: Path) -> None:
    """Replace ``target`` whole by the files of the finished run ``source`` that its
    manifest lists (and the manifest), staged beside ``target`` and renamed into place."""
    listed = listed_files(runs.read_json_object(source / runs.MANIFEST)) or {}
    files = {}
    for name in [*listed, runs.MANIFEST]:
        data = runs.read_regular(source / name, limit=1 << 34)
        if data is None:
            raise FileNotFoundError(f"{source / name}: vanished while copying")
        files[name] = data
    runs.write_run_files(target, files)


FORCED = "!"  # token prefix of a cell that was a hit when the sweep started (--force)


def tokens(experiment: str, cells: list[SweepCell]) -> list[str | None]:
    """What every cell directory held when the sweep started: its
    :func:`~featavg.runs.run_token` (None: nothing finished), prefixed by :data:`FORCED`
    when that was this very run already (a cell to recompute)."""
    found: list[str | None] = []
    for cell in cells:
        token = runs.run_token(cell.directory)
        hit = token is not None and runs.cached_summary(cell.directory, experiment, cell.config)
        found.append(FORCED + token if hit and token is not None else token)
    return found


def _shareable(experiment: str, config: dict[str, Any], cell_dir: Path) -> bool:
    """Whether a run found elsewhere may replace what ``cell_dir`` holds (never files
    featavg did not write, never a place no run may go)."""
    state = inspect_run(cell_dir, experiment, config)
    return state.kind not in ("foreign", "unusable") and not state.foreign


def finished_elsewhere(
    experiment: str,
    configs: list[dict[str, Any]],
    outs: list[str],
    seen: list[str | None] | None,
) -> list[dict[str, Any] | None]:
    """Per cell, the summary of its run finished by another process (see the module
    docstring; found elsewhere in the store, it is copied into the cell directory first),
    or None: compute it. Without ``seen``, every cell is computed. Call with the
    :func:`claims` held."""
    if seen is None:
        return [None] * len(outs)
    found: list[dict[str, Any] | None] = []
    for config, out, token in zip(configs, outs, seen, strict=True):
        cell_dir = Path(out)
        forced = token is not None and token.startswith(FORCED)
        summary = None
        if runs.run_token(cell_dir) != (token[len(FORCED) :] if forced and token else token):
            summary = runs.cached_summary(cell_dir, experiment, config)
        elsewhere = (
            [] if summary is not None or forced else _candidates(experiment, config, cell_dir)
        )
        if elsewhere and not _shareable(experiment, config, cell_dir):
            elsewhere = []
        for other in elsewhere:
            if runs.cached_summary(other, experiment, config) is not None:
                try:
                    copy_run(other, cell_dir)
                except (OSError, ValueError):  # changed under us: compute it instead
                    continue
                summary = runs.cached_summary(cell_dir, experiment, config)
                break
        found.append(summary)
    return found
