"""How many CPU threads torch uses, and how they wait: one policy for the CLI's runs.

The work is many small tensor ops (GD steps on ensembles of two-layer nets, PGD steps), so
each op is one short OpenMP parallel region ending in a barrier. With torch's defaults (one
thread per core; libgomp's threads spin a while before they sleep) a competing process on
one of two cores makes every barrier wait for the thread that shares its core, while the
spinning threads take CPU from both: the 10-seed ``synthetic-robustness`` run goes from
~10 s alone to ~19 s beside a busy loop and 22-43 s beside another torch program.

**The policy** (:func:`configure`):

* threads T = ``--threads N`` if given, else ``$OMP_NUM_THREADS`` when it is a positive
  whole number (an explicit choice of the user or a scheduler: Dask's workers set 1), else
  the usable cores (:func:`usable_cores`: the affinity mask, capped by a cgroup CPU quota).
* idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``, unless the variable is
  already set) instead of spinning.
* each of the ``--workers`` processes of ``sweep --executor process`` gets
  :func:`worker_threads` = ``max(1, T // workers)`` and inherits the wait policy. Dask
  workers are not ours to configure: their nannies set ``OMP_NUM_THREADS=1`` by default.

**Why, by measurement** (``benchmarks/bench_threads.py`` on this 2-core machine; the
README has the tables). The 10-seed ``synthetic-robustness`` run, medians of 2, alone /
beside a busy loop / beside another torch program: torch's defaults 9.7 / 18.7 / 28.6 s,
this policy 10.1 / 13.6 / 18.4 s, one thread 12.0 / 13.3 / 19.5 s. Passive waiting does
it: with 2 threads either way it costs nothing alone (10.3 s) and turns 19.8 s into 13.3 s
beside a busy loop, 41.2 s into 19.8 s beside a torch loop, 46 s into 23 s beside two busy
loops (one thread: 23 s). So all cores with passive waiting is as fast as one thread when
the cores are shared and ~20% faster alone. We tried a load-dependent count too (the idle
cores read from ``/proc/stat`` at the start, at least 1): it matched one thread beside a
competitor but gained nothing over passive waiting, delayed every start by its sample,
missed competitors that start later, and made the count, hence the float rounding of some
results, depend on the load (between 1 and 2 threads ``synthetic-scaling`` and
``synthetic-dynamics`` differ by ~1e-8 relative; the other experiments are byte-identical).
This policy's count is fixed for a machine.

**When it takes effect.** libgomp reads ``OMP_WAIT_POLICY`` once, when ``import torch``
loads it: measured with this torch 2.13 CPU build, ``OMP_WAIT_POLICY=ACTIVE`` set in
``os.environ`` before ``import torch`` makes the idle OpenMP thread burn CPU during a
``sleep`` after a parallel op, set after ``import torch`` it does not. So
:func:`passive_wait` (also called by :func:`configure`) must run before anything imports
torch; after that only the thread count can change. The inter-op pool (unused by this
code) gets T too when :func:`configure` is the first to import torch, as torch allows it
to be sized only before any parallel work.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

from featavg.config import ConfigError

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"

THREADS_HELP = (
    "torch CPU threads (default: $OMP_NUM_THREADS if set, else the usable cores; idle "
    "threads sleep instead of spinning; sweep --executor process splits them among workers)"
)

_in_force: int | None = None  # the count the last configure() set


def cgroup_cpu_limit(path: str | None = None) -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``: "QUOTA PERIOD" in microseconds),
    rounded up; None without a quota ("max") or without the file."""
    try:
        with open(path or CGROUP_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask (``os.cpu_count()`` where there
    is none), capped by a cgroup CPU quota."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit is not None else cores


def env_threads() -> int | None:
    """``$OMP_NUM_THREADS`` as a positive whole number (the first of a nested list such as
    ``4,2``), or None when it is unset or not one (OpenMP ignores such values too)."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads() -> int:
    """The policy's count without ``--threads``: ``$OMP_NUM_THREADS`` if set, else
    :func:`usable_cores`."""
    explicit = env_threads()
    return explicit if explicit is not None else usable_cores()


def max_threads() -> int:
    """The most threads ``--threads`` accepts: 8 per core the machine has, at least 64.
    More buys nothing, and thousands crash OpenMP (a segfault at 2500 threads, measured)."""
    return max(64, 8 * (os.cpu_count() or 1))


def check_threads(threads: object) -> int:
    """``threads`` as given to ``--threads``, or :class:`ConfigError` naming the option and
    the allowed range (1 .. :func:`max_threads`)."""
    top = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= top:
        raise ConfigError(
            f"--threads: need a whole number in 1..{top} (8 per core of this machine), "
            f"got {threads!r}"
        )
    return threads


def passive_wait() -> bool:
    """Make idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE`` unless set); True when
    it can still take effect, i.e. torch is not imported yet. Cheap: the CLI calls it
    before anything that may import torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def configure(threads: int | None = None) -> int:
    """Apply the thread policy to this process; returns the thread count now in force.

    ``threads`` is ``--threads`` (None: :func:`default_threads`). Sets the wait policy
    (:func:`passive_wait`; inherited by spawned workers) and torch's intra-op count, and its
    inter-op count too while torch has not used its inter-op pool yet."""
    n = default_threads() if threads is None else check_threads(threads)
    passive_wait()
    import torch

    torch.set_num_threads(n)
    # the inter-op pool can be sized until torch first uses it: also after an import that
    # ran nothing, as in a forkserver's preloaded workers; afterwards torch refuses
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    global _in_force
    _in_force = n
    return n


def threads_in_force() -> int:
    """The count the last :func:`configure` set in this process, else the policy's."""
    return _in_force if _in_force is not None else default_threads()


def worker_threads(workers: int) -> int:
    """Threads for each of ``workers`` worker processes: ``max(1, T // workers)`` of this
    process's count T (:func:`threads_in_force`)."""
    return max(1, threads_in_force() // max(1, workers))
