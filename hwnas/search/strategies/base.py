"""The ask/tell `Strategy` interface every search strategy (random, RE, NSGA-II, LEMONADE, ...) implements."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwnas.pareto import crowding_distance, non_dominated_mask
from hwnas.spaces import Arch, SearchSpace

Values = tuple[float, ...]


@dataclass(frozen=True)
class Proposal:
    """What `ask` returns: an arch to evaluate and, for a child made by network morphisms, its lineage.

    `parent` is the arch id of a trial of the same run whose trained weights the child inherits;
    `operators` are the space's morphism operators applied to the parent, in order (see
    `SearchSpace.morphisms()`); `exact` says whether all of them preserve the parent's function.
    `budget` overrides training settings for this trial only (e.g. `{"epochs": 1}` for a child).
    """

    arch: Arch
    parent: str | None = None
    operators: tuple[str, ...] = ()
    exact: bool | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.operators and self.parent is None:
            raise ValueError("a proposal with morphism operators needs the parent it applies them to")


def as_proposal(asked: Arch | Proposal) -> Proposal:
    """A plain arch from `ask` is a proposal without a parent."""
    return asked if isinstance(asked, Proposal) else Proposal(asked)


class Strategy(ABC):
    """Proposes archs (`ask`) and learns from their minimized objective vectors (`tell`).

    Contract with `run_search`:
    - `ask()` returns the next arch (or a `Proposal`: arch + parent + operators + budget), or None when the strategy must wait for results
      of archs it already proposed (a generational algorithm at a generation boundary). A None ask
      must not change the strategy's state.
    - `tell(arch, values)` gives the minimized objective vector of an arch, or None when it failed or
      violated a constraint. Archs may be told in any order, and an arch proposed again (a duplicate)
      is told its known result again.
    - Resume: a fresh strategy is told every finished trial of the journal, in trial order, with no
      asks, including archs it never proposed (another seed, parameters or hwnas version proposed
      them). It derives its state from these tells, as Optuna's samplers rebuild from a study, and
      does not propose a told arch again.
    - All randomness comes from `seed`: the same seed and the same sequence of ask/tell calls give
      the same proposals.
    - Before the first `ask`, the runner calls `attach(objectives, preview)`: `preview(arch)` gives the
      exact natural values of the objectives known without training (params, MACs, table latency; empty
      on a tabular benchmark, whose columns are measurements), so a strategy may look before it proposes.
    Subclasses declare tunable parameters as keyword-only constructor arguments with defaults.
    """

    name: ClassVar[str] = ""

    def __init__(self, space: SearchSpace, num_objectives: int, seed: int = 0) -> None:
        self.space = space
        self.num_objectives = int(num_objectives)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.asked: set[str] = set()  # ids proposed or told so far
        self.results: dict[str, Values | None] = {}  # id -> last told result
        self.archs: dict[str, Arch] = {}
        self.objectives: tuple = ()  # hwnas.objectives.Objective of each told value, set by attach()
        self._preview: Callable[[Arch], dict[str, float]] = lambda arch: {}

    def attach(self, objectives: Sequence[Any], preview: Callable[[Arch], dict[str, float]]) -> None:
        """Give the strategy the run's objectives and the function that previews untrained values."""
        self.objectives = tuple(objectives)
        self._preview = preview

    def preview(self, arch: Arch) -> dict[str, float]:
        """Natural values of `arch`'s objectives known without training (may be empty)."""
        return self._preview(arch)

    @abstractmethod
    def ask(self) -> Arch | Proposal | None:
        """The next arch or proposal to evaluate (None: wait for outstanding results)."""

    def tell(self, arch: Arch, values: Sequence[float] | None) -> None:
        """Record the result of `arch`; subclasses extend `_on_tell`."""
        vals = None if values is None else tuple(float(v) for v in values)
        first = arch.id not in self.results
        self.results[arch.id] = vals
        self.archs[arch.id] = arch
        self.asked.add(arch.id)  # a told arch (e.g. from a resumed journal) is never proposed again
        self._on_tell(arch, vals, first)

    def _on_tell(self, arch: Arch, values: Values | None, first: bool) -> None:
        """Hook for subclasses; `first` is False for a re-told duplicate."""
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _propose(self, arch: Arch) -> Arch:
        self.asked.add(arch.id)
        self.archs.setdefault(arch.id, arch)
        return arch

    def _fresh(self, make, tries: int = 50) -> Arch:
        """Call `make()` until it returns an arch not proposed before (else the last one made)."""
        arch = make()
        for _ in range(tries):
            if arch.id not in self.asked:
                break
            arch = make()
        return arch

    def _random(self) -> Arch:
        return self._fresh(lambda: self.space.sample(self.rng))

    def feasible(self) -> tuple[list[str], np.ndarray]:
        """Ids and minimized values (n, m) of all archs told with a result."""
        ids = [k for k, v in self.results.items() if v is not None]
        F = np.array([self.results[k] for k in ids], dtype=float).reshape(len(ids), self.num_objectives)
        return ids, F

    def front(self) -> tuple[list[str], np.ndarray]:
        """Ids and values of the non-dominated told archs."""
        ids, F = self.feasible()
        if not ids:
            return [], F
        mask = non_dominated_mask(F)
        return [i for i, m in zip(ids, mask) if m], F[mask]

    @staticmethod
    def select_best(F: np.ndarray) -> np.ndarray:
        """Order of rows by (Pareto rank, -crowding distance), the NSGA-II comparison."""
        from hwnas.pareto import pareto_ranks

        ranks = pareto_ranks(F)
        crowd = np.zeros(len(F))
        for r in np.unique(ranks):
            idx = np.flatnonzero(ranks == r)
            crowd[idx] = crowding_distance(F[idx])
        return np.lexsort((-crowd, ranks))

    def params(self) -> dict[str, Any]:
        """Tunable parameters of this instance (for the run report)."""
        return {}
