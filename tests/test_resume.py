"""Resume rebuilds a strategy from the journal's finished trials: nothing finished is evaluated twice, and a
journal another seed, parameter set or hwnas version wrote still resumes."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest

from hwnas.bench import TabularBenchmark
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.spaces import Arch
from hwnas.storage import MemoryStorage

_NO_OPTUNA = pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optional extra `peers`")
STRATEGIES = ["random", "re", "nsga2", "local", "lemonade", "default",
              *(pytest.param(n, marks=_NO_OPTUNA) for n in ("optuna-tpe", "optuna-nsga2", "optuna-random"))]


class CountingBench(TabularBenchmark):
    """The tabular benchmark, counting how often each arch is evaluated."""

    def cheap(self, arch: Arch) -> dict[str, float]:
        self.calls[arch.id] += 1
        return super().cheap(arch)


@pytest.fixture
def bench(bench_csv):
    b = CountingBench(bench_csv)
    b.calls = Counter()
    return b


def _search(bench, run, strategy, seed, budget, params=None, resume=False):
    return run_search(bench, make_strategy(strategy, bench.space, 2, seed, params), run, budget, resume=resume)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_interrupted_run_resumes_without_evaluating_a_finished_trial_twice(bench, strategy):
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    _search(bench, run, strategy, 0, 15)
    first = {t.arch_id for t in run.trials()}
    result = _search(bench, run, strategy, 0, 40, resume=True)
    assert result.evaluated == 40 and len(run.trials("COMPLETE")) == 40
    assert max(bench.calls.values()) == 1  # every arch evaluated once, before or after the resume
    assert first < {t.arch_id for t in run.trials()}


@pytest.mark.parametrize("strategy, other", [
    ("random", {}), ("re", {"population_size": 10}), ("nsga2", {"population_size": 12}),
    ("local", {"init_samples": 4}), ("lemonade", {"n_ac": 4}), ("default", {"init_samples": 4}),
    pytest.param("optuna-tpe", {}, marks=_NO_OPTUNA),
])
def test_a_journal_another_version_wrote_still_resumes(bench, strategy, other):
    """The resumed strategy (another seed and parameters) would never have proposed the journal's archs."""
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    _search(bench, run, strategy, 1, 20)
    _search(bench, run, strategy, 7, 45, other, resume=True)
    assert len(run.trials("COMPLETE")) == 45 and max(bench.calls.values()) == 1


def test_resumed_strategies_learn_from_told_archs_they_never_proposed(bench):
    """What the journal told shapes the next proposals: NSGA-II mates the journal's survivors."""
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    _search(bench, run, "random", 3, 24)
    strategy = make_strategy("nsga2", bench.space, 2, 0, {"population_size": 8})
    fresh = make_strategy("nsga2", bench.space, 2, 0, {"population_size": 8})
    for t in run.trials():
        strategy.tell(t.arch, run.minimized(t))
    asked = [strategy.ask() for _ in range(8)]
    assert not {a.id for a in asked} & {t.arch_id for t in run.trials()}
    assert [a.id for a in asked] != [fresh.ask().id for _ in range(8)]  # not the fresh initial sample


def test_lemonade_children_after_a_resume_inherit_from_journal_trials(bench):
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    params = {"init_size": 4, "n_ac": 3}
    _search(bench, run, "lemonade", 0, 10, params)
    before = {t.arch_id for t in run.trials()}
    _search(bench, run, "lemonade", 0, 16, params, resume=True)
    children = [t for t in run.trials() if t.arch_id not in before and t.lineage is not None]
    assert children and all(run.trial(t.lineage.parent).status == "COMPLETE" for t in children)
    assert any(t.lineage.parent in before for t in children)
