"""The probe's measurements, in the paper's notation.

Notation: a layer with units r = 1..U and weight vectors w_r (:func:`~.capture.unit_weights`);
fine classes j = 1..k with class means mu_j of the layer's input; coarse groups s with
members J_s (the fine classes of group s, a :class:`~featavg.data.groupings.Grouping`).

* Which output a unit serves, o(r) = argmax_c E_x[d logit_c / d a_r] (a_r: the unit's
  activation, summed over space; the mean over the gradient points): the logit the unit
  pushes up most. Its coarse group s(r) = o(r) for a coarse model (one logit per group) and
  the group of class o(r) for a fine model (one logit per class). For the paper's two-layer
  nets this is the readout sign (+1/m -> J+); for a layer that computes the logits (a head
  ``fc``) it is the unit's own output. A unit whose gradients are all exactly 0 (a ReLU unit
  dead on every gradient point) falls back to the cosine rule: the output whose class means
  (J_c for a coarse model, mu_c for a fine one) its weight is most aligned with on average.
* cos(w_r, mu_j) for every unit and class (:func:`unit_class_cosines`), the Fig. 2c/d
  cells: the mean over the units r with o(r) = c of cos(w_r, mu_j).
* The averaging index A_r (:func:`averaging_index`) on J_{s(r)}: 1 for an exact average of
  the group's features (cos = 1/sqrt(|J_s|) on each j in J_s), 1/|J_s| for a single feature.
* A k-way linear probe (multinomial logistic regression) on the layer's input features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from featavg.metrics.feature_alignment import averaging_index, unit_class_cosines


def favoured_outputs(
    grad_mean: torch.Tensor, cos: torch.Tensor, groups: torch.Tensor, fine: bool
) -> tuple[torch.Tensor, list[str]]:
    """(o(r) for every unit (U,) long, the rule used per unit: "gradient" or "cosine").

    grad_mean (O, U): E_x[d logit_c / d a_r]; cos (U, k); groups (k,) the coarse group of
    each class; ``fine``: whether the O logits are the k classes (else the G groups)."""
    grad_mean, cos, groups = grad_mean.cpu(), cos.cpu(), groups.cpu()
    out = grad_mean.argmax(0)
    dead = grad_mean.abs().amax(0) == 0
    if fine:
        by_cosine = cos.argmax(1)
    else:
        n_groups = int(groups.max()) + 1
        per_group = torch.stack([cos[:, groups == s].mean(1) for s in range(n_groups)], 1)
        by_cosine = per_group.argmax(1)
    out = torch.where(dead, by_cosine, out)
    return out, ["cosine" if d else "gradient" for d in dead.tolist()]


def unit_groups(outputs: torch.Tensor, groups: torch.Tensor, fine: bool) -> torch.Tensor:
    """s(r): the coarse group of unit r's output (U,) long."""
    return groups.cpu()[outputs] if fine else outputs.clone()


def output_rows(outputs: torch.Tensor, n_outputs: int) -> list[list[int]]:
    """The units serving each output c that has any, in output order: the heatmap rows."""
    return [
        (outputs == c).nonzero().flatten().tolist()
        for c in range(n_outputs)
        if bool((outputs == c).any())
    ]


def per_unit_index(cos: torch.Tensor, s_of: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """A_r on J_{s(r)} for every unit (U,) float64 (:func:`averaging_index`)."""
    out = torch.zeros(cos.shape[0], dtype=torch.float64)
    for s in s_of.unique().tolist():
        rows = (s_of == s).nonzero().flatten()
        members = (groups.cpu() == s).nonzero().flatten().tolist()
        out[rows] = averaging_index(cos.cpu()[rows], members).cpu()
    return out


def _reference_index(
    means: torch.Tensor, s_of: torch.Tensor, groups: torch.Tensor
) -> tuple[float, float]:
    """Per-model index of ideal units on THESE means: exact averaging w = sum_{j in J_s} mu_j
    and a single feature w = mu_j (mean over j in J_s), each unit r on its group s(r). For
    orthogonal equal-norm means they are 1 and 1/|J_s|; real class means are not orthogonal."""
    groups = groups.cpu()
    avg, single = [], []
    for s in s_of.tolist():
        members = (groups == s).nonzero().flatten().tolist()
        w = means[members].sum(0, keepdim=True)
        avg.append(float(averaging_index(unit_class_cosines(w, means), members)[0]))
        one = averaging_index(unit_class_cosines(means[members], means), members)
        single.append(float(one.mean()))
    return sum(avg) / len(avg), sum(single) / len(single)


def alignment(
    cos: torch.Tensor,
    means: torch.Tensor,
    outputs: torch.Tensor,
    groups: torch.Tensor,
    fine: bool,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Summary numbers of the cosine matrix, and the per-unit index A_r (U,).

    With same(r, j) = [j in J_{s(r)}], means over (unit, class) pairs:
    ``cos_same_group_mean`` (the synthetic experiment's ``cos_same_class_mean``),
    ``cos_other_group_mean``, ``cos_other_group_max_abs``; ``cos_same_group_exact_average``:
    the mean over the same pairs of 1/sqrt(|J_{s(r)}|), what exact averaging gives with
    orthogonal equal-norm means. A fine model adds ``cos_diag_mean`` = mean_r cos(w_r,
    mu_{o(r)}) and ``cos_offdiag_max_abs``. ``averaging_index``: the mean of A_r over the
    units with a positive cosine on their group (``units_without_positive_cos`` others get
    A_r = 0 and are left out); beside it ``index_exact_average`` = 1 and
    ``index_single_feature`` = the mean of 1/|J_{s(r)}| over the same units, and both
    references recomputed on the measured means (``*_measured_means``)."""
    cos = cos.cpu().to(torch.float64)
    groups = groups.cpu()
    s_of = unit_groups(outputs, groups, fine)
    same = groups[None, :] == s_of[:, None]
    sizes = torch.bincount(groups).to(torch.float64)
    index = per_unit_index(cos, s_of, groups)
    engaged = index > 0
    used = s_of[engaged] if bool(engaged.any()) else s_of
    nums: dict[str, Any] = {
        "units": int(cos.shape[0]),
        "cos_same_group_mean": float(cos[same].mean()),
        "cos_other_group_mean": float(cos[~same].mean()),
        "cos_other_group_max_abs": float(cos[~same].abs().max()),
        "cos_same_group_exact_average": float(
            sizes[s_of].rsqrt()[:, None].expand_as(cos)[same].mean()
        ),
    }
    if fine:
        own = torch.nn.functional.one_hot(outputs.cpu(), cos.shape[1]).bool()
        nums["cos_diag_mean"] = float(cos[own].mean())
        nums["cos_offdiag_max_abs"] = float(cos[~own].abs().max())
    ref_avg, ref_single = _reference_index(means.cpu().to(torch.float64), used, groups)
    nums.update(
        {
            "averaging_index": float(index[engaged].mean()) if bool(engaged.any()) else 0.0,
            "index_exact_average": 1.0,
            "index_single_feature": float((1.0 / sizes[used]).mean()),
            "index_exact_average_measured_means": ref_avg,
            "index_single_feature_measured_means": ref_single,
            "units_without_positive_cos": int((~engaged).sum()),
        }
    )
    return nums, index


@dataclass(frozen=True)
class ProbeFit:
    """The linear probe's fit: ridge ``l2``, ``steps`` full-batch Adam steps of rate ``lr``."""

    l2: float = 1e-3
    steps: int = 200
    lr: float = 0.1


def linear_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    *,
    fit: ProbeFit = ProbeFit(),
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Decodability of the fine labels: a k-way linear probe on the layer's features.

    Features (N, D) are standardised with the training points' mean and std (a constant
    feature stays 0), then a multinomial logistic regression softmax(z V + c) is fitted on
    L = mean cross-entropy + (l2 / 2) ||V||_F^2 (the small ridge keeps separable data
    finite) by ``steps`` full-batch Adam steps from zero (deterministic) with the exact
    gradient dL/dlogits = (softmax - onehot) / N. (Written out rather than with
    ``torch.optim``, whose first use imports torch's compiler stack: ~10 s here.) With more
    features than training points (D > N) the fit runs in the span of the training
    features: z^T = Q R (Q: D x N orthonormal), V = Q B; logits and ||V|| = ||B|| are
    unchanged and the ridge optimum lies in that span, so it is the same problem at a
    cost in N instead of D per step.
    Returns ``probe_accuracy`` (held out), ``probe_train_accuracy``, ``probe_chance`` (the
    held-out frequency of the most common class) and the point counts.

    Shapes: x_train (N, D), y_train (N,) in 0..k-1; x_test (M, D), y_test (M,). ``fit``:
    l2, steps and lr (:class:`ProbeFit`)."""
    l2, steps, lr = fit.l2, fit.steps, fit.lr
    dev = torch.device(device)
    xt, yt = x_train.to(dev, torch.float32), y_train.to(dev, torch.long)
    xe, ye = x_test.to(dev, torch.float32), y_test.to(dev, torch.long)
    mean, std = xt.mean(0), xt.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    zt, ze = (xt - mean) / std, (xe - mean) / std
    if zt.shape[1] > zt.shape[0]:
        q = torch.linalg.qr(zt.T).Q  # (D, N): an orthonormal basis of the features' span
        zt, ze = zt @ q, ze @ q
    onehot = torch.nn.functional.one_hot(yt, num_classes).float()
    params = [
        torch.zeros(zt.shape[1], num_classes, device=dev),
        torch.zeros(num_classes, device=dev),
    ]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        v, c = params
        g_logits = (torch.softmax(zt @ v + c, 1) - onehot) / zt.shape[0]
        grads = [zt.T @ g_logits + l2 * v, g_logits.sum(0)]
        for p, g, (m1, m2) in zip(params, grads, moments, strict=True):
            m1.mul_(beta1).add_(g, alpha=1 - beta1)
            m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step = lr / (1 - beta1**t)
            p.addcdiv_(m1, (m2 / (1 - beta2**t)).sqrt_().add_(eps), value=-step)
    v, c = params
    train_acc = float(((zt @ v + c).argmax(1) == yt).float().mean())
    test_acc = float(((ze @ v + c).argmax(1) == ye).float().mean())
    chance = float(torch.bincount(ye, minlength=num_classes).max()) / max(int(ye.numel()), 1)
    return {
        "probe_accuracy": test_acc,
        "probe_train_accuracy": train_acc,
        "probe_chance": chance,
        "probe_train_points": int(yt.numel()),
        "probe_test_points": int(ye.numel()),
    }
