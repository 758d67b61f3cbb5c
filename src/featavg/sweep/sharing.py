"""Cells computed once per run store: what a sweep cell's slot at the one door holds.

Several processes may run the same sweep, overlapping sweeps (two grids sharing points) or
plain runs of a cell's config into one run store (the directory holding runs and sweeps).
A cell is a :class:`~featavg.runs.door.Slot` (:func:`cell_slot`) whose door protocol
(:func:`featavg.runs.door.cached_runs`) then does the sharing:

* its claims: the cell directory (two processes running the same sweep) and the cell's
  *content key* ``<store>/cell-<run hash>`` (a lock name, never a directory): two sweeps
  whose cells share a config (same experiment, config and code) wait for each other,
  wherever their cell directories are;
* with the claims held, a cell finished meanwhile by another process in its own directory
  is served; else one finished elsewhere in the store (``featavg run``'s directory for that
  config, or the same cell of another sweep) is copied in whole (staged and renamed,
  manifest included), so it is computed once and every sweep still owns a complete
  directory;
* ``replace``: a cell directory holding another config's or code's run is the sweep's own,
  replaced without ``--force``.

A cell that was already a hit when the sweep started and still came to be run was forced
(``--force``): it is recomputed, unless another process replaced it since (its ``seen``
token changed): never taken from elsewhere.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from featavg import runs
from featavg.runs.door import Slot

CELLS = "cells"


def run_store(cell_dir: str | Path) -> Path | None:
    """The run store of a sweep cell ``<store>/<sweep>/cells/<cell>``, or None for a
    directory that is not a sweep cell (e.g. a worker's scratch directory)."""
    path = Path(cell_dir)
    return path.parent.parent.parent if path.parent.name == CELLS else None


def models_store(cell_dir: Path) -> Path:
    """Where the models a cell trains are cached: its run store (shared with every run and
    sweep there), or the cell's parent off a store (a worker's scratch directory)."""
    return run_store(cell_dir) or cell_dir.parent


def content_key(experiment: str, config: dict[str, Any], cell_dir: str | Path) -> Path | None:
    """``<store>/cell-<run hash>``: the name two processes computing the same run in two
    directories of one store both claim (see :mod:`featavg.runs.lock`); None off a store."""
    root = run_store(cell_dir)
    return None if root is None else root / f"cell-{runs.config_hash(experiment, config)}"


def elsewhere(experiment: str, config: dict[str, Any], cell_dir: Path) -> tuple[Path, ...]:
    """Where else in the store this cell's run may be finished: ``featavg run``'s directory
    for the config, then the same cell in every other sweep of the store."""
    root = run_store(cell_dir)
    if root is None:
        return ()
    found = [runs.run_dir(experiment, config, root)]
    pattern = f"*/{CELLS}/{glob.escape(cell_dir.name)}"  # a value may hold [ or *
    found += sorted(p for p in root.glob(pattern) if p != cell_dir)
    return tuple(found)


def cell_slot(
    experiment: str, config: dict[str, Any], cell_dir: Path, seen: str | None = None
) -> Slot:
    """The door's slot of a sweep cell (module docstring); ``seen``: its run token when the
    sweep started (a forced cell is recomputed unless that changed)."""
    key = content_key(experiment, config, cell_dir)
    return Slot(
        experiment,
        config,
        Path(cell_dir),
        f"run directory {cell_dir}",
        claims=() if key is None else (key,),
        elsewhere=elsewhere(experiment, config, Path(cell_dir)),
        baseline=seen,
        replace=True,
    )
