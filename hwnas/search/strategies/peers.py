"""Optuna's samplers as ask/tell strategies (`optuna-tpe`, `optuna-nsga2`, `optuna-random`): the peers users know."""

from __future__ import annotations

from typing import Any

from hwnas.errors import ConfigError
from hwnas.search.strategies.base import Strategy
from hwnas.spaces import Arch, SearchSpace


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "the optuna-* strategies need Optuna: pip install 'hwnas[peers]' (or pip install 'optuna>=4')"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaStrategy(Strategy):
    """One Optuna study driven by ask/tell: each gene is a categorical parameter; every `ask` is a
    trial (a duplicate arch too: the runner answers it from its cache and it is told like any other).

    Results are told to every pending trial of that arch, so parallel duplicates are closed as well;
    a failed or infeasible arch is told as a failed trial. The result of an arch this study never asked
    for (a resumed run's journal) is added as a finished trial (`study.add_trial`), Optuna's own way of
    rebuilding a sampler's state.
    """

    name = "optuna"

    def __init__(self, space: SearchSpace, num_objectives: int, seed: int = 0) -> None:
        super().__init__(space, num_objectives, seed)
        optuna = _optuna()
        self.study = optuna.create_study(directions=["minimize"] * self.num_objectives, sampler=self.sampler(optuna))
        self.pending: dict[str, list[Any]] = {}

    def sampler(self, optuna):
        raise NotImplementedError

    def ask(self) -> Arch | None:
        trial = self.study.ask()
        genes = [trial.suggest_categorical(f"g{i}", list(c)) for i, c in enumerate(self.space.choices)]
        arch = self.space.make(genes)
        self.pending.setdefault(arch.id, []).append(trial)
        self.asked.add(arch.id)
        self.archs.setdefault(arch.id, arch)
        return arch

    def _on_tell(self, arch: Arch, values, first: bool) -> None:
        optuna = _optuna()
        pending = self.pending.pop(arch.id, [])
        for trial in pending:
            if values is None:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, list(values))
        if not pending and first:
            self.study.add_trial(optuna.trial.create_trial(
                params={f"g{i}": g for i, g in enumerate(arch.genes)},
                distributions={f"g{i}": optuna.distributions.CategoricalDistribution(list(c))
                               for i, c in enumerate(self.space.choices)},
                values=None if values is None else list(values),
                state=optuna.trial.TrialState.FAIL if values is None else optuna.trial.TrialState.COMPLETE,
            ))


class OptunaTPE(OptunaStrategy):
    """Optuna's TPESampler(multivariate=True, seed=seed)."""

    name = "optuna-tpe"

    def sampler(self, optuna):
        return optuna.samplers.TPESampler(multivariate=True, seed=self.seed)


class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGAIISampler(seed=seed) with its default population of 50."""

    name = "optuna-nsga2"

    def sampler(self, optuna):
        return optuna.samplers.NSGAIISampler(seed=self.seed)


class OptunaRandom(OptunaStrategy):
    """Optuna's RandomSampler(seed=seed) (duplicates possible, unlike `random`)."""

    name = "optuna-random"

    def sampler(self, optuna):
        return optuna.samplers.RandomSampler(seed=self.seed)
