"""Multi-objective search: objectives, constraints, ask/tell strategies, the `run_search` loop, Pareto tools."""

from __future__ import annotations

from typing import Any

from hwnas.objectives import OBJECTIVES, Objective, get_objectives
from hwnas.pareto import hypervolume, knee_point, non_dominated, non_dominated_sort

_LAZY = {
    "Constraint": "hwnas.search.constraints",
    "parse_constraint": "hwnas.search.constraints",
    "Strategy": "hwnas.search.strategies",
    "STRATEGIES": "hwnas.search.strategies",
    "make_strategy": "hwnas.search.strategies",
    "Problem": "hwnas.search.problem",
    "run_search": "hwnas.search.runner",
    "SearchResult": "hwnas.search.runner",
}


def __getattr__(name: str) -> Any:  # lazy: keeps `import hwnas.search` cheap and acyclic
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "OBJECTIVES", "Objective", "get_objectives", "hypervolume", "knee_point", "non_dominated",
    "non_dominated_sort", *_LAZY,
]
