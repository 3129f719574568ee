"""Ask/tell strategies: `make_strategy(name, space, num_objectives, seed, params)` of `hwnas.search.registry.STRATEGIES`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwnas.config import keyword_params, parse_kwargs
from hwnas.search.registry import STRATEGIES
from hwnas.search.strategies.base import Proposal, Strategy, as_proposal
from hwnas.spaces import SearchSpace


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


__all__ = ["Proposal", "STRATEGIES", "Strategy", "as_proposal", "make_strategy", "strategy_params"]
