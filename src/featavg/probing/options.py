"""What a probe measures, beside the model, the data and the layer: :class:`ProbeOptions`,
checked once for every caller (the API, ``featavg probe``), and :class:`ProbeRun`: where
the probe's run directory goes and how it runs (never part of what it measures)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featavg.config import ConfigError

if TYPE_CHECKING:
    import torch

# the largest seed any featavg command takes (torch's manual_seed wants < 2^64; run and
# train configs refuse the same)
MAX_SEED = 2**63 - 1
# radii must survive float32 (the attack's dtype), and a curve of more radii than this is
# a typo (a curve is a few dozen radii)
MAX_RADIUS = 1e30
MAX_RADII = 1000
# a point budget above this is a typo (the probe keeps that many features in memory)
MAX_POINTS = 10_000_000


def _int_at_least(name: str, value: Any, low: int, high: int = MAX_POINTS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: must be an integer in {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class ProbeOptions:
    """The probe's measurement settings (``featavg probe`` flags of the same names).

    class_means (k, D): use these mu_j instead of measuring them (e.g. the synthetic
    cluster centers); centre: subtract the global feature mean from measured means;
    num_classes: k when neither the grouping nor the data say it; class_names: labels of
    the figure's columns; probe_points: at most this many features per split for the
    linear probe (>= 10); grad_points: the first points whose gradients assign units to
    outputs (>= 1); robust_eps: also an L2 robustness curve at these radii (finite, >= 0,
    in the model's input units) on the first ``robust_points`` evaluation points (>= 1);
    batch_size (>= 1); seed: subsamples and splits (0..2^63-1).
    A value out of range is a one-line :class:`ConfigError` naming the option."""

    class_means: torch.Tensor | None = None
    centre: bool = False
    num_classes: int | None = None
    class_names: Sequence[str] | None = None
    probe_points: int = 2048
    grad_points: int = 2048
    robust_eps: Sequence[float] | None = None
    robust_points: int = 500
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        _int_at_least("probe_points", self.probe_points, 10)
        _int_at_least("grad_points", self.grad_points, 1)
        _int_at_least("robust_points", self.robust_points, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("seed", self.seed, 0, MAX_SEED)
        if self.num_classes is not None:
            _int_at_least("num_classes", self.num_classes, 2, 100_000)
        if self.robust_eps is not None:
            eps = tuple(self.robust_eps)
            if not eps or len(eps) > MAX_RADII:
                raise ConfigError(f"robust_eps: give 1..{MAX_RADII} radii, got {len(eps)}")
            for e in eps:
                if (
                    not isinstance(e, int | float)
                    or not math.isfinite(e)
                    or not 0 <= e <= MAX_RADIUS
                ):
                    raise ConfigError(
                        f"robust_eps: each radius must be a number in 0..{MAX_RADIUS:g}, got {e!r}"
                    )
            object.__setattr__(self, "robust_eps", tuple(float(e) for e in eps))

    def identity(self) -> dict[str, Any]:
        """The options that change what is measured, as JSON (part of a cached probe's
        identity; the given class means enter through their fingerprint)."""
        from featavg.probing.data import tensor_fingerprint

        return {
            "class_means": None
            if self.class_means is None
            else tensor_fingerprint(self.class_means),
            "centre": self.centre,
            "probe_points": self.probe_points,
            "grad_points": self.grad_points,
            "robust_eps": None if self.robust_eps is None else list(self.robust_eps),
            "robust_points": self.robust_points if self.robust_eps is not None else None,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ProbeRun:
    """How a cached probe runs: ``out`` (that directory) or ``root`` (``<root>/probe-<hash>``),
    ``force`` (recompute a cached one; never replaces a directory of another kind),
    ``device`` (None: where the model is; else the model is moved there), ``progress``, and
    ``model_info``: JSON-able facts about where the model came from (part of its identity)."""

    root: Path | None = None
    out: Path | None = None
    force: bool = False
    device: str | None = None
    progress: bool = False
    model_info: dict[str, Any] | None = None

    @property
    def cached(self) -> bool:
        """Whether the probe is written (and served) at all."""
        return self.root is not None or self.out is not None
