"""Adversarial training of two-layer ensembles (SPEC §3: L2 PGD training decouples features).

At every GD step each member s replaces the training inputs by L2 PGD adversarial examples
of its current weights at its own radius eps_s (Madry et al. 2018), then takes the usual
gradient step on them (:func:`featavg.training.train` with ``perturb``).

PGD from the clean point stays exactly in the row space of W: the input gradient of a
two-layer net is dL/dx_i = W^T dL/dP_i. Writing delta_i = W^T beta_i (beta_i in R^M) and
K = W W^T, the preactivations move by K beta_i, ||delta_i||^2 = beta_i^T K beta_i, and an
L2 step delta += alpha g/||g|| is beta += alpha dP_i / sqrt(dP_i^T K dP_i). So the whole
attack costs O(M^2) per point and step after one O(M n d) product, and the training step
on x + W^T beta never forms it (:class:`RowSpaceInputs`). (A random start would leave the
row space; this training attack starts at the clean point.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.data.synthetic import SyntheticConfig, SyntheticDataset, sample_synthetic_stacked
from featavg.models.two_layer import NetConfig, TwoLayerEnsemble, binary_ensemble
from featavg.training.two_layer_gd import Perturb, TrainConfig, backprop, train


class RowSpaceInputs:
    """Adversarial inputs x_adv = x + W^T beta kept in factored form (never (S, n, d)).

    What a GD step on x_adv needs is exact without forming it: the preactivations are
    W x_adv + b = P_clean + K beta (known from the attack), and the weight gradient is
    dP x_adv = dP x + (dP beta^T) W, O(M n d + M^2 (n + d)) instead of two more O(M n d)
    products and an (S, n, d) tensor. W is the attacked weight (held, not copied: the
    trainer reads it before its update). Implements
    :class:`~featavg.training.interface.FactoredInputs`, so a ``perturb`` hook may return
    it instead of a tensor (see :func:`featavg.training.train`).

    x: clean inputs (n, d) or (S, n, d); weight W (S, M, d); beta (S, M, n); pre: the
    preactivations W x_adv + b, (S, M, n).
    """

    def __init__(
        self, x: torch.Tensor, weight: torch.Tensor, beta: torch.Tensor, pre: torch.Tensor
    ):
        self.x, self.weight, self.beta, self.pre = x, weight, beta, pre

    def preactivations(self, idx: torch.Tensor | None) -> torch.Tensor:
        """W x_adv + b, unit-major (S, M, B), for the rows idx (None: all)."""
        return self.pre if idx is None else self.pre[..., idx]

    def weight_gradient(self, idx: torch.Tensor | None, dpt: torch.Tensor) -> torch.Tensor:
        """dL/dW = dP x_adv (S, M, d) from dL/dP (S, M, B) of the rows idx."""
        x = self.x if idx is None else self.x[..., idx, :]
        beta = self.beta if idx is None else self.beta[..., idx]
        direct = dpt @ x if x.ndim == 2 else torch.bmm(dpt, x)
        return torch.baddbmm(direct, torch.bmm(dpt, beta.transpose(1, 2)), self.weight)


def row_space_pgd(
    model: TwoLayerEnsemble,
    x: torch.Tensor,
    targets: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 7,
    step_size: float | torch.Tensor = 10.0,
) -> RowSpaceInputs:
    """L2 PGD (no random start) against every member at once, in the row space (module
    docstring): x (n, d) or (S, n, d); eps (S,) radius per member (0 leaves x unchanged);
    step_size absolute or (S,); the loss is the member's training loss (logistic or
    cross-entropy). Returns the adversarial inputs in factored form."""
    w = model.weight
    s = w.shape[0]
    eps = eps.to(x)[:, None]
    alpha = torch.as_tensor(step_size).to(x).expand(s)[:, None]
    xs = x.expand(s, *x.shape[-2:]) if x.ndim == 2 else x
    clean = torch.baddbmm(model.bias[..., None], w, xs.transpose(1, 2))  # (S, M, n)
    gram = torch.bmm(w, w.transpose(1, 2))  # K = W W^T, (S, M, M)
    beta = torch.zeros_like(clean)  # delta_i = W^T beta_i, stored (S, M, n)

    def sq_norm(v: torch.Tensor) -> torch.Tensor:  # v^T K v per point, (S, n)
        return (v * torch.bmm(gram, v)).sum(1).clamp_min(0.0)

    for _ in range(steps):
        _, _, dpt = backprop(model.kind, model.readout, clean + torch.bmm(gram, beta), targets)
        beta = beta + dpt * (alpha / sq_norm(dpt).sqrt().clamp_min(1e-30))[:, None, :]
        norm = sq_norm(beta).sqrt()
        beta = beta * torch.where(norm > eps, eps / norm.clamp_min(1e-30), 1.0)[:, None, :]
    return RowSpaceInputs(x, w, beta, clean + torch.bmm(gram, beta))


def adversarial_perturb(
    eps: Sequence[float] | torch.Tensor, steps: int = 7, step_size: float = 10.0
) -> Perturb:
    """A ``perturb`` hook for :func:`featavg.training.train`: fresh PGD examples at every
    step, handed over in factored form (:class:`RowSpaceInputs`)."""
    eps_t = torch.as_tensor(eps, dtype=torch.float32)

    def perturb(
        step: int, model: TwoLayerEnsemble, x: torch.Tensor, targets: torch.Tensor
    ) -> RowSpaceInputs:
        return row_space_pgd(model, x, targets, eps_t, steps, step_size)

    return perturb


def adversarially_train(
    data_cfg: SyntheticConfig,
    net_cfg: NetConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    eps: Sequence[float],
    pgd_steps: int,
    step_size: float,
    device: torch.device | str,
    progress: bool = False,
) -> tuple[TwoLayerEnsemble, SyntheticDataset, list[int]]:
    """Binary nets trained with L2 PGD adversarial training, one member per (seed, eps),
    seed-major, all in one ensemble. Returns (model, stacked data of every member, member
    seeds); member i uses eps[i % len(eps)] and the data and init of its seed."""
    member_seeds = [s for s in seeds for _ in eps]
    data = sample_synthetic_stacked(data_cfg, member_seeds).to(device)
    model = binary_ensemble(member_seeds, data_cfg.d, net_cfg).to(device)
    member_eps = torch.tensor(list(eps) * len(seeds))
    train(
        model,
        data.x_train,
        data.y_train,
        train_cfg,
        perturb=adversarial_perturb(member_eps, pgd_steps, step_size),
        progress=progress,
    )
    return model, data, member_seeds
