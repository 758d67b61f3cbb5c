"""What this machine has free: the memory queries shared by the resource guards and the
data readers (a base module: no torch, nothing of featavg imported)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_free() -> float | None:
    """Bytes left under this process's cgroup v2 memory limit (None: no limit known)."""
    try:
        base = Path("/sys/fs/cgroup")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return float(limit) - float((base / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def _rlimit_free() -> float | None:
    """Bytes this process may still map under its address-space or data limits (``ulimit
    -v`` / ``ulimit -d``): the limit minus VmSize / VmData; None when neither is set."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        return None
    used = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmSize", "VmData") and value.split():
            used[key] = float(value.split()[0]) * 1024
    free = None
    for which, key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY and key in used:
            left = max(float(soft) - used[key], 0.0)
            free = left if free is None else min(free, left)
    return free


def available_memory() -> float:
    """Free CPU memory in bytes: ``MemAvailable`` of /proc/meminfo (free + reclaimable
    caches), else ``os.sysconf`` available pages; the cgroup limit or what the process's
    own address-space / data limits leave, when lower."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = float(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            free = math.inf  # unknown: nothing to compare with
    for limit in (_cgroup_free(), _rlimit_free()):
        if limit is not None:
            free = min(free, limit)
    return free
