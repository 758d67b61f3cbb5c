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


def available_memory() -> float:
    """Free CPU memory in bytes: ``MemAvailable`` of /proc/meminfo (free + reclaimable
    caches), else ``os.sysconf`` available pages; the cgroup limit when it is lower."""
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
    cgroup = _cgroup_free()
    return min(free, cgroup) if cgroup is not None else free
