"""Two-layer ReLU networks with a fixed second layer, stored as ensembles.

Binary network (paper, Section 3.2), M = 2m hidden units:

    f(x) = sum_r a_r ReLU(<w_r, x> + b_r),   a_r = +s for r < m, -s for r >= m,

with s = 1/m (``second_layer="mean"``, the paper) or s = 1 (``second_layer="unit"``, the
authors' code). By ReLU homogeneity the two are the same function when (w, b) of the
"mean" net are m times those of the "unit" net; GD keeps this if the init is scaled by m and
the learning rate by m^2.

Fine-grained network, k outputs, h units each (M = k h):

    f_j(x) = s * sum_{r in unit block j} ReLU(<w_r, x> + b_r),   s = 1/h ("mean") or 1 ("unit").

Both are ``A relu(W x + b)`` with a fixed readout matrix A of shape (C, M) (C = 1 for the
binary net, k for the fine-grained one). An ensemble holds S independent networks with
weights (S, M, d) and biases (S, M) so that one batched computation trains them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from featavg.seeding import generator

SecondLayer = Literal["unit", "mean"]


class NetConfig(BaseModel):
    """Width, second-layer parametrisation and initialisation of the two-layer nets."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    m: int = Field(5, ge=1, description="binary net: hidden units per class (M = 2m)")
    h: int = Field(1, ge=1, description="fine-grained net: hidden units per cluster (M = k h)")
    second_layer: SecondLayer = Field(
        "unit", description="'unit': +-1 (authors' code); 'mean': +-1/m (paper)"
    )
    init: Literal["normal", "he"] = Field(
        "normal", description="'normal': N(0, init_std^2); 'he': N(0, 2/d)"
    )
    init_std: float = Field(1e-5, gt=0.0, description="first-layer init std for init='normal'")


def binary_readout(m: int, second_layer: SecondLayer = "unit") -> torch.Tensor:
    """(1, 2m) readout: +s for the first m units, -s for the rest."""
    s = 1.0 if second_layer == "unit" else 1.0 / m
    return torch.cat([torch.full((m,), s), torch.full((m,), -s)])[None, :]


def multiclass_readout(k: int, h: int, second_layer: SecondLayer = "unit") -> torch.Tensor:
    """(k, k h) block readout: output j sums units j*h .. j*h + h - 1 (times 1 or 1/h)."""
    s = 1.0 if second_layer == "unit" else 1.0 / h
    return torch.kron(torch.eye(k), torch.full((1, h), s))


def init_weights(
    seeds: Sequence[int],
    units: int,
    d: int,
    init: str = "normal",
    init_std: float | Sequence[float] = 1e-5,
    stream: str = "init",
) -> torch.Tensor:
    """(S, units, d) first-layer weights; member s is drawn from its own seed ``seeds[s]``,
    so member s of any ensemble equals a single network initialised with that seed."""
    stds = [init_std] * len(seeds) if isinstance(init_std, int | float) else list(init_std)
    if len(stds) != len(seeds):
        raise ValueError(f"init_std: got {len(stds)} values for {len(seeds)} ensemble members")
    out = []
    for seed, std in zip(seeds, stds, strict=True):
        if init == "he":
            std = math.sqrt(2.0 / d)
        elif init != "normal":
            raise ValueError(f"init: must be 'normal' or 'he', got {init!r}")
        out.append(torch.randn(units, d, generator=generator(seed, stream)) * std)
    return torch.stack(out)


class TwoLayerEnsemble(nn.Module):
    """S two-layer ReLU networks f_s(x) = A relu(W_s x + b_s) with a shared fixed readout A.

    Tensors: weight (S, M, d), bias (S, M), readout (C, M). ``forward`` takes x of shape
    (n, d) (shared by all members) or (S, n, d) (one data set per member) and returns
    logits (S, n, C). ``kind`` is "binary" (C = 1, the output is the margin f) or
    "multiclass" (C = k). Parameters are updated in place by :func:`featavg.training.train`.
    """

    # buffers (registered in __init__), declared so that type checkers see tensors
    weight: torch.Tensor
    bias: torch.Tensor
    readout: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, readout: torch.Tensor, kind: str):
        super().__init__()
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"kind: must be 'binary' or 'multiclass', got {kind!r}")
        if (
            weight.ndim != 3
            or bias.shape != weight.shape[:2]
            or readout.shape[1] != weight.shape[1]
        ):
            raise ValueError(
                f"shapes: need weight (S, M, d), bias (S, M), readout (C, M); got "
                f"{tuple(weight.shape)}, {tuple(bias.shape)}, {tuple(readout.shape)}"
            )
        self.kind = kind
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())
        self.register_buffer("readout", readout.clone().to(weight.dtype))

    @property
    def size(self) -> int:
        """Number of networks S."""
        return self.weight.shape[0]

    @property
    def unit_sign(self) -> torch.Tensor:
        """(M,) +1/-1: the class each binary unit votes for (sign of its readout)."""
        return torch.sign(self.readout[0])

    @property
    def unit_class(self) -> torch.Tensor:
        """(M,) long: the output (cluster) each unit feeds."""
        return self.readout.abs().argmax(0)

    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b as (S, n, M); x is (n, d) or (S, n, d)."""
        w = self.weight
        if x.ndim == 2:
            s, m, d = w.shape
            p = (x @ w.reshape(s * m, d).T).view(x.shape[0], s, m).permute(1, 0, 2)
            return p + self.bias[:, None, :]
        return torch.baddbmm(self.bias[:, None, :], x, w.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.preactivations(x)) @ self.readout.T

    def member(self, i: int) -> TwoLayerNet:
        """Network ``i`` as an ordinary ``nn.Module`` (a copy) returning logits."""
        return TwoLayerNet(self.weight[i], self.bias[i], self.readout, self.kind)

    def subset(self, idx: slice | torch.Tensor) -> TwoLayerEnsemble:
        """The members ``idx`` (a slice or index tensor) as a new ensemble (copies)."""
        return TwoLayerEnsemble(self.weight[idx], self.bias[idx], self.readout, self.kind)

    def to_dtype(self, dtype: torch.dtype) -> TwoLayerEnsemble:
        return TwoLayerEnsemble(
            self.weight.to(dtype), self.bias.to(dtype), self.readout.to(dtype), self.kind
        )


class TwoLayerNet(nn.Module):
    """One two-layer net as an ordinary module: input (B, d) -> logits.

    Multiclass: logits (B, k). Binary: logits (B, 2) = [-f/2, f/2], so that softmax
    cross-entropy on the class index (y + 1)/2 is exactly the logistic loss softplus(-y f)
    and argmax agrees with sign(f): torchattacks / AutoAttack plug in unchanged.
    :meth:`margin` returns f itself.
    """

    readout: torch.Tensor  # buffer (registered in __init__)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, readout: torch.Tensor, kind: str):
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(
            weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device
        )
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.register_buffer("readout", readout.clone().to(weight.dtype))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Raw readout A relu(W x + b): (B, 1) for binary nets, (B, k) for fine-grained."""
        return torch.relu(self.linear(x.flatten(1))) @ self.readout.T

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        """Binary nets: f(x) as (B,)."""
        if self.kind != "binary":
            raise ValueError("margin: only defined for binary networks")
        return self.scores(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scores(x)
        if self.kind == "binary":
            return torch.cat([-z / 2, z / 2], dim=1)
        return z


def sum_form_net(net: TwoLayerNet, signs: torch.Tensor | Sequence[float]) -> TwoLayerNet:
    """The derived binary SUM form F(x) = sum_j signs_j f_j(x) of a fine-grained net.

    It is the two-layer net with the same first layer and readout sum_j signs_j A_j (1, M);
    use it with labels y in {-1, +1} (exact radii: ``readout="margin"``; PGD: BinaryMargin).
    """
    signs = torch.as_tensor(signs, dtype=net.readout.dtype, device=net.readout.device)
    if signs.shape != (net.readout.shape[0],):
        raise ValueError(f"signs: need one per output ({net.readout.shape[0]}), got {signs.shape}")
    readout = (signs @ net.readout)[None, :]
    weight, bias = net.linear.weight.detach(), net.linear.bias.detach()
    return TwoLayerNet(weight, bias, readout, "binary").to(weight.device, weight.dtype)


def _ensemble(
    seeds: Sequence[int],
    units: int,
    d: int,
    readout: torch.Tensor,
    kind: str,
    cfg: NetConfig,
    init_std: float | Sequence[float] | None,
    stream: str,
) -> TwoLayerEnsemble:
    std = cfg.init_std if init_std is None else init_std
    w = init_weights(seeds, units, d, cfg.init, std, stream)
    return TwoLayerEnsemble(w, torch.zeros(w.shape[:2]), readout, kind)


def binary_ensemble(
    seeds: Sequence[int],
    d: int,
    cfg: NetConfig = NetConfig(),
    init_std: float | Sequence[float] | None = None,
) -> TwoLayerEnsemble:
    """Binary nets (M = 2 cfg.m units), member s initialised from ``seeds[s]``; biases 0.
    ``init_std`` may give one std per member (an init-scale sweep in one ensemble)."""
    readout = binary_readout(cfg.m, cfg.second_layer)
    return _ensemble(seeds, 2 * cfg.m, d, readout, "binary", cfg, init_std, "init/binary")


def multiclass_ensemble(
    seeds: Sequence[int],
    d: int,
    k: int,
    cfg: NetConfig = NetConfig(),
    init_std: float | Sequence[float] | None = None,
) -> TwoLayerEnsemble:
    """Fine-grained nets (k outputs, M = k cfg.h units), member s from ``seeds[s]``."""
    readout = multiclass_readout(k, cfg.h, cfg.second_layer)
    return _ensemble(seeds, k * cfg.h, d, readout, "multiclass", cfg, init_std, "init/multiclass")
