"""The sweep directory and its record ``sweep.json``: which directory a sweep may take, and
which cell directories its record may lead a reader to.

A sweep directory holds ``sweep.json`` (experiment, grid, base config, cells), ``sweep.csv``,
``sweep.png`` and ``cells/<cell>/`` (one run directory per grid point), plus hidden staging
entries. :func:`check_sweep_dir` runs before the sweep writes anything: the directory must
be a place a run can go (:func:`featavg.runs.paths.target_problem`: not a link, a file or a
device, a writable filesystem with room), hold nothing featavg did not write, and, unless
``force``, no other sweep (another experiment, grid or base config): a second sweep with the
same ``--out`` would otherwise replace the first one's cells and table without a word.

:func:`cell_dirs` is how a reader (the report) finds a sweep's cells from its record: a
record is a file anyone may edit, so a listed directory must be ``cells/<plain name>``
inside the sweep, reached through no symbolic link; anything else is ignored.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from featavg import runs
from featavg.config import ConfigError
from featavg.runs import paths as out_paths

RECORD = "sweep.json"
# what a sweep directory holds (hidden staging and temporary entries aside)
SWEEP_ENTRIES = frozenset({RECORD, "sweep.csv", "sweep.png", "cells"})


def read_record(directory: Path) -> dict[str, Any] | None:
    """``sweep.json`` of ``directory`` when it is a readable JSON object in a regular file
    (never through a link, never a FIFO), else None."""
    return runs.read_json_object(Path(directory) / RECORD)


def _identity(experiment: Any, grid: Any, base: Any) -> str:
    """What makes two sweeps the same sweep, as canonical JSON (tuples read back as lists)."""
    return json.dumps(
        {"experiment": experiment, "grid": grid, "base_config": base}, sort_keys=True, default=str
    )


def _foreign(directory: Path) -> list[str]:
    """Entries of an existing sweep directory that a sweep does not write."""
    foreign = []
    with os.scandir(directory) as scan:
        for entry in scan:
            mode = entry.stat(follow_symlinks=False).st_mode
            if entry.name.startswith(".") and not stat.S_ISLNK(mode):
                continue  # staging, temporary files of an interrupted write
            wanted = stat.S_ISDIR(mode) if entry.name == "cells" else stat.S_ISREG(mode)
            if entry.name not in SWEEP_ENTRIES or not wanted:
                foreign.append(out_paths.shown(entry.name))
    return sorted(foreign)


def check_sweep_dir(
    directory: Path,
    experiment: str,
    grid: dict[str, list[Any]],
    base: dict[str, Any],
    force: bool,
    where: str | None = None,
) -> None:
    """Raise a one-line :class:`ConfigError` unless the sweep of ``experiment`` over
    ``grid`` with the base config ``base`` may write into ``directory`` (see the module
    docstring): a place no run can go or foreign entries always, another sweep's record
    unless ``force``. ``where`` names the directory in messages (default ``--out DIR``)."""
    directory = Path(directory)
    where = where or f"--out {out_paths.shown(directory)}"
    problem = out_paths.target_problem(directory)
    if problem:
        raise ConfigError(f"{where}: {problem}; choose another directory")
    if not os.path.lexists(directory):
        return
    foreign = _foreign(directory)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ConfigError(
            f"{where}: holds files a sweep did not write ({shown}); refusing to use it, "
            "choose another directory"
        )
    record = read_record(directory)
    if record is None or force:  # none yet, or unreadable (ours, rewritten): take it
        return
    mine = _identity(experiment, json.loads(json.dumps(grid, default=str)), base)
    theirs = _identity(record.get("experiment"), record.get("grid"), record.get("base_config"))
    if mine != theirs:
        what = out_paths.shown(str(record.get("experiment")))
        raise ConfigError(
            f"{where}: holds another sweep ({what} with another grid or base config); "
            "pass --force to replace it, or choose another directory"
        )


def _plain_inside(sweep: Path, relative: str) -> Path | None:
    """``sweep/cells/<name>`` for ``relative`` == ``cells/<name>`` with a plain name and no
    link on the way; None for anything else (absolute, ``..``, deeper, a link)."""
    parts = relative.split("/")
    if len(parts) != 2 or parts[0] != "cells" or not runs.is_plain_name(parts[1]):
        return None
    path = sweep
    for part in parts:
        path = path / part
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # a link, a file: not followed
                return None
        except OSError:
            return None
    return path


def _real_subdirs(directory: Path) -> list[Path]:
    """The non-hidden sub-directories of ``directory`` that are directories themselves (not
    links to one), by name; [] unless ``directory`` is a real directory."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
        with os.scandir(directory) as scan:
            names = [
                e.name
                for e in scan
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return []
    return [directory / name for name in sorted(names)]


def cell_dirs(sweep: Path, record: dict[str, Any] | None) -> list[Path]:
    """The cell directories of ``sweep`` that are safe to read: those its record lists,
    each ``cells/<plain name>`` inside the sweep, an existing real directory reached through
    no link (see :func:`_plain_inside`), once each, in the record's order; without a usable
    record, the real sub-directories of the sweep and of its ``cells/``."""
    sweep = Path(sweep)
    cells = record.get("cells") if record else None
    found: list[Path] = []
    for cell in cells if isinstance(cells, list) else []:
        relative = cell.get("directory") if isinstance(cell, dict) else None
        path = _plain_inside(sweep, relative) if isinstance(relative, str) else None
        if path is not None and path not in found:
            found.append(path)
    if found or (isinstance(cells, list) and cells):
        return found
    return _real_subdirs(sweep) + _real_subdirs(sweep / "cells")
