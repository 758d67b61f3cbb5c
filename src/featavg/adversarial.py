"""Adversarial training of two-layer ensembles (SPEC §3: L2 PGD training decouples features).

At every GD step each member s replaces the training inputs by L2 PGD adversarial examples
of its current weights at its own radius eps_s (Madry et al. 2018), then takes the usual
gradient step on them (:func:`featavg.train.train` with ``perturb``).

PGD from the clean point stays exactly in the row space of W: the input gradient of a
two-layer net is dL/dx_i = W^T dL/dP_i. Writing delta_i = W^T beta_i (beta_i in R^M) and
K = W W^T, the preactivations move by K beta_i, ||delta_i||^2 = beta_i^T K beta_i, and an
L2 step delta += alpha g/||g|| is beta += alpha dP_i / sqrt(dP_i^T K dP_i). So the whole
attack costs O(M^2) per point and step after one O(M n d) product; only the final
x + W^T beta is formed in full dimension. (A random start would leave the row space; this
training attack starts at the clean point.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.models.two_layer import TwoLayerEnsemble
from featavg.train import _backprop


def ensemble_l2_pgd(
    model: TwoLayerEnsemble,
    x: torch.Tensor,
    targets: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 7,
    step_size: float | torch.Tensor = 10.0,
) -> torch.Tensor:
    """L2 PGD (no random start) against every member at once: x (n, d) or (S, n, d) ->
    x_adv (S, n, d). eps (S,) radius per member (0 leaves x unchanged); step_size absolute
    or (S,); the loss is the member's training loss (logistic or cross-entropy)."""
    w = model.weight
    s = w.shape[0]
    xs = x.expand(s, *x.shape[-2:]) if x.ndim == 2 else x
    eps = eps.to(xs)[:, None]
    alpha = torch.as_tensor(step_size).to(xs).expand(s)[:, None]
    clean = torch.baddbmm(model.bias[..., None], w, xs.transpose(1, 2))  # (S, M, n)
    gram = torch.bmm(w, w.transpose(1, 2))  # K = W W^T, (S, M, M)
    beta = torch.zeros_like(clean)  # delta_i = W^T beta_i, stored (S, M, n)

    def sq_norm(v):  # v^T K v per point, (S, n)
        return (v * torch.bmm(gram, v)).sum(1).clamp_min(0.0)

    for _ in range(steps):
        _, _, dpt = _backprop(model.kind, model.readout, clean + torch.bmm(gram, beta), targets)
        beta = beta + dpt * (alpha / sq_norm(dpt).sqrt().clamp_min(1e-30))[:, None, :]
        norm = sq_norm(beta).sqrt()
        beta = beta * torch.where(norm > eps, eps / norm.clamp_min(1e-30), 1.0)[:, None, :]
    return torch.baddbmm(xs, beta.transpose(1, 2), w)


def adversarial_perturb(
    eps: Sequence[float] | torch.Tensor, steps: int = 7, step_size: float = 10.0
):
    """A ``perturb`` hook for :func:`featavg.train.train`: fresh PGD examples at every step."""
    eps_t = torch.as_tensor(eps, dtype=torch.float32)

    def perturb(step, model, x, targets):
        return ensemble_l2_pgd(model, x, targets, eps_t, steps, step_size)

    return perturb
