"""Searchers: what runs a recipe into a run journal: an ask/tell strategy, or a method such as DNAS.

Both kinds write the same journal (trials, lineage, weights), so `hwnas show / report / export` work
the same whatever produced a run. A recipe names either `strategy: {name: nsga2}` (ask/tell, run by
`run_search`) or `method: {name: fbnet, params: {...}}` (a searcher registered in `SEARCHERS`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hwnas.errors import ConfigError
from hwnas.registry import Registry
from hwnas.search.problem import Problem

if TYPE_CHECKING:
    from hwnas.execution import Executor
    from hwnas.search.recipe import SearchRecipe
    from hwnas.search.runner import SearchResult
    from hwnas.storage import Run, Trial


class Searcher(ABC):
    """Runs one recipe's search on a problem into `run`; resumable from the journal.

    `Params` is a frozen dataclass of the searcher's recipe parameters (`method.params`); unknown
    keys are errors that list the valid ones.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = type(None)

    def __init__(self, recipe: SearchRecipe, problem: Problem) -> None:
        self.recipe, self.problem = recipe, problem

    @classmethod
    def parse_params(cls, params: Mapping[str, Any], source: str = "recipe") -> Any:
        """The searcher's `Params` from a recipe mapping (unknown keys and bad values are errors)."""
        if cls.Params is type(None):
            if params:
                raise ConfigError(f"{source}: method {cls.name!r} takes no params")
            return None
        valid = {f.name for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ConfigError(
                f"{source}: method {cls.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(valid))}"
            )
        try:
            return cls.Params(**dict(params))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: method {cls.name!r}: {exc}") from None

    def info(self) -> dict[str, Any]:
        """Provenance recorded in the run's info (name, seed, parameters)."""
        return {"name": self.name, "seed": self.recipe.seed, "params": dict(self.recipe.method_params)}

    @abstractmethod
    def search(
        self, run: Run, executor: Executor, resume: bool, on_trial: Callable[[Trial], None] | None = None
    ) -> SearchResult:
        """Search into `run` (continuing its journal when `resume`)."""


class StrategySearcher(Searcher):
    """The ask/tell searcher: a registered `Strategy` driven by `run_search`."""

    name = "strategy"

    def __init__(self, recipe: SearchRecipe, problem: Problem) -> None:
        from hwnas.search.strategies import make_strategy

        super().__init__(recipe, problem)
        self.strategy = make_strategy(
            recipe.strategy, problem.space, len(problem.objectives), recipe.seed, recipe.strategy_params
        )

    def info(self) -> dict[str, Any]:
        return {"name": self.strategy.name, "seed": self.strategy.seed, "params": self.strategy.params()}

    def search(
        self, run: Run, executor: Executor, resume: bool, on_trial: Callable[[Trial], None] | None = None
    ) -> SearchResult:
        from hwnas.search.runner import run_search

        return run_search(self.problem, self.strategy, run, self.recipe.budget, executor, resume=resume,
                          on_trial=on_trial)


# Methods a recipe can name with `method:`; ask/tell strategies are named with `strategy:` instead.
SEARCHERS: Registry[type[Searcher]] = Registry("search method")


def searcher_class(method: str) -> type[Searcher]:
    """The registered searcher of a recipe `method` name (unknown names list the valid ones)."""
    import hwnas.search.dnas  # noqa: F401  (registers fbnet)

    return SEARCHERS.get(method)


def make_searcher(recipe: SearchRecipe, problem: Problem) -> Searcher:
    """The searcher of a recipe: its `method` if it names one, else its ask/tell `strategy`."""
    if recipe.method:
        return searcher_class(recipe.method)(recipe, problem)
    return StrategySearcher(recipe, problem)
