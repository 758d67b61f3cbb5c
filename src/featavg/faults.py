"""What a valid config's run can fail of, as opposed to bad input.

Two kinds of user-facing errors end a featavg command with one line on stderr:

* :class:`featavg.config.ConfigError` (exit code 2): the input is malformed or cannot be
  run here (a wrong key, type or range; a config whose estimated memory exceeds the
  machine's, see :mod:`featavg.runs.guards`). Nothing ran.
* :class:`RunFailed` (exit code 3): the input was valid but the computation failed, e.g.
  :class:`NumericalFault`: training diverged (too large a learning rate or init), a loss or
  weight became NaN/inf, the loss underflowed to 0, every gradient vanished, the data hold
  NaN/inf or zero-norm cluster centers, or a headline number came out non-finite. Nothing
  is written: a failed run is never saved as a result. In a sweep the failing cell is
  recorded as ``failed`` with this line in ``sweep.csv`` and the other cells complete.

Both carry a one-line message that names the field to change where there is one.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

# the process exit code of a RunFailed (ConfigError: 2; any other exception is a bug: 1)
RUN_FAILED_EXIT = 3
# the exit code of a command stopped by Ctrl-C: 128 + SIGINT, what a shell reports for it
INTERRUPTED_EXIT = 130


class RunFailed(RuntimeError):
    """A run of a valid config failed; nothing was saved (CLI exit code 3)."""


class NumericalFault(RunFailed):
    """Divergence, NaN/inf, underflow, vanished gradients or degenerate data."""


def one_line(err: BaseException, limit: int = 500) -> str:
    """The first line of an error's message, at most ``limit`` characters (a sweep table
    cell or a terminal line, never a wall of text)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_summary(name: str, cfg_json: dict[str, Any], reason: str) -> dict[str, Any]:
    """What a failed sweep cell reports instead of a summary (never written as one):
    ``status`` "failed", the one-line ``reason``, the experiment and its config."""
    return {"experiment": name, "status": "failed", "reason": reason, "config": cfg_json}


def is_failure(summary: dict[str, Any]) -> bool:
    """Whether ``summary`` is a :func:`failure_summary`."""
    return summary.get("status") == "failed"


def interrupted(stream: TextIO | None = None) -> int:
    """For the command line's ``except KeyboardInterrupt``: one line on stderr (or
    ``stream``) instead of a traceback; returns :data:`INTERRUPTED_EXIT`. Whatever the
    command was writing stays as it was: every result is written atomically."""
    print("featavg: interrupted", file=stream if stream is not None else sys.stderr, flush=True)
    return INTERRUPTED_EXIT
