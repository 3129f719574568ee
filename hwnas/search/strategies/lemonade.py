"""LEMONADE (Elsken, Metzen & Hutter, ICLR 2019): Lamarckian multi-objective evolution with network morphisms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwnas.errors import ConfigError
from hwnas.search.strategies.base import Proposal, Strategy
from hwnas.spaces import Arch, SearchSpace


def spaces_with_morphisms() -> list[str]:
    """Names of the registered spaces that have network morphisms."""
    from hwnas.spaces import SPACES, get_space

    return [n for n in SPACES.names() if get_space(n).morphisms() is not None]


def inverse_density_weights(points: np.ndarray, queries: np.ndarray, bandwidth: float) -> np.ndarray:
    """1 / (Gaussian KDE of `points` at `queries`), in units where each dimension of `points` spans 1.

    Dimensions are scaled by the points' range (1 where they have none); a query far from every point
    gets a large weight, so sampling by these weights favours the sparse regions of a front.
    """
    points, queries = np.atleast_2d(points), np.atleast_2d(queries)
    if points.shape[1] == 0 or not len(points):
        return np.ones(len(queries))
    span = points.max(0) - points.min(0)
    span[span <= 0] = 1.0
    d = (queries[:, None, :] - points[None, :, :]) / (span * bandwidth)
    density = np.exp(-0.5 * (d**2).sum(-1)).mean(1)
    return 1.0 / np.maximum(density, 1e-300)


class Lemonade(Strategy):
    """LEMONADE, steady state (a child is proposed whenever a worker frees up):

    1. Initial population: the `init_size` smallest of `8 * init_size` random archs (by the recipe's
       cheap objectives), trained from scratch with the recipe's budget.
    2. The population is the non-dominated set of everything told so far (all objectives), updated as
       each result is told. Each ask makes `n_pc / n_ac` candidate children (the generational ratio of
       candidates to accepted children) by applying 1..`max_operators`
       random morphisms to parents sampled with probability proportional to the inverse KDE density of
       the population's cheap objectives (`self.preview`: params, MACs, table latency, ...; log scale).
       An operator is approximate with probability `approx_prob` (when the arch has one), else exact.
    3. The candidates' cheap objectives are computed without training; one is accepted by inverse
       density over the population and the children still training (so two free workers are not given
       near-copies) and trained for `child_epochs` from its parent's morphed weights.
    `steady: false` restores the paper's generations: `n_ac` children accepted per generation, and
    `ask` returns None until all of them are told (one worker idles at each generation's tail).
    `bandwidth` is the KDE bandwidth in units of the population's range per objective. Without cheap
    previews (a tabular benchmark) every density is equal and sampling is uniform.
    `ask` returns None only while the initial population is training and none of it is told yet.
    On resume the trained archs told from the journal are the population: the next ask makes children
    of their non-dominated set (parents are referenced by arch id, whose trial holds the weights).
    """

    name = "lemonade"

    def __init__(
        self, space: SearchSpace, num_objectives: int, seed: int = 0, *,
        init_size: int = 6, n_pc: int = 64, n_ac: int = 8, max_operators: int = 3, approx_prob: float = 0.3,
        bandwidth: float = 0.2, child_epochs: int = 1, steady: bool = True,
    ) -> None:
        super().__init__(space, num_objectives, seed)
        morphisms = space.morphisms()
        if morphisms is None:
            raise ConfigError(
                f"strategy lemonade needs a space with network morphisms; {space.spec} has none. "
                f"Spaces with morphisms: {', '.join(spaces_with_morphisms())}"
            )
        if init_size < 1 or n_ac < 1 or n_pc < n_ac or max_operators < 1 or child_epochs < 1:
            raise ConfigError(
                "lemonade needs init_size >= 1, n_ac >= 1, n_pc >= n_ac, max_operators >= 1, child_epochs >= 1"
            )
        if not 0.0 <= approx_prob <= 1.0 or bandwidth <= 0:
            raise ConfigError("lemonade needs 0 <= approx_prob <= 1 and bandwidth > 0")
        self.morphisms = morphisms
        self.init_size, self.n_pc, self.n_ac = int(init_size), int(n_pc), int(n_ac)
        self.max_operators, self.approx_prob = int(max_operators), float(approx_prob)
        self.bandwidth, self.child_epochs, self.steady = float(bandwidth), int(child_epochs), bool(steady)
        self._queue: list[Proposal] = []
        self._outstanding: set[str] = set()
        self._cheap: dict[str, tuple[float, ...]] = {}

    # -- ask / tell --------------------------------------------------------------------------
    def ask(self) -> Proposal | None:
        if not self._queue:
            if not self.front()[0]:  # no population yet: the initial one (again, if all of it failed)
                if self._outstanding:
                    return None
                self._queue = self._init()
            elif self.steady:
                self._queue = self._children(max(1, round(self.n_pc / self.n_ac)), 1)
            elif self._outstanding:
                return None  # generational: wait for this generation's children
            else:
                self._queue = self._children(self.n_pc, self.n_ac)
        prop = self._queue.pop(0)
        self._propose(prop.arch)
        self._outstanding.add(prop.arch.id)
        return prop

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        self._outstanding.discard(arch.id)

    # -- cheap objectives --------------------------------------------------------------------
    def cheap_vector(self, arch: Arch) -> tuple[float, ...]:
        """The arch's cheap objectives known without training (log scale where positive), cached."""
        if arch.id not in self._cheap:
            pv = self.preview(arch)
            names = [o.name for o in self.objectives if getattr(o, "kind", "") == "cheap" and o.name in pv]
            if not self.objectives:
                names = sorted(pv)
            self._cheap[arch.id] = tuple(math.log(pv[n]) if pv[n] > 0 else float(pv[n]) for n in names)
        return self._cheap[arch.id]

    def _matrix(self, archs: list[Arch]) -> np.ndarray:
        rows = [self.cheap_vector(a) for a in archs]
        width = min((len(r) for r in rows), default=0)
        return np.array([r[:width] for r in rows], dtype=float).reshape(len(rows), width)

    def _draw(self, weights: np.ndarray, k: int) -> list[int]:
        """k distinct indices drawn with probability proportional to `weights` (no replacement)."""
        w = [float(x) for x in weights]
        out: list[int] = []
        for _ in range(min(k, len(w))):
            total = sum(w[i] for i in range(len(w)) if i not in out)
            r, acc, pick = self.rng.random() * total, 0.0, None
            for i, wi in enumerate(w):
                if i in out:
                    continue
                acc += wi
                pick = i
                if acc >= r:
                    break
            out.append(pick)  # type: ignore[arg-type]
        return out

    # -- generations -------------------------------------------------------------------------
    def _init(self) -> list[Proposal]:
        """The smallest of 8x`init_size` fresh random archs (by summed normalised cheap objectives)."""
        pool: dict[str, Arch] = {}
        for _ in range(8 * self.init_size):
            a = self._random()
            if a.id not in pool:
                pool[a.id] = a
        archs = list(pool.values())
        X = self._matrix(archs)
        if X.shape[1]:
            span = X.max(0) - X.min(0)
            span[span <= 0] = 1.0
            size = ((X - X.min(0)) / span).sum(1)
            archs = [archs[i] for i in np.argsort(size, kind="stable")]
        return [Proposal(a) for a in archs[: self.init_size]]

    def _mutate(self, parent: Arch) -> tuple[Arch, list[str]]:
        arch, ops = parent, []
        for _ in range(self.rng.randint(1, self.max_operators)):
            avail = self.morphisms.operators(arch)
            exact = [o for o in avail if self.morphisms.is_exact([o])]
            approx = [o for o in avail if o not in exact]
            pool = approx if approx and (not exact or self.rng.random() < self.approx_prob) else exact
            if not pool:
                break
            op = self.rng.choice(pool)
            ops.append(op)
            arch = self.morphisms.apply_arch(arch, [op])
        return arch, ops

    def _children(self, n_pc: int, n_ac: int) -> list[Proposal]:
        """`n_ac` children accepted from `n_pc` candidates made from the current population."""
        ids, _ = self.front()
        parents = [self.archs[i] for i in ids]
        P = self._matrix(parents)
        parent_w = inverse_density_weights(P, P, self.bandwidth)
        cands: dict[str, tuple[Arch, str, list[str]]] = {}
        for _ in range(n_pc):
            parent = parents[self._draw(parent_w, 1)[0]]
            child, ops = self._mutate(parent)
            if ops and child.id not in self.asked and child.id not in cands:
                cands[child.id] = (child, parent.id, ops)
        if not cands:  # every child was seen before: widen the search with a fresh random arch
            return [Proposal(self._random())]
        kids = list(cands.values())
        pending = [self.archs[i] for i in sorted(self._outstanding)]
        w = inverse_density_weights(self._matrix(parents + pending), self._matrix([c for c, _, _ in kids]),
                                    self.bandwidth)
        return [
            Proposal(kids[i][0], parent=kids[i][1], operators=tuple(kids[i][2]),
                     exact=self.morphisms.is_exact(kids[i][2]), budget={"epochs": self.child_epochs})
            for i in self._draw(w, n_ac)
        ]

    def params(self) -> dict[str, Any]:
        return {
            "init_size": self.init_size, "n_pc": self.n_pc, "n_ac": self.n_ac, "max_operators": self.max_operators,
            "approx_prob": self.approx_prob, "bandwidth": self.bandwidth, "child_epochs": self.child_epochs,
            "steady": self.steady,
        }
