"""NSGA-II through pymoo's ask/tell interface, with one categorical (Choice) variable per position."""

from __future__ import annotations

import numpy as np

from hwnas.errors import ConfigError
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace

FAILED_VALUE = 1e30  # minimized value given to pymoo for failed / infeasible archs


class NSGA2Search(Strategy):
    """pymoo NSGA-II (rank + crowding survival) with mixed-variable sampling, uniform crossover and
    categorical mutation, driven through pymoo's ask/tell.

    Steady-state with parallel workers: once a generation's offspring are all proposed but some
    results are outstanding, `ask` proposes extra children (one-gene mutations of random survivors,
    or uniform samples before the first generation) so workers never idle; extras told by the time
    the generation completes join its offspring in the survival step. With one worker (inline
    executor) no extras arise and the algorithm is plain generational NSGA-II.

    Results of archs it did not propose (a resumed run's journal) are given to pymoo as one evaluated
    batch at the next generation boundary (the initial population, or offspring merged into survival).
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
        self._extras: dict[str, tuple[Arch, tuple[float, ...] | None]] = {}
        self._adopted: list[tuple[Arch, tuple[float, ...] | None]] = []  # told, never proposed here

    def _evaluated(self, told: list[tuple[Arch, tuple[float, ...] | None]]):
        """A pymoo Population of told archs with their values (failed ones get FAILED_VALUE)."""
        from pymoo.core.evaluator import Evaluator
        from pymoo.core.population import Population
        from pymoo.problems.static import StaticProblem

        X = np.empty(len(told), dtype=object)
        X[:] = [{f"x{i}": k for i, k in enumerate(self.space.encode(a))} for a, _ in told]
        pop = Population.new("X", X)
        F = np.array([v if v is not None else [FAILED_VALUE] * self.num_objectives for _, v in told], dtype=float)
        Evaluator().eval(StaticProblem(self.problem, F=F), pop)
        return pop

    def _new_generation(self) -> None:
        self._pop = self.algorithm.ask()
        X = self._pop.get("X")
        self._archs = [self.space.decode([int(x[f"x{i}"]) for i in range(len(self.space.choices))]) for x in X]
        self._F = np.full((len(self._archs), self.num_objectives), FAILED_VALUE)
        self._done = [False] * len(self._archs)
        self._next = 0

    def ask(self) -> Arch | None:
        if self._pop is None:
            if self._adopted:  # a resumed journal: pymoo's state rebuilt from its results
                self.algorithm.tell(infills=self._evaluated(self._adopted))
                self._adopted = []
            self._new_generation()
        if self._next >= len(self._archs):
            return self._propose(self._extra())  # keep workers busy until the generation completes
        arch = self._archs[self._next]
        self._next += 1
        return self._propose(arch)

    def _extra(self) -> Arch:
        survivors = self.algorithm.pop
        if survivors is None or len(survivors) == 0:
            arch = self._random()
        else:
            n = len(self.space.choices)

            def child() -> Arch:
                x = survivors[self.rng.randrange(len(survivors))].X
                return self.space.mutate(self.space.decode([int(x[f"x{i}"]) for i in range(n)]), self.rng)

            arch = self._fresh(child, tries=20)
        self._extras[arch.id] = (arch, None)
        return arch

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        proposed = [i for i, a in enumerate(self._archs[: self._next]) if a.id == arch.id]
        if self._pop is None or not (proposed or arch.id in self._extras):
            if first:
                self._adopted.append((arch, values))
            return
        if arch.id in self._extras and values is not None:
            self._extras[arch.id] = (arch, values)
        hit = False
        for i in proposed:
            if not self._done[i]:
                self._done[i] = True
                if values is not None:
                    self._F[i] = values
                hit = True
        if hit and all(self._done):
            from pymoo.core.evaluator import Evaluator
            from pymoo.core.population import Population
            from pymoo.problems.static import StaticProblem

            Evaluator().eval(StaticProblem(self.problem, F=self._F), self._pop)
            extras = [(a, v) for a, v in self._extras.values() if v is not None] + self._adopted
            infills = Population.merge(self._pop, self._evaluated(extras)) if extras else self._pop
            self._extras, self._adopted = {}, []
            self.algorithm.tell(infills=infills)
            self._pop = None

    def params(self) -> dict:
        return {"population_size": self.population_size}
