"""What an experiment's ``run`` returns, and how per-seed numbers become a summary."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featavg.metrics.intervals import COSINE, POSITIVE, PROPORTION, REAL, Kind, mean_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Summary keys starting with this are closed-form constants (theory), never measurements.
THEORY_PREFIX = "theory_"


@dataclass
class ExperimentOutput:
    """numbers: JSON-able summary entries; tables: name -> CSV rows; figures: name ->
    matplotlib Figure. data: what the numbers were computed on (None: the experiment's
    declared data); stand_in: True when that is a stand-in for the paper's data set, so
    every summary, figure and report section says so; timings: seconds of its parts
    (recorded in the provenance: they vary with the machine and its load, never results)."""

    numbers: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    data: str | None = None
    stand_in: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def kinds_of(
    keys: Iterable[str],
    *,
    proportions: Collection[str] = (),
    cosines: Collection[str] = (),
    positive: Collection[str] = (),
    real: Collection[str] = (),
) -> dict[str, Kind]:
    """key -> its declared :class:`~featavg.metrics.intervals.Kind`. Each argument lists
    names or shell-style patterns (``"*_acc_*"``); every key must match the patterns of
    exactly one kind (``ValueError`` otherwise: an undeclared key is never given a default
    interval). ``theory_`` keys are constants and need no kind."""
    declared = ((PROPORTION, proportions), (COSINE, cosines), (POSITIVE, positive), (REAL, real))
    for kind, patterns in declared:
        if isinstance(patterns, str):
            raise TypeError(f"{kind.name}: give a collection of patterns, not the string")
    out = {}
    for key in keys:
        if key.startswith(THEORY_PREFIX):
            continue
        hits = [k for k, patterns in declared if any(fnmatchcase(key, p) for p in patterns)]
        if len(hits) != 1:
            found = ", ".join(k.name for k in hits) or "none"
            raise ValueError(
                f"per_seed key {key!r}: declare exactly one kind (proportions, cosines, "
                f"positive or real); matched: {found}"
            )
        out[key] = hits[0]
    return out


def aggregate(
    per_seed: Mapping[str, torch.Tensor | Sequence[float]],
    *,
    proportions: Collection[str] = (),
    cosines: Collection[str] = (),
    positive: Collection[str] = (),
    real: Collection[str] = (),
) -> dict[str, Any]:
    """Per-seed values -> {key: mean, key_ci95: [lo, hi], per_seed: {key: [...]}}.

    Each key's interval follows its declared kind (:func:`kinds_of`; the intervals are
    those of :func:`featavg.metrics.intervals.mean_interval`): accuracies and fractions
    never leave [0, 1], cosines [-1, 1], radii and losses never go negative. One seed gives
    no ``_ci95``. Keys starting with ``theory_`` are closed-form constants: they must be the
    same for every seed (``ValueError`` otherwise) and are written once, with no interval
    and not under ``per_seed``.
    """
    kinds = kinds_of(
        per_seed, proportions=proportions, cosines=cosines, positive=positive, real=real
    )
    out: dict[str, Any] = {}
    raw: dict[str, list[float]] = {}
    for key, values in per_seed.items():
        vals = [float(v) for v in (values.tolist() if torch.is_tensor(values) else values)]
        if not vals:
            raise ValueError(f"per_seed key {key!r}: no values")
        if key.startswith(THEORY_PREFIX):
            if any(not math.isclose(v, vals[0], rel_tol=1e-9, abs_tol=1e-12) for v in vals):
                raise ValueError(f"{key}: a theory constant differs across seeds: {vals}")
            out[key] = vals[0]
            continue
        raw[key] = vals
        try:
            mean, lo, hi = mean_interval(vals, kinds[key])
        except ValueError as err:
            raise ValueError(f"per_seed key {key!r}: {err}") from None
        out[key] = mean
        if len(vals) > 1:
            out[f"{key}_ci95"] = [lo, hi]
    out["per_seed"] = raw
    return out


def band(
    points: Iterable[Sequence[float]], kind: Kind
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) arrays, one entry per point (a step, a radius), from the per-seed
    values at each point: the bands drawn around curves. ``kind``: what the curve measures
    (``PROPORTION`` for accuracy curves, ``COSINE``, ``POSITIVE`` for radii), so that a
    band stays where the quantity lives. One seed gives lo = hi = mean (no band drawn)."""
    stats = np.array([mean_interval(values, kind) for values in points])
    return stats[:, 0], stats[:, 1], stats[:, 2]


def record_band(
    records: list[dict[str, Any]], key: str, kind: Kind
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`band` of a per-seed metric of this ``kind`` over training records."""
    return band([r[key].tolist() for r in records], kind)
