"""Torch files on disk: atomic saves, and loads that never execute pickled code.

:func:`save_checkpoint` writes a temporary file next to the target, flushes and fsyncs it and
renames it over the target with :func:`os.replace`, so a process killed at any moment leaves
either the previous file or the new one, never half a file. :func:`load_checkpoint` is
``torch.load(weights_only=True)``: tensors, dicts, lists, strings and numbers load; a file
that would need pickle code execution (an arbitrary class, ``os.system``, ...) is refused
with a one-line :class:`~featavg.config.ConfigError`, as is a missing, truncated or corrupt
file.

Below every package that reads or writes such files (models, training, probing), so that
none of them has to import another for it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch

from featavg.config import ConfigError
from featavg.config.text import clip

# what torch's weights-only unpickler says when the file references code (a class or a
# function) rather than plain data; anything else it refuses is a corrupt file
_CODE_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"allowlisted"),
)


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` with ``torch.save``, atomically.

    The bytes go to a temporary file in the same directory (same file system, so the final
    :func:`os.replace` is atomic), are flushed and fsynced, then renamed over ``path``. The
    file is created with mode 0o666 minus the umask, as a plain ``open()`` would make it
    (``tempfile.mkstemp`` would make it 0600). Missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # the rename itself lives in the directory entry: sync it so it survives a power cut
    # (not possible on every platform or file system; the file is safe either way)
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: Path, *, map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: a dict of tensors, lists, dicts, strings and
    numbers (a ``state_dict`` is one).

    Raises :class:`ConfigError` (one line naming ``path``) when the file is missing, is not a
    dict, is truncated or corrupt, or needs pickle code execution to load; such a file is
    refused without running any of its code."""
    path = Path(path)
    shown = clip(str(path), 120)  # a long path must not push the reason off the line
    try:
        is_file = path.is_file()
    except OSError as err:  # a name too long for the file system (ENAMETOOLONG), ...
        raise ConfigError(f"{shown}: cannot be used ({err.strerror})") from None
    if not is_file:
        what = _kind(path)
        raise ConfigError(f"{shown}: checkpoint file not found" + (f" ({what})" if what else ""))
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        code = _referenced_code(str(err))
        if code is not None:
            raise ConfigError(
                f"{path}: needs pickle code execution to load (refused{code}); convert it "
                "once with a trusted `torch.load(..., weights_only=False)` and save its "
                "state_dict"
            ) from None
        raise ConfigError(f"{path}: not a readable checkpoint (corrupt file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {_first_line(err)})"
        ) from None
    except Exception as err:  # a malformed file can trip any check inside the unpickler
        raise ConfigError(
            f"{path}: not a readable checkpoint (malformed: {type(err).__name__})"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a dict (e.g. a state_dict), got {type(obj).__name__}")
    return obj


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:120] if str(err).strip() else type(err).__name__


def _kind(path: Path) -> str:
    """'a directory', 'a FIFO', ... for something at ``path`` that is not a regular file;
    '' when nothing is there."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return ""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO")):
        if test(mode):
            return f"{name}, not a file"
    return "not a regular file"


def _referenced_code(message: str) -> str | None:
    """``": it references NAME"`` (or ``""``) when torch refused the file for referencing
    code; None when it refused it as malformed."""
    for pattern in _CODE_PATTERNS:
        match = pattern.search(message)
        if match is not None:
            return f": it references {match.group(1)}" if match.groups() else ""
    return None
