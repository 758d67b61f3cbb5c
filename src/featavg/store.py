"""Run directories: where results go, what they hold, and how they are replaced.

By default a run lives in ``runs/<experiment>-<hash>/`` where the hash covers the effective
config, the package version and a fingerprint of the package source
(:func:`source_fingerprint`), so identical runs of identical code share a directory (a
cache hit) and anything else gets its own.

A run directory appears whole or not at all: the runner writes every file into a hidden
staging directory beside it (``<parent>/.featavg-staging/``) and renames it into place
(:func:`staged_dir`); a run it replaces is first renamed aside, then deleted. Whatever the
moment of a kill, the directory holds the old complete run, the new complete run, or
nothing, plus hidden leftovers that the next write beside it removes. ``manifest.json``
lists the sha256 of every other file, so a cache hit (:func:`inspect_run`) also proves that
the config, tables and figures belong to the summary. What a directory holds when it is
not a hit is in :mod:`featavg.run_state`.

Files and directories get the modes a plain ``open()`` / ``mkdir()`` would give (0644 and
0755 under umask 022): they are created with ``0o666`` / ``0o777`` and the umask applied
by the kernel, never through ``tempfile`` (which makes them private).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import errno
import functools
import hashlib
import io
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import __version__

if TYPE_CHECKING:  # matplotlib and torch are imported only where they are used
    import torch
    from matplotlib.figure import Figure

DEFAULT_ROOT = Path("runs")
MANIFEST = "manifest.json"
STAGING = ".featavg-staging"

# ---------------------------------------------------------------- identity


def fingerprint_tree(root: Path) -> str:
    """16 hex digits of sha256 over the relative path and bytes of every file under
    ``root``, bytecode (``__pycache__``, ``*.pyc``) and hidden names (editor files) left
    out: the Python modules, templates and data files that make the package's results."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix in {".pyc", ".pyo"}
            or any(part == "__pycache__" or part.startswith(".") for part in rel.parts)
        ):
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@functools.cache
def source_fingerprint() -> str:
    """:func:`fingerprint_tree` of the installed ``featavg`` package, computed once per
    process (a few ms): any edit to the code that makes results gives another value."""
    return fingerprint_tree(Path(__file__).resolve().parent)


def config_hash(experiment: str, config: dict[str, Any]) -> str:
    """12 hex digits over (experiment, config, package version, source fingerprint)."""
    blob = json.dumps(
        {
            "experiment": experiment,
            "config": config,
            "version": __version__,
            "source": source_fingerprint(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(experiment: str, config: dict[str, Any], root: str | Path = DEFAULT_ROOT) -> Path:
    """The default run directory ``root/<experiment>-<hash>``."""
    return Path(root) / f"{experiment}-{config_hash(experiment, config)}"


# The runs root of the experiment being run: experiments that train image models keep them
# in its ``models/`` cache (:mod:`featavg.trained_models`), shared by every experiment and
# by ``featavg train`` under that root. Set by the runner around ``Experiment.run``.
_RUNS_ROOT: contextvars.ContextVar[Path] = contextvars.ContextVar(
    "featavg_runs_root", default=DEFAULT_ROOT
)


def runs_root() -> Path:
    """The runs root of the current run (``runs`` outside one)."""
    return _RUNS_ROOT.get()


@contextlib.contextmanager
def using_runs_root(root: str | Path) -> Iterator[None]:
    """Within the block, :func:`runs_root` is ``root``."""
    token = _RUNS_ROOT.set(Path(root))
    try:
        yield
    finally:
        _RUNS_ROOT.reset(token)


# ---------------------------------------------------------------- files


def _create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new hidden file in ``directory``, opened for writing with mode 0o666 & ~umask."""
    while True:
        path = directory / f".{prefix}.{secrets.token_hex(4)}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic write: a temporary file in the same directory, then a rename. The file gets
    the mode a plain ``open(path, "wb")`` would give (0o666 less the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (NaN/inf are refused: a result is a number or explicitly null)."""
    write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic CSV write; the header is the union of the rows' keys in first-seen order."""
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(path, buf.getvalue().encode())


def write_figure(path: Path, fig: Figure) -> None:
    """Atomic PNG write of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path) -> dict[str, str]:
    """Write ``manifest.json``: {file name: sha256} of every other non-hidden file of the
    run directory. Written last: it vouches for the files it lists."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST
    }
    write_json(directory / MANIFEST, {"files": files})
    return files


# ---------------------------------------------------------------- whole directories

# <name>.<new|old>-<host tag>-<pid>-<token>: a writer's staged or set-aside directory
_LEFTOVER = re.compile(r"\.(?:new|old)-([0-9a-f]{6})-(\d+)-[0-9a-f]+$")


@functools.cache
def _host_tag() -> str:
    """6 hex digits naming this machine (staging may live on a shared filesystem)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_leftovers(parent: Path) -> list[Path]:
    """Remove what killed writers left in ``parent/.featavg-staging`` (entries of dead
    processes on this machine); returns what was removed."""
    staging = parent / STAGING
    removed: list[Path] = []
    if not staging.is_dir():
        return removed
    for entry in staging.iterdir():
        match = _LEFTOVER.search(entry.name)
        if match is None or match[1] != _host_tag() or _pid_alive(int(match[2])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    with contextlib.suppress(OSError):  # not empty: another writer is at work
        staging.rmdir()
    return removed


def _mkdir_staged(directory: Path, kind: str) -> Path:
    """A new directory ``parent/.featavg-staging/<name>.<kind>-<host>-<pid>-<token>``
    (mode 0o777 less the umask; the staging folder may vanish under us: retry)."""
    staging = directory.parent / STAGING
    for _ in range(100):
        staging.mkdir(parents=True, exist_ok=True)
        path = (
            staging / f"{directory.name}.{kind}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        )
        try:
            os.mkdir(path, 0o777)
            return path
        except (FileNotFoundError, FileExistsError):
            continue
    raise OSError(f"cannot create a staging directory in {staging}")


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
    with staged_dir(directory) as new:
        for name, data in files.items():
            if name != MANIFEST:
                write_bytes(new / name, data)
        if MANIFEST in files:  # last: it vouches for the others
            write_bytes(new / MANIFEST, files[MANIFEST])


# ---------------------------------------------------------------- provenance


def git_commit() -> str:
    """The source tree's commit ('+dirty' if modified), or 'unknown' outside a checkout."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: torch.device | str, wall_time_s: float, seeds: list[int]) -> dict[str, Any]:
    """Version, source fingerprint, commit, seeds, device, wall time and library versions."""
    return {
        "featavg_version": __version__,
        "source_fingerprint": source_fingerprint(),
        "git_commit": git_commit(),
        "seeds": seeds,
        "device": str(device),
        "wall_time_s": round(wall_time_s, 3),
        "torch_version": _torch_version(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def cached_summary(
    directory: Path, experiment: str, config: dict[str, Any]
) -> dict[str, Any] | None:
    """The finished run's summary if ``directory`` holds this very experiment and config,
    made by this code, with every file as its manifest lists it; else None."""
    from featavg.run_state import inspect_run

    state = inspect_run(Path(directory), experiment, config)
    return state.summary if state.kind == "hit" else None


def _torch_version() -> str:
    # imported here, not at module level: the CLI imports this module before it applies
    # the thread policy, which must come before torch starts its OpenMP runtime
    import torch

    return str(torch.__version__)
