"""Alignment of hidden units with cluster centers: the paper's Fig. 2 heatmaps in numbers.

Feature averaging (binary net, Theorem 4.x): GD drives w_{s,r} -> c * sum_{j in J_s} mu_j,
so with orthogonal, equal-norm centers cos(w_{s,r}, mu_j) = 1/sqrt(|J_s|) for j in J_s and
0 for j in J_{-s}. Feature decoupling (fine-grained net): cos(w_j, mu_j) -> 1 and
cos(w_j, mu_l) -> 0 for l != j.
"""

from __future__ import annotations

import torch


def cosine_matrix(weight: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """cos(w_r, mu_j) for hidden units x cluster centers.

    weight (S, M, d) or (M, d); centers (S, k, d) or (k, d). Returns (S, M, k) (or (M, k)
    when both inputs are unbatched). A zero weight row gives cosine 0.
    """
    w = weight / weight.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    c = centers / centers.norm(dim=-1, keepdim=True)
    return w @ c.transpose(-1, -2)


def theory_cos_same_class(signs: torch.Tensor) -> dict[str, float]:
    """1/sqrt(|J_s|) for s = +1, -1 (exact averaging, orthogonal equal-norm centers)."""
    n_pos = int((signs > 0).sum())
    n_neg = int((signs < 0).sum())
    return {"pos": n_pos**-0.5, "neg": n_neg**-0.5}


def binary_alignment(
    cos: torch.Tensor, unit_sign: torch.Tensor, signs: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Averaging diagnostics of binary nets, each a (S,) tensor.

    cos (S, M, k); unit_sign (M,) +-1 (the class unit r votes for); signs (k,) or (S, k) the
    class of each cluster.
    - ``cos_same_class_mean``: mean cos(w_r, mu_j) over units r and same-class centers j;
    - ``cos_same_class_mean_pos`` / ``_neg``: the same restricted to units of class +1 / -1;
    - ``cos_other_class_max``: max |cos(w_r, mu_j)| over units and other-class centers;
    - ``theory_cos_same_class``: the mean over those pairs of 1/sqrt(|J_s|).
    """
    signs = signs.to(cos.dtype)
    if signs.ndim == 1:
        signs = signs.expand(cos.shape[0], -1)
    unit_sign = unit_sign.to(cos.dtype)
    same = unit_sign[None, :, None] == signs[:, None, :]  # (S, M, k)
    sizes = (signs[:, None, :] == unit_sign[None, :, None]).sum(-1, keepdim=True)  # |J_s|
    theory = torch.where(same, sizes.to(cos.dtype).rsqrt().expand_as(cos), 0.0)
    out = {
        "cos_same_class_mean": (cos * same).sum((1, 2)) / same.sum((1, 2)),
        "cos_other_class_max": (cos.abs() * ~same).amax((1, 2)),
        "theory_cos_same_class": theory.sum((1, 2)) / same.sum((1, 2)),
    }
    for name, s in (("pos", 1.0), ("neg", -1.0)):
        sel = same & (unit_sign[None, :, None] == s)
        out[f"cos_same_class_mean_{name}"] = (cos * sel).sum((1, 2)) / sel.sum((1, 2))
    return out


def multiclass_alignment(cos: torch.Tensor, unit_class: torch.Tensor) -> dict[str, torch.Tensor]:
    """Decoupling diagnostics of fine-grained nets, each (S,).

    cos (S, M, k); unit_class (M,) the cluster each unit's output stands for.
    - ``cos_diag_mean``: mean cos(w_r, mu_{class(r)});
    - ``cos_offdiag_max``: max |cos(w_r, mu_l)| over l != class(r).
    """
    own = torch.nn.functional.one_hot(unit_class, cos.shape[-1]).bool()[None]
    return {
        "cos_diag_mean": (cos * own).sum((1, 2)) / own.sum((1, 2)),
        "cos_offdiag_max": (cos.abs() * ~own).amax((1, 2)),
    }
