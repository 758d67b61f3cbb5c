"""Guards shared by the data-file readers: only regular files are opened, and what a file
declares is checked against the free memory before anything is read.

A dataset's files are untrusted input: a header may declare sizes far beyond the file (or
the machine), a gzip stream may expand a thousandfold, a FIFO blocks whoever opens it. Each
reader therefore states the bytes it is about to hold, :func:`check_fits` compares them with
:func:`featavg.machine.available_memory`, and reads are done in bounded chunks. Nothing here
writes to disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from featavg import machine
from featavg.config import ConfigError

#: reads are done in chunks of this many bytes (a bound on every temporary buffer)
CHUNK = 16 * 2**20


def size_text(nbytes: float) -> str:
    """'3.2 GiB', '512 MiB', '12 KiB', '17 B': a byte count for a one-line message."""
    for unit, size in (("EiB", 2**60), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    if nbytes >= 2**10:
        return f"{nbytes / 2**10:.3g} KiB"
    return f"{nbytes:.0f} B"


def one_line(text: object, limit: int = 200) -> str:
    """``text`` (an exception's message, which may span lines) as one line of at most
    ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_fits(path: Path, nbytes: int, what: str) -> None:
    """Refuse (one-line :class:`ConfigError` naming ``path`` and the limit) to load data
    that would take ``nbytes`` of memory when the machine has less free."""
    free = machine.available_memory()
    if nbytes > free:
        raise ConfigError(
            f"{path}: {what} would take {size_text(nbytes)} of memory, more than the "
            f"{size_text(free)} free here; refusing to read it"
        )


def file_size(path: Path) -> int:
    """The size of the regular file ``path``; anything else (missing, a directory, a FIFO,
    a device) is a one-line :class:`ConfigError` (opening a FIFO would block)."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    return st.st_size


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for binary reading, once :func:`file_size` accepted it."""
    file_size(path)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
