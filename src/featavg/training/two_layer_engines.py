"""Two exact formulations of full-batch / mini-batch GD on two-layer ReLU ensembles.

Notation of :mod:`featavg.models.two_layer`: f = A relu(P), P = W x + b, W (S, M, d), b
(S, M), inputs x (n, d) shared or (S, n, d) one data set per member. Preactivations are kept
unit-major, P^T (S, M, B), so that the Gram update is one GEMM per step.

* :class:`DirectEngine`: W and b updated in place, dL/dW = dL/dP^T x, O(S M n d) per step;
* :class:`GramEngine`: GD only ever adds rows of x to W, so W_t = W_0 + C_t x with C_t of
  shape (M, n). Then P_t = x W_0^T + G C_t^T + b with G = x x^T, and the update is
  C <- C - lr dL/dP^T: O(S M n^2) per step after one O(n^2 d) Gram matrix shared by every
  member that sees the same data. It wins when n < d (paper config: n = 1000, d = 3072);
  :func:`choose_formulation` picks by a flop count.

Both engines have ``preactivations(idx) -> [P^T per model]``, ``update(idx, dpts, lr)`` and
``sync_weights()`` (write the current W into the models).
"""

from __future__ import annotations

from typing import Literal

import torch

from featavg.models.two_layer import TwoLayerEnsemble
from featavg.training.interface import FactoredInputs

# keep gram matrices below this many bytes in "auto" mode
GRAM_MEMORY_LIMIT = 2 * 1024**3


def choose_formulation(
    s: int, m: int, n: int, d: int, steps: int, batch: int, shared_data: bool, bytes_per: int
) -> Literal["direct", "gram"]:
    """'gram' when its flop count (Gram matrices + per-step n x n products) is below the
    direct one (two n x d products per step) and its matrices fit in memory."""
    n_sets = 1 if shared_data else s
    direct = steps * 2 * s * m * batch * d
    gram = n_sets * n * n * d + 2 * s * m * n * d + steps * s * m * batch * n
    fits = n_sets * n * n * bytes_per <= GRAM_MEMORY_LIMIT
    return "gram" if gram < direct and fits else "direct"


def _rows(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return x if idx is None else x[..., idx, :]


class DirectEngine:
    """W and b of every model updated in place. Preactivations unit-major:
    P^T = W x^T + b, (S, M, B) per model.

    ``x`` is a tensor, or :class:`~featavg.training.interface.FactoredInputs` standing for
    the inputs of a single model (set by a ``perturb`` hook, e.g. adversarial examples)."""

    def __init__(self, models: list[TwoLayerEnsemble], x: torch.Tensor | FactoredInputs):
        self.models, self.x = models, x

    def preactivations(self, idx: torch.Tensor | None) -> list[torch.Tensor]:
        if isinstance(self.x, FactoredInputs):
            return [self.x.preactivations(idx)]
        xb = _rows(self.x, idx)
        out = []
        for model in self.models:
            w, b = model.weight, model.bias
            if xb.ndim == 2:
                s, m, d = w.shape
                out.append((w.reshape(s * m, d) @ xb.T).view(s, m, -1) + b[..., None])
            else:
                out.append(torch.baddbmm(b[..., None], w, xb.transpose(1, 2)))
        return out

    def weight_gradient(self, idx: torch.Tensor | None, dpt: torch.Tensor) -> torch.Tensor:
        """dL/dW = dL/dP x (S, M, d) from dL/dP (S, M, B) of the rows idx."""
        if isinstance(self.x, FactoredInputs):
            return self.x.weight_gradient(idx, dpt)
        xb = _rows(self.x, idx)
        if xb.ndim == 2:
            s, m, b = dpt.shape
            return (dpt.reshape(s * m, b) @ xb).view(s, m, -1)
        return torch.bmm(dpt, xb)

    def update(self, idx: torch.Tensor | None, dpts: list[torch.Tensor], lr: torch.Tensor) -> None:
        for model, dpt in zip(self.models, dpts, strict=True):
            model.weight.sub_(lr[:, None, None] * self.weight_gradient(idx, dpt))
            model.bias.sub_(lr[:, None] * dpt.sum(-1))

    def sync_weights(self) -> None:
        pass


class GramEngine:
    """W = W0 + C x with C (S, M, n); since G = x x^T is symmetric, P^T = W0 x^T + C G + b.

    The units of all models (e.g. the binary and the fine-grained net of one data set) are
    stacked along M, so each step reads the Gram matrix once for all of them: the product
    is memory-bound, 20 rows cost what 10 do."""

    def __init__(self, models: list[TwoLayerEnsemble], x: torch.Tensor):
        self.models, self.x = models, x
        self.sizes = [model.weight.shape[1] for model in models]
        self.w0 = torch.cat([model.weight for model in models], dim=1)  # (S, sum M, d)
        s, m, d = self.w0.shape
        self.shared = x.ndim == 2
        if self.shared:  # (S*M, n) rows so that C G is one big GEMM for the whole ensemble
            self.gram = gram_matrices(x[None])[0]
            self.p0 = self.w0.reshape(s * m, d) @ x.T
        else:
            self.gram = gram_matrices(x)
            self.p0 = torch.bmm(self.w0, x.transpose(1, 2))
        self.c = torch.zeros_like(self.p0)

    def preactivations(self, idx: torch.Tensor | None) -> list[torch.Tensor]:
        s, m, _ = self.w0.shape
        g = self.gram if idx is None else self.gram[..., idx]
        p0 = self.p0 if idx is None else self.p0[..., idx]
        if self.shared:
            p = torch.addmm(p0, self.c, g).view(s, m, -1)
        else:
            p = torch.baddbmm(p0, self.c, g)
        parts = p.split(self.sizes, dim=1)
        return [q + model.bias[..., None] for q, model in zip(parts, self.models, strict=True)]

    def update(self, idx: torch.Tensor | None, dpts: list[torch.Tensor], lr: torch.Tensor) -> None:
        dpt = torch.cat(dpts, dim=1) if len(dpts) > 1 else dpts[0]
        step = lr[:, None, None] * dpt
        c = self.c.view(step.shape[0], step.shape[1], -1)
        if idx is None:
            c.sub_(step)
        else:
            c[..., idx] -= step
        for model, d in zip(self.models, dpts, strict=True):
            model.bias.sub_(lr[:, None] * d.sum(-1))

    def sync_weights(self) -> None:
        """Write W0 + C x into the models (for metrics and at the end)."""
        s, m, d = self.w0.shape
        w = (self.c @ self.x).view(s, m, d) if self.shared else torch.bmm(self.c, self.x)
        for model, part in zip(self.models, (self.w0 + w).split(self.sizes, dim=1), strict=True):
            model.weight.copy_(part)


def gram_matrices(x: torch.Tensor, block: int = 256) -> torch.Tensor:
    """G = x x^T for a stack x (S, n, d), computing only the blocks on and below the
    diagonal (about half the flops for large n) and mirroring the rest, so G is exactly
    symmetric."""
    s, n, _ = x.shape
    gram = torch.empty(s, n, n, dtype=x.dtype, device=x.device)
    for i in range(0, n, block):
        rows = x[:, i : i + block]
        # one product for this block row, from the first column up to the diagonal
        gram[:, i : i + block, : i + block] = torch.bmm(rows, x[:, : i + block].transpose(1, 2))
        gram[:, :i, i : i + block] = gram[:, i : i + block, :i].transpose(1, 2)
        diag = gram[:, i : i + block, i : i + block]  # mirror its lower triangle too
        diag.copy_(diag.tril() + diag.tril(-1).transpose(1, 2))
    return gram
