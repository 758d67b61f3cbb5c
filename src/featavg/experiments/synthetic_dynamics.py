"""Ours: alignment and robustness over the course of training (when does averaging set in?).

Both nets are trained at the paper config; every ``record_every`` steps the alignment
numbers, the exact median L2 radius of every read-out (on ``n_attack`` test points) and the
PGD 50% radius of the binary and k-way read-outs are recorded. The averaged direction
appears within the first few GD steps and the binary net's radius falls to sqrt(d/k) with
it, while the fine-grained net's argmax radius stays Theta(sqrt(d)).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

from featavg import theory
from featavg.attacks.core import AttackSettings
from featavg.attacks.objectives import BinaryMargin, CrossEntropy, Objective
from featavg.attacks.two_layer.ensemble_subspace import ensemble_subspace_pgd
from featavg.attacks.two_layer.exact import ExactRadiusSolver, Readout
from featavg.config.checks import check_list
from featavg.data.synthetic import SyntheticDataset
from featavg.experiments.costs import Job, synthetic_estimate
from featavg.experiments.output import ExperimentOutput, aggregate, record_band
from featavg.experiments.spec import REPRODUCE, TINY, Check, Claim, Experiment
from featavg.experiments.synthetic_attack import EXACT_MAX_UNITS, scale_to_d
from featavg.experiments.synthetic_common import (
    TINY_DATA,
    ExtraMetrics,
    SyntheticRunConfig,
    train_pair,
)
from featavg.experiments.tolerances import EXACT_RADIUS_TOL
from featavg.metrics.curves import crossing_radius, median_radius
from featavg.metrics.intervals import COSINE, POSITIVE, plural
from featavg.models import TwoLayerEnsemble, TwoLayerNet, sum_form_net
from featavg.plots.dynamics import dynamics_figure
from featavg.runs.context import RunContext
from featavg.runs.guards import ResourceEstimate
from featavg.training import Record, TrainConfig
from featavg.training.two_layer_gd import TwoLayerRecordHook


class SyntheticDynamicsConfig(SyntheticRunConfig):
    """Config of ``synthetic-dynamics``."""

    train: TrainConfig = TrainConfig(record_every=1)
    n_attack: int = Field(
        200, ge=1, description="test points attacked at every record (the first n_attack)"
    )
    radii: tuple[float, ...] | None = Field(
        None,
        description="PGD radius grid (>= 0, strictly increasing; 50% radius interpolated); "
        "None: 0, 2, ..., 60 scaled by sqrt(d / 3072), the theory's sqrt(d) scale",
    )

    @model_validator(mode="after")
    def _radii_and_points(self) -> SyntheticDynamicsConfig:
        check_list("radii", self.radii, low=0.0, min_len=1, increasing=True)
        if self.n_attack > self.data.n_test:
            raise ValueError(
                f"n_attack: {self.n_attack} points to attack but data.n_test = "
                f"{self.data.n_test}; allowed: 1..{self.data.n_test}"
            )
        return self

    @model_validator(mode="after")
    def _exact_needs_small_nets(self) -> SyntheticDynamicsConfig:
        # the exact radii are this experiment's point: refuse nets the solver cannot handle
        # rather than run without them
        binary, fine = 2 * self.net.m, self.data.k * self.net.h
        if max(binary, fine) > EXACT_MAX_UNITS:
            raise ValueError(
                f"net: synthetic-dynamics tracks exact radii, which need at most "
                f"{EXACT_MAX_UNITS} hidden units per net; got 2m = {binary} (binary) and "
                f"k h = {fine} (fine-grained)"
            )
        return self

    def radius_grid(self) -> tuple[float, ...]:
        """The PGD radius grid of this config (see ``radii``)."""
        if self.radii is not None:
            return self.radii
        return scale_to_d(range(0, 62, 2), self.data.d)


def _robustness_metrics(cfg: SyntheticDynamicsConfig, device: torch.device) -> ExtraMetrics:
    """Per-record exact median radii and PGD 50% radii, for :func:`train_pair`."""

    def make(
        data: SyntheticDataset, seeds: list[int]
    ) -> tuple[TwoLayerRecordHook, TwoLayerRecordHook]:
        n = cfg.n_attack
        x, y, c = data.x_test[:, :n], data.y_test[:, :n], data.c_test[:, :n]
        x64 = x.to("cpu", torch.float64)
        signs = data.signs[0]
        groups, gy = (signs > 0).long(), (y > 0).long()
        one = torch.ones(1, 1, device=device)
        grid = cfg.radius_grid()

        def pgd_radius50(
            nets: list[TwoLayerNet],
            labels: torch.Tensor,
            objective: Objective,
            readout: torch.Tensor | None,
            certified: torch.Tensor,
        ) -> torch.Tensor:
            """PGD 50% radius; rows certified by the exact radii are not attacked."""
            correct = ensemble_subspace_pgd(
                nets,
                x,
                labels,
                grid,
                seeds=seeds,
                settings=AttackSettings(objective=objective),
                readout=readout,
                certified_radii=certified,
            )
            return torch.tensor(
                [crossing_radius(grid, a) for a in correct.double().mean(-1).cpu().tolist()]
            )

        def exact_radii(
            solvers: list[ExactRadiusSolver],
            nets: list[TwoLayerNet],
            labels: torch.Tensor,
            readout: Readout,
            groups: torch.Tensor | None = None,
        ) -> torch.Tensor:
            """(S, B) exact radii of every replicate (solvers: one per replicate's layer)."""
            return torch.stack(
                [
                    solver.radius(net.readout, labels[i], readout, groups).radius
                    for i, (solver, net) in enumerate(zip(solvers, nets, strict=True))
                ]
            )

        def solvers_of(nets: list[TwoLayerNet]) -> list[ExactRadiusSolver]:
            return [
                ExactRadiusSolver(net.linear.weight, net.linear.bias, x64[i])
                for i, net in enumerate(nets)
            ]

        def medians(radii: torch.Tensor) -> torch.Tensor:
            return torch.tensor([median_radius(r) for r in radii])

        def binary_metrics(step: int, model: TwoLayerEnsemble) -> dict[str, torch.Tensor]:
            nets = [model.member(i) for i in range(len(seeds))]
            radii = exact_radii(solvers_of(nets), nets, y, "margin")
            return {
                "exact_median_radius": medians(radii),
                "pgd_radius50": pgd_radius50(nets, y, BinaryMargin(), one, radii),
            }

        def multiclass_metrics(step: int, model: TwoLayerEnsemble) -> dict[str, torch.Tensor]:
            nets = [model.member(i) for i in range(len(seeds))]
            sums = [sum_form_net(net, signs) for net in nets]
            solvers = solvers_of(nets)  # the sum form shares the first layer
            argmax = exact_radii(solvers, nets, c, "argmax")
            return {
                "exact_median_radius_argmax": medians(argmax),
                "exact_median_radius_derived_argmax": medians(
                    exact_radii(solvers, nets, gy, "group_argmax", groups)
                ),
                "exact_median_radius_derived_sum": medians(exact_radii(solvers, sums, y, "margin")),
                "pgd_radius50": pgd_radius50(nets, c, CrossEntropy(), None, argmax),
            }

        return binary_metrics, multiclass_metrics

    return make


def run(cfg: SyntheticDynamicsConfig, ctx: RunContext) -> ExperimentOutput:
    """Train with per-record alignment and robustness measurements."""
    device, progress = ctx.device, ctx.progress
    pair = train_pair(cfg, device, progress, extra_metrics=_robustness_metrics(cfg, device))
    seeds, rec_b, rec_m = pair.seeds, pair.records_binary, pair.records_multiclass
    n = cfg.n_attack
    steps = [r["step"] for r in rec_b]
    rows = []
    for rb, rm in zip(rec_b, rec_m, strict=True):
        for i, seed in enumerate(seeds):
            row = {"step": rb["step"], "seed": seed}
            row.update({f"{k}_binary": float(v[i]) for k, v in rb.items() if k != "step"})
            row.update({f"{k}_multiclass": float(v[i]) for k, v in rm.items() if k != "step"})
            rows.append(row)

    def onset(records: list[Record], key: str, fraction: float = 0.9) -> list[int]:
        """First recorded step where the metric reaches ``fraction`` of its final value."""
        out = []
        for i in range(len(seeds)):
            series = [float(r[key][i]) for r in records]
            target = fraction * series[-1]
            out.append(next(s for s, v in zip(steps, series, strict=True) if v >= target))
        return out

    numbers = aggregate(
        {
            "averaging_onset_step": onset(rec_b, "cos_same_class_mean"),
            "decoupling_onset_step": onset(rec_m, "cos_diag_mean"),
            "final_exact_median_radius_binary": rec_b[-1]["exact_median_radius"].tolist(),
            "final_exact_median_radius_argmax": rec_m[-1]["exact_median_radius_argmax"].tolist(),
        },
        positive=["*_onset_step", "final_exact_median_radius_*"],
    )
    d, k = cfg.data.d, cfg.data.k
    numbers["theory_radius_feature_averaging"] = theory.radius_feature_averaging(d, k)
    numbers["theory_radius_decoupling_argmax"] = theory.radius_decoupling_argmax(d)

    fig = dynamics_figure(
        steps,
        {
            "binary: mean same-class cos": record_band(rec_b, "cos_same_class_mean", COSINE),
            "fine-grained: mean own-cluster cos": record_band(rec_m, "cos_diag_mean", COSINE),
        },
        {
            "binary (exact median)": record_band(rec_b, "exact_median_radius", POSITIVE),
            "binary (PGD r50)": record_band(rec_b, "pgd_radius50", POSITIVE),
            "fine-grained k-way (exact median)": record_band(
                rec_m, "exact_median_radius_argmax", POSITIVE
            ),
            "fine-grained k-way (PGD r50)": record_band(rec_m, "pgd_radius50", POSITIVE),
            "derived argmax (exact median)": record_band(
                rec_m, "exact_median_radius_derived_argmax", POSITIVE
            ),
            "derived sum (exact median)": record_band(
                rec_m, "exact_median_radius_derived_sum", POSITIVE
            ),
        },
        {"1/sqrt(|J_s|)": 1 / math.sqrt(len(cfg.data.positive_clusters))},
        {
            "sqrt(d/k)": numbers["theory_radius_feature_averaging"],
            "sqrt(d/2)": numbers["theory_radius_decoupling_argmax"],
        },
        note=f"{plural(len(seeds), 'seed')}, {n} test points",
    )
    return ExperimentOutput(numbers=numbers, tables={"dynamics": rows}, figures={"dynamics": fig})


def checks(cfg: SyntheticDynamicsConfig) -> list[Check]:
    """Final exact radii against the closed forms; when averaging and decoupling set in."""
    return [
        Check(
            "binary net: exact median radius after training",
            "final_exact_median_radius_binary",
            "theory_radius_feature_averaging",
            "√(d/k)",
            EXACT_RADIUS_TOL,
            True,
            "f_FA at a center",
        ),
        Check(
            "fine-grained net, k-way: exact median radius after training",
            "final_exact_median_radius_argmax",
            "theory_radius_decoupling_argmax",
            "√(d/2)",
            EXACT_RADIUS_TOL,
            True,
            "f_FD argmax at a center",
        ),
        Check(
            "averaging onset (GD step)",
            "averaging_onset_step",
            note="first step at 90% of the final mean same-class cosine",
        ),
        Check(
            "decoupling onset (GD step)",
            "decoupling_onset_step",
            note="first step at 90% of the final mean own-cluster cosine",
        ),
    ]


CLAIM = Claim(
    "Alignment and robustness over training (ours)",
    "The paper's analysis follows GD from small initialisation: hidden units pick up the "
    "averaged direction ∑_{j∈J_s} μ_j early in training and keep it, so the binary net's "
    "robustness radius settles near √(d/k), while the fine-grained net decouples and its "
    "argmax radius stays Θ(√d) ≈ √(d/2).",
    "At every recorded step: the alignment numbers, the exact median L2 radius of every "
    "read-out and the PGD 50% radius. Reported: when averaging and decoupling set in "
    "(first step at 90% of the final cosine) and the final exact radii beside √(d/k) and "
    "√(d/2).",
)


def cost(cfg: SyntheticDynamicsConfig) -> ResourceEstimate:
    """Training with an attack of ``n_attack`` points at every radius of the grid at every
    training record."""
    data, net = cfg.data, cfg.net
    units = 2 * net.m + data.k * net.h
    points = cfg.n_attack or data.n_test
    radii = len(cfg.radius_grid())
    job = Job(cfg.seeds, data.n_train, data.n_test, data.d, units, points, radii, 0, True)
    return synthetic_estimate([job], cfg.train)


EXPERIMENT = Experiment(
    name="synthetic-dynamics",
    description="ours: alignment and PGD / exact radii over the course of training",
    config_cls=SyntheticDynamicsConfig,
    run=run,
    cost=cost,
    claim=CLAIM,
    figures={"dynamics": "Alignment (top) and robustness radii (bottom) over the GD steps."},
    tables={
        "dynamics": (
            "step",
            "seed",
            "cos_same_class_mean_binary",
            "exact_median_radius_binary",
            "pgd_radius50_binary",
            "exact_median_radius_argmax_multiclass",
        )
    },
    checks=checks,
    presets={
        REPRODUCE: {},
        TINY: {
            "data": TINY_DATA,
            "train": {"steps": 5},
            "n_attack": 20,
        },
    },
    runtime="~5 s (1 seed, the default and reproduce; 4-8 s measured on 2 near-idle CPU cores)",
)
