"""Pareto tools on minimized objective matrices: non-dominated sorting, crowding, hypervolume, knee.

Every function takes an (n, m) array-like of objective values where *smaller is better* in every
column (maximized objectives are negated before they get here, see `hwnas.objectives`).

Hypervolume normalization (used by `hypervolume`, `normalized_hypervolume` and `hwnas bench`):
each objective is mapped to [0, 1] with a given `ideal` (-> 0) and `nadir` (-> 1), normally the
per-objective min and max of the *true* Pareto front; the hypervolume is then computed by pymoo
against the reference point (1.1, ..., 1.1), so front points on the nadir still contribute.
The normalized HV of a found set is HV(found) / HV(true front) under the same normalization;
the true front itself scores exactly 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REFERENCE_POINT = 1.1


def _as_matrix(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    F = np.asarray(points, dtype=float)
    if F.ndim == 1:
        F = F.reshape(0, 0) if F.size == 0 else F.reshape(1, -1)
    return F


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when `a` is no worse than `b` everywhere and strictly better somewhere (minimizing)."""
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a_ <= b_) and np.any(a_ < b_))


def non_dominated_mask(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the points that no other point dominates (duplicates are all kept).

    Small sets use one vectorized pairwise comparison; large ones sweep the points in
    lexicographic order against the running front: O(n * front size), little memory.
    """
    F = _as_matrix(points)
    n = len(F)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if n <= 1500:
        le = np.all(F[:, None, :] <= F[None, :, :], axis=2)  # le[j, i]: F[j] <= F[i] everywhere
        lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
        return ~np.any(le & lt, axis=0)
    order = np.lexsort(F.T[::-1])  # by first objective, then the next, ...
    front = np.empty((0, F.shape[1]))
    for i in order:
        f = F[i]
        # earlier points in lexicographic order can dominate f; later ones cannot
        if len(front) and np.any(np.all(front <= f, axis=1) & np.any(front < f, axis=1)):
            continue
        mask[i] = True
        front = np.vstack([front, f])
    return mask


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [int(i) for i in np.flatnonzero(non_dominated_mask(points))]


def non_dominated_sort(points: Sequence[Sequence[float]] | np.ndarray) -> list[list[int]]:
    """Fronts of indices: front 0 is non-dominated, front 1 is non-dominated once 0 is removed, ..."""
    F = _as_matrix(points)
    remaining = np.arange(len(F))
    fronts: list[list[int]] = []
    while len(remaining):
        mask = non_dominated_mask(F[remaining])
        fronts.append([int(i) for i in remaining[mask]])
        remaining = remaining[~mask]
    return fronts


def pareto_ranks(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of every point."""
    F = _as_matrix(points)
    ranks = np.zeros(len(F), dtype=int)
    for r, front in enumerate(non_dominated_sort(F)):
        ranks[front] = r
    return ranks


def crowding_distance(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within the given set (boundary points get inf)."""
    F = _as_matrix(points)
    n, m = F.shape if F.size else (len(F), 0)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        col = F[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span <= 0:
            continue
        dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def normalize(
    points: Sequence[Sequence[float]] | np.ndarray,
    ideal: Sequence[float] | np.ndarray,
    nadir: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Map each objective linearly so `ideal` -> 0 and `nadir` -> 1 (constant columns -> 0)."""
    F = _as_matrix(points)
    lo, hi = np.asarray(ideal, float), np.asarray(nadir, float)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (F - lo) / span


def hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray,
    ideal: Sequence[float] | np.ndarray | None = None,
    nadir: Sequence[float] | np.ndarray | None = None,
    reference: float = REFERENCE_POINT,
) -> float:
    """Hypervolume (pymoo) of `points` after normalizing with ideal/nadir, reference point `reference`.

    Without ideal/nadir the points' own non-dominated min/max are used. Points beyond the
    reference point in any objective contribute nothing.
    """
    from pymoo.indicators.hv import HV

    F = _as_matrix(points)
    if len(F) == 0:
        return 0.0
    if ideal is None or nadir is None:
        front = F[non_dominated_mask(F)]
        ideal = front.min(axis=0) if ideal is None else ideal
        nadir = front.max(axis=0) if nadir is None else nadir
    Z = normalize(F, ideal, nadir)
    ref = np.full(Z.shape[1], float(reference))
    Z = Z[np.all(Z < ref, axis=1)]
    if len(Z) == 0:
        return 0.0
    return float(HV(ref_point=ref)(Z))


def normalized_hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray,
    true_front: Sequence[Sequence[float]] | np.ndarray,
    reference: float = REFERENCE_POINT,
) -> float:
    """HV(points) / HV(true_front), both normalized by the true front's ideal and nadir (see module doc)."""
    T = _as_matrix(true_front)
    T = T[non_dominated_mask(T)]
    ideal, nadir = T.min(axis=0), T.max(axis=0)
    return hypervolume(points, ideal, nadir, reference) / hypervolume(T, ideal, nadir, reference)


def knee_point(points: Sequence[Sequence[float]] | np.ndarray) -> int:
    """Index of the knee of the non-dominated set of `points`.

    Objectives are normalized to [0, 1] over the non-dominated set; the knee is the non-dominated
    point with the largest distance below the hyperplane through the per-objective extreme points
    (for two objectives: the line from the best-in-f1 to the best-in-f2 point). Ties and degenerate
    fronts (one or two points) fall back to the point closest to the ideal point.
    """
    F = _as_matrix(points)
    if len(F) == 0:
        raise ValueError("knee_point needs at least one point")
    idx = np.flatnonzero(non_dominated_mask(F))
    front = F[idx]
    Z = normalize(front, front.min(axis=0), front.max(axis=0))
    m = Z.shape[1]
    if len(Z) <= 2 or m < 2:
        return int(idx[int(np.argmin(np.linalg.norm(Z, axis=1)))])
    # Hyperplane sum(z) = 1 passes through the unit extreme points of a normalized front.
    dist = (1.0 - Z.sum(axis=1)) / np.sqrt(m)
    best = np.flatnonzero(np.isclose(dist, dist.max()))
    if len(best) > 1:
        best = best[[int(np.argmin(np.linalg.norm(Z[best], axis=1)))]]
    return int(idx[int(best[0])])


def hypervolume_contributions(
    points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Exclusive HV contribution of each point of a 2-objective non-dominated set (already normalized)."""
    F = _as_matrix(points)
    if F.shape[1] != 2:
        raise ValueError("hypervolume_contributions is implemented for two objectives")
    ref = np.asarray(reference, float)
    order = np.argsort(F[:, 0], kind="stable")
    S = F[order]
    contrib = np.zeros(len(F))
    for k, i in enumerate(order):
        right = S[k + 1, 0] if k + 1 < len(S) else ref[0]
        above = S[k - 1, 1] if k > 0 else ref[1]
        contrib[i] = max(right - S[k, 0], 0.0) * max(above - S[k, 1], 0.0)
    return contrib


__all__ = [
    "REFERENCE_POINT", "crowding_distance", "dominates", "hypervolume", "hypervolume_contributions",
    "knee_point", "non_dominated", "non_dominated_mask", "non_dominated_sort", "normalize",
    "normalized_hypervolume", "pareto_ranks",
]
