"""Progress bars that leave clean logs: the one place featavg builds a tqdm bar.

On a terminal (stderr is a TTY) :func:`bar` is an ordinary tqdm bar that redraws itself in
place; in a Jupyter kernel it is tqdm's notebook widget. Anywhere else (stderr redirected to
a file, a pipe, a CI log) a redrawn bar would leave one carriage-return line per refresh, so
the bar draws nothing while it runs and writes one plain line when it closes::

    train binary+multiclass: 101/101 it in 2.3 s

Every tqdm call site in featavg goes through :func:`bar`; ``enabled=False`` (``--quiet``,
``progress=False``) turns it off everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Never, TypeVar, overload

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

T = TypeVar("T")

if TYPE_CHECKING:  # tqdm is generic only in its type stubs
    _Tqdm = tqdm[Any]
else:
    _Tqdm = tqdm


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm draws a widget, not text)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def on_terminal() -> bool:
    """Whether bars may redraw in place: stderr is an interactive terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class _Discard:
    """A text sink: the log bar counts and times, but draws nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class LogBar(_Tqdm):
    """A tqdm bar for logs: silent while it runs, one plain line on stderr when it closes
    (``desc: n/total unit in t s``), never a carriage return."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = _Discard()
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if self.disable:  # closed already (tqdm closes again on garbage collection)
            return
        elapsed = self._time() - self.start_t  # type: ignore[attr-defined]
        done = f"{self.n:g}" + (f"/{self.total:g}" if self.total is not None else "")
        super().close()
        print(f"{self.desc}: {done} {self.unit} in {elapsed:.1f} s", file=sys.stderr, flush=True)


@overload
def bar(
    iterable: Iterable[T],
    *,
    desc: str,
    enabled: bool = True,
    total: float | None = None,
    unit: str = "it",
) -> tqdm[T]: ...


@overload
def bar(
    iterable: None = None,
    *,
    desc: str,
    enabled: bool = True,
    total: float | None = None,
    unit: str = "it",
) -> tqdm[Never]: ...


def bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    enabled: bool = True,
    total: float | None = None,
    unit: str = "it",
) -> tqdm[T] | tqdm[Never]:
    """A progress bar over ``iterable`` (or ``total`` manual updates) named ``desc``: off
    unless ``enabled``; a live bar on a terminal or in a notebook; else a :class:`LogBar`
    (one line when it closes)."""
    options: dict[str, Any] = {"desc": desc, "total": total, "unit": unit}
    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if in_notebook():
        return auto_tqdm(iterable, **options)
    if on_terminal():
        return tqdm(iterable, **options)
    return LogBar(iterable, **options)
