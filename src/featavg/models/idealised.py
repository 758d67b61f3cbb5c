"""The idealised networks of the paper's Fig. 1, as :class:`TwoLayerNet` modules.

Given cluster centers mu_1..mu_k (rows of ``centers``) and cluster signs (+1 for J+, -1 for
J-), with mean_s = (1/|J_s|) sum_{j in J_s} mu_j:

* feature averaging:   f_FA(x) = |J+| ReLU(<mean_+, x>) - |J-| ReLU(<mean_-, x>)
  (what GD on coarse labels converges to: one direction per class);
* feature decoupling:
  f_FD(x) = sum_{j in J+} ReLU(<mu_j, x> + b) - sum_{j in J-} ReLU(<mu_j, x> + b)
  (one unit per cluster, what GD on fine-grained labels converges to);
* its fine-grained form: k outputs f_j(x) = ReLU(<mu_j, x> + b), read out by argmax or by the
  class group of the argmax.

The closed-form robustness radii of these nets are in :mod:`featavg.theory`. Each net has
the dtype of ``centers``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featavg.models.two_layer import TwoLayerNet


def _check(centers: torch.Tensor, signs: torch.Tensor | Sequence[float]) -> torch.Tensor:
    signs = torch.as_tensor(signs, dtype=centers.dtype, device=centers.device)
    if centers.ndim != 2 or signs.shape != (centers.shape[0],):
        raise ValueError(
            f"need centers (k, d) and signs (k,), got {tuple(centers.shape)}, {tuple(signs.shape)}"
        )
    if not bool(((signs == 1) | (signs == -1)).all()):
        raise ValueError("signs: entries must be +1 (J+) or -1 (J-)")
    if bool((signs > 0).all()) or bool((signs < 0).all()):
        raise ValueError("signs: J+ and J- must both be non-empty")
    return signs


def feature_averaging_net(
    centers: torch.Tensor, signs: torch.Tensor | Sequence[float]
) -> TwoLayerNet:
    """f_FA as a binary net with 2 units: w = (mean_+, mean_-), b = 0, readout (|J+|, -|J-|)."""
    signs = _check(centers, signs)
    pos = signs > 0
    weight = torch.stack([centers[pos].mean(0), centers[~pos].mean(0)])
    readout = torch.tensor([[float(pos.sum()), -float((~pos).sum())]], dtype=centers.dtype)
    net = TwoLayerNet(weight, torch.zeros(2, dtype=centers.dtype), readout, "binary")
    return net.to(centers.dtype)  # nn.Linear is created in the default dtype


def feature_decoupling_net(
    centers: torch.Tensor, signs: torch.Tensor | Sequence[float], bias: float = 0.0
) -> TwoLayerNet:
    """f_FD as a binary net with k units: w_j = mu_j, b_j = ``bias``, readout = signs."""
    signs = _check(centers, signs)
    k = centers.shape[0]
    bias_vec = torch.full((k,), float(bias), dtype=centers.dtype)
    return TwoLayerNet(centers, bias_vec, signs[None, :], "binary").to(centers.dtype)


def feature_decoupling_multiclass(centers: torch.Tensor, bias: float = 0.0) -> TwoLayerNet:
    """The fine-grained decoupled net: k outputs f_j(x) = ReLU(<mu_j, x> + ``bias``)."""
    if centers.ndim != 2:
        raise ValueError(f"centers: need (k, d), got {tuple(centers.shape)}")
    k = centers.shape[0]
    bias_vec = torch.full((k,), float(bias), dtype=centers.dtype)
    eye = torch.eye(k, dtype=centers.dtype)
    return TwoLayerNet(centers, bias_vec, eye, "multiclass").to(centers.dtype)
