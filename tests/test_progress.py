"""Progress on a log (stderr not a terminal): the heartbeat lines of open bars, driven by a
fake clock (no sleeps), and the closing lines."""

from __future__ import annotations

import threading

import pytest

from featavg import progress
from featavg.progress import Heartbeat, LogBar


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Log:
    """What the test's stderr (captured: no terminal) received, as lines."""

    def __init__(self, capsys):
        self.capsys, self.text = capsys, ""

    def lines(self) -> list[str]:
        self.text += self.capsys.readouterr().err
        assert "\r" not in self.text  # a log never gets a redrawn bar
        return self.text.splitlines()


@pytest.fixture
def log(monkeypatch, capsys):
    """The test's stderr, and the shared heartbeat on a fake clock, unthreaded."""
    clock = Clock()
    beat = Heartbeat(interval=10.0, clock=clock, threaded=False)
    monkeypatch.setattr(progress, "HEARTBEAT", beat)
    return Log(capsys), clock, beat


def test_a_silent_step_gets_a_status_line_every_interval(log):
    err, clock, beat = log
    steps = progress.bar(range(5), desc="train binary")
    assert isinstance(steps, LogBar)  # stderr is no terminal
    it = iter(steps)
    next(it), next(it), next(it)  # two steps done, the third running
    clock.now += 9.9
    assert beat.beat() is None and err.lines() == []  # not yet 10 s of silence
    clock.now += 0.1
    assert beat.beat() == "train binary: 2/5 it, 10 s"
    assert beat.beat() is None  # the line just written restarts the count
    clock.now += 25  # a step that takes 25 s: a line at each check 10 s after the last
    assert beat.beat() == "train binary: 2/5 it, 35 s"
    list(it)
    lines = err.lines()
    assert lines[:2] == ["train binary: 2/5 it, 10 s", "train binary: 2/5 it, 35 s"]
    assert lines[2].startswith("train binary: 5/5 it in ")  # the closing line
    assert len(lines) == 3
    clock.now += 100
    assert beat.beat() is None  # no open bar: nothing to report


def test_nested_bars_share_one_line_outermost_first_with_the_postfix(log):
    err, clock, beat = log
    outer = progress.bar(["alignment", "adversarial"], desc="reproduce")
    names = iter(outer)
    name = next(names)
    outer.set_postfix_str(name)
    clock.now += 4
    with progress.bar(total=3, desc="attack", unit="radius") as inner:
        inner.update(1)
        clock.now += 6
        assert beat.beat() == "reproduce (alignment): 0/2 it, 10 s; attack: 1/3 radius, 6 s"
        inner.update(2)
        clock.now += 8
    # the inner bar's closing line counts as output: the next status line waits 10 s from it
    assert beat.beat() is None
    clock.now += 10
    assert beat.beat() == "reproduce (alignment): 0/2 it, 28 s"
    list(names)
    assert err.lines()[-1].startswith("reproduce: 2/2 it in ")


def test_no_status_lines_on_a_terminal_or_when_off(log, monkeypatch):
    err, clock, beat = log
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    live = progress.bar(range(2), desc="live")  # redraws itself: needs no heartbeat
    off = progress.bar(range(2), desc="off", enabled=False)
    clock.now += 60
    assert beat.beat() is None
    live.close(), off.close()


def test_the_thread_beats_while_a_bar_is_open_and_stops_after_the_last_closes(monkeypatch):
    clock = Clock()
    written = threading.Event()
    lines: list[str] = []

    def write(line: str) -> None:
        lines.append(line)
        written.set()

    beat = Heartbeat(interval=10.0, poll=0.001, clock=clock, write=write)
    task = LogBar(total=4, desc="cells", unit="cell", heartbeat=beat)
    thread = beat.thread
    assert thread is not None and thread.is_alive()
    task.update(3)
    clock.now += 10  # the thread's next poll finds 10 s of silence
    assert written.wait(timeout=30)
    assert lines[0] == "cells: 3/4 cell, 10 s"
    task.close()
    thread.join(timeout=30)
    assert not thread.is_alive()  # no open bar, no thread
    again = LogBar(total=1, desc="next", heartbeat=beat)  # a new bar starts a new thread
    assert beat.thread is not thread and beat.thread is not None and beat.thread.is_alive()
    again.close()
    beat.thread.join(timeout=30)
    assert not beat.thread.is_alive()


def test_a_stage_without_a_count_is_reported_while_it_runs(log):
    err, clock, beat = log
    with progress.stage("attack (PGD)"):
        clock.now += 12
        assert beat.beat() == "attack (PGD): 0/1 step, 12 s"
    assert err.lines()[-1].startswith("attack (PGD): 1/1 step in ")
    with pytest.raises(KeyError), progress.stage("failing"):
        raise KeyError("x")
    assert err.lines()[-1].startswith("failing: 0/1 step in ")  # closed, not counted done
    clock.now += 60
    assert beat.beat() is None


def test_stop_ends_the_thread_even_with_a_bar_open():
    """At exit the heartbeat stops its thread, so it never writes during shutdown."""
    beat = Heartbeat(interval=10.0, poll=0.001, clock=Clock(), write=lambda line: None)
    task = LogBar(total=2, desc="left open", heartbeat=beat)
    thread = beat.thread
    assert thread is not None and thread.is_alive()
    beat.stop()
    assert not thread.is_alive()  # stop() joins it
    task.close()
