"""Searchers: what runs a search into a run journal: an ask/tell strategy, or a method such as DNAS.

Both kinds write the same journal (trials, lineage, weights), so `hwnas show / report / export` work
the same whatever produced a run. A searcher takes (problem, budget, seed, params), never a recipe;
`make_searcher` picks a registered method (`hwnas.search.registry.SEARCHERS`, e.g. fbnet) or wraps a
registered ask/tell strategy (`STRATEGIES`, run by `run_search`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hwnas.errors import ConfigError
from hwnas.search.problem import Problem
from hwnas.search.registry import DEFAULT_STRATEGY, SEARCHERS

if TYPE_CHECKING:
    from hwnas.execution import Executor
    from hwnas.search.runner import SearchResult
    from hwnas.storage import Run, Trial


class Searcher(ABC):
    """Searches `problem` for `budget` evaluations from `seed`; resumable from the journal.

    `Params` is a frozen dataclass of the searcher's parameters (a recipe's `method.params`); unknown
    keys are errors that list the valid ones.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = type(None)

    def __init__(self, problem: Problem, budget: int, seed: int = 0, params: Mapping[str, Any] | None = None) -> None:
        self.problem, self.budget, self.seed = problem, int(budget), int(seed)
        self.raw_params = dict(params or {})
        self.params = self.parse_params(self.raw_params)

    @classmethod
    def parse_params(cls, params: Mapping[str, Any], source: str = "recipe") -> Any:
        """The searcher's `Params` from a mapping (unknown keys and bad values are errors)."""
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
        return {"name": self.name, "seed": self.seed, "params": dict(self.raw_params)}

    @abstractmethod
    def search(
        self, run: Run, executor: Executor, resume: bool, on_trial: Callable[[Trial], None] | None = None
    ) -> SearchResult:
        """Search into `run` (continuing its journal when `resume`)."""


class StrategySearcher(Searcher):
    """The ask/tell searcher: a registered `Strategy` (by name) driven by `run_search`."""

    name = "strategy"

    def __init__(
        self, problem: Problem, budget: int, seed: int = 0, params: Mapping[str, Any] | None = None,
        strategy: str = DEFAULT_STRATEGY,
    ) -> None:
        from hwnas.search.strategies import make_strategy

        super().__init__(problem, budget, seed)  # the params are the strategy's, validated by it
        self.strategy = make_strategy(strategy, problem.space, len(problem.objectives), seed, params)

    def info(self) -> dict[str, Any]:
        return {"name": self.strategy.name, "seed": self.strategy.seed, "params": self.strategy.params()}

    def search(
        self, run: Run, executor: Executor, resume: bool, on_trial: Callable[[Trial], None] | None = None
    ) -> SearchResult:
        from hwnas.search.runner import run_search

        return run_search(self.problem, self.strategy, run, self.budget, executor, resume=resume, on_trial=on_trial)


def searcher_class(method: str) -> type[Searcher]:
    """The registered searcher of a `method` name (unknown names list the valid ones)."""
    return SEARCHERS.get(method)


def make_searcher(
    problem: Problem, budget: int, seed: int = 0, params: Mapping[str, Any] | None = None, *,
    method: str | None = None, strategy: str = DEFAULT_STRATEGY,
) -> Searcher:
    """The searcher of a registered `method` (e.g. fbnet) if given, else the ask/tell one of `strategy`;
    `params` are that method's or strategy's parameters."""
    if method:
        return searcher_class(method)(problem, budget, seed, params)
    return StrategySearcher(problem, budget, seed, params, strategy=strategy)
