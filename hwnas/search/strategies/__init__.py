"""Strategy registry: `make_strategy(name, space, num_objectives, seed, params)`; unknown names/params fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwnas.config import keyword_params, parse_kwargs
from hwnas.registry import Registry
from hwnas.search.strategies.base import Proposal, Strategy, as_proposal
from hwnas.search.strategies.evolution import RegularizedEvolution
from hwnas.search.strategies.lemonade import Lemonade
from hwnas.search.strategies.local import ParetoLocalSearch
from hwnas.search.strategies.nsga2 import NSGA2Search
from hwnas.search.strategies.peers import OptunaNSGA2, OptunaRandom, OptunaTPE
from hwnas.search.strategies.random_search import RandomSearch
from hwnas.search.strategies.surrogate import SurrogateSearch
from hwnas.spaces import SearchSpace

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (RandomSearch, RegularizedEvolution, NSGA2Search, ParetoLocalSearch, Lemonade, SurrogateSearch,
             OptunaTPE, OptunaNSGA2, OptunaRandom):
    STRATEGIES.add(_cls.name, _cls)
STRATEGIES.add("default", SurrogateSearch)  # the robust default across tables (benchmarks/bench_generalisation.py)


def strategy_params(name: str) -> dict[str, Any]:
    """Tunable keyword parameters of a strategy with their defaults."""
    return keyword_params(STRATEGIES.get(name).__init__)


def make_strategy(
    name: str, space: SearchSpace, num_objectives: int, seed: int = 0, params: Mapping[str, Any] | None = None
) -> Strategy:
    """Instantiate a registered strategy; parameters are checked by `hwnas.config.parse_kwargs` (unknown
    names list the valid ones; types from the constructor's annotations; ranges in the constructor)."""
    cls = STRATEGIES.get(name)
    return cls(space, num_objectives, seed, **parse_kwargs(cls.__init__, params, "", f"strategy {name!r}"))


__all__ = [
    "Lemonade", "NSGA2Search", "ParetoLocalSearch", "Proposal", "RandomSearch", "RegularizedEvolution", "STRATEGIES",
    "Strategy", "SurrogateSearch",
    "as_proposal", "make_strategy", "strategy_params",
]
