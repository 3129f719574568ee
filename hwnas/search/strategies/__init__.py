"""Ask/tell strategies: `make_strategy(name, space, num_objectives, seed, params)` of `hwnas.search.registry.STRATEGIES`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hwnas.errors import ConfigError
from hwnas.search.registry import STRATEGIES
from hwnas.search.strategies.base import Proposal, Strategy, as_proposal
from hwnas.spaces import SearchSpace


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


__all__ = ["Proposal", "STRATEGIES", "Strategy", "as_proposal", "make_strategy", "strategy_params"]
