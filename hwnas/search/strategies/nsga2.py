"""NSGA-II through pymoo's ask/tell interface, with one categorical (Choice) variable per position."""

from __future__ import annotations

import numpy as np

from hwnas.errors import ConfigError
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace

FAILED_VALUE = 1e30  # minimized value given to pymoo for failed / infeasible archs


class NSGA2Search(Strategy):
    """pymoo NSGA-II (rank + crowding survival) with mixed-variable sampling, uniform crossover and
    categorical mutation. Generational: `ask` returns None while a generation's results are
    outstanding (workers can idle at generation boundaries; small `population_size` keeps that short).
    """

    name = "nsga2"

    def __init__(
        self, space: SearchSpace, num_objectives: int, seed: int = 0, *, population_size: int = 8,
    ) -> None:
        super().__init__(space, num_objectives, seed)
        if population_size < 4:
            raise ConfigError("nsga2 needs population_size >= 4")
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.mixed import (
            MixedVariableDuplicateElimination,
            MixedVariableMating,
            MixedVariableSampling,
        )
        from pymoo.core.problem import Problem
        from pymoo.core.variable import Choice

        self.population_size = population_size
        self.problem = Problem(
            vars={f"x{i}": Choice(options=list(range(len(c)))) for i, c in enumerate(space.choices)},
            n_obj=num_objectives,
        )
        self.algorithm = NSGA2(
            pop_size=population_size,
            sampling=MixedVariableSampling(),
            mating=MixedVariableMating(eliminate_duplicates=MixedVariableDuplicateElimination()),
            eliminate_duplicates=MixedVariableDuplicateElimination(),
        )
        self.algorithm.setup(self.problem, seed=self.seed, termination=("n_gen", 10**9))
        self._pop = None
        self._archs: list[Arch] = []
        self._F: np.ndarray | None = None
        self._done: list[bool] = []
        self._next = 0

    def _new_generation(self) -> None:
        self._pop = self.algorithm.ask()
        X = self._pop.get("X")
        self._archs = [self.space.decode([int(x[f"x{i}"]) for i in range(len(self.space.choices))]) for x in X]
        self._F = np.full((len(self._archs), self.num_objectives), FAILED_VALUE)
        self._done = [False] * len(self._archs)
        self._next = 0

    def ask(self) -> Arch | None:
        if self._pop is None:
            self._new_generation()
        if self._next >= len(self._archs):
            return None  # wait for this generation's results
        arch = self._archs[self._next]
        self._next += 1
        return self._propose(arch)

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        if self._pop is None:
            return
        hit = False
        for i, a in enumerate(self._archs[: self._next]):
            if a.id == arch.id and not self._done[i]:
                self._done[i] = True
                if values is not None:
                    self._F[i] = values
                hit = True
        if hit and all(self._done):
            from pymoo.core.evaluator import Evaluator
            from pymoo.problems.static import StaticProblem

            Evaluator().eval(StaticProblem(self.problem, F=self._F), self._pop)
            self.algorithm.tell(infills=self._pop)
            self._pop = None

    def params(self) -> dict:
        return {"population_size": self.population_size}
