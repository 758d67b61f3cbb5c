"""Resource guards: refuse, before anything is allocated, what cannot fit.

What a run needs is estimated by the run's owner from its config alone (each experiment's
``cost(cfg)``, :mod:`featavg.experiments.costs`; ``featavg train``'s
:func:`featavg.trained_models.cost.training_estimate`) as a coarse :class:`ResourceEstimate`:
the peak bytes of its largest tensors and a flop count turned into a rough wall time, good
to a factor of ~2. :func:`check` refuses (a :class:`~featavg.config.ConfigError`, one line
with the estimate and the limit) a run whose memory exceeds what the machine has free
(``MemAvailable`` of /proc/meminfo and the cgroup limit; the free CUDA memory on CUDA) or
whose time exceeds :data:`MAX_SECONDS`; ``allow_large=True`` (CLI ``--allow-large``)
skips both. Sweeps refuse grids of more than :data:`MAX_SWEEP_CELLS` cells the same way
(:func:`check_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError
from featavg.machine import available_memory

if TYPE_CHECKING:  # torch loads only when a run does (the CLI's parser needs none of it)
    import torch

MAX_SECONDS = 7 * 24 * 3600.0  # a run estimated longer than a week is refused
MAX_SWEEP_CELLS = 10_000  # a larger grid is refused (its plan alone is ~1 s per 1000 cells)
# rough sustained float32 throughput, flop/s: 2 CPU cores (the `runtime` of every experiment
# is measured there) and one GPU; used only for the time estimate
CPU_FLOPS, CUDA_FLOPS = 2e10, 1e13
OVERRIDE = "--allow-large (allow_large=True)"
F32 = 4  # bytes per float32
# what a run adds beyond its tensors: the libraries it loads (matplotlib for the figures),
# allocator slack; measured 40-130 MiB growth beyond the tensors on synthetic runs
RUN_OVERHEAD = 128 * 2**20
# a spawned pool worker: its own interpreter with torch and featavg loaded
WORKER_OVERHEAD = 384 * 2**20


@dataclass(frozen=True)
class ResourceEstimate:
    """memory: peak bytes on the compute device; host: peak bytes of CPU memory (equal to
    ``memory`` for CPU runs; data are drawn or loaded on the host first); flops: total
    floating-point operations; what: the dominant term, for the refusal message."""

    memory: float
    host: float
    flops: float
    what: str

    def seconds(self, device: torch.device) -> float:
        """Rough wall time: flops at :data:`CPU_FLOPS` or :data:`CUDA_FLOPS`."""
        return self.flops / (CUDA_FLOPS if device.type == "cuda" else CPU_FLOPS)

    def __add__(self, other: ResourceEstimate) -> ResourceEstimate:
        """Two workloads alive at once (e.g. the cells of a process pool)."""
        what = self.what if self.memory >= other.memory else other.what
        return ResourceEstimate(
            self.memory + other.memory, self.host + other.host, self.flops + other.flops, what
        )


def gib(nbytes: float) -> str:
    """'3.2 GiB', '512 MiB', '12 KiB': a byte count for a one-line message."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} B"


def duration(seconds: float) -> str:
    """'40 s', '3.5 h', '12 days'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.3g} days"


# ---------------------------------------------------------------- the machine


def device_memory(device: torch.device) -> float:
    """Free memory of the compute device: the CUDA free memory, else :func:`available_memory`."""
    if device.type == "cuda":
        import torch

        return float(torch.cuda.mem_get_info(device)[0])
    return available_memory()


# ---------------------------------------------------------------- the guards


def check(
    name: str, est: ResourceEstimate | None, device: torch.device, allow_large: bool = False
) -> None:
    """Refuse (a one-line :class:`ConfigError`: estimate, limit, the override) an estimate
    that needs more memory than is free on ``device`` (and on the host) or more time than
    :data:`MAX_SECONDS`. Nothing to check without an estimate or with ``allow_large``."""
    if est is None or allow_large:
        return
    where = "CUDA" if device.type == "cuda" else "CPU"
    limits = [(est.memory, device_memory(device), f"free {where} memory")]
    if device.type == "cuda":
        limits.append((est.host, available_memory(), "free CPU memory"))
    for need, have, label in limits:
        if need > have:
            raise ConfigError(
                f"resources: {name} needs ~{gib(need)} ({est.what}; a coarse estimate), more "
                f"than the {gib(have)} of {label}; make the config smaller, or pass "
                f"{OVERRIDE} to run anyway"
            )
    seconds = est.seconds(device)
    if seconds > MAX_SECONDS:
        raise ConfigError(
            f"resources: {name} needs ~{duration(seconds)} on {where} ({est.flops:.2g} flop; a "
            f"coarse estimate), more than the {duration(MAX_SECONDS)} limit; make the config "
            f"smaller, or pass {OVERRIDE} to run anyway"
        )


def check_grid(grid: dict[str, list[Any]], allow_large: bool = False) -> int:
    """The number of cells of ``grid``; a ConfigError above :data:`MAX_SWEEP_CELLS`
    (unless ``allow_large``), before any cell config is built."""
    cells = math.prod(len(values) for values in grid.values())
    if cells > MAX_SWEEP_CELLS and not allow_large:
        sizes = " x ".join(str(len(v)) for v in grid.values())
        raise ConfigError(
            f"--grid: {cells} cells ({sizes}), more than the limit of {MAX_SWEEP_CELLS}; "
            f"use fewer values, or pass {OVERRIDE} to run anyway"
        )
    return cells
