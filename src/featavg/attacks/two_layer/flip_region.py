"""Step 2 of :mod:`featavg.attacks.two_layer.exact`: the flip region of one label as a
finite union of polyhedra ("pieces").

For scores s = A relu(q), q = p + B z, every read-out is a union over targets t of
F_t = {q : sum_r c_r relu(q_r) <= 0 for every row c of C_t}; splitting c = c+ - c- and
assuming the units S of V_t = {r : c-_r > 0 for some row c} active gives the convex
F_{t,S} = {q : sum_r c+_r relu(q_r) <= sum_{r in S} c-_r q_r}, the polyhedron

    { q : sum_{r in T} c+_r q_r - sum_{r in S} c-_r q_r <= 0,  all rows c, all T },

T ranging over the subsets of supp c+, and F_t is the union of F_{t,S} over S. Each piece
is stored as its rows w (halfspaces w^T q <= 0); they depend only on the readout A and the
label, so nets sharing a readout (the replicates of an ensemble) build them once
(:func:`pieces_for` caches them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# largest number of halfspaces (summed over pieces) built per label
MAX_ROWS = 1 << 20


def _subsets(n: int) -> np.ndarray:
    """(2^n, n) 0/1 matrix of all subsets of n items."""
    return ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def _flip_conditions(
    A: np.ndarray, readout: str, groups: np.ndarray | None, label: float
) -> list[np.ndarray]:
    """One matrix C_t per target: x flipped towards t iff sum_r c_r relu(q_r) <= 0 for
    every row c of C_t."""
    if readout == "margin":
        return [label * A[:1]]
    own = groups == label
    return [A[own] - A[t] for t in np.flatnonzero(~own)]


@dataclass
class Pieces:
    """The flip region of one label as polyhedra: piece i is the rows
    starts[i]:starts[i+1] of ``w``, each the halfspace w^T (p + B z) <= 0."""

    w: np.ndarray  # (R, M)
    starts: np.ndarray  # (P + 1,)


_PIECES_CACHE: dict[tuple[Any, ...], Pieces] = {}


def pieces_for(
    A: np.ndarray, readout: str, groups: np.ndarray | None, label: float, max_rows: int
) -> Pieces:
    """The pieces of one label's flip region; they depend only on the readout, so nets that
    share it (the replicates of an ensemble) build them once."""
    key = (
        A.tobytes(),
        A.shape,
        readout,
        None if groups is None else groups.tobytes(),
        float(label),
        max_rows,
    )
    if key not in _PIECES_CACHE:
        if len(_PIECES_CACHE) > 256:
            _PIECES_CACHE.clear()
        conditions = _flip_conditions(A, readout, groups, label)
        _PIECES_CACHE[key] = _build_pieces(conditions, A.shape[1], max_rows)
    return _PIECES_CACHE[key]


def _build_pieces(conditions: list[np.ndarray], n_units: int, max_rows: int) -> Pieces:
    blocks, starts, total = [], [0], 0
    for cmat in conditions:
        cpos, cneg = np.clip(cmat, 0, None), np.clip(-cmat, 0, None)
        target_units = np.flatnonzero((cneg > 0).any(0))  # V_t
        for s_bits in _subsets(len(target_units)):
            assumed_active = np.zeros(cmat.shape[1])
            assumed_active[target_units] = s_bits
            rows = []
            for cp, cn in zip(cpos, cneg, strict=True):
                own = np.flatnonzero(cp > 0)
                t_sets = np.zeros((1 << len(own), cmat.shape[1]))
                t_sets[:, own] = _subsets(len(own)) * cp[own]
                rows.append(t_sets - cn * assumed_active)
            piece = np.concatenate(rows)
            piece = piece[np.abs(piece).sum(1) > 0]
            if len(piece) == 0:  # the whole space: a trivially satisfied zero row
                piece = np.zeros((1, cmat.shape[1]))
            piece = np.unique(piece, axis=0)
            total += len(piece)
            if total > max_rows:
                raise ValueError(
                    f"exact radius: more than {max_rows} halfspaces; the piece enumeration is "
                    "exponential in the units per output (keep M <= 16)"
                )
            blocks.append(piece)
            starts.append(total)
    if not blocks:  # no target output exists: nothing can flip
        return Pieces(np.zeros((0, n_units)), np.zeros(1, dtype=np.int64))
    return Pieces(np.concatenate(blocks), np.asarray(starts))
