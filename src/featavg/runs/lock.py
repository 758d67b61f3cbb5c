"""Per-run claims: one process at a time computes a run directory.

Two processes asked for the same run (same directory: same experiment, config and code
under one run store) must not both compute it. The first *claims* the directory; the others
wait for the claim, then find the finished run and serve it as a cache hit. A claim is an
exclusive ``fcntl.flock`` on ``<parent>/.featavg-locks/<name>.lock`` (beside the staging
folder, not in it: a lock file outlives a killed holder, a staged directory does not):

* the kernel drops it when its holder dies, even by SIGKILL, so a crashed run never blocks
  the next one (its lock file stays behind, unlocked; the next claim reuses it and
  :func:`featavg.runs.staging.clean_leftovers` removes unlocked ones);
* the holder deletes the lock file before it lets go, so the lock folder goes away. A
  waiter that then gets the lock of the deleted file sees that the path no longer names
  the file it locked and starts again, so two processes never hold one claim;
* claims are re-entrant in a thread (a sweep claims a cell's directory and the run inside
  claims it again) and exclusive between the threads of a process (a lock per path);
* :func:`claim` takes several directories in sorted order: processes claiming overlapping
  sets (sweeps sharing cells) never deadlock.

flock works between processes on one machine and, on filesystems that support it (local
disks, NFSv4), between machines. Without ``fcntl`` (Windows) a claim is only per process.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from featavg.config import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: claims are per process only
    fcntl = None  # type: ignore[assignment]

STAGING = ".featavg-staging"  # = featavg.runs.staging.STAGING (not imported: staging imports us)
LOCKS = ".featavg-locks"
LOCK_SUFFIX = ".lock"

_held = threading.local()  # .counts: {directory: depth} of this thread's claims
_registry = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def lock_path(directory: Path) -> Path:
    """The lock file of the run directory ``directory``."""
    directory = Path(directory)
    return directory.parent / LOCKS / f"{directory.name}{LOCK_SUFFIX}"


def staging_folder(parent: Path, name: str = STAGING) -> Path:
    """``parent/<name>`` (the staging folder by default), created if absent; anything but a
    real directory there (a link planted to divert our writes) is a one-line
    :class:`ConfigError`."""
    folder = Path(parent) / name
    for _ in range(1000):
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o777)
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            # another process removed the (empty) folder between our mkdir and lstat: again
            continue
        except OSError as err:
            raise ConfigError(f"{folder}: cannot be created ({err.strerror})") from None
        if not stat.S_ISDIR(mode):
            raise ConfigError(
                f"{folder}: not a plain directory (a link?); featavg never writes through one"
            )
        return folder
    raise ConfigError(f"{folder}: keeps vanishing while it is created; try again")


def _counts() -> dict[str, int]:
    if not hasattr(_held, "counts"):
        _held.counts = {}
    counts: dict[str, int] = _held.counts
    return counts


def _thread_lock(key: str) -> threading.Lock:
    with _registry:
        return _thread_locks.setdefault(key, threading.Lock())


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the open file ``fd`` (not deleted or replaced)."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _lock_file(path: Path) -> int:
    """Open ``path`` (created if absent) and take its exclusive flock; the open fd."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        staging_folder(path.parent.parent, LOCKS)
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:  # the lock folder was removed under us: again
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # we locked a file its holder deleted: take the new one


def _unlock_file(fd: int, path: Path) -> None:
    """Delete the lock file (still holding it), let go, and remove the lock folder if that
    leaves it empty."""
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)  # closing drops the flock
    with contextlib.suppress(OSError):
        path.parent.rmdir()


@contextlib.contextmanager
def _claim_one(directory: Path) -> Iterator[None]:
    key = os.path.abspath(directory)
    counts = _counts()
    if counts.get(key):  # this thread holds it already
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
        return
    with _thread_lock(key):
        path = lock_path(Path(key))
        fd = _lock_file(path)
        counts[key] = 1
        try:
            yield
        finally:
            del counts[key]
            _unlock_file(fd, path)


@contextlib.contextmanager
def claim(*directories: str | Path) -> Iterator[None]:
    """Hold the claim on every run directory in ``directories`` for the block (waiting for
    other holders first): see the module docstring."""
    with contextlib.ExitStack() as stack:
        for key in sorted({os.path.abspath(d) for d in directories}):
            stack.enter_context(_claim_one(Path(key)))
        yield


def held(directory: str | Path) -> bool:
    """Whether this thread holds the claim on ``directory``."""
    return bool(_counts().get(os.path.abspath(directory)))


def remove_stale(parent: Path) -> list[Path]:
    """Delete the lock files in ``parent/.featavg-locks`` that nobody holds (left by killed
    processes), and the folder if that empties it; returns them. A lock held by anyone, this
    process included, is left alone."""
    removed: list[Path] = []
    folder = Path(parent) / LOCKS
    if fcntl is None or folder.is_symlink() or not folder.is_dir():
        return removed
    for path in folder.glob(f"*{LOCK_SUFFIX}"):
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held
            os.close(fd)
            continue
        try:
            if _same_file(fd, path):
                os.unlink(path)
                removed.append(path)
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        folder.rmdir()
    return removed
