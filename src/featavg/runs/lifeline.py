"""Worker processes that die with their parent.

A process-pool sweep killed with SIGKILL (the OOM killer, ``kill -9``, a batch system's hard
limit) cannot stop its workers: ``concurrent.futures`` workers would go on training and
writing into the run store for minutes with nobody waiting for them, racing the next run of
the sweep. So every worker ties its life to its parent's, first thing, in the pool's
initializer (:func:`die_with_parent`):

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its
  parent dies;
* the parent may be the pool's fork server, not the sweep (and a fork server lives on while
  it has workers), so a daemon thread also watches the sweep itself (the *owner*): it waits
  on a pidfd of the owner (Linux 5.3+: woken the moment the owner is gone), else polls every
  :data:`POLL_S` seconds, then SIGKILLs its own process;
* a worker whose owner is already gone when it starts exits at once.

A worker killed mid-write leaves at most a hidden staged directory, which the next write
beside it removes (:func:`featavg.runs.staging.clean_leftovers`): never a partial run.

This module sits outside :mod:`featavg.sweep` on purpose: the pool's initializer is
imported in the fresh worker before anything else, and importing the sweep package would
import torch first, too early for :func:`featavg.threads.configure` to size torch's
inter-op pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

from featavg.threads import configure as configure_threads

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5


def _pdeathsig() -> bool:
    """Ask the Linux kernel for SIGKILL when our parent dies; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(owner: int, parent: int) -> None:
    """Block until ``owner`` is gone (or our ``parent``), then SIGKILL this process."""
    try:
        fd = os.pidfd_open(owner)
    except (AttributeError, OSError):  # not Linux 5.3+: poll
        while _alive(owner) and os.getppid() == parent:
            time.sleep(POLL_S)
    else:
        select.select([fd], [], [])  # readable once the owner has exited
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def die_with_parent(owner: int) -> None:
    """End this process as soon as its parent is gone (the kernel's parent-death signal on
    Linux, else a polling thread), and now if the process ``owner`` (the sweep that asked
    for this worker) is gone already."""
    parent = os.getppid()
    _pdeathsig()
    if parent == 1 or not _alive(owner) or os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch, args=(owner, parent), daemon=True, name="lifeline").start()


def init_worker(owner: int, threads: int) -> None:
    """Process-pool initializer: :func:`die_with_parent`, then the thread policy
    (:func:`featavg.threads.configure`) with ``threads`` threads."""
    die_with_parent(owner)
    configure_threads(threads)
