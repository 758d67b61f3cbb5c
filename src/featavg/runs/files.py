"""Files of the run store: atomic writes, and reads that never trust what they read.

Every featavg write ends in :func:`write_bytes`: a hidden temporary file in the target's
directory, then a rename, so a reader sees the old file or the new one, never half of one.
Files and directories get the modes a plain ``open()`` / ``mkdir()`` would give (0644 and
0755 under umask 022): they are created with ``0o666`` / ``0o777`` and the umask applied
by the kernel, never through ``tempfile`` (which makes them private).

Files read back are never trusted: they are read only if they are regular files (no link
followed, no FIFO or device opened), JSON only up to :data:`MAX_JSON_BYTES` and without
crashing on any content (:func:`read_json_object`).
"""

from __future__ import annotations

import csv
import errno
import functools
import glob
import hashlib
import io
import json
import os
import re
import secrets
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError
from featavg.runs import paths as out_paths

if TYPE_CHECKING:  # matplotlib is imported only where it is used
    from matplotlib.figure import Figure

# summaries, configs and manifests are a few KiB to a few MiB; a larger one is not ours
MAX_JSON_BYTES = 64 << 20


@functools.cache
def host_tag() -> str:
    """6 hex digits naming this machine (staging may live on a shared filesystem)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# .<name>.<host tag>-<pid>-<token>.tmp: a writer's temporary file
_TMP = re.compile(r"\.([0-9a-f]{6})-(\d+)-[0-9a-f]+\.tmp$")


def _create_exclusive(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new hidden file in ``directory``, opened for writing with mode 0o666 & ~umask; its
    name says which process writes it (see :func:`_remove_dead_tmp`)."""
    while True:
        token = f"{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
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
        if match and match[1] == host_tag() and not pid_alive(int(match[2])):
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
