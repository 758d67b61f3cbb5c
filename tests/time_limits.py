"""The per-case time limit of the fuzz campaigns (scripts/fuzz_*.py) and their samples in
the tests: a SIGALRM timer that raises :class:`Hang` in the main thread, so that a blocking
open of a FIFO or an endless read is interrupted too."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class Hang(Exception):
    """A case ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds``."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"past {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
