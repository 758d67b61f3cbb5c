"""A complete experiment in one module: what "How to add an experiment" in the README
describes, exercised by tests/test_toy_experiment.py (registered at run time, so no other
file of featavg changes).

Claim: for x ~ N(0, I_d), E||x||^2 = d, so the mean of ||x||^2 / d over n draws is 1.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from featavg.experiments.costs import negligible
from featavg.experiments.output import ExperimentOutput, aggregate
from featavg.experiments.spec import REPRODUCE, TINY, Check, Claim, Experiment
from featavg.plots import new_figure
from featavg.runs.context import RunContext
from featavg.seeding import generator


class ToyNormsConfig(BaseModel):
    """Config of ``toy-norms``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d: int = Field(50, ge=1, description="dimension")
    n: int = Field(200, ge=1, description="draws per seed")
    seed: int = Field(0, ge=0, description="replicate i uses seed + i")
    seeds: int = Field(1, ge=1, description="number of replicates")


def run(cfg: ToyNormsConfig, ctx: RunContext) -> ExperimentOutput:
    """Draw n Gaussian vectors per seed; summarise ||x||^2 / d."""
    ratios, rows = [], []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        x = torch.randn(cfg.n, cfg.d, generator=generator(seed, "toy"), dtype=torch.float64)
        r = x.pow(2).sum(1) / cfg.d
        ratios.append(float(r.mean()))
        rows += [{"seed": seed, "draw": i, "ratio": float(v)} for i, v in enumerate(r[:20])]
    numbers = aggregate({"norm_ratio": ratios}, positive=["norm_ratio"])
    numbers["theory_norm_ratio"] = 1.0
    fig, ax = new_figure()
    ax.hist([row["ratio"] for row in rows], bins=10)
    ax.set_xlabel("||x||^2 / d")
    return ExperimentOutput(numbers=numbers, tables={"draws": rows}, figures={"hist": fig})


EXPERIMENT = Experiment(
    name="toy-norms",
    description="toy: ||x||^2 / d of Gaussian vectors against 1",
    config_cls=ToyNormsConfig,
    run=run,
    cost=negligible,
    claim=Claim("Gaussian norms (toy)", "E||x||^2 = d for x ~ N(0, I_d).", "Nothing new."),
    figures={"hist": "Histogram of ||x||^2 / d."},
    tables={"draws": ("seed", "draw", "ratio")},
    checks=lambda cfg: [
        Check("mean ||x||^2 / d", "norm_ratio", "theory_norm_ratio", "1", 0.2, note="toy")
    ],
    presets={REPRODUCE: {"seeds": 2}, TINY: {"n": 20}},
    runtime="<1 s",
)
