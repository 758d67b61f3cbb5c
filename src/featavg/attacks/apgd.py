"""APGD's step-size rule, run until each row is fooled: the descent stage of "fmn+apgd".

APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, arXiv 2003.01690; the first attack of
AutoAttack) is PGD with momentum and a step size that adapts itself:

    z_{k+1} = Proj(x_k + eta_k s(g_k)),
    x_{k+1} = Proj(x_k + 0.75 (z_{k+1} - x_k) + 0.25 (x_k - x_{k-1}))   (x_1 = z_1),

s(g) = g / ||g||_2 (L2) or sign(g) (L-inf), eta_0 = 2 eps. At checkpoints (after 22 % of
the steps, then at shrinking intervals, at least 6 %) a row whose loss rose in at most 75 %
of the steps since the last checkpoint, or whose best loss did not improve while its step
was not just halved, halves its step and restarts from its best point. Departures from
AutoAttack's implementation: every row stops at its first adversarial iterate (its logits
are computed for its gradient anyway, so the check is free) and a run may start anywhere
(a warm start), not only at a random point of the eps-sphere; no [0, 1] clamp unless the
settings carry a box.
"""

from __future__ import annotations

import math

import torch

from featavg.attacks.core import (
    AttackSettings,
    Forward,
    Rows,
    ascent_direction,
    feasible,
    project,
)

MOMENTUM = 0.25  # weight of the previous move (AutoAttack's 1 - alpha, alpha = 0.75)
RHO = 0.75  # AutoAttack's threshold on the fraction of steps that raised the loss


def apgd_checkpoints(steps: int) -> list[int]:
    """Step counts after which APGD checks its progress: 22 % of the steps, then intervals
    shrinking by 3 % of the steps down to 6 % (AutoAttack's schedule)."""
    first, shortest, shrink = (
        max(int(0.22 * steps), 1),
        max(int(0.06 * steps), 1),
        max(int(0.03 * steps), 1),
    )
    out, at, gap = [], first, first
    while at <= steps:
        out.append(at)
        gap = max(gap - shrink, shortest)
        at += gap
    return out


def apgd_until_fooled(
    forward: Forward, rows: Rows, delta: torch.Tensor, settings: AttackSettings, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD on ``rows`` (flat inputs x (n, D), labels, radius eps (n,); ``rows.alpha`` is not
    read: APGD starts at 2 eps) from ``delta`` (n, D), at most ``steps`` steps, maximising
    ``settings.objective``'s loss in ``settings.norm`` inside its box; each row stops at its
    first adversarial iterate (the start included).

    Returns fooled (n,) bool and the perturbations (n, D): the adversarial one where fooled
    (verified by the forward pass that flagged it), the last iterate elsewhere. Cost: one
    gradient evaluation per row for the start and one per step until it is fooled."""
    x, y, eps = rows.x, rows.y, rows.eps
    norm, box, objective = settings.norm, settings.box, settings.objective
    n = x.shape[0]

    def proj(rows_: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return feasible(x[rows_], project(d, eps[rows_], norm), box)

    def loss_and_grad(
        rows_: torch.Tensor, d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = d.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(x[rows_] + d)
            loss = objective.loss(logits, y[rows_])
            (grad,) = torch.autograd.grad(loss.sum(), d)
        adv = ~objective.correct(logits.detach(), y[rows_])
        return loss.detach(), grad, adv

    everyone = torch.arange(n, device=x.device)
    delta = proj(everyone, delta)
    loss, grad, fooled = loss_and_grad(everyone, delta)
    best, best_loss, best_grad = delta.clone(), loss.clone(), grad.clone()
    previous = delta.clone()
    step = 2.0 * eps.clone()
    raised = torch.zeros(n, dtype=torch.long, device=x.device)  # steps that raised the loss
    last_loss, checked_best = loss.clone(), best_loss.clone()
    halved = torch.ones(n, dtype=torch.bool, device=x.device)
    checkpoints, since = apgd_checkpoints(steps), 0
    for k in range(steps):
        live = torch.nonzero(~fooled).flatten()
        if live.numel() == 0:
            break
        with torch.no_grad():
            d = delta[live]
            z = proj(live, d + step[live][:, None] * ascent_direction(grad[live], norm))
            if k > 0:  # momentum: a convex mix of the new point and the last move
                z = proj(live, d + (1 - MOMENTUM) * (z - d) + MOMENTUM * (d - previous[live]))
            previous[live] = d
            delta[live] = z
        new_loss, new_grad, adv = loss_and_grad(live, delta[live])
        with torch.no_grad():
            fooled[live[adv]] = True
            grad[live] = new_grad
            raised[live] += (new_loss > last_loss[live]).long()
            last_loss[live] = new_loss
            better = new_loss > best_loss[live]
            up = live[better]
            best[up], best_grad[up], best_loss[up] = delta[up], grad[up], new_loss[better]
        since += 1
        if checkpoints and k + 1 == checkpoints[0]:
            with torch.no_grad():
                stalled = raised <= math.floor(RHO * since)
                no_gain = ~halved & (checked_best >= best_loss)
                cut = (stalled | no_gain) & ~fooled
                step[cut] /= 2
                delta[cut], grad[cut] = best[cut], best_grad[cut]
                halved, checked_best = cut, best_loss.clone()
                raised.zero_()
            checkpoints.pop(0)
            since = 0
    return fooled, delta
