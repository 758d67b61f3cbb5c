"""Whole run directories: staged beside their place, renamed into it, vouched for by a
manifest.

A run directory appears whole or not at all: the writer puts every file into a hidden
staging directory beside it (``<parent>/.featavg-staging/``) and renames it into place
(:func:`staged_dir`); a run it replaces is first renamed aside, then deleted. Whatever the
moment of a kill, the directory holds the old complete run, the new complete run, or
nothing, plus hidden leftovers that the next write beside it removes. ``manifest.json``
lists the sha256 of every other file (:func:`write_manifest`), so a cache hit also proves
that the config, tables and figures belong to the summary.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from featavg.runs import lock as run_lock
from featavg.runs import paths as out_paths
from featavg.runs.files import (
    host_tag,
    is_plain_name,
    pid_alive,
    sha256_file,
    write_bytes,
    write_json,
)

MANIFEST = "manifest.json"
STAGING = run_lock.STAGING


def run_token(directory: Path) -> str | None:
    """A fingerprint of the run now in ``directory`` (the sha256 of its manifest), None
    without one: a change tells that another process finished the run meanwhile."""
    return sha256_file(Path(directory) / MANIFEST)


def write_manifest(directory: Path) -> dict[str, str]:
    """Write ``manifest.json``: {file name: sha256} of every other non-hidden file of the
    run directory. Written last: it vouches for the files it lists."""
    files = {
        p.name: digest
        for p in sorted(directory.iterdir())
        if not p.name.startswith(".")
        and p.name != MANIFEST
        and (digest := sha256_file(p)) is not None
    }
    write_json(directory / MANIFEST, {"files": files})
    return files


# <name>.<new|old>-<host tag>-<pid>-<token>: a writer's staged or set-aside directory
_LEFTOVER = re.compile(r"\.(?:new|old)-([0-9a-f]{6})-(\d+)-[0-9a-f]+$")


def clean_leftovers(parent: Path) -> list[Path]:
    """Remove what killed writers left beside ``parent``'s runs: in ``.featavg-staging``
    the entries of dead processes on this machine, in ``.featavg-locks`` the lock files
    nobody holds (:mod:`featavg.run_lock`); returns what was removed."""
    staging = parent / STAGING
    removed = run_lock.remove_stale(parent)
    if staging.is_symlink() or not staging.is_dir():
        return removed
    for entry in staging.iterdir():
        match = _LEFTOVER.search(entry.name)
        if match is None or match[1] != host_tag() or pid_alive(int(match[2])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    with contextlib.suppress(OSError):  # not empty: another writer is at work
        staging.rmdir()
    return removed


def _mkdir_staged(directory: Path, kind: str) -> Path:
    """A new directory ``parent/.featavg-staging/<name>.<kind>-<host>-<pid>-<token>``
    (mode 0o777 less the umask; the staging folder may vanish under us: retry)."""
    for _ in range(100):
        staging = run_lock.staging_folder(directory.parent)  # never a planted link
        path = (
            staging / f"{directory.name}.{kind}-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        )
        try:
            os.mkdir(path, 0o777)
            return path
        except (FileNotFoundError, FileExistsError):
            continue
    raise OSError(f"cannot create a staging directory in {directory.parent / STAGING}")


def _install(new: Path, directory: Path) -> None:
    """Rename the complete ``new`` to ``directory``; an existing one is renamed aside
    first and deleted after (never a mix of the two)."""
    try:
        os.rename(new, directory)  # absent, or an empty directory: atomic
        return
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    old = _mkdir_staged(directory, "old")
    os.rename(directory, old / directory.name)
    try:
        os.rename(new, directory)
    except BaseException:  # an error (not a kill) in between: put the old run back
        os.rename(old / directory.name, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(directory: Path) -> Iterator[Path]:
    """Yield an empty hidden directory beside ``directory``; when the block ends without
    an exception, it replaces ``directory`` whole (see :func:`_install`); on an exception
    it is deleted and ``directory`` is untouched."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(directory.parent)
    new = _mkdir_staged(directory, "new")
    try:
        yield new
        _install(new, directory)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            (directory.parent / STAGING).rmdir()


def write_run_files(directory: Path, files: dict[str, bytes]) -> None:
    """Replace ``directory`` by a run made of ``files`` (name -> bytes, e.g. sent back by a
    remote worker, manifest.json included), through :func:`staged_dir`."""
    bad = [name for name in files if not is_plain_name(name)]
    if bad:  # a worker's file names become paths: never "../x", "/x" or hidden
        raise ValueError(f"run files: not plain file names: {out_paths.shown(bad[0])}")
    with staged_dir(directory) as new:
        for name, data in files.items():
            if name != MANIFEST:
                write_bytes(new / name, data)
        if MANIFEST in files:  # last: it vouches for the others
            write_bytes(new / MANIFEST, files[MANIFEST])
