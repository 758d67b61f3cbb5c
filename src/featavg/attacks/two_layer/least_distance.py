"""Step 3 of :mod:`featavg.attacks.two_layer.exact`: least-distance programs
min ||z|| s.t. G z <= h, solved exactly.

* fast path: if the projection of 0 onto the most violated halfspace satisfies the other
  rows, it is the answer (no point of the polyhedron can be closer than that halfspace);
* otherwise the Lawson-Hanson reduction to non-negative least squares (Lawson & Hanson,
  "Solving Least Squares Problems", ch. 23): with E = [-G^T; -h^T] and f = e_{r+1}, NNLS
  gives u >= 0 minimising ||E u - f||; the residual rho = E u - f is 0 iff the polyhedron
  is empty, else z* = rho_{1..r} / ||rho||^2 with multipliers lam = u / ||rho||^2. NNLS
  (:func:`nnls`) is a finite active-set method, so z* is exact up to rounding; it is
  polished by re-solving the active rows as equalities and certified by the KKT conditions.
"""

from __future__ import annotations

import numpy as np

# an LDP whose optimum lies beyond 1e7 times the scale of its constraints counts as empty
_EMPTY_RES2 = 1e-14


def nnls(e: np.ndarray, f: np.ndarray) -> np.ndarray:
    """argmin ||e u - f|| over u >= 0 by the Lawson-Hanson active-set method (small dense e).

    Written out because scipy.optimize.nnls (>= 1.15) can return non-optimal points
    (scipy issue #25389); the caller checks the KKT conditions of the result anyway.
    """
    m, n = e.shape
    u = np.zeros(n)
    passive = np.zeros(n, dtype=bool)  # the set P of L&H: columns free to be > 0
    blocked = np.zeros(n, dtype=bool)  # columns that rounding made useless this round
    tol = 10 * np.finfo(np.float64).eps * max(m, n) * np.abs(e).sum(0).max()
    for _ in range(3 * n + 50):
        w = e.T @ (f - e @ u)  # minus the gradient: > 0 where adding column j helps
        candidates = ~passive & ~blocked & (w > tol)
        if not candidates.any():
            return u
        j = int(np.argmax(np.where(candidates, w, -np.inf)))
        passive[j] = True
        while True:
            idx = np.flatnonzero(passive)
            s = np.linalg.lstsq(e[:, idx], f, rcond=None)[0]
            if s.min() > 0:
                u[:] = 0.0
                u[idx] = s
                blocked[:] = False
                break
            current = u[idx]
            if u[j] == 0.0 and passive[j] and s[idx == j][0] <= 0:
                passive[j], blocked[j] = False, True  # the new column cannot enter
                break
            # move from u towards s until the first passive coordinate hits 0; drop it
            neg = s <= 0
            ratios = np.full(len(idx), np.inf)
            ratios[neg] = current[neg] / (current[neg] - s[neg])
            k = int(np.argmin(ratios))
            u[idx] = current + ratios[k] * (s - current)
            u[idx[k]] = 0.0
            out = idx[u[idx] <= 0.0]
            passive[out] = False
            u[out] = 0.0
            if not passive.any():
                break
    raise RuntimeError("exact radius: NNLS did not converge")


def least_distance(g: np.ndarray, h: np.ndarray) -> np.ndarray | None:
    """argmin ||z|| subject to g z <= h (rows of g of unit norm), or None if empty.

    The result is certified by the KKT conditions of min ||z||^2 / 2 s.t. g z <= h:
    g z <= h, z = -g^T lam, lam >= 0, lam_i = 0 off the active rows (raises otherwise).
    """
    r = g.shape[1]
    if len(h) == 0 or h.min() >= 0:
        return np.zeros(r)
    scale = -h.min()  # the largest violation at z = 0: the scaled optimum has norm >= 1
    hs = h / scale
    # fast path: the projection onto the most violated halfspace, optimal if feasible
    z = hs.min() * g[np.argmin(hs)]
    if np.max(g @ z - hs) <= 1e-12:
        return z * scale
    # least-distance programming as NNLS (Lawson & Hanson, ch. 23)
    e = np.vstack([-g.T, -hs[None, :]])
    f = np.zeros(r + 1)
    f[-1] = 1.0
    u = nnls(e, f)
    res = e @ u - f
    res2 = float(res @ res)  # = 1 / (1 + ||z*||^2) when feasible, 0 when empty
    if res2 <= _EMPTY_RES2:
        return None
    z, lam = res[:-1] / res2, u / res2
    active = lam > 0
    # polish: the min-norm solution of the active rows' equalities
    polished = np.linalg.lstsq(g[active], hs[active], rcond=None)[0]
    if np.max(g @ polished - hs) <= np.max(g @ z - hs, initial=0.0):
        z = polished
    size = 1.0 + float(np.linalg.norm(z))
    slack = hs - g @ z
    # nearly dependent active rows give huge multipliers: judge stationarity relative to them
    kkt = (
        slack.min() >= -1e-9 * size
        and np.linalg.norm(z + g.T @ lam) <= 1e-8 * (size + lam.sum())
        and np.abs(slack[active]).max() <= 1e-9 * size
    )
    if not kkt:
        raise RuntimeError("exact radius: a least-distance QP failed its optimality check")
    return z * scale
