"""The probe's optional robustness curve: the model's coarse robust accuracy per L2 radius."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featavg.config import ConfigError
from featavg.data.groupings import Grouping
from featavg.probing.data import ProbeData
from featavg.probing.options import ProbeOptions
from featavg.probing.outputs import robustness_rows


class _Logits(nn.Module):
    """The model with a single output f read as the logits [-f/2, f/2] (for the attack)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return torch.cat([-out / 2, out / 2], dim=1) if out.shape[1] == 1 else out


def robustness(
    model: nn.Module,
    pdata: ProbeData,
    group: Grouping,
    fine: bool,
    options: ProbeOptions,
    dev: torch.device,
    progress: bool,
) -> list[dict[str, Any]]:
    """The model's coarse robust accuracy per radius ``options.robust_eps`` on the first
    ``options.robust_points`` points (a fine model read out by group, its attack loss the
    group cross-entropy of the argmax read-out), the attack seeded by ``options.seed``."""
    from featavg.attacks.core import AttackSettings
    from featavg.attacks.objectives import CrossEntropy, GroupCrossEntropy
    from featavg.attacks.robustness_curve import robustness_curve

    if pdata.head is None:
        raise ConfigError("robust_eps: needs data that can be read twice (not a one-shot iterable)")
    eps: Sequence[float] = options.robust_eps or []
    x, y = pdata.head(options.robust_points)
    x = x.to(dev)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    coarse = torch.tensor(group.groups, device=dev)[y.to(dev).long()]
    objective = GroupCrossEntropy(list(group.groups)) if fine else CrossEntropy()
    settings = AttackSettings(objective=objective, seed=options.seed, progress=progress)
    curve = robustness_curve(_Logits(model), x, coarse, list(eps), settings=settings)
    return robustness_rows(curve.eps, curve.robust_accuracy, int(x.shape[0]))
