"""Adversarial training of two-layer ensembles (the paper: L2 PGD training decouples features).

At every GD step each member s replaces the training inputs by L2 PGD adversarial examples
of its current weights at its own radius eps_s (Madry et al. 2018), then takes the usual
gradient step on them (:func:`featavg.training.train` with ``perturb``). As in the authors'
``adv_train.py``, PGD starts at a uniformly random point of the eps-sphere around each input
(``random_start="sphere"``, the default) and takes steps delta += alpha g / ||g|| projected
back onto the eps-ball; ``random_start="none"`` starts at the clean point.

The attack stays factored. The input gradient of a two-layer net is dL/dx_i = W^T dL/dP_i,
so with a start direction u_i (||u_i|| = 1) every iterate is

    delta_i = W^T beta_i + s_i u_i,      beta_i in R^M, s_i >= 0,

starting from beta_i = 0, s_i = eps (s_i = 0 without a random start). With K = W W^T and
a_i = W u_i: the preactivations move by K beta_i + s_i a_i; ||delta_i||^2 = beta_i^T K
beta_i + 2 s_i beta_i^T a_i + s_i^2; an L2 step is beta_i += alpha dP_i / sqrt(dP_i^T K dP_i);
the projection onto the eps-ball scales beta_i and s_i together. The part of u_i orthogonal
to the row space of W never changes a preactivation, yet it counts in ||delta_i|| (so it
shrinks the room left for the gradient steps) and in the weight gradient dL/dW = dP x_adv^T
(so it moves W out of its row space). All of this is exact: O(M^2) per point and PGD step
after the O(M n d) products W x and W u, and the training step on x + W^T beta + s u never
forms it (:class:`RowSpaceInputs`). Only the Gaussian draws g behind the start directions
u = g / ||g|| are (S', n, d) tensors, for the S' members with eps > 0, drawn afresh at every
training step from the named stream ``adversarial-training/start/<step>`` of the member's
seed (:mod:`featavg.seeding`) as float32 and cast to the working dtype; u itself is never
formed (1 / ||g|| folds into s). The start costs a draw and two O(M n d) products (W g and
the weight-gradient term) per member and step: ~1.5x the clean start's training time.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import torch

from featavg.data.synthetic import SyntheticConfig, SyntheticDataset, sample_synthetic_stacked
from featavg.models.two_layer import NetConfig, TwoLayerEnsemble, binary_ensemble
from featavg.seeding import generator
from featavg.training.two_layer_gd import Perturb, TrainConfig, TrainOptions, backprop, train

RandomStart = Literal["sphere", "none"]
RANDOM_STARTS: tuple[RandomStart, ...] = ("sphere", "none")


@dataclass(frozen=True)
class RandomStarts:
    """Start directions of the ensemble members ``members`` (S',): u = g / ||g|| with the
    Gaussian draws g and inv_norms = 1 / ||g||, kept apart so that u is never formed (one
    pass over (S', n, d) less per step). Members that share a seed share their draw, so only
    the distinct draws are held: ``gauss`` (U, n, d), ``inv_norms`` (U, n); member j's is
    row ``rows[j]``. Products with the draws go one distinct draw at a time
    (:meth:`project`, :meth:`combine`), never through an (S', n, d) copy."""

    members: torch.Tensor
    gauss: torch.Tensor
    inv_norms: torch.Tensor
    rows: tuple[int, ...]

    def groups(self) -> list[tuple[list[int], int]]:
        """(positions j among the members, distinct draw u) for every distinct draw."""
        return [
            ([j for j, r in enumerate(self.rows) if r == u], u) for u in dict.fromkeys(self.rows)
        ]

    def directions(self) -> torch.Tensor:
        """The unit directions u themselves, (S', n, d)."""
        rows = list(self.rows)
        return self.gauss[rows] * self.inv_norms[rows][..., None]

    def project(self, w: torch.Tensor) -> torch.Tensor:
        """W_j g_j^T for every member j: w (S', M, d) -> (S', M, n)."""
        out = w.new_empty(w.shape[0], w.shape[1], self.gauss.shape[1])
        for pos, u in self.groups():
            g = self.gauss[u].expand(len(pos), *self.gauss.shape[1:])
            out[pos] = torch.bmm(w[pos], g.transpose(1, 2))
        return out

    def combine(self, a: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """a_j g_j for every member j, with g_j's rows ``idx`` (None: all): a (S', M, B)
        -> (S', M, d)."""
        out = a.new_empty(a.shape[0], a.shape[1], self.gauss.shape[2])
        for pos, u in self.groups():
            g = self.gauss[u] if idx is None else self.gauss[u][idx]
            out[pos] = torch.bmm(a[pos], g.expand(len(pos), *g.shape))
        return out


def start_stream(step: int) -> str:
    """The seeding stream of the start directions drawn at training step ``step``."""
    return f"adversarial-training/start/{step}"


def sphere_starts(
    seeds: Sequence[int],
    eps: torch.Tensor,
    step: int,
    n: int,
    d: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> RandomStarts | None:
    """Uniform directions on the unit sphere of R^d, n per member with eps > 0 (None when
    there is none), member s drawn from stream :func:`start_stream` of ``seeds[s]`` on the
    CPU (so the draw does not depend on the device or on the other members). Members that
    share a seed (one per training radius) get the same directions, drawn once."""
    members = [s for s in range(len(seeds)) if float(eps[s]) > 0]
    if not members:
        return None
    # the draw is a fifth of an adversarial training step: once per distinct seed
    distinct = list(dict.fromkeys(seeds[s] for s in members))
    gauss = torch.empty(len(distinct), n, d)

    def draw(j: int) -> None:
        g = generator(distinct[j], start_stream(step))
        torch.randn(n, d, generator=g, out=gauss[j])

    workers = min(len(distinct), torch.get_num_threads())
    if workers > 1:  # torch's sampling kernels release the GIL
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, range(len(distinct))))
    else:
        for j in range(len(distinct)):
            draw(j)
    g = gauss.to(device=device, dtype=dtype)
    rows = tuple(distinct.index(seeds[s]) for s in members)
    return RandomStarts(torch.tensor(members, device=device), g, 1 / g.norm(dim=-1), rows)


class RowSpaceInputs:
    """Adversarial inputs x_adv = x + W^T beta + s u kept in factored form (module
    docstring); never (S, n, d) except the start directions u of the members with a start.

    What a GD step on x_adv needs is exact without forming it: the preactivations are
    W x_adv + b = P_clean + K beta + s W u (known from the attack), and the weight gradient
    is dP x_adv^T = dP x + (dP beta^T) W + (dP diag(s)) u, O(M n d + M^2 (n + d)) per member
    instead of two more O(M n d) products and an (S, n, d) tensor. W is the attacked weight
    (held, not copied: the trainer reads it before its update). Implements
    :class:`~featavg.training.interface.FactoredInputs`, so a ``perturb`` hook may return
    it instead of a tensor (see :func:`featavg.training.train`).

    x: clean inputs (n, d) or (S, n, d); weight W (S, M, d); beta (S, M, n); pre: the
    preactivations W x_adv + b, (S, M, n); starts: the start directions u of members
    ``starts.members``, scale: their scales s (S', n) (both None: no random start).
    """

    def __init__(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        beta: torch.Tensor,
        pre: torch.Tensor,
        starts: RandomStarts | None = None,
        scale: torch.Tensor | None = None,
    ):
        if (starts is None) != (scale is None):
            raise ValueError("starts, scale: give both or neither")
        self.x, self.weight, self.beta, self.pre = x, weight, beta, pre
        self.starts, self.scale = starts, scale

    def preactivations(self, idx: torch.Tensor | None) -> torch.Tensor:
        """W x_adv + b, unit-major (S, M, B), for the rows idx (None: all)."""
        return self.pre if idx is None else self.pre[..., idx]

    def weight_gradient(self, idx: torch.Tensor | None, dpt: torch.Tensor) -> torch.Tensor:
        """dL/dW = dP x_adv (S, M, d) from dL/dP (S, M, B) of the rows idx."""
        x = self.x if idx is None else self.x[..., idx, :]
        beta = self.beta if idx is None else self.beta[..., idx]
        direct = dpt @ x if x.ndim == 2 else torch.bmm(dpt, x)
        grad = torch.baddbmm(direct, torch.bmm(dpt, beta.transpose(1, 2)), self.weight)
        if self.starts is not None and self.scale is not None:
            starts = self.starts
            s = self.scale * starts.inv_norms[list(starts.rows)]  # s u = (s / ||g||) g
            s = s if idx is None else s[:, idx]
            grad = grad.index_add(
                0, starts.members, starts.combine(dpt[starts.members] * s[:, None, :], idx)
            )
        return grad

    def materialise(self) -> torch.Tensor:
        """x_adv itself, (S, n, d) (for tests and small problems)."""
        s = self.weight.shape[0]
        xs = self.x.expand(s, *self.x.shape[-2:]) if self.x.ndim == 2 else self.x
        out = torch.baddbmm(xs, self.beta.transpose(1, 2), self.weight)
        if self.starts is not None and self.scale is not None:
            u = self.starts.directions()
            out = out.index_add(0, self.starts.members, u * self.scale[..., None])
        return out


def row_space_pgd(
    model: TwoLayerEnsemble,
    x: torch.Tensor,
    targets: torch.Tensor,
    eps: torch.Tensor,
    steps: int = 7,
    step_size: float | torch.Tensor = 10.0,
    starts: RandomStarts | None = None,
) -> RowSpaceInputs:
    """L2 PGD against every member at once, factored (module docstring): x (n, d) or
    (S, n, d); eps (S,) radius per member (0 leaves x unchanged); step_size absolute or
    (S,); the loss is the member's training loss (logistic or cross-entropy). ``starts``:
    unit directions u (:func:`sphere_starts`) of the members that start on their eps-sphere
    at x + eps u; the others start at the clean point. Returns the adversarial inputs in
    factored form."""
    w = model.weight
    s = w.shape[0]
    eps = eps.to(x)[:, None]
    alpha = torch.as_tensor(step_size).to(x).expand(s)[:, None]
    xs = x.expand(s, *x.shape[-2:]) if x.ndim == 2 else x
    clean = torch.baddbmm(model.bias[..., None], w, xs.transpose(1, 2))  # (S, M, n)
    gram = torch.bmm(w, w.transpose(1, 2))  # K = W W^T, (S, M, M)
    beta = torch.zeros_like(clean)  # delta_i = W^T beta_i + s_i u_i, beta stored (S, M, n)

    def sq_norm(v: torch.Tensor) -> torch.Tensor:  # v^T K v per point, (S, n)
        return (v * torch.bmm(gram, v)).sum(1).clamp_min(0.0)

    # the start: s_i = eps and a_i = W u_i for members with a start direction, else 0
    wu, scale, shift = None, None, clean
    if starts is not None:
        wu = torch.zeros_like(clean)
        wg = starts.project(w[starts.members])  # W g, (S', M, n)
        wu[starts.members] = wg * starts.inv_norms[list(starts.rows)][:, None, :]
        scale = torch.zeros_like(clean[:, 0])  # (S, n)
        scale[starts.members] = eps[starts.members].expand(-1, clean.shape[-1])
        shift = clean + wu * scale[:, None, :]
    for _ in range(steps):
        _, _, dpt = backprop(model.kind, model.readout, shift + torch.bmm(gram, beta), targets)
        beta = beta + dpt * (alpha / sq_norm(dpt).sqrt().clamp_min(1e-30))[:, None, :]
        norm_sq = sq_norm(beta)  # ||delta||^2 = beta^T K beta + 2 s beta^T a + s^2
        if wu is not None and scale is not None:
            norm_sq = (norm_sq + scale * (2 * (beta * wu).sum(1) + scale)).clamp_min(0.0)
        norm = norm_sq.sqrt()
        factor = torch.where(norm > eps, eps / norm.clamp_min(1e-30), 1.0)
        beta = beta * factor[:, None, :]
        if wu is not None and scale is not None:
            scale = scale * factor
            shift = clean + wu * scale[:, None, :]
    pre = shift + torch.bmm(gram, beta)
    if starts is None or scale is None:
        return RowSpaceInputs(x, w, beta, pre)
    return RowSpaceInputs(x, w, beta, pre, starts, scale[starts.members])


def adversarial_perturb(
    eps: Sequence[float] | torch.Tensor,
    steps: int = 7,
    step_size: float = 10.0,
    random_start: RandomStart = "sphere",
    seeds: Sequence[int] | None = None,
) -> Perturb:
    """A ``perturb`` hook for :func:`featavg.training.train`: fresh PGD examples at every
    step, handed over in factored form (:class:`RowSpaceInputs`). ``random_start``:
    "sphere" (authors) starts every member with eps > 0 on its eps-sphere, directions drawn
    per step from the member's seed ``seeds[s]`` (:func:`sphere_starts`); "none" starts at
    the clean point."""
    eps_t = torch.as_tensor(eps, dtype=torch.float32)
    if random_start not in RANDOM_STARTS:
        raise ValueError(f"random_start: must be one of {RANDOM_STARTS}, got {random_start!r}")
    if random_start == "sphere" and (seeds is None or len(seeds) != len(eps_t)):
        raise ValueError("seeds: a sphere start needs one seed per member (its random stream)")
    member_seeds = list(seeds or [])

    def perturb(
        step: int, model: TwoLayerEnsemble, x: torch.Tensor, targets: torch.Tensor
    ) -> RowSpaceInputs:
        starts = None
        if random_start == "sphere":
            n, d = x.shape[-2:]
            starts = sphere_starts(member_seeds, eps_t, step, n, d, x.dtype, x.device)
        return row_space_pgd(model, x, targets, eps_t, steps, step_size, starts)

    return perturb


@dataclass(frozen=True)
class AdversarialPGD:
    """The inner attack of adversarial training (the authors' ``adv_train.py``): L2 PGD at
    every radius of ``eps`` (one member per radius), ``steps`` steps of ``step_size``, a
    random start (``sphere``: uniform on the eps-sphere)."""

    eps: Sequence[float]
    steps: int = 7
    step_size: float = 10.0
    random_start: RandomStart = "sphere"


def adversarially_train(
    data_cfg: SyntheticConfig,
    net_cfg: NetConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    pgd: AdversarialPGD,
    device: torch.device | str,
    progress: bool = False,
) -> tuple[TwoLayerEnsemble, SyntheticDataset, list[int]]:
    """Binary nets trained with L2 PGD adversarial training, one member per (seed, eps),
    seed-major, all in one ensemble. Returns (model, stacked data of every member, member
    seeds); member i uses pgd.eps[i % len(pgd.eps)] and the data, init and PGD starts of its
    seed."""
    eps, pgd_steps, step_size, random_start = pgd.eps, pgd.steps, pgd.step_size, pgd.random_start
    member_seeds = [s for s in seeds for _ in eps]
    data = sample_synthetic_stacked(data_cfg, member_seeds).to(device)
    model = binary_ensemble(member_seeds, data_cfg.d, net_cfg).to(device)
    member_eps = torch.tensor(list(eps) * len(seeds))
    train(
        model,
        data.x_train,
        data.y_train,
        train_cfg,
        options=TrainOptions(
            adversarial_perturb(member_eps, pgd_steps, step_size, random_start, member_seeds),
            progress,
        ),
    )
    return model, data, member_seeds
