"""Exact minimal L2 adversarial radius of small two-layer ReLU networks.

For a two-layer net s(x) = A relu(W x + b) (W: (M, d), readout A: (C, M), M <= 16) and a
correctly classified point x with label y, this module computes

    r*(x) = min ||delta||_2  such that  x + delta is misclassified,

exactly (up to float64 rounding), together with a minimiser delta*. Ties count as
misclassified, so r*(x) = 0 for a point already on or past the decision boundary, and a
point is robust at radius eps iff r*(x) > eps.

Read-outs (decision rules)
--------------------------
* ``"margin"``: binary, C = 1, label y in {-1, +1}; flipped iff y s_0 <= 0. The binary net
  f(x) = sum_r a_r ReLU(<w_r, x> + b_r) of the paper, and the SUM form
  F = sum_{j in J+} f_j - sum_{j in J-} f_j of a fine-grained net
  (:func:`featavg.models.sum_form_net`).
* ``"argmax"``: k-way; label y = output index; flipped iff s_l >= s_y for some l != y.
* ``"group_argmax"``: outputs carry group ids g(l) (e.g. the binary class of each cluster);
  label = group id; flipped iff s_l >= max_{g(j) = y} s_j for some l with g(l) != y.

Step 1: reduce to the row space of W
------------------------------------
The scores depend on delta only through u = W delta. Write delta = R^T z + n with R (r, d)
an orthonormal basis of the row space of W (r = rank W <= M) and n orthogonal to it: n does
not change u but adds ||n||^2 to ||delta||^2, so the minimiser has n = 0. With B = W R^T
(M, r), u = B z and ||delta|| = ||z||: everything below lives in r <= 16 dimensions, the
input dimension d only enters through p = W x + b and delta = R^T z (O(M d) per point).

Step 2: the flip region as a finite union of polyhedra (:mod:`.flip_region`)
------------------------------------------------------------------------------
Write q = p + B z for the perturbed preactivations. Every read-out is a union over "target"
outputs t of sets

    F_t = { q : sum_r c_r relu(q_r) <= 0 for every row c of a matrix C_t },

with C_t = [y A_0] (margin, one target), C_t = [A_y - A_t] for t != y (argmax), and
C_t = [A_j - A_t]_{g(j) = y} for g(t) != y (group_argmax: s_t beats every own output).
Split each row c = c+ - c- into its positive and negative parts. The left side
sum c+_r relu(q_r) is convex; the right side sum c-_r relu(q_r) is not, but for a subset S
of V_t = {r : c-_r > 0 for some row c} ("the target's units assumed active")

    F_{t,S} = { q : sum_r c+_r relu(q_r) <= sum_{r in S} c-_r q_r  for every row c }

is convex (convex <= linear), F_{t,S} is contained in F_t (because c-_r q_r <= c-_r relu(q_r)),
and F_t is the union of F_{t,S} over S (take S = the active units of V_t at q). Finally
sum_r c+_r relu(q_r) = max_{T subset of supp c+} sum_{r in T} c+_r q_r, so F_{t,S} is the
polyhedron

    { q : sum_{r in T} c+_r q_r - sum_{r in S} c-_r q_r <= 0,  all rows c, all T }.

In z these are halfspaces w^T (p + B z) <= 0, i.e. (B^T w)^T z <= -w^T p. Units with a zero
readout never appear. Examples: binary net with m own and m opposing units: 2^m pieces of
<= 2^m halfspaces each; fine-grained net (h = 1), argmax: for each target t two pieces,
{q_y <= q_t, 0 <= q_t} and the all-off tie {q_y <= 0}.

Step 3: one least-distance QP per piece, with pruning (:mod:`.least_distance`)
------------------------------------------------------------------------------
r*(x) = min over pieces of the distance from z = 0 to the piece, a least-distance program
min ||z|| s.t. G z <= h (rows of G normalised). Each is solved exactly:

* fast path: if the projection of 0 onto the most violated halfspace satisfies the other
  rows, it is the answer (no point of the piece can be closer than that halfspace);
* otherwise the Lawson-Hanson reduction to non-negative least squares (Lawson & Hanson,
  "Solving Least Squares Problems", ch. 23): with E = [-G^T; -h^T] and f = e_{r+1}, NNLS
  gives u >= 0 minimising ||E u - f||; the residual rho = E u - f is 0 iff the polyhedron
  is empty, else z* = rho_{1..r} / ||rho||^2 with multipliers lam = u / ||rho||^2. NNLS is a
  finite active-set method (our own implementation: scipy's ``nnls`` >= 1.15 can return
  non-optimal points), so z* is exact up to rounding; it is polished by re-solving the
  active rows as equalities and certified by the KKT conditions (feasible, z = -G^T lam,
  lam >= 0 only on tight rows), raising if they fail.

Pruning: every halfspace of a piece lower-bounds its distance by its own violation at z = 0
(-h_i / ||g_i||), so lb(piece) = max_i violation. Pieces are visited in increasing lb and the
search stops once lb >= the best radius found; for trained nets usually one QP per point is
solved, most on the fast path.

Complexity. Setup: one SVD of W, O(M^2 d), plus building the pieces once per label:
P pieces with R rows in total (for block readouts, each unit feeding one output: binary net
with m + m units: P = 2^m, R <= 4^m; fine-grained net with h units per output: P = 2^h per
target, R ~ 2^h per piece; a dense readout can reach 2^M pieces). Per point: O(M d) for p,
O(R M) for the lower bounds, and per visited piece one NNLS on an (r + 1) x R_piece matrix,
each active-set step a least-squares solve of size <= (r + 1) x (r + 1). Measured (2 CPU
threads, d = 3072, 1000 points): trained binary net (M = 10) ~7 ms; trained fine-grained
net (M = 10), any read-out, ~7-10 ms; random M = 16 binary net ~0.9 s. Read-outs of one
first layer share the O(M d) setup (:class:`ExactRadiusSolver`).

Verification: the flip of each returned delta = R^T z is re-checked with the real network
in float64 (relative tolerance :data:`VERIFY_RTOL`), its preactivations taken as
p + z (R W^T) with R W^T computed from W itself; a failure raises. The minimiser lies ON
the decision boundary (a tie), so evaluating x + delta in float32 may round either way.

Device and dtype: all work happens on CPU in float64 (numpy), whatever the net's device;
results are CPU float64 tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from featavg.attacks.two_layer.flip_region import MAX_ROWS, Pieces, pieces_for
from featavg.attacks.two_layer.least_distance import least_distance
from featavg.models.two_layer import TwoLayerNet
from featavg.progress import bar as progress_bar

Readout = Literal["margin", "argmax", "group_argmax"]
READOUTS = ("margin", "argmax", "group_argmax")

# x + delta must be flipped up to this relative tolerance (scale: the largest output's
# sum_r |A_lr| relu(q_r)); the minimiser lies on the decision boundary itself.
VERIFY_RTOL = 1e-9


@dataclass
class ExactResult:
    """Exact minimal L2 radii of B points.

    radius: (B,) float64, 0 for points already misclassified, inf where no perturbation
    can flip the decision. delta: minimisers, x's shape, float64 (None unless requested;
    zero rows where radius is 0 or inf). qps: (B,) number of piece QPs solved per point.
    """

    radius: torch.Tensor
    delta: torch.Tensor | None
    qps: torch.Tensor


def _as_numpy64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _flipped(
    scores: np.ndarray,
    y: np.ndarray,
    readout: str,
    groups: np.ndarray | None,
    tol: float | np.ndarray,
) -> np.ndarray:
    """(B,) bool: decision flipped (ties count), up to an additive tolerance ``tol``."""
    if readout == "margin":
        return y * scores[:, 0] <= tol
    assert groups is not None  # _check_labels gives every argmax read-out its groups
    own = groups[None, :] == y[:, None]
    best_own = np.where(own, scores, -np.inf).max(1)
    best_other = np.where(own, -np.inf, scores).max(1)
    return best_other >= best_own - tol


def _check_labels(
    readout: str,
    y: np.ndarray,
    n_out: int,
    groups: torch.Tensor | Sequence[int] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    if readout == "margin":
        if n_out != 1:
            raise ValueError("readout='margin' needs a binary net (C = 1); see sum_form_net")
        if not np.all(np.isin(y, (-1.0, 1.0))):
            raise ValueError("readout='margin': labels must be -1 or +1")
        return y.astype(np.float64), None
    if readout == "argmax":
        groups = np.arange(n_out)
    elif groups is None:
        raise ValueError("readout='group_argmax' needs groups (one id per output)")
    groups = np.asarray(torch.as_tensor(groups).cpu().numpy()).astype(np.int64).reshape(-1)
    if groups.shape != (n_out,):
        raise ValueError(f"groups: need one id per output ({n_out}), got {groups.shape}")
    if n_out < 2:
        raise ValueError(f"readout={readout!r} needs a net with several outputs")
    y = y.astype(np.int64)
    if not np.all(np.isin(y, groups)):
        raise ValueError(f"readout={readout!r}: labels must be among {sorted(set(groups))}")
    return y, groups


class ExactRadiusSolver:
    """Step 1 of the module docstring for one first layer (W, b) and a batch of points x:
    the row-space basis R, B = W R^T and the float64 preactivations p = W x + b.

    Every read-out of the same first layer reuses them (a fine-grained net's k-way, group
    argmax and sum forms differ only in the readout matrix A), so :meth:`radius` per
    read-out costs only the piece search. x: (B, ...) inputs, flattened to (B, d).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor):
        self.weight, bias64 = _as_numpy64(weight), _as_numpy64(bias)
        self.shape = x.shape
        x64 = _as_numpy64(x.flatten(1))
        if x64.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x: expected {self.weight.shape[1]} features, got {x64.shape[1]}")
        u_, sv, vt = np.linalg.svd(self.weight, full_matrices=False)
        tol_rank = sv.max(initial=0.0) * max(self.weight.shape) * np.finfo(np.float64).eps
        rank = int((sv > tol_rank).sum())
        self.basis, self.bmat = vt[:rank], u_[:, :rank] * sv[:rank]  # R (r, d), B (M, r)
        self.p_all = x64 @ self.weight.T + bias64  # (n, M)

    def radius(
        self,
        readout_matrix: torch.Tensor,
        y: torch.Tensor,
        readout: Readout = "margin",
        groups: torch.Tensor | Sequence[int] | None = None,
        return_delta: bool = False,
        progress: bool = False,
        max_rows: int = MAX_ROWS,
    ) -> ExactResult:
        """Exact radii for scores A relu(W x + b) with A = ``readout_matrix`` (C, M); the
        other arguments as in :func:`minimal_l2_radius`."""
        if readout not in READOUTS:
            raise ValueError(f"readout: must be one of {READOUTS}, got {readout!r}")
        A, p_all = _as_numpy64(readout_matrix), self.p_all
        n = len(p_all)
        y_np = _as_numpy64(torch.as_tensor(y)).reshape(-1)
        if y_np.shape != (n,):
            raise ValueError(f"y: need one label per point ({n}), got {tuple(y_np.shape)}")
        y_np, groups_np = _check_labels(readout, y_np, A.shape[0], groups)

        flipped_now = _flipped(np.maximum(p_all, 0) @ A.T, y_np, readout, groups_np, 0.0)
        radius = np.where(flipped_now, 0.0, np.inf)
        z_best = np.zeros((n, self.bmat.shape[1]))
        qps = np.zeros(n, dtype=np.int64)

        todo = np.flatnonzero(~flipped_now)
        bar = progress_bar(total=len(todo), desc=f"exact radius ({readout})", enabled=progress)
        for label in np.unique(y_np[todo]):
            idx = todo[y_np[todo] == label]
            pieces = pieces_for(A, readout, groups_np, label, max_rows)
            for chunk in _chunks(idx, max(1, (1 << 22) // max(1, len(pieces.w)))):
                radius[chunk], z_best[chunk], qps[chunk] = _solve(p_all[chunk], pieces, self.bmat)
                bar.update(len(chunk))
        bar.close()

        check = np.isfinite(radius) & (radius > 0)
        _verify((self.weight, self.basis, A), p_all, z_best, y_np, (readout, groups_np), check)
        out_delta = None
        if return_delta:  # exactly 0 where radius is 0 or inf
            out_delta = torch.from_numpy(z_best @ self.basis).reshape(self.shape)
        return ExactResult(torch.from_numpy(radius), out_delta, torch.from_numpy(qps))


def minimal_l2_radius(
    net: TwoLayerNet,
    x: torch.Tensor,
    y: torch.Tensor,
    readout: Readout = "margin",
    groups: torch.Tensor | Sequence[int] | None = None,
    return_delta: bool = False,
    progress: bool = False,
    max_rows: int = MAX_ROWS,
) -> ExactResult:
    """Exact min ||delta||_2 flipping ``readout``'s decision at each point (module docstring).

    net: a :class:`TwoLayerNet` (scores A relu(W x + b)); x: (B, ...) inputs, flattened to
    (B, d); y: (B,) labels: -1/+1 for "margin", output indices for "argmax", group ids for
    "group_argmax" (``groups``: (C,) one group id per output).
    Returns radii (and minimisers with ``return_delta``), each verified with the real net.
    Several read-outs of one first layer: build one :class:`ExactRadiusSolver` instead.
    """
    solver = ExactRadiusSolver(net.linear.weight, net.linear.bias, x)
    return solver.radius(net.readout, y, readout, groups, return_delta, progress, max_rows)


def _chunks(idx: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(idx), size):
        yield idx[start : start + size]


def _solve(
    p: np.ndarray, pieces: Pieces, bmat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius, minimiser z (in row-space coordinates) and QP count for points with
    preactivations p (b, M), all of one label whose flip region is ``pieces``."""
    n, rank = len(p), bmat.shape[1]
    radius, z_best, qps = np.full(n, np.inf), np.zeros((n, rank)), np.zeros(n, dtype=np.int64)
    if len(pieces.w) == 0:  # no output can overtake: nothing flips
        return radius, z_best, qps
    g = pieces.w @ bmat  # (R, r): halfspace normals B^T w in z-space
    gnorm = np.linalg.norm(g, axis=1)
    degenerate = gnorm <= 1e-12 * np.abs(pieces.w).sum(1) * np.abs(bmat).max(initial=0.0)
    safe_norm = np.where(degenerate, 1.0, gnorm)[:, None]
    g_unit = g / safe_norm
    # the piece's rows read g_unit z <= h with h = -w^T p / ||B^T w||; keep v = -h, each
    # row's violation at z = 0
    v = p @ (pieces.w / safe_norm).T  # (b, R)
    if degenerate.any():  # rows with B^T w = 0 are constants: always true or never
        wp = p @ pieces.w[degenerate].T
        slack = 1e-12 * (np.abs(p) @ np.abs(pieces.w[degenerate]).T)
        v[:, degenerate] = np.where(wp <= slack, -np.inf, np.inf)
    starts = pieces.starts
    # each row's violation at z = 0 lower-bounds the distance to its piece
    lower = np.maximum(np.maximum.reduceat(v, starts[:-1], axis=1), 0.0)
    # Vectorised fast path: if, in the piece with the smallest lower bound, the projection
    # onto its most violated row is feasible, it attains that bound, which no other piece
    # can beat, so the point is solved exactly; the loop below handles the rest.
    best_piece = np.argmin(lower, axis=1)
    lowest = lower[np.arange(n), best_piece]
    solved = np.zeros(n, dtype=bool)
    for piece in np.unique(best_piece):
        pts = np.flatnonzero((best_piece == piece) & np.isfinite(lowest) & (lowest > 0))
        if len(pts) == 0:
            continue
        rows = slice(starts[piece], starts[piece + 1])
        vp, gp = v[pts, rows], g_unit[rows]
        worst = np.argmax(vp, axis=1)
        vmax = vp[np.arange(len(pts)), worst]  # = lowest
        z = -vmax[:, None] * gp[worst]
        feasible = ((z @ gp.T + vp) <= 1e-12 * vmax[:, None]).all(1)
        done = pts[feasible]
        radius[done], z_best[done], qps[done] = vmax[feasible], z[feasible], 1
        solved[done] = True
    for i in np.flatnonzero(~solved):
        for piece in np.argsort(lower[i], kind="stable"):
            if lower[i, piece] >= radius[i]:
                break
            rows = slice(starts[piece], starts[piece + 1])
            finite = np.isfinite(v[i, rows])
            z = least_distance(g_unit[rows][finite], -v[i, rows][finite])
            qps[i] += 1
            if z is not None and np.linalg.norm(z) < radius[i]:
                radius[i], z_best[i] = float(np.linalg.norm(z)), z
    return radius, z_best, qps


def _verify(
    net: tuple[np.ndarray, np.ndarray, np.ndarray],
    p_all: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    read: tuple[str, np.ndarray | None],
    check: np.ndarray,
) -> None:
    """Raise unless x + delta, delta = R^T z, flips the real net (W, basis R, A) = ``net``
    read out by (readout, groups) = ``read`` for every point in ``check``: its
    preactivations W (x + delta) + b = p_all + z (R W^T), with R W^T taken
    from W itself (not from the SVD factors the search used), O(n r M) instead of
    materialising the (n, d) delta."""
    if not check.any():
        return
    W, basis, A = net
    readout, groups = read
    acts = np.maximum(p_all[check] + z[check] @ (basis @ W.T), 0.0)
    scale = (acts @ np.abs(A).T).max(1)
    ok = _flipped(acts @ A.T, y[check], readout, groups, VERIFY_RTOL * (1.0 + scale))
    if not ok.all():
        bad = np.flatnonzero(check)[~ok]
        raise RuntimeError(f"exact radius: x + delta is not flipped at points {bad[:10].tolist()}")
