"""Every experiment behind one interface: name -> config class, run function, metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from featavg.config import ConfigError
from featavg.experiments import (
    synthetic_ablations,
    synthetic_adversarial,
    synthetic_alignment,
    synthetic_common,
    synthetic_dynamics,
    synthetic_robustness,
    synthetic_scaling,
)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type[BaseModel]
    run: Callable
    runtime: str  # expected wall time on 2 CPU cores at the default config
    data: str  # what data it needs
    # optional: run several configs differing only in ``batch_fields`` as one ensemble
    run_batch: Callable | None = None
    batch_fields: tuple[str, ...] = ()


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "synthetic-alignment",
            "Fig. 2a/b: cosine heatmaps, binary (averaging) vs 10-class (decoupling) net",
            synthetic_alignment.SyntheticAlignmentConfig,
            synthetic_alignment.run,
            "~2 s (1 seed), ~4 s (10 seeds)",
            "none (synthetic)",
            run_batch=synthetic_alignment.run_batch,
            batch_fields=synthetic_common.BATCH_FIELDS,
        ),
        Experiment(
            "synthetic-robustness",
            "Fig. 3 left: robust accuracy vs L2 radius (PGD + exact), binary vs 10-class",
            synthetic_robustness.SyntheticRobustnessConfig,
            synthetic_robustness.run,
            "~2 s (1 seed), ~3.5 s (10 seeds)",
            "none (synthetic)",
        ),
        Experiment(
            "synthetic-scaling",
            "ours: 50% radius vs k and vs d with fitted log-log slopes (theory -1/2 and 0)",
            synthetic_scaling.SyntheticScalingConfig,
            synthetic_scaling.run,
            "~10 s (3 seeds)",
            "none (synthetic)",
        ),
        Experiment(
            "synthetic-ablations",
            "SPEC §3 ablations: init std, He init, lr, n, SNR, near-orthogonality, norms, adv.",
            synthetic_ablations.SyntheticAblationsConfig,
            synthetic_ablations.run,
            "~16 s (1 seed)",
            "none (synthetic)",
        ),
        Experiment(
            "synthetic-dynamics",
            "ours: alignment and PGD / exact radii over the course of training",
            synthetic_dynamics.SyntheticDynamicsConfig,
            synthetic_dynamics.run,
            "~9 s (1 seed)",
            "none (synthetic)",
        ),
        Experiment(
            "synthetic-adversarial",
            "L2 adversarial training (eps 0/20/40) of the 100-unit binary net: decoupling?",
            synthetic_adversarial.SyntheticAdversarialConfig,
            synthetic_adversarial.run,
            "~13 s (1 seed)",
            "none (synthetic)",
        ),
    ]
}


def get_experiment(name: str) -> Experiment:
    """The registered experiment, or a ConfigError listing the valid names."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: unknown {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
