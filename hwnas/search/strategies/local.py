"""Pareto local search: explore unexplored one-gene neighbors of non-dominated archs, model-guided."""

from __future__ import annotations

import numpy as np

from hwnas.errors import ConfigError
from hwnas.pareto import crowding_distance, non_dominated_mask
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace


def hv_improvement_2d(P: np.ndarray, front: np.ndarray, reference: float) -> np.ndarray:
    """Exact hypervolume gained by adding each row of P (n, 2) to a 2-objective front, box [.., reference]."""
    ref = np.array([reference, reference], float)
    front = front[np.all(front < ref, axis=1)]
    order = np.argsort(front[:, 0], kind="stable")
    fx, fy = front[order, 0], front[order, 1]
    # staircase: for x in [xs[k], xs[k+1]) the front covers y >= level[k]
    xs = np.concatenate([[-np.inf], fx, [ref[0]]])
    level = np.concatenate([[ref[1]], np.minimum.accumulate(fy) if len(fy) else []])
    lo = np.maximum(P[:, :1], xs[None, :-1])
    hi = np.minimum(ref[0], xs[None, 1:])
    width = np.clip(hi - lo, 0, None)
    height = np.clip(np.minimum(level[None, :], ref[1]) - P[:, 1:2], 0, None)
    return (width * height).sum(axis=1)


class ParetoLocalSearch(Strategy):
    """After `init_samples` uniform samples (archs proposed or told), every proposal is an unexplored one-gene neighbor of a
    non-dominated arch (the next front when those are exhausted).

    Which neighbor: with `surrogate=True` a ridge regression on one-hot genes (one model per
    objective, refit on every ask from all told results) predicts each candidate's objectives and
    the candidate with the best additive-epsilon improvement over the current front is proposed
    (the predicted point furthest ahead of, or least behind, the front in normalized units).
    With two objectives the score is the exact hypervolume the predicted point would add (normalized
    over all told results, reference 1.1); otherwise, and when no candidate is predicted to add any,
    the additive epsilon. `model_rate` of the proposals use the model; the others (and all of them
    with `surrogate=False`) take the least-crowded front arch (largest crowding distance; boundary
    points count as the largest finite distance) and one of its unexplored neighbors at random.
    The candidate pool is the unexplored neighbors of the first `pool_fronts` non-empty fronts.
    `random_rate` of the proposals stay uniform samples for diversity.
    """

    name = "local"

    def __init__(
        self, space: SearchSpace, num_objectives: int, seed: int = 0, *,
        init_samples: int = 16, random_rate: float = 0.0, surrogate: bool = True, ridge: float = 1.0,
        fronts: int = 2, model_rate: float = 0.7, pool_fronts: int = 1,
    ) -> None:
        super().__init__(space, num_objectives, seed)
        if init_samples < 1 or not 0 <= random_rate <= 1 or ridge <= 0 or fronts < 1:
            raise ConfigError("local needs init_samples >= 1, 0 <= random_rate <= 1, ridge > 0, fronts >= 1")
        self.init_samples = init_samples
        self.random_rate = random_rate
        self.surrogate = bool(surrogate)
        self.ridge = float(ridge)
        self.fronts = int(fronts)
        self.model_rate = float(model_rate)
        self.pool_fronts = int(pool_fronts)
        self._neighbors: dict[str, list[tuple[str, Arch]]] = {}
        self._rows: dict[tuple[str, ...], np.ndarray] = {}
        self._offsets = np.cumsum([0] + [len(c) for c in space.choices])
        self._index = [{g: k for k, g in enumerate(c)} for c in space.choices]

    def neighbors(self, arch: Arch) -> list[Arch]:
        """All archs one gene away, in position/choice order."""
        if arch.id not in self._neighbors:
            out = []
            for i, valid in enumerate(self.space.choices):
                for g in valid:
                    if g != arch.genes[i]:
                        genes = list(arch.genes)
                        genes[i] = g
                        a = self.space.make(genes)
                        out.append((a.id, a))
            self._neighbors[arch.id] = out
        return [a for _, a in self._neighbors[arch.id]]

    def _unexplored(self, arch_id: str) -> list[Arch]:
        self.neighbors(self.archs[arch_id])
        return [a for i, a in self._neighbors[arch_id] if i not in self.asked]

    def _row(self, arch: Arch) -> np.ndarray:
        row = self._rows.get(arch.genes)
        if row is None:
            row = np.zeros(int(self._offsets[-1]) + 1)
            row[-1] = 1.0
            for i, g in enumerate(arch.genes):
                row[self._offsets[i] + self._index[i][g]] = 1.0
            self._rows[arch.genes] = row
        return row

    def _onehot(self, archs: list[Arch]) -> np.ndarray:
        """One-hot genes plus a bias column."""
        if not archs:
            return np.zeros((0, int(self._offsets[-1]) + 1))
        return np.stack([self._row(a) for a in archs])

    def _front_layers(self, ids: list[str], F: np.ndarray):
        remaining = np.arange(len(ids))
        for _ in range(self.fronts):
            if not len(remaining):
                return
            mask = non_dominated_mask(F[remaining])
            yield remaining[mask]
            remaining = remaining[~mask]

    def _by_model(self, ids: list[str], F: np.ndarray) -> Arch | None:
        cands: dict[str, Arch] = {}
        used = 0
        for layer in self._front_layers(ids, F):
            for k in layer:
                for a in self._unexplored(ids[k]):
                    cands.setdefault(a.id, a)
            used += 1 if cands else 0
            if used >= self.pool_fronts:
                break
        archs = list(cands.values())
        if not archs:
            return None
        lo, hi = F.min(axis=0), F.max(axis=0)
        Z = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
        X = self._onehot([self.archs[i] for i in ids])
        A = X.T @ X + self.ridge * np.eye(X.shape[1])
        W = np.linalg.solve(A, X.T @ Z)
        P = self._onehot(archs) @ W
        front = Z[non_dominated_mask(Z)]
        if self.num_objectives == 2:
            score = -hv_improvement_2d(P, front, 1.1)
        else:  # additive epsilon: how far each predicted point is behind (>0) or ahead (<0) of the front
            score = np.min(np.max(P[:, None, :] - front[None, :, :], axis=2), axis=1)
        if self.num_objectives == 2 and score.min() >= 0:  # no predicted gain: fall back to epsilon
            score = np.min(np.max(P[:, None, :] - front[None, :, :], axis=2), axis=1)
        best = np.flatnonzero(score <= score.min() + 1e-12)
        return archs[int(best[self.rng.randrange(len(best))])]

    def _by_crowding(self, ids: list[str], F: np.ndarray) -> Arch | None:
        for layer in self._front_layers(ids, F):
            crowd = crowding_distance(F[layer])
            finite = crowd[np.isfinite(crowd)]
            crowd = np.where(np.isfinite(crowd), crowd, finite.max() if len(finite) else 1.0)
            order = sorted(range(len(layer)), key=lambda k: (-crowd[k], self.rng.random()))
            for k in order:
                options = self._unexplored(ids[layer[k]])
                if options:
                    return self.rng.choice(options)
        return None

    def ask(self) -> Arch | None:
        if len(self.asked) < self.init_samples or self.rng.random() < self.random_rate:
            return self._propose(self._random())
        ids, F = self.feasible()
        arch = None
        if ids:
            use_model = self.surrogate and (self.model_rate >= 1 or self.rng.random() < self.model_rate)
            arch = self._by_model(ids, F) if use_model else self._by_crowding(ids, F)
        return self._propose(arch if arch is not None else self._random())

    def params(self) -> dict:
        return {
            "init_samples": self.init_samples, "random_rate": self.random_rate, "surrogate": self.surrogate,
            "ridge": self.ridge, "fronts": self.fronts, "model_rate": self.model_rate,
            "pool_fronts": self.pool_fronts,
        }
