"""Ours: how the robustness radius scales with the number of clusters k and with d.

Theory (the paper's claims): the feature-averaging binary net flips at sqrt(d/k) (log-log slope -1/2
in k, +1/2 in d); the decoupled fine-grained net read out k-way or by argmax needs
Theta(sqrt(d)) (slope 0 in k); its zero-bias sum form sqrt(d/(1 + k/2)) shrinks like
1/sqrt(k) again. For every k (at d = ``d_for_k``) and every d (at k = ``k_for_d``) we train
both nets with 100 points per cluster, run the PGD protocol on a radius grid scaled by
sqrt(d), and take the 50% radius (linearly interpolated crossing) and the exact median
radius. Slopes are fitted per seed; their mean and 95% interval are reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator

from featavg import theory
from featavg.config.checks import check_list
from featavg.data.synthetic import SyntheticConfig
from featavg.experiments.costs import Job, synthetic_estimate
from featavg.experiments.output import ExperimentOutput, aggregate
from featavg.experiments.spec import REPRODUCE, TINY, Check, Claim, Experiment
from featavg.experiments.synthetic_attack import (
    READOUT_NAMES,
    READOUTS,
    AttackConfig,
    attack_pair,
    exact_readouts,
)
from featavg.experiments.synthetic_common import SyntheticRunConfig, train_pair
from featavg.experiments.tolerances import SLOPE_TOL
from featavg.metrics.curves import crossing_radius, loglog_slope, median_radius
from featavg.metrics.intervals import plural
from featavg.plots.scaling import scaling_figure
from featavg.runs.context import RunContext
from featavg.runs.guards import ResourceEstimate

THEORY_SLOPE_K = {"binary": -0.5, "multiclass": 0.0, "derived_sum": -0.5, "derived_argmax": 0.0}


class SyntheticScalingConfig(SyntheticRunConfig):
    """Config of ``synthetic-scaling`` (``data`` gives everything but k, d and n)."""

    ks: tuple[int, ...] = Field(
        (2, 4, 8, 16),
        description="k values of the k sweep (>= 2 of them, increasing; k h <= 16 keeps exact "
        "radii for every read-out)",
    )
    d_for_k: int = Field(3072, ge=2, description="d of the k sweep")
    ds: tuple[int, ...] = Field(
        (256, 768, 3072), description="d values of the d sweep (>= 2 of them, increasing)"
    )
    k_for_d: int = Field(10, ge=2, description="k of the d sweep")
    points_per_cluster: int = Field(100, ge=1, description="training points per cluster")
    n_test: int = Field(400, ge=1, description="test points attacked per setting")
    radii_rel: tuple[float, ...] = Field(
        tuple(round(0.05 * i, 2) for i in range(25)),
        description="radius grid in units of sqrt(d) (>= 0, strictly increasing)",
    )
    attack: AttackConfig = AttackConfig()
    seeds: int = Field(3, ge=1, description="independent replicates per setting")

    @model_validator(mode="after")
    def _no_ignored_fields(self) -> SyntheticScalingConfig:
        # the sweep sets these per setting; accepting a value and ignoring it would mislead
        defaults = SyntheticConfig()
        replaced = {
            "d": "d_for_k (the k sweep) and ds (the d sweep)",
            "k": "ks (the k sweep) and k_for_d (the d sweep)",
            "n_train": "points_per_cluster",
            "n_test": "n_test",
            "positive": "nothing: J+ is the first k // 2 clusters at every k",
        }
        for name, instead in replaced.items():
            if getattr(self.data, name) != getattr(defaults, name):
                raise ValueError(
                    f"data.{name}: synthetic-scaling sets it per setting; use {instead}"
                )
        if self.attack.radii is not None:
            raise ValueError("attack.radii: synthetic-scaling uses radii_rel (units of sqrt(d))")
        # a slope needs two settings; the same setting twice would be fitted twice
        check_list("ks", self.ks, low=2, min_len=2, increasing=True)
        check_list("ds", self.ds, low=1, min_len=2, increasing=True)
        check_list("radii_rel", self.radii_rel, low=0.0, min_len=1, increasing=True)
        for d, k in [(self.d_for_k, k) for k in self.ks] + [(d, self.k_for_d) for d in self.ds]:
            self.setting_data(d, k)  # every derived data config must itself be valid
        return self

    def setting_data(self, d: int, k: int) -> SyntheticConfig:
        """The data config of the setting (d, k): ``data`` with d, k, n set by the sweep."""
        return SyntheticConfig.model_validate(
            {
                **self.data.model_dump(),
                "d": d,
                "k": k,
                "positive": None,
                "n_train": self.points_per_cluster * k,
                "n_test": self.n_test,
            }
        )


def _setting(
    cfg: SyntheticScalingConfig, d: int, k: int, device: torch.device, progress: bool
) -> dict[str, list[float]]:
    """radius50 (PGD) and exact median radius per read-out, each a per-seed list."""
    data_cfg = cfg.setting_data(d, k)
    pair = train_pair(cfg, device, progress, data_cfg=data_cfg, record_alignment=False)
    radii = tuple(r * math.sqrt(d) for r in cfg.radii_rel)
    attack = cfg.attack.model_copy(update={"radii": radii})
    curves, exact = attack_pair(pair, attack)
    out: dict[str, list[float]] = {}
    for name in READOUTS:
        out[f"pgd_{name}"] = [crossing_radius(radii, curve) for curve in curves[name]]
        if name in exact:
            out[f"exact_{name}"] = [median_radius(r) for r in exact[name]]
    return out


def fit_grid(
    xs: Sequence[int], results: Sequence[Mapping[str, Sequence[float]]]
) -> tuple[list[int], list[str]]:
    """(settings, series) that the slopes are fitted over: every series over the same
    settings, those where every series was measured. When fewer than two settings have
    every series (exact radii missing at most k), the exact series are dropped and the PGD
    ones fitted over the whole sweep."""
    every = list(dict.fromkeys(s for r in results for s in r))
    complete = [i for i, r in enumerate(results) if all(s in r for s in every)]
    if len(complete) >= 2:
        return complete, every
    return list(range(len(xs))), [s for s in every if s.startswith("pgd_")]


def _slopes(
    xs: Sequence[int], results: Sequence[Mapping[str, Sequence[float]]], prefix: str
) -> dict[str, list[float]]:
    """Per-seed log-log slopes of every series over the settings of :func:`fit_grid`."""
    settings, series_fitted = fit_grid(xs, results)
    if len(settings) < 2:
        return {}
    x = [xs[i] for i in settings]
    n_seeds = len(next(iter(results[settings[0]].values())))
    return {
        f"{prefix}_{series}": [
            loglog_slope(x, [results[i][series][s] for i in settings]) for s in range(n_seeds)
        ]
        for series in series_fitted
    }


def _fit_note(
    axis: str, xs: Sequence[int], results: Sequence[Mapping[str, Sequence[float]]]
) -> str | None:
    """A sentence when the slopes leave settings or series out (None otherwise)."""
    settings, series_fitted = fit_grid(xs, results)
    every = list(dict.fromkeys(s for r in results for s in r))
    if len(settings) == len(xs) and len(series_fitted) == len(every):
        return None
    used = ", ".join(str(xs[i]) for i in settings)
    dropped = [s for s in every if s not in series_fitted]
    text = f"slopes in {axis} fitted over {axis} = {used}, the settings with every series"
    if dropped:
        text += f"; no exact slopes ({', '.join(dropped)} missing at most settings)"
    return text + " (exact radii need at most 16 hidden units)"


def _name(key: str) -> str:
    """'slope_k_pgd_binary' -> 'slope_k_binary'; exact slopes keep their 'exact_' tag."""
    return key.replace("_pgd_", "_")


def run(cfg: SyntheticScalingConfig, ctx: RunContext) -> ExperimentOutput:
    """Both sweeps, slopes with intervals, one figure per sweep, a table of every point."""
    device, progress = ctx.device, ctx.progress
    k_results = [_setting(cfg, cfg.d_for_k, k, device, progress) for k in cfg.ks]
    d_results = [_setting(cfg, d, cfg.k_for_d, device, progress) for d in cfg.ds]
    per_seed = {_name(k): v for k, v in _slopes(cfg.ks, k_results, "slope_k").items()}
    per_seed.update({_name(k): v for k, v in _slopes(cfg.ds, d_results, "slope_d").items()})
    numbers = aggregate(per_seed, real=["slope_*"])
    notes = [_fit_note("k", cfg.ks, k_results), _fit_note("d", cfg.ds, d_results)]
    numbers["notes"] = [n for n in notes if n]
    for name, slope in THEORY_SLOPE_K.items():
        numbers[f"theory_slope_k_{name}"] = slope
        numbers[f"theory_slope_d_{name}"] = 0.5
    rows = []
    for sweep, xs, results in (("k", cfg.ks, k_results), ("d", cfg.ds, d_results)):
        for x, res in zip(xs, results, strict=True):
            for series, vals in res.items():
                mean = float(np.mean(vals))
                rows.append(
                    {
                        "sweep": sweep,
                        "value": x,
                        "series": series,
                        "radius_mean": mean,
                        "radius_per_seed": " ".join(f"{v:.4g}" for v in vals),
                    }
                )
    numbers["points"] = rows
    theory_k = {
        "sqrt(d/k) (f_FA)": [theory.radius_feature_averaging(cfg.d_for_k, k) for k in cfg.ks],
        "sqrt(d/2) (f_FD argmax)": [theory.radius_decoupling_argmax(cfg.d_for_k)] * len(cfg.ks),
    }
    theory_d = {
        "sqrt(d/k) (f_FA)": [theory.radius_feature_averaging(d, cfg.k_for_d) for d in cfg.ds],
        "sqrt(d/2) (f_FD argmax)": [theory.radius_decoupling_argmax(d) for d in cfg.ds],
    }
    figures = {
        "scaling_k": scaling_figure(
            "k",
            cfg.ks,
            k_results,
            theory_k,
            numbers,
            note=f"d = {cfg.d_for_k}, {plural(cfg.seeds, 'seed')}",
        ),
        "scaling_d": scaling_figure(
            "d",
            cfg.ds,
            d_results,
            theory_d,
            numbers,
            k_fixed=cfg.k_for_d,
            note=f"k = {cfg.k_for_d}, {plural(cfg.seeds, 'seed')}",
        ),
    }
    return ExperimentOutput(numbers=numbers, tables={"scaling": rows}, figures=figures)


_SLOPE_FORMULA = {
    ("k", "binary"): "−1/2 (√(d/k))",
    ("k", "multiclass"): "0 (√(d/2))",
    ("k", "derived_sum"): "−1/2 (√(d/(1+k/2)), large k)",
    ("k", "derived_argmax"): "0 (√(d/2))",
}


def finite_grid_slope(ks: tuple[int, ...], d: int) -> float:
    """Least-squares log-log slope of the zero-bias sum-form radius √(d/(1+|J−|)) over the
    k grid: it tends to −1/2 only as k → ∞, and over a finite grid it is flatter, which is
    what the fitted slopes estimate."""
    return loglog_slope(ks, [theory.radius_decoupling_sum(d, k - k // 2) for k in ks])


def _complete(cfg: SyntheticScalingConfig, ks: Sequence[int]) -> tuple[int, ...]:
    """The k values (with repeats) whose settings get exact radii for every read-out: the
    settings the slopes are fitted over (see :func:`fit_grid`)."""
    return tuple(
        k for k in ks if len(exact_readouts(cfg.attack, cfg.net.m, k, cfg.net.h)) == len(READOUTS)
    )


def _fitted_ks(cfg: SyntheticScalingConfig) -> tuple[int, ...]:
    """The k values the slopes in k are fitted over (mirrors :func:`fit_grid`)."""
    every = _complete(cfg, cfg.ks)
    return every if cfg.attack.exact and len(every) >= 2 else cfg.ks


def _exact_settings(cfg: SyntheticScalingConfig, axis: str) -> int:
    """How many settings of the sweep along ``axis`` get exact radii for every read-out."""
    return len(_complete(cfg, cfg.ks if axis == "k" else (cfg.k_for_d,) * len(cfg.ds)))


def checks(cfg: SyntheticScalingConfig) -> list[Check]:
    """Fitted slopes in k and in d of every read-out (PGD 50% radius, and exact median
    radius where at least two settings have exact radii) against the closed forms."""
    rows = []
    for axis in ("k", "d"):
        for readout, name in READOUT_NAMES.items():
            theory_value: float | str = f"theory_slope_{axis}_{readout}"
            formula = _SLOPE_FORMULA.get((axis, readout), "+1/2 (every form ∝ √d)")
            note = "log-log least squares per seed"
            if (axis, readout) == ("k", "derived_sum") and len(set(_fitted_ks(cfg))) >= 2:
                theory_value = finite_grid_slope(_fitted_ks(cfg), cfg.d_for_k)
                formula = "slope of √(d/(1+|J−|)) over the k grid"
                note += "; −1/2 only as k → ∞"
            kinds = [("PGD 50% radius", "")]
            if _exact_settings(cfg, axis) >= 2:
                kinds.append(("exact median radius", "exact_"))
            for kind, tag in kinds:
                rows.append(
                    Check(
                        f"{name}: slope in {axis}, {kind}",
                        f"slope_{axis}_{tag}{readout}",
                        theory_value,
                        formula,
                        SLOPE_TOL,
                        note=note,
                    )
                )
    return rows


CLAIM = Claim(
    "Robustness radius vs k and vs d (ours)",
    "From the paper's bounds: the averaging binary net flips at O(√(d/k)), the decoupled "
    "classifier needs Ω(√d). On log-log axes the radius has slope −1/2 in k for the "
    "averaging net and 0 for the decoupled one (k-way and argmax read-outs), and +1/2 in "
    "d for both.",
    "Slopes are fitted per seed, for the PGD 50% radius and for the exact median radius, "
    "over a sweep of k at fixed d and of d at fixed k (100 points per cluster). The "
    "zero-bias sum read-out √(d/(1+k/2)) shrinks like k^(−1/2) only asymptotically; its "
    "closed-form slope over the finite k grid is shown as well.",
)


def cost(cfg: SyntheticScalingConfig) -> ResourceEstimate:
    """One training and attack job per setting of both sweeps (k at fixed d, d at fixed
    k), run one after another."""
    net, pts, points = cfg.net, cfg.points_per_cluster, cfg.n_test
    settings = [(cfg.d_for_k, k) for k in cfg.ks] + [(d, cfg.k_for_d) for d in cfg.ds]
    jobs = [
        Job(cfg.seeds, pts * k, points, d, 2 * net.m + k * net.h, points, len(cfg.radii_rel))
        for d, k in settings
    ]
    return synthetic_estimate(jobs, cfg.train)


EXPERIMENT = Experiment(
    name="synthetic-scaling",
    description="ours: 50% radius vs k and vs d with fitted log-log slopes (theory -1/2 and 0)",
    config_cls=SyntheticScalingConfig,
    run=run,
    cost=cost,
    claim=CLAIM,
    figures={
        "scaling_k": "Radius vs k (log-log) with the closed forms.",
        "scaling_d": "Radius vs d (log-log) with the closed forms.",
    },
    tables={"scaling": ("sweep", "value", "series", "radius_mean", "radius_per_seed")},
    checks=checks,
    summary_keys=lambda cfg: ("points", "notes"),
    presets={
        REPRODUCE: {},
        TINY: {
            "ks": [2, 4],
            "d_for_k": 60,
            "ds": [30, 60],
            "k_for_d": 4,
            "points_per_cluster": 20,
            "n_test": 20,
            "seeds": 1,
            "train": {"steps": 20},
        },
    },
    runtime="~6 s (3 seeds, the default and reproduce); measured on 2 near-idle CPU cores",
    paper_refs=("theory_radius",),
)
