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

Who computes a run when several processes want it is :mod:`featavg.run_lock`; which paths
may take a run, :mod:`featavg.out_paths`. Files read back are never trusted: they are read
only if they are regular files (no link followed, no FIFO or device opened), JSON only up to
:data:`MAX_JSON_BYTES` and without crashing on any content (:func:`read_json_object`).

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
import glob
import hashlib
import io
import json
import os
import platform
import re
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg import __version__, out_paths, run_lock
from featavg.config import ConfigError

if TYPE_CHECKING:  # matplotlib and torch are imported only where they are used
    import torch
    from matplotlib.figure import Figure

DEFAULT_ROOT = Path("runs")
MANIFEST = "manifest.json"
STAGING = run_lock.STAGING
# summaries, configs and manifests are a few KiB to a few MiB; a larger one is not ours
MAX_JSON_BYTES = 64 << 20

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


# .<name>.<host tag>-<pid>-<token>.tmp: a writer's temporary file
_TMP = re.compile(r"\.([0-9a-f]{6})-(\d+)-[0-9a-f]+\.tmp$")


def _create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new hidden file in ``directory``, opened for writing with mode 0o666 & ~umask; its
    name says which process writes it (see :func:`_remove_dead_tmp`)."""
    while True:
        token = f"{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        path = directory / f".{prefix}.{token}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` through ``os.write`` (the one call every featavg
    write ends in, so a full disk is simulated by patching it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic write: a temporary file in the same directory, then a rename. The file gets
    the mode a plain ``open(path, "wb")`` would give (0o666 less the umask). Something at
    ``path`` that is not a regular file (a link, a device) is never replaced, and a full or
    read-only filesystem is a one-line :class:`ConfigError`; both leave nothing behind."""
    path = Path(path)
    out_paths.check_file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path.parent, path.name)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _remove_dead_tmp(path.parent, path.name)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise ConfigError(
                f"{out_paths.shown(path.parent)}: cannot write ({out_paths.write_error(err)}); "
                "nothing was replaced, free some space or choose another directory"
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_dead_tmp(directory: Path, name: str) -> None:
    """Delete the temporary files that killed writers of ``name`` left in ``directory``
    (those of live processes, or of other machines, stay)."""
    for path in directory.glob(f".{glob.escape(name)}.*.tmp"):
        match = _TMP.search(path.name)
        if match and match[1] == _host_tag() and not _pid_alive(int(match[2])):
            path.unlink(missing_ok=True)


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


def open_regular(path: Path) -> int | None:
    """A read-only fd of ``path`` if it is a regular file, else None: a symbolic link is
    not followed and a FIFO or device is never read (it could block or never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_regular(path: Path, limit: int = MAX_JSON_BYTES) -> bytes | None:
    """The bytes of the regular file ``path`` (:func:`open_regular`), or None when it is
    absent, not a regular file or larger than ``limit`` bytes."""
    fd = open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def read_json_object(path: Path, limit: int = MAX_JSON_BYTES) -> dict[str, Any] | None:
    """The JSON object in the regular file ``path``, or None when it is absent, not a
    regular file, too large, not UTF-8 JSON, nested too deeply or not an object."""
    data = read_regular(path, limit)
    if data is None:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSON, huge ints
        return None
    return obj if isinstance(obj, dict) else None


def sha256_file(path: Path) -> str | None:
    """The hex sha256 of a regular file's bytes (read in chunks); None if ``path`` is not a
    regular file (absent, a link, a FIFO, a device)."""
    fd = open_regular(path)
    if fd is None:
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_token(directory: Path) -> str | None:
    """A fingerprint of the run now in ``directory`` (the sha256 of its manifest), None
    without one: a change tells that another process finished the run meanwhile."""
    return sha256_file(Path(directory) / MANIFEST)


def is_plain_name(name: object) -> bool:
    """Whether ``name`` may name a file of a run directory: a non-empty string without a
    path separator or NUL, not hidden (so neither ``.`` nor ``..``)."""
    return (
        isinstance(name, str)
        and bool(name)
        and not name.startswith(".")
        and "/" not in name
        and "\0" not in name
        and (os.sep == "/" or os.sep not in name)
    )


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
    """Remove what killed writers left beside ``parent``'s runs: in ``.featavg-staging``
    the entries of dead processes on this machine, in ``.featavg-locks`` the lock files
    nobody holds (:mod:`featavg.run_lock`); returns what was removed."""
    staging = parent / STAGING
    removed = run_lock.remove_stale(parent)
    if staging.is_symlink() or not staging.is_dir():
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
    for _ in range(100):
        staging = run_lock.staging_folder(directory.parent)  # never a planted link
        path = (
            staging / f"{directory.name}.{kind}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
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
