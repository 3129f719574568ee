"""The search layer's registry: ask/tell strategies and searchers (methods such as fbnet) by name.

It sits at the bottom of the search layer and imports nothing of it: built-ins are recorded as
`"module:Class"` paths and imported on first lookup, so no module registers anything as a side effect
of being imported. Third-party code adds its own class (or path) by name::

    from hwnas.search.registry import STRATEGIES
    STRATEGIES.add("mine", MyStrategy)          # then `strategy: mine` in a recipe, api.search(strategy="mine")
"""

from __future__ import annotations

import importlib
from typing import Any

from hwnas.registry import Registry

DEFAULT_STRATEGY = "default"  # what recipes without `strategy:` and `api.search` use


class LazyRegistry(Registry[Any]):
    """A `Registry` whose entries may be `"module:attr"` paths, imported when first looked up."""

    def get(self, name: str) -> Any:
        item = super().get(name)
        if isinstance(item, str):
            module, _, attr = item.partition(":")
            item = getattr(importlib.import_module(module), attr)
            self._items[name] = item
        return item


_STRATEGIES = "hwnas.search.strategies"
STRATEGIES = LazyRegistry("strategy")
for _name, _path in {
    "random": "random_search:RandomSearch", "re": "evolution:RegularizedEvolution", "nsga2": "nsga2:NSGA2Search",
    "local": "local:ParetoLocalSearch", "lemonade": "lemonade:Lemonade", "surrogate": "surrogate:SurrogateSearch",
    # the robust default across tables (benchmarks/bench_generalisation.py)
    DEFAULT_STRATEGY: "surrogate:SurrogateSearch",
    "optuna-tpe": "peers:OptunaTPE", "optuna-nsga2": "peers:OptunaNSGA2", "optuna-random": "peers:OptunaRandom",
}.items():
    STRATEGIES.add(_name, f"{_STRATEGIES}.{_path}")

SEARCHERS = LazyRegistry("search method")  # what a recipe names with `method:` (not ask/tell)
SEARCHERS.add("fbnet", "hwnas.search.dnas.searcher:FBNetSearcher")
