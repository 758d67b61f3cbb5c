"""Output paths checked before anything is computed: where a run, a sweep or a page may go.

A run directory is written by renaming a complete staged directory into place
(:func:`featavg.runs.staging.staged_dir`), so what can go wrong is known before the run starts:

* the name: empty, ``.`` or ``..`` (a run directory needs a name of its own), or too long
  for the filesystem once the staging suffix is added (``ENAMETOOLONG`` after the compute);
* what is there: a symbolic link (featavg never writes through one: it could point at any
  directory of the user's), a regular file, a device node, a FIFO or a socket;
* where it goes: the nearest existing ancestor is not a directory, is read-only (by its
  permission bits too, also for root, who could write anyway), or the filesystem refuses a
  small probe write (full, read-only mount, over quota).

:func:`target_problem` says, in a few words, why a path cannot take a run directory (None
when it can); :func:`featavg.runs.state.inspect_run` turns that into the ``unusable`` state,
which :func:`~featavg.runs.state.check_replaceable` refuses with one line before any compute.
:func:`check_file_target` guards single files (``report.html``): an existing target must be
a regular file, never a link or a device.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from featavg.config import ConfigError

# the longest suffix a staged name adds: ".new-<6 hex>-<pid, up to 10 digits>-<8 hex>"
STAGING_SUFFIX = 30
# what the probe writes: one filesystem block, so a full disk refuses it
PROBE_BYTES = 4096
# below this much free space a run is refused up front (a run writes a few hundred KiB)
MIN_FREE_BYTES = 1 << 20
# names in messages are cut to this many characters (a hostile name may be megabytes long)
SHOWN = 80

_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only filesystem",
    errno.EACCES: "not writable (permission denied)",
    errno.EPERM: "not writable (operation not permitted)",
}


def shown(path: str | Path) -> str:
    """``path`` for a one-line message: at most :data:`SHOWN` characters, control
    characters escaped (a name may hold a newline)."""
    text = repr(str(path))[1:-1]
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


def kind_of(mode: int) -> str:
    """'a directory', 'a regular file', 'a symbolic link', 'a device node', 'a FIFO', ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def write_error(err: OSError) -> str:
    """A few words for an error of writing (full, read-only, over quota, ...)."""
    return _WRITE_ERRORS.get(err.errno or 0, err.strerror or type(err).__name__)


def name_problem(directory: Path) -> str | None:
    """Why ``directory``'s name cannot take a run directory, or None."""
    name = directory.name
    if name in ("", ".", ".."):
        return f"needs a directory name of its own, got {shown(directory) or 'an empty path'!r}"
    try:
        name_max = os.pathconf(_nearest_existing(directory.parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    size = len(os.fsencode(name))
    if size + STAGING_SUFFIX > name_max:
        return f"name too long ({size} bytes; at most {name_max - STAGING_SUFFIX})"
    if len(os.fsencode(os.path.abspath(directory))) + 2 * STAGING_SUFFIX > 4096:
        return "path too long (at most about 4000 bytes)"
    return None


def existing_problem(directory: Path) -> str | None:
    """Why what is at ``directory`` now cannot become a run directory (a link, a file, a
    device, ...), or None (nothing there, or a real directory)."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return None
    except OSError as err:  # ENAMETOOLONG, ENOTDIR (a file among the parents), ELOOP, ...
        return f"cannot be used ({err.strerror or type(err).__name__})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link; featavg never writes through one (give the real path)"
    if not stat.S_ISDIR(st.st_mode):
        return f"is {kind_of(st.st_mode)}, not a directory"
    return None


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (the current directory at worst)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _read_only(path: Path) -> bool:
    """No write permission for us, or (for root, whom permissions do not stop) no write bit
    for anybody: a directory made read-only on purpose."""
    if not os.access(path, os.W_OK | os.X_OK):
        return True
    return os.geteuid() == 0 and not os.stat(path).st_mode & 0o222


def probe_write(directory: Path) -> str | None:
    """Write and delete a hidden :data:`PROBE_BYTES` file in the existing ``directory``
    (through ``os.write``, the call every featavg write ends in); why it failed, or None."""
    path = directory / f".featavg-probe-{os.getpid()}-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        return write_error(err)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
    except OSError as err:
        return write_error(err)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    try:
        free = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
        return f"only {free.f_bavail * free.f_frsize // 1024} KiB free on the device"
    return None


def writable_problem(directory: Path) -> str | None:
    """Why a run directory cannot be written at ``directory`` (its place, the parent
    directories to be made, the filesystem), or None."""
    parent = _nearest_existing(directory.parent)  # where the staging folder goes
    if not parent.is_dir():
        return f"{shown(parent)} is not a directory"
    if _read_only(parent):
        return f"{shown(parent)} is read-only"
    if os.path.lexists(directory) and _read_only(directory):
        return "is read-only"
    problem = probe_write(parent)
    return f"{shown(parent)}: {problem}" if problem else None


def target_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot take a new run directory (name, what is there, where it
    goes), or None. No side effect but a probe file created and deleted at once."""
    directory = Path(directory)
    return name_problem(directory) or existing_problem(directory) or writable_problem(directory)


def check_file_target(path: Path) -> None:
    """Refuse (one-line :class:`ConfigError`) to replace anything at ``path`` but a regular
    file: a symbolic link, a directory, a device node or a FIFO stays untouched."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(f"{shown(path)}: cannot be written ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{shown(path)}: is {kind_of(st.st_mode)}; refusing to replace it, give a file path"
        )
