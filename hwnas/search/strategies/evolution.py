"""Regularized (aging) evolution, Real et al. 2019, with a multi-objective tournament."""

from __future__ import annotations

from collections import deque

import numpy as np

from hwnas.errors import ConfigError
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace


class RegularizedEvolution(Strategy):
    """Aging evolution: a FIFO population; each child mutates the tournament winner, the oldest dies.

    Multi-objective variant: the tournament winner of `sample_size` random members is the best by
    Pareto rank within the sample, ties broken by crowding distance (NSGA-II's comparison).
    Until `population_size` archs were proposed or told, proposals are uniform samples; on resume the
    population is rebuilt from the told results (the last `population_size` feasible ones).
    """

    name = "re"

    def __init__(
        self, space: SearchSpace, num_objectives: int, seed: int = 0, *,
        population_size: int = 24, sample_size: int = 8,
    ) -> None:
        super().__init__(space, num_objectives, seed)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ConfigError("re needs population_size >= 2 and 1 <= sample_size <= population_size")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[Arch, tuple[float, ...]]] = deque()

    def ask(self) -> Arch | None:
        if len(self.asked) < self.population_size or len(self.population) < 2:
            return self._propose(self._random())
        members = list(self.population)

        def child() -> Arch:
            k = min(self.sample_size, len(members))
            sample = self.rng.sample(range(len(members)), k)
            F = np.array([members[i][1] for i in sample])
            parent = members[sample[int(self.select_best(F)[0])]][0]
            return self.space.mutate(parent, self.rng)

        return self._propose(self._fresh(child, tries=20))

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        if values is None or not first:
            return
        self.population.append((arch, values))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def params(self) -> dict:
        return {"population_size": self.population_size, "sample_size": self.sample_size}
