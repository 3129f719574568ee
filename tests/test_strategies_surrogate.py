"""The model-guided `surrogate` strategy (the `default`), Optuna peers, and the bench's query protocol."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hwnas.bench import TabularBenchmark, run_one
from hwnas.cli import main
from hwnas.search.runner import run_search
from hwnas.search.strategies import STRATEGIES, Strategy, make_strategy
from hwnas.storage import MemoryStorage


@pytest.fixture(scope="module")
def bench(bench_csv):
    return TabularBenchmark(bench_csv, "accuracy", "pixel_litert_latency_ms")


class _Previewed(TabularBenchmark):
    """The same table, but its latency column is known before evaluation (like a latency table)."""

    def preview(self, arch):
        return {self.latency_column: self.values[arch.id][1]}


def _asked(bench, name, seed, budget, params=None):
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    run_search(bench, make_strategy(name, bench.space, 2, seed, params), run, budget)
    return [ev.arch_id for ev in run.events() if ev.kind == "ask"]


def test_default_beats_random_at_100_queries(bench):
    seeds = (0, 1, 2)
    default = np.median([run_one(bench, "default", s, 100)[0][-1] for s in seeds])
    rand = np.median([run_one(bench, "random", s, 100)[0][-1] for s in seeds])
    assert default > rand


def test_surrogate_is_deterministic_and_never_repeats(bench):
    a = _asked(bench, "surrogate", 3, 60)
    assert a == _asked(bench, "surrogate", 3, 60)  # resume replays the same calls
    assert len(set(a)) == len(a) == 60
    assert a != _asked(bench, "surrogate", 4, 60)


def test_surrogate_initial_design_balances_every_gene(bench):
    """The first `init_samples` asks are a design that uses every choice of every gene equally often."""
    n = 10
    strat = make_strategy("surrogate", bench.space, 2, 7, {"init_samples": n})
    design = strat._design()
    for j, card in enumerate(strat.card):
        assert np.array_equal(np.bincount(design[:, j], minlength=card), np.full(card, n // card))
    expected = [bench.space.decode([int(c) for c in row]).id for row in design]
    assert _asked(bench, "surrogate", 7, n, {"init_samples": n}) == expected


def test_surrogate_uses_previewed_objectives_exactly(bench_csv, bench):
    """With the latency previewed, the extreme-point step proposes the fastest arch among the candidates:
    the fastest arch of the table is found much sooner than when latency has to be learned."""
    previewed = _Previewed(bench_csv, "accuracy", "pixel_litert_latency_ms")
    fastest = min(lat for _, lat in bench.values.values())
    params = {"extremes": 2}

    def first_hit(problem, seed):
        lat = [bench.values[a][1] for a in _asked(problem, "surrogate", seed, 60, params)]
        return lat.index(fastest) if fastest in lat else 60

    assert np.median([first_hit(previewed, s) for s in range(3)]) < np.median([first_hit(bench, s) for s in range(3)])


class _Repeat(Strategy):
    """Proposes the same arch forever after its first sample (a degenerate peer)."""

    name = "repeat"

    def ask(self):
        return self._propose(next(iter(self.archs.values())) if self.archs else self._random())


def test_every_proposal_counts_as_a_query(bench, monkeypatch):
    monkeypatch.setitem(STRATEGIES._items, "repeat", _Repeat)
    curve, unique = run_one(bench, "repeat", 0, 40)
    assert unique == 1 and len(curve) == 40 and np.ptp(curve) == 0  # 40 queries, one arch, no HV gain
    curve, unique = run_one(bench, "random", 0, 40)
    assert unique == 40 and curve[-1] > curve[0]


def test_optuna_tpe_runs_through_the_search_loop(bench):
    pytest.importorskip("optuna")
    strat = make_strategy("optuna-tpe", bench.space, 2, 0)
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    run_search(bench, strat, run, 40)
    asks = [ev for ev in run.events() if ev.kind == "ask"]
    trials = strat.study.trials
    assert len(trials) == len(asks) >= 40  # every ask is a trial, duplicates included
    assert all(t.state.name == "COMPLETE" for t in trials)
    best_acc = max(-t.values[0] for t in trials)
    assert best_acc == pytest.approx(max(bench.values[e.arch_id][0] for e in asks))


def test_optuna_missing_names_the_peers_extra(bench_csv, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    assert main(["bench", "--table", str(bench_csv), "--strategies", "random,optuna-tpe", "--budget", "5",
                 "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert "hwnas[peers]" in err and err.startswith("hwnas: error:")


def test_bench_cli_default_and_unique_archs(bench_csv, capsys):
    assert main(["bench", "--table", str(bench_csv), "--latency-column", "pi5_litert_energy_mj", "--strategies",
                 "default,random", "--budget", "20", "--seeds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in out["strategies"]] == ["default", "random"]
    assert all(s["unique_archs_median"] == 20 for s in out["strategies"])
    assert 0 < out["strategies"][0]["hv"]["20"]["median"] <= 1
