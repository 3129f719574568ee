"""Random search: uniform samples of the space, skipping archs already proposed."""

from __future__ import annotations

from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch


class RandomSearch(Strategy):
    """Uniform random sampling (the baseline every strategy is compared against)."""

    name = "random"

    def ask(self) -> Arch | None:
        return self._propose(self._random())
