"""The config of ``synthetic-ablations`` (:mod:`featavg.experiments.synthetic_ablations`)
and the settings it expands into: each changes one knob of the paper config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from featavg.config import shown
from featavg.config.checks import check_list
from featavg.data.synthetic import SyntheticConfig, norm_ladder
from featavg.experiments.synthetic_common import SyntheticRunConfig


class SyntheticAblationsConfig(SyntheticRunConfig):
    """Config of ``synthetic-ablations``: the base (paper) config and the values to vary."""

    init_stds: tuple[float, ...] = Field((1e-6, 1e-4, 1e-3, 1e-2), description="init stds")
    he_init: bool = Field(True, description="also train with He init N(0, 2/d)")
    lrs: tuple[float, ...] = Field((1e-4, 1e-2), description="learning rates")
    ns: tuple[int, ...] = Field(
        (10_000,), description="training-set sizes (50_000 also works: ~1 min more)"
    )
    n_lrs: tuple[tuple[int, float], ...] = Field(
        (),
        description="(n, lr) settings changing both, e.g. [[50000, 0.005]]: the paper's "
        "n = 50k run at lr 5e-3",
    )
    noise_stds: tuple[float, ...] = Field(
        (0.5, 2.0),
        description="noise std sigma per setting; the authors title these panels "
        "'SNR = sigma', while the signal-to-noise ratio ||mu|| / ||xi|| is 1/sigma",
    )
    max_cosines: tuple[float, ...] = Field((0.1,), description="nearly orthogonal centers")
    norm_ranges: tuple[tuple[float, float], ...] = Field(
        ((0.8, 1.2), (0.6, 1.4)), description="center norms over [lo, hi] sqrt(d)"
    )
    norm_spread: Literal["ladder", "uniform"] = Field(
        "ladder",
        description="norms of the norm_ranges settings: 'ladder' evenly spaced within each "
        "class (authors: 0.8, 0.9, 1.0, 1.1, 1.2), 'uniform' drawn",
    )
    adversarial_eps: tuple[float, ...] = Field((20.0, 40.0), description="adv. training radii")
    adversarial_m: int = Field(
        50, ge=1, description="binary units per class for adv. training (replaces net.m there)"
    )
    adversarial_steps: int = Field(
        200, ge=1, description="GD steps of adversarial training (replaces train.steps there)"
    )

    @model_validator(mode="after")
    def _check_settings(self) -> SyntheticAblationsConfig:
        # each list as strict as its scalar twin (net.init_std, train.lr, data.n_train, ...);
        # an empty list skips that ablation; a repeated value would be one setting twice
        check_list("init_stds", self.init_stds, low=0.0, low_open=True)
        check_list("lrs", self.lrs, low=0.0, low_open=True)
        check_list("ns", self.ns, low=1)
        check_list("noise_stds", self.noise_stds, low=0.0, low_open=True)
        check_list("max_cosines", self.max_cosines, low=0.0, high=1.0)
        check_list("adversarial_eps", self.adversarial_eps, low=0.0)
        for name in ("n_lrs", "norm_ranges"):
            pairs = getattr(self, name)
            if len(set(pairs)) != len(pairs):
                raise ValueError(f"{name}: a setting is repeated, got {shown(list(pairs))}")
        for c in self.max_cosines:  # each derived data config must itself be valid
            if c * (self.data.k - 1) >= 1:
                raise ValueError(
                    f"max_cosines: {c} must be < 1/(k-1) = {1 / (self.data.k - 1):.4g}"
                )
        for lo, hi in self.norm_ranges:
            if not 0 < lo <= hi:
                raise ValueError(f"norm_ranges: need 0 < lo <= hi, got ({lo}, {hi})")
        if any(n < 1 or lr <= 0 for n, lr in self.n_lrs):
            raise ValueError(f"n_lrs: need n >= 1 and lr > 0, got {shown(list(self.n_lrs))}")
        if self.net.init != "normal":
            raise ValueError(
                "net.init: synthetic-ablations sets each setting's init std itself "
                "(net.init_std, init_stds, he_init); allowed: normal"
            )
        return self


@dataclass(frozen=True)
class Setting:
    """One ablation: a name and what it changes."""

    name: str
    data: SyntheticConfig
    init_std: float
    lr: float


def settings(cfg: SyntheticAblationsConfig) -> list[Setting]:
    """Every non-adversarial setting, the unchanged paper config first."""
    base, d = cfg.data, cfg.data.d
    std, lr = cfg.net.init_std, cfg.train.lr
    out = [Setting("paper config", base, std, lr)]
    out += [Setting(f"init std {s:g}", base, s, lr) for s in cfg.init_stds]
    if cfg.he_init:
        out.append(Setting(he_name(d), base, math.sqrt(2 / d), lr))
    out += [Setting(f"lr {r:g}", base, std, r) for r in cfg.lrs]
    out += [Setting(f"n = {n}", base.model_copy(update={"n_train": n}), std, lr) for n in cfg.ns]
    out += [
        Setting(f"n = {n}, lr {r:g}", base.model_copy(update={"n_train": n}), std, r)
        for n, r in cfg.n_lrs
    ]
    out += [
        Setting(
            f"noise std {s:g} (authors' 'SNR = {s:g}')",
            base.model_copy(update={"noise_std": s}),
            std,
            lr,
        )
        for s in cfg.noise_stds
    ]
    out += [
        Setting(
            f"nearly orthogonal (|cos| <= {c:g})",
            base.model_copy(update={"max_cosine": c}),
            std,
            lr,
        )
        for c in cfg.max_cosines
    ]
    for lo, hi in cfg.norm_ranges:
        data = base.model_copy(update={"norm_range": (lo, hi), "norm_spread": cfg.norm_spread})
        out.append(Setting(norms_label(data), data, std, lr))
    return out


def norms_label(data: SyntheticConfig) -> str:
    """The name of an unequal-norms setting: its ladder of norms, or its uniform range."""
    lo, hi = data.norm_range
    if data.norm_spread == "uniform":
        return f"norms uniform in {lo:g}..{hi:g} sqrt(d)"
    rungs = sorted(set(norm_ladder(data).tolist()))
    return f"norms {', '.join(f'{r:.3g}' for r in rungs)} sqrt(d) per class (ladder)"


def he_name(d: int) -> str:
    """The He-init setting's name, with its std sqrt(2/d)."""
    return f"He init (std {math.sqrt(2 / d):.3g})"
