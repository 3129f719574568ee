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
from hwnas.spaces import get_space
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


def test_surrogate_resumes_from_told_results_only(bench):
    """Resume contract: a fresh strategy told every finished trial (never asked, failures as None) derives
    its state from them and never proposes a told arch again; its next asks are model-guided."""
    first = make_strategy("default", bench.space, 2, 5)
    asked = [first.ask() for _ in range(40)]
    fresh = make_strategy("default", bench.space, 2, 5)
    for i, arch in enumerate(asked):  # trial order; every 7th failed
        fresh.tell(arch, None if i % 7 == 0 else (-bench.values[arch.id][0], bench.values[arch.id][1]))
    told = {a.id for a in asked}
    nxt = []
    for _ in range(30):
        arch = fresh.ask()
        nxt.append(arch.id)
        fresh.tell(arch, (-bench.values[arch.id][0], bench.values[arch.id][1]))
    assert not told & set(nxt) and len(set(nxt)) == 30
    assert fresh.n_model == 30  # no second initial design: the told results are the design


def test_normal_scores_are_monotone_and_invert_on_the_results():
    from hwnas.search.strategies.warp import NormalScores

    y = np.array([0.3, -5.0, 0.31, 0.32, 0.32, 9.0, 0.29])  # outliers and near-ties
    w = NormalScores(y)
    assert np.array_equal(np.argsort(w.scores, kind="stable"), np.argsort(y, kind="stable"))
    assert np.allclose(w.inverse(w.scores), y)
    assert abs(w.scores.min()) == pytest.approx(w.scores.max())  # outliers no longer set the scale
    beyond = w.inverse(np.array([w.scores.min() - 1.0, w.scores.max() + 1.0]))
    assert beyond[0] < y.min() and beyond[1] > y.max()  # optimism may pass the best result


def test_surrogate_keys_a_space_larger_than_int64(bench):
    """mobile:imagenet has ~2e24 archs: keys stay exact Python ints, so distinct archs never collide."""

    space = get_space("mobile:imagenet")
    strat = make_strategy("default", space, 2, 0)
    assert int(np.prod(strat.card.astype(float))) > 2**63
    import random

    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(200)]
    keys = {strat._key(strat._codes(a)) for a in archs}
    assert len(keys) == len({a.id for a in archs})


def test_surrogate_asks_with_one_blas_thread(bench):
    from threadpoolctl import threadpool_info

    from hwnas.search.strategies import warp

    seen = []
    strat = make_strategy("default", bench.space, 2, 0)
    real = strat._predict

    def spy(X):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real(X)

    strat._predict = spy
    run_search(bench, strat, MemoryStorage().create_run("r", bench.objectives, {}, {}), 12)
    assert seen and set(seen) == {1}
    assert warp._CONTROLLER is not None


def test_blas_limit_covers_libraries_loaded_after_it(tmp_path):
    """In a fresh interpreter (as the CLI starts) scipy's own BLAS, loaded by the GP, is limited too."""
    import subprocess

    code = ("from hwnas.search.strategies.warp import blas_single_thread\n"
            "with blas_single_thread():\n"
            "    import scipy.linalg\n"
            "    from threadpoolctl import threadpool_info\n"
            "    print(max(i['num_threads'] for i in threadpool_info()))\n")
    env = {**__import__("os").environ, "OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": "4"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_untrusted_model_searches_around_the_front(bench):
    """With trust 0 (the model ranks the good results no better than chance) an ask proposes an unexplored
    one-gene neighbour of a current front member (`explore`, on by default); with `explore` off it never does."""
    from hwnas.pareto import non_dominated_mask

    strat = make_strategy("default", bench.space, 2, 2)
    for _ in range(30):
        arch = strat.ask()
        strat.tell(arch, (-bench.values[arch.id][0], bench.values[arch.id][1]))
    ids, F = strat.feasible()
    front = [strat.archs[i].genes for i, m in zip(ids, non_dominated_mask(F)) if m]
    strat.trust, before = 0.0, strat.n_explored
    arch = strat.ask()
    assert strat.n_explored == before + 1 and arch.id not in ids
    assert any(sum(a != b for a, b in zip(arch.genes, g)) == 1 for g in front)
    off = make_strategy("default", bench.space, 2, 2, {"explore": False})
    for _ in range(30):
        arch = off.ask()
        off.tell(arch, (-bench.values[arch.id][0], bench.values[arch.id][1]))
    assert off.n_explored == 0 and off.params()["explore"] is False


def test_the_form_is_judged_on_the_better_half_where_a_whole_set_rank_hides_its_errors():
    """Predictions that order the bad results well and the good ones backwards rank the whole set well; the
    warp choice and `trust` look at the better half (minimized: the lower values), which they mis-rank."""
    from hwnas.search.strategies.surrogate import _good_half_spearman, _spearman

    y = np.arange(40.0)
    predicted = y.copy()
    predicted[:20] = predicted[:20][::-1]  # the better half backwards
    whole = float(_spearman(y[:, None], predicted[:, None])[0])
    good = float(_good_half_spearman(y[:, None], predicted[:, None])[0])
    assert whole > 0.5 and good < -0.9
    assert np.isnan(_good_half_spearman(np.r_[np.zeros(25), np.arange(15.0)][:, None], y[:, None])[0])  # all tied


def test_the_model_sees_that_a_dead_gene_changes_nothing(bench):
    """Where a space has inert genes (nb201's dead edges) the GP's features hold the effective genes beside the
    raw ones: changing a dead edge keeps an arch closer to the original than changing a live edge does."""
    space = bench.space
    strat = make_strategy("default", space, 2, 0)
    base = space.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|none~2|")
    dead_changed = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|none~2|")
    live_changed = space.parse("|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|none~2|")
    X = strat._onehot(np.stack([strat._codes(a) for a in (base, dead_changed, live_changed)]))
    similarity = X @ X[0]
    assert similarity[1] > similarity[2]
    mobile = make_strategy("default", get_space("mobile"), 2, 0)
    assert mobile._onehot(np.zeros((1, len(mobile.card)), dtype=np.int64)).shape[1] == int(mobile.card.sum())


def test_effective_genes_help_the_model_rank_litert_latency(bench_csv):
    """LiteRT drops dead edges: a GP that sees the effective genes ranks unseen archs' pi5_litert latency better
    than one that sees the raw genes only (fitted on the same 60 random archs; median over 3 draws)."""
    from hwnas.search.strategies.surrogate import _spearman

    b = TabularBenchmark(bench_csv, "accuracy", "pi5_litert_latency_ms")
    card = [len(c) for c in b.space.choices]
    gain = []
    for seed in range(3):
        pick = np.random.default_rng(seed).choice(int(np.prod(card)), size=560, replace=False)
        archs = [b.space.decode(np.unravel_index(i, card)) for i in pick]
        y = np.array([[b.values[a.id][1]] for a in archs])
        rho = []
        for inert in (True, False):
            strat = make_strategy("default", b.space, 2, seed)
            strat._inert = inert
            X = strat._onehot(np.stack([strat._codes(a) for a in archs]))
            strat._fit(X[:60], y[:60])
            rho.append(float(_spearman(y[60:], strat._predict(X[60:])[0])[0]))
        gain.append(rho[0] - rho[1])
    assert np.median(gain) > 0.02


def test_model_guided_proposals_carry_no_dead_ops(bench):
    """After the initial design every proposal is its own effective arch: a dead edge is `none`, never a
    conv that would be trained and timed for nothing (the design itself is drawn as is)."""
    strat = make_strategy("default", bench.space, 2, 5)
    asked = []
    for _ in range(40):
        arch = strat.ask()
        asked.append(arch)
        strat.tell(arch, (-bench.values[arch.id][0], bench.values[arch.id][1]))
    guided = asked[strat.init_samples:]
    assert all(bench.space.effective(a.genes) == a.genes for a in guided)
    design = [bench.space.decode([int(c) for c in row]) for row in strat._design()]
    assert asked[:strat.init_samples] == design
