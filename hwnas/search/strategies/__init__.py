"""Strategy registry: `make_strategy(name, space, num_objectives, seed, params)`; unknown names/params fail."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hwnas.errors import ConfigError
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
    sig = inspect.signature(STRATEGIES.get(name).__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_strategy(
    name: str, space: SearchSpace, num_objectives: int, seed: int = 0, params: Mapping[str, Any] | None = None
) -> Strategy:
    """Instantiate a registered strategy; unknown parameters list the valid ones."""
    cls = STRATEGIES.get(name)
    valid = strategy_params(name)
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise ConfigError(
            f"strategy {name!r} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid)) or '(none)'}"
        )
    return cls(space, num_objectives, seed, **dict(params or {}))


__all__ = [
    "Lemonade", "NSGA2Search", "ParetoLocalSearch", "Proposal", "RandomSearch", "RegularizedEvolution", "STRATEGIES",
    "Strategy", "SurrogateSearch",
    "as_proposal", "make_strategy", "strategy_params",
]
