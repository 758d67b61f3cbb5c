"""The ``featavg`` command line: list, show-config, run, sweep, report, reproduce, train.

``featavg run`` says what happened: the headline numbers beside the theory (agrees /
deviates), the figures, then one last line ``EXPERIMENT: done|cached -> DIR/summary.json``
(``--quiet`` prints only that line). ``featavg show-config EXP --explain`` describes every
config field; ``--reproduce`` shows what ``featavg reproduce`` runs. ``featavg --version``.

Exit codes: 0 on success; 2 on bad input, i.e. a usage error (argparse) or a
:class:`~featavg.config.ConfigError` (one line on stderr naming the field and what is
allowed; also a config estimated too large for the machine without ``--allow-large``); 3
when a valid config's run failed (:class:`~featavg.faults.RunFailed`: divergence, NaN,
degenerate data; one line, nothing saved), and for ``sweep`` when any cell failed (the
others completed); 130 when interrupted (Ctrl-C; one line); 1 on anything else, which is a
bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Callable

from featavg.cli import commands
from featavg.cli.parser import build_parser
from featavg.config import MAX_MESSAGE, ConfigError, error_line
from featavg.faults import RUN_FAILED_EXIT, RunFailed, interrupted, one_line

__all__ = ["COMMANDS", "build_parser", "entry", "main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": commands.list_experiments,
    "show-config": commands.show_config,
    "run": commands.run,
    "sweep": commands.sweep,
    "report": commands.report,
    "train": commands.train,
    "probe": commands.probe,
    "reproduce": commands.reproduce,
}


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """A warning at the command line: ``featavg: warning: <message>`` (no file and line of
    featavg's code: the message says what happened and what was done about it)."""
    return f"featavg: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` describes; returns its exit code (2 on a ConfigError or a
    usage error, with one line of at most :data:`~featavg.config.MAX_MESSAGE` characters on
    stderr). Any other exception propagates: it is a bug."""
    from featavg.threads import passive_wait

    passive_wait()  # first thing: OpenMP reads it once, when torch loads
    warnings.formatwarning = _one_line_warning
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ConfigError as err:
        # one printable line of bounded length, whatever the error echoes of the input
        prefix = "featavg: error: "
        print(prefix + error_line(str(err), MAX_MESSAGE - len(prefix)), file=sys.stderr)
        return 2
    except RunFailed as err:  # a valid config whose run failed (featavg.faults): nothing saved
        print(f"featavg: run failed: {one_line(err)}", file=sys.stderr)
        return RUN_FAILED_EXIT
    except KeyboardInterrupt:  # Ctrl-C: runs are staged, so nothing half-written remains
        return interrupted()


def entry() -> None:
    """Console-script entry point: :func:`main`, with a quiet exit when stdout is closed
    early (e.g. ``featavg show-config X | head``)."""
    try:
        code = main()
        sys.stdout.flush()  # a reader that went away shows up here, inside the try
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    # Interpreter shutdown runs several full garbage collections, each walking the ~165k
    # objects torch creates (~0.5 s in all). Collect once now, then freeze the survivors so
    # those passes skip them; atexit handlers, finalizers and file flushing still run.
    gc.collect()
    gc.freeze()
    sys.exit(code)
