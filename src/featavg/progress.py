"""Progress bars that leave clean logs: the one place featavg builds a tqdm bar.

On a terminal (stderr is a TTY) :func:`bar` is an ordinary tqdm bar that redraws itself in
place; in a Jupyter kernel it is tqdm's notebook widget. Anywhere else (stderr redirected to
a file, a pipe, a CI log) a redrawn bar would leave one carriage-return line per refresh, so
the bar draws nothing itself and writes one plain line when it closes::

    train binary+multiclass: 101/101 it in 2.3 s

and, while any such bar is open, a heartbeat (:class:`Heartbeat`) writes one line at least
every :data:`HEARTBEAT_S` seconds with every open bar's count and elapsed time, outermost
first, so a long step never leaves a log silent::

    reproduce (synthetic-adversarial): 5/6 it, 41 s; train binary: 120/201 it, 30 s

Every tqdm call site in featavg goes through :func:`bar`; ``enabled=False`` (``--quiet``,
``progress=False``) turns it off everywhere.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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


class Heartbeat:
    """Writes one status line of the open log bars whenever ``interval`` seconds have passed
    without a line from them (their closing lines count), so that a log shows progress at
    least every ``interval`` (+ ``poll``) seconds however long one step takes.

    :meth:`beat` decides and writes; a daemon thread calls it every ``poll`` seconds while a
    bar is open (``threaded=False``: nobody calls it but the owner, e.g. a test driving a
    fake ``clock``). ``write`` takes the line (default: stderr at the time of writing).
    Bars are held by weak reference, so a bar nobody closes stops counting once collected.
    """

    def __init__(
        self,
        interval: float = 10.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], object] | None = None,
        threaded: bool = True,
    ) -> None:
        self.interval, self.poll, self.clock, self.threaded = interval, poll, clock, threaded
        self._write = write or _stderr_line
        self._bars: list[tuple[weakref.ref[LogBar], float]] = []  # (bar, opened at), outer first
        self._last = clock()  # when a line last appeared
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None  # the running thread's stop signal
        self.thread: threading.Thread | None = None  # the latest thread started

    def open(self, bar: LogBar) -> None:
        """Start counting ``bar`` (and, if it is the only open one, the silence from now)."""
        with self._lock:
            now = self.clock()
            if not self._alive():
                self._last = now
            self._bars.append((weakref.ref(bar), now))
            if self.threaded and self._stop is None:
                self._stop = threading.Event()
                self.thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="featavg-heartbeat", daemon=True
                )
                self.thread.start()

    def closed(self, bar: LogBar) -> None:
        """``bar`` wrote its closing line: forget it; the silence starts again now."""
        with self._lock:
            # by identity: tqdm bars compare equal by position
            self._bars = [
                (ref, t) for ref, t in self._bars if ref() is not bar and ref() is not None
            ]
            self._last = self.clock()
            ending = self._detach() if not self._bars else None
        self._end(ending)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a later :meth:`open` starts another) and wait for it: at exit,
        so that it never writes while the interpreter shuts down."""
        with self._lock:
            ending = self._detach()
        self._end(ending, timeout)

    def _detach(self) -> tuple[threading.Event, threading.Thread | None] | None:
        # under the lock: the running thread's stop signal and the thread, now no one's
        if self._stop is None:
            return None
        ending, self._stop = (self._stop, self.thread), None
        return ending

    @staticmethod
    def _end(
        ending: tuple[threading.Event, threading.Thread | None] | None, timeout: float = 5.0
    ) -> None:
        if ending is None:
            return
        stop, thread = ending
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def beat(self) -> str | None:
        """Write (and return) the status line of the open bars if ``interval`` seconds have
        passed since the last line; None otherwise."""
        with self._lock:
            now = self.clock()
            bars = self._alive()
            if not bars or now - self._last < self.interval:
                return None
            line = "; ".join(_status(bar, now - opened) for bar, opened in bars)
            self._last = now
        self._write(line)
        return line

    def _alive(self) -> list[tuple[LogBar, float]]:
        bars = [(ref(), t) for ref, t in self._bars]
        return [(bar, t) for bar, t in bars if bar is not None]

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll):
            self.beat()


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _status(bar: LogBar, elapsed: float) -> str:
    """``desc (postfix): n/total unit, t s``: where a bar stands, for the heartbeat."""
    postfix = f" ({bar.postfix})" if bar.postfix else ""
    done = f"{bar.n:g}" + (f"/{bar.total:g}" if bar.total is not None else "")
    return f"{bar.desc}{postfix}: {done} {bar.unit}, {elapsed:.0f} s"


# at least one line every 10 s (+ the 1 s poll) while a log bar is open
HEARTBEAT_S = 10.0
HEARTBEAT = Heartbeat(HEARTBEAT_S)
atexit.register(HEARTBEAT.stop)


class LogBar(_Tqdm):
    """A tqdm bar for logs: never a carriage return; one plain line on stderr when it
    closes (``desc: n/total unit in t s``), and while it is open the ``heartbeat``'s status
    lines (default :data:`HEARTBEAT`)."""

    def __init__(self, *args: Any, heartbeat: Heartbeat | None = None, **kwargs: Any) -> None:
        # draws nothing, so count every step (miniters 1): the heartbeat reads n at any time
        kwargs.update(file=_Discard(), mininterval=0, miniters=1)
        self.heartbeat = heartbeat or HEARTBEAT
        super().__init__(*args, **kwargs)
        self.heartbeat.open(self)

    def display(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to draw: the heartbeat and the closing line report instead."""

    def close(self) -> None:
        if self.disable:  # closed already (tqdm closes again on garbage collection)
            return
        elapsed = self._time() - self.start_t  # type: ignore[attr-defined]
        done = f"{self.n:g}" + (f"/{self.total:g}" if self.total is not None else "")
        super().close()
        print(f"{self.desc}: {done} {self.unit} in {elapsed:.1f} s", file=sys.stderr, flush=True)
        self.heartbeat.closed(self)


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


@contextmanager
def stage(desc: str, *, enabled: bool = True) -> Iterator[None]:
    """One long step with no count of its own (e.g. a single attack call) as a one-step
    :func:`bar` named ``desc``: on a log the heartbeat reports it while it runs and one
    line says how long it took."""
    with bar(total=1, desc=desc, enabled=enabled, unit="step") as steps:
        yield
        steps.update(1)
