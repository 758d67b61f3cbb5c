"""The multi-cluster data distribution of Li et al. (ICLR 2025), Definition 3.1.

Cluster features mu_1..mu_k in R^d and a partition of the k clusters into J+ and J-.
A sample: draw a cluster j (uniformly, or exactly n/k per cluster as in the authors' code);
its binary label is y = +1 if j in J+ else -1; its input is x = mu_j + sigma * xi with
xi ~ N(0, I_d). The fine-grained label is j itself.

Assumption 3.2 asks ||mu_j|| = sqrt(d) and mutually orthogonal mu_j; the ablations relax both
(``norm_range`` spreads the norms over [lo, hi] * sqrt(d), drawn uniformly or, with
``norm_spread="ladder"``, evenly spaced within each class as the authors' 0.8, 0.9, 1.0, 1.1,
1.2; ``max_cosine`` > 0 gives nearly orthogonal centers whose pairwise cosines are drawn
uniformly in [-max_cosine, max_cosine]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featavg.faults import NumericalFault
from featavg.seeding import generator


class SyntheticConfig(BaseModel):
    """Every knob of the synthetic distribution. Defaults: the authors' synthetic config."""

    # allow_inf_nan: inf and NaN are refused by name, in lists too, rather than trained on
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    d: int = Field(3072, ge=1, description="input dimension")
    k: int = Field(10, ge=2, description="number of clusters")
    positive: tuple[int, ...] | None = Field(
        None, description="clusters in J+ (default: the first k//2, as in the authors' code)"
    )
    sampling: Literal["balanced", "iid"] = Field(
        "balanced", description="'balanced': n/k points per cluster (authors); 'iid': uniform j"
    )
    n_train: int = Field(1000, ge=1, description="training points")
    n_test: int = Field(1000, ge=1, description="test points")
    noise_std: float = Field(1.0, ge=0.0, description="sigma of the Gaussian noise xi")
    norm_range: tuple[float, float] = Field(
        (1.0, 1.0), description="center norms spread over [lo, hi] * sqrt(d)"
    )
    norm_spread: Literal["uniform", "ladder"] = Field(
        "uniform",
        description="how norms fill norm_range: 'uniform' draws; 'ladder' spaces them evenly "
        "within each class in cluster order (authors: 0.8, 0.9, 1.0, 1.1, 1.2 over 0.8..1.2)",
    )
    max_cosine: float = Field(
        0.0, ge=0.0, lt=1.0, description="0: exactly orthogonal centers; >0: nearly orthogonal"
    )

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.k > self.d:
            raise ValueError(f"k: {self.k} orthogonal-ish centers need k <= d = {self.d}")
        pos = self.positive_clusters
        if len(set(pos)) != len(pos) or any(not 0 <= j < self.k for j in pos):
            raise ValueError(f"positive: distinct cluster indices in 0..{self.k - 1} required")
        if not 0 < len(pos) < self.k:
            raise ValueError("positive: J+ and J- must both be non-empty")
        lo, hi = self.norm_range
        if not 0 < lo <= hi:
            raise ValueError(f"norm_range: need 0 < lo <= hi, got {self.norm_range}")
        if self.max_cosine > 0 and self.max_cosine * (self.k - 1) >= 1:
            raise ValueError(
                f"max_cosine: must be < 1/(k-1) = {1 / (self.k - 1):.4g} so that the Gram "
                "matrix of the centers is positive definite"
            )
        return self

    @property
    def positive_clusters(self) -> tuple[int, ...]:
        """J+ as a tuple of cluster indices."""
        return tuple(self.positive) if self.positive is not None else tuple(range(self.k // 2))

    @property
    def cluster_signs(self) -> torch.Tensor:
        """(k,) tensor of +1 / -1: the binary label of each cluster."""
        signs = -torch.ones(self.k)
        signs[list(self.positive_clusters)] = 1.0
        return signs


@dataclass
class SyntheticDataset:
    """One draw of the distribution. Shapes for a single replicate (a stacked ensemble of S
    replicates, see :func:`stack_datasets`, adds a leading axis S to every tensor).

    x_train (n, d), y_train (n,) in {-1, +1} (float), c_train (n,) cluster index (long);
    the same for test; centers (k, d) = mu_1..mu_k; signs (k,) = binary label per cluster.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    c_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    c_test: torch.Tensor
    centers: torch.Tensor
    signs: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SyntheticDataset:
        """Move every tensor (floating ones also cast to ``dtype`` when given)."""
        moved = {}
        for f in fields(self):
            t = getattr(self, f.name)
            moved[f.name] = t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        return SyntheticDataset(**moved)


def make_centers(cfg: SyntheticConfig, seed: int) -> torch.Tensor:
    """The k cluster centers mu_j as a (k, d) tensor.

    Exact orthogonality (max_cosine = 0): the QR-orthonormalised columns of a d x k Gaussian
    matrix (the authors' construction). Nearly orthogonal: a target Gram matrix
    Gamma = I + E with E symmetric, zero diagonal, entries uniform in [-c, c], realised exactly
    as Q L^T with Gamma = L L^T (positive definite because c (k-1) < 1).
    Norms: each center is then scaled to r_j sqrt(d) with r_j uniform in ``norm_range``, or
    r_j from :func:`norm_ladder` (``norm_spread="ladder"``).
    """
    g = generator(seed, "centers")
    gauss = torch.randn(cfg.d, cfg.k, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(gauss)  # (d, k), orthonormal columns
    basis = q.T  # (k, d)
    if cfg.max_cosine > 0:
        e = (torch.rand(cfg.k, cfg.k, generator=g, dtype=torch.float64) * 2 - 1) * cfg.max_cosine
        e = torch.triu(e, diagonal=1)
        gamma = torch.eye(cfg.k, dtype=torch.float64) + e + e.T
        basis = torch.linalg.cholesky(gamma) @ basis
    lo, hi = cfg.norm_range
    if cfg.norm_spread == "ladder":
        radii = norm_ladder(cfg)
    else:
        radii = lo + (hi - lo) * torch.rand(cfg.k, generator=g, dtype=torch.float64)
    return (basis * (radii * math.sqrt(cfg.d))[:, None]).float()


def norm_ladder(cfg: SyntheticConfig) -> torch.Tensor:
    """(k,) norms / sqrt(d) evenly spaced over ``norm_range`` within each class, clusters in
    index order (the authors' 0.8, 0.9, 1.0, 1.1, 1.2 for five clusters over 0.8..1.2); a
    class of one cluster gets the middle of the range."""
    lo, hi = cfg.norm_range
    radii = torch.empty(cfg.k, dtype=torch.float64)
    positive = set(cfg.positive_clusters)
    for sign in (True, False):
        members = [j for j in range(cfg.k) if (j in positive) == sign]
        ladder = torch.linspace(lo, hi, len(members), dtype=torch.float64)
        radii[members] = ladder if len(members) > 1 else (lo + hi) / 2
    return radii


def _cluster_labels(cfg: SyntheticConfig, n: int, g: torch.Generator) -> torch.Tensor:
    if cfg.sampling == "iid":
        return torch.randint(cfg.k, (n,), generator=g)
    # balanced: floor(n/k) per cluster, the remainder to the first clusters, then shuffled
    labels = torch.arange(n) % cfg.k
    return labels[torch.randperm(n, generator=g)]


def _fill_split(
    cfg: SyntheticConfig, centers: torch.Tensor, seed: int, split: str, x_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one split into the preallocated (n, d) ``x_out``; return (y, c).

    x = mu_c + sigma * xi, computed in place: bitwise what ``centers[c] + sigma * xi`` gives
    (IEEE addition commutes), without three n x d temporaries."""
    g = generator(seed, f"data/{split}")
    c = _cluster_labels(cfg, x_out.shape[0], g)
    torch.randn(x_out.shape, generator=g, out=x_out)
    if cfg.noise_std != 1.0:
        x_out.mul_(cfg.noise_std)
    x_out.add_(centers[c])
    return cfg.cluster_signs[c], c


def sample_synthetic(cfg: SyntheticConfig, seed: int) -> SyntheticDataset:
    """Draw centers, a training set and a test set from ``cfg`` with run seed ``seed``."""
    return _unstack(sample_synthetic_stacked([cfg], [seed]))


def sample_synthetic_stacked(
    cfgs: SyntheticConfig | Sequence[SyntheticConfig], seeds: Sequence[int]
) -> SyntheticDataset:
    """Replicates stacked along a leading axis S: member i is exactly
    ``sample_synthetic(cfgs[i], seeds[i])`` (one config may serve every member).

    The inputs are drawn straight into (S, n, d) tensors, one thread per core: each member
    has its own named random streams, so the result does not depend on the thread count.
    Members must share d, k, n_train and n_test.
    """
    seeds = list(seeds)
    cfgs = [cfgs] * len(seeds) if isinstance(cfgs, SyntheticConfig) else list(cfgs)
    if not seeds or len(cfgs) != len(seeds):
        raise ValueError(f"seeds: need one per config, got {len(seeds)} for {len(cfgs)}")
    shape = {(c.d, c.k, c.n_train, c.n_test) for c in cfgs}
    if len(shape) > 1:
        raise ValueError(f"cfgs: stacked members need the same d, k, n_train, n_test: {shape}")
    first, s = cfgs[0], len(seeds)
    x_train = torch.empty(s, first.n_train, first.d)
    x_test = torch.empty(s, first.n_test, first.d)
    labels: list[Any] = [None] * s
    centers = torch.empty(s, first.k, first.d)

    def draw(i: int) -> None:
        centers[i] = make_centers(cfgs[i], seeds[i])
        train = _fill_split(cfgs[i], centers[i], seeds[i], "train", x_train[i])
        labels[i] = (train, _fill_split(cfgs[i], centers[i], seeds[i], "test", x_test[i]))

    workers = min(s, torch.get_num_threads())
    if workers > 1:  # torch's sampling kernels release the GIL
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, range(s)))
    else:
        for i in range(s):
            draw(i)
    (y_tr, c_tr), (y_te, c_te) = (
        [torch.stack(t) for t in zip(*(lab[split] for lab in labels), strict=True)]
        for split in (0, 1)
    )
    signs = torch.stack([c.cluster_signs for c in cfgs])
    data = SyntheticDataset(x_train, y_tr, c_tr, x_test, y_te, c_te, centers, signs)
    check_dataset(data)
    return data


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite, without an entry-sized temporary (isfinite
    would allocate one per call: +1.2x the data's memory at paper size): min and max
    propagate NaN and reach +-inf whenever an entry is infinite."""
    if t.numel() == 0 or not t.is_floating_point():
        return True
    return bool(torch.isfinite(t.amax()) & torch.isfinite(t.amin()))


def check_dataset(data: SyntheticDataset) -> None:
    """Raise :class:`~featavg.faults.NumericalFault` (one line) on degenerate data: a
    cluster center mu_j whose float32 norm is 0 or non-finite (cosines with it are 0/0;
    e.g. ``data.norm_range`` so small or large that r sqrt(d) leaves float range), or
    NaN/inf in the inputs (e.g. an infinite ``data.noise_std``). Any stacking (S, ...)."""
    norms = torch.linalg.vector_norm(data.centers, dim=-1)
    bad = ~(torch.isfinite(norms) & (norms > 0))
    if bad.any():
        raise NumericalFault(
            f"data: {int(bad.sum())} cluster center(s) of norm 0 or non-finite in float32 "
            f"(norms range {float(norms.min()):.3g}..{float(norms.max()):.3g}): degenerate "
            "data; data.norm_range * sqrt(d) must stay within float range"
        )
    for name in ("x_train", "x_test"):
        x = getattr(data, name)
        if not all_finite(x):
            raise NumericalFault(
                f"data: {name} holds {int((~torch.isfinite(x)).sum())} NaN/inf value(s): "
                "degenerate data; data.noise_std and data.norm_range must be finite"
            )


def _unstack(stacked: SyntheticDataset) -> SyntheticDataset:
    return SyntheticDataset(**{f.name: getattr(stacked, f.name)[0] for f in fields(stacked)})


def stack_datasets(datasets: list[SyntheticDataset]) -> SyntheticDataset:
    """Stack S replicates along a new leading axis (S, ...) for ensemble training."""
    return SyntheticDataset(
        **{
            f.name: torch.stack([getattr(ds, f.name) for ds in datasets])
            for f in fields(datasets[0])
        }
    )
