"""Where the current run keeps its trained models (temporary: replaced by the run context)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path

from featavg.runs.identity import DEFAULT_ROOT

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
