"""Feature averaging on real data: hidden units against class means of a feature map.

On real data there are no cluster centers mu_j; the paper (Fig. 2c/d) replaces them by the
class means of a frozen feature map phi (e.g. a pretrained ResNet-18's 512-d penultimate
layer): mu_j = mean of phi(x) over the training points of class j. A head unit r with
first-layer weight w_r then "averages" when cos(w_r, mu_j) is spread evenly over the classes
j in the group J_s it votes for, and "decouples" when it concentrates on one class.

- :func:`class_means`: mu_j by running sums over batches (never holds all features);
- :func:`unit_class_cosines`: the (U, C) matrix cos(w_r, mu_j);
- :func:`group_mean_cosines`: the Fig. 2c/d cell, the mean of cos(w_r, mu_j) over the units
  r of one unit group;
- :func:`averaging_index`: a per-unit participation ratio, 1 for an exact average of the
  group's features and 1/|J_s| for a single feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from featavg.device import resolve_device


def _as_device(device: torch.device | str | None, x: torch.Tensor) -> torch.device:
    # None keeps the data where it is; a name goes through the one device parser
    if device is None:
        return x.device
    if isinstance(device, torch.device):
        return device
    return resolve_device(device)


@torch.no_grad()
def class_means(
    features: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    centre: bool = False,
) -> torch.Tensor:
    """Class means mu_j of a feature map over a data set, shape (C, D), float64.

    ``features`` maps a float batch (B, ...) on ``device`` to (B, D) (e.g. a frozen
    backbone's 512-d penultimate layer). ``x`` is (N, C_in, H, W): uint8 in [0, 255] is
    converted to float/255 (the [0, 1] pixels every featavg image model takes), a float
    tensor is passed as is. ``y`` (N,) holds class indices in [0, num_classes).

    mu_j = (1/n_j) sum_{i: y_i = j} phi(x_i), accumulated in float64 as running per-class
    sums over batches of ``batch_size``, so memory is O(C D) whatever N. With
    ``centre=True`` the global feature mean (1/N) sum_i phi(x_i) (over all points, not the
    mean of the class means) is subtracted from every mu_j, which removes the shared
    component that makes all cosines of non-negative (post-ReLU) features large. A class
    with no points gets a zero row (not centred), so its cosines come out 0.

    Runs under ``torch.no_grad``; train/eval modes of any model inside ``features`` are
    the caller's business. ``device``: where batches are evaluated (None: x's device).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} points but y has {y.shape[0]}")
    dev = _as_device(device, x)
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes, dtype=torch.float64, device=dev)
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(dev)
        xb = xb.float() / 255.0 if xb.dtype == torch.uint8 else xb
        yb = y[start : start + batch_size].to(dev, torch.long)
        fb = features(xb).reshape(xb.shape[0], -1).to(torch.float64)
        if sums is None:
            sums = torch.zeros(num_classes, fb.shape[1], dtype=torch.float64, device=dev)
        sums.index_add_(0, yb, fb)
        counts += torch.bincount(yb, minlength=num_classes).to(torch.float64)
    if sums is None:
        raise ValueError("class_means needs at least one point")
    present = counts > 0
    means = torch.where(present[:, None], sums / counts.clamp_min(1.0)[:, None], 0.0)
    if centre:
        overall = sums.sum(0) / counts.sum()
        means = torch.where(present[:, None], means - overall, 0.0)
    return means


def unit_class_cosines(weight: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """cos(w_r, mu_j) for every head unit r and class mean j: (U, D), (C, D) -> (U, C).

    ``weight`` is a first-layer weight matrix (one row w_r per hidden unit; biases are
    ignored, as in the paper's Fig. 2), ``means`` the output of :func:`class_means`.
    Computed in float64. A zero-norm row (a dead unit, or an empty class's zero mean) gives
    cosine 0 rather than NaN.
    """
    w = weight.detach().to(torch.float64)
    m = means.detach().to(device=w.device, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)
    m = m / m.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return w @ m.T


def group_mean_cosines(cos: torch.Tensor, unit_groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """The Fig. 2c/d heatmap: (U, C) cosines -> (G, C).

    Cell (i, j) = (1/|R_i|) sum_{r in R_i} cos(w_r, mu_j), the mean over the units R_i of
    unit group i (e.g. the 3 units of a block head that feed output i). Rows are unit
    groups, columns class means.
    """
    rows = []
    for members in unit_groups:
        if len(members) == 0:
            raise ValueError("every unit group needs at least one unit")
        idx = torch.as_tensor(list(members), dtype=torch.long, device=cos.device)
        rows.append(cos.index_select(0, idx).mean(0))
    return torch.stack(rows)


def averaging_index(cos: torch.Tensor, members: Sequence[int]) -> torch.Tensor:
    """How evenly each unit spreads over the features of its group J_s: (U, C) -> (U,).

    For a unit r voting for the group J_s (``members``: the class indices j in J_s), with
    c_{r,j} = max(cos(w_r, mu_j), 0)::

        A_r = (sum_{j in J_s} c_{r,j})^2 / (|J_s| * sum_{j in J_s} c_{r,j}^2)

    a participation ratio divided by |J_s|, in [1/|J_s|, 1]. Exact feature averaging,
    w_r ~ sum_{j in J_s} mu_j with orthogonal equal-norm mu_j (cos = 1/sqrt(|J_s|) on J_s),
    gives A_r = 1; feature decoupling, w_r ~ mu_j for one j (cos 1 there, 0 elsewhere),
    gives 1/|J_s|. Negative cosines count as 0 (anti-alignment is not "using" a feature).
    A unit with no positive cosine on J_s gets 0. Only the columns in ``members`` matter;
    pass the rows of the units that vote for J_s.
    """
    if len(members) == 0:
        raise ValueError("averaging_index needs a non-empty group J_s")
    idx = torch.as_tensor(list(members), dtype=torch.long, device=cos.device)
    c = cos.index_select(1, idx).to(torch.float64).clamp_min(0.0)
    num = c.sum(1).square()
    den = len(members) * c.square().sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), 0.0)


def _mean_index(cos: torch.Tensor, unit_group: Sequence[int], members: list[list[int]]) -> float:
    """Mean over units r of the averaging index of row r on J_{unit_group[r]}."""
    values = [
        float(averaging_index(cos[r : r + 1], members[g])[0]) for r, g in enumerate(unit_group)
    ]
    return sum(values) / len(values)


def block_head_alignment(
    cos_binary: torch.Tensor,
    cos_fine: torch.Tensor,
    means: torch.Tensor,
    groups: Sequence[int],
    width: int,
) -> dict[str, float]:
    """The heatmap numbers of a G-group block head and a C-class block head (``width``
    units per output, unit r feeding output r // width), with references.

    cos_binary (G width, C) and cos_fine (C width, C): :func:`unit_class_cosines` of the
    heads' units with the class means ``means`` (C, D); ``groups`` (C,): the group s(j) of
    every class (J_s = {j : s(j) = s}). With cells = :func:`group_mean_cosines` over the
    unit groups R_i:

    * ``align_own_group_mean_binary``: mean over s and j in J_s of cell (s, j);
      ``align_other_group_mean_binary``: over j not in J_s;
    * ``align_diag_mean_tenclass``: mean_i of cell (i, i); ``align_offdiag_mean_tenclass``;
    * ``averaging_index_binary``: mean over units of :func:`averaging_index` on the unit's
      group J_s; ``averaging_index_tenclass``: a unit of class i on J_{s(i)}, the group of
      its class (so both heads are measured on the same sets of features);
    * references (``theory_``) of ideal heads on THESE means: exact averaging
      w_s = sum_{j in J_s} mu_j (``theory_align_own_group_averaging``,
      ``..._other_group_averaging``, ``theory_averaging_index_averaging``) and exact
      decoupling w_i = mu_i (``theory_align_offdiag_decoupled``,
      ``theory_averaging_index_decoupled``; its diagonal is 1). For orthogonal equal-norm
      means they are the paper's 1/sqrt(|J_s|), 0 and 1, resp. 0 and 1/|J_s|;
      ``theory_cos_same_class_orthogonal`` is 1/sqrt(|J_s|) averaged like the cells;
    * ``class_mean_cos_offdiag_mean``: mean cos(mu_i, mu_j), i != j: how far from orthogonal
      the means are (post-ReLU features share a large common component).
    """
    ids = torch.as_tensor(list(groups), dtype=torch.long)
    num_classes, num_groups = len(ids), int(ids.max()) + 1
    members = [[j for j in range(num_classes) if int(ids[j]) == s] for s in range(num_groups)]
    own = ids[None, :] == torch.arange(num_groups)[:, None]  # (G, C): j in J_s
    eye = torch.eye(num_classes, dtype=torch.bool)
    cells_b = group_mean_cosines(
        cos_binary, [range(width * s, width * (s + 1)) for s in range(num_groups)]
    )
    cells_f = group_mean_cosines(
        cos_fine, [range(width * i, width * (i + 1)) for i in range(num_classes)]
    )
    means = means.to(torch.float64)
    ref_b = unit_class_cosines(
        torch.stack([means[own[s]].sum(0) for s in range(num_groups)]), means
    )
    ref_f = unit_class_cosines(means, means)
    unit_group_b = [r // width for r in range(num_groups * width)]
    unit_group_f = [int(ids[r // width]) for r in range(num_classes * width)]
    sizes = own.sum(1).to(torch.float64)
    return {
        "align_own_group_mean_binary": float(cells_b[own].mean()),
        "align_other_group_mean_binary": float(cells_b[~own].mean()),
        "align_diag_mean_tenclass": float(cells_f[eye].mean()),
        "align_offdiag_mean_tenclass": float(cells_f[~eye].mean()),
        "averaging_index_binary": _mean_index(cos_binary, unit_group_b, members),
        "averaging_index_tenclass": _mean_index(cos_fine, unit_group_f, members),
        "class_mean_cos_offdiag_mean": float(ref_f[~eye].mean()),
        "theory_align_own_group_averaging": float(ref_b[own].mean()),
        "theory_align_other_group_averaging": float(ref_b[~own].mean()),
        "theory_averaging_index_averaging": _mean_index(ref_b, range(num_groups), members),
        "theory_align_offdiag_decoupled": float(ref_f[~eye].mean()),
        "theory_averaging_index_decoupled": _mean_index(ref_f, ids.tolist(), members),
        "theory_cos_same_class_orthogonal": float((sizes * sizes.rsqrt()).sum() / num_classes),
    }
