"""Run report: checklist items, Pareto table and plot, comparison to a random-search baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.report import compare_runs, plot_pareto, run_report
from hwnas.search.recipe import execute_recipe, parse_recipe

TABLE = Path(__file__).resolve().parents[1] / "latency_tables" / "ort-cpu-1t" / "nb201-cifar100.json"


def test_report_has_checklist_front_and_random_comparison(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    base = {"space": "nb201:cifar100", "objectives": ["params", "latency_ms"], "latency_table": str(TABLE),
            "budget": 30, "executor": "inline", "seed": 2}
    run = execute_recipe(parse_recipe({**base, "strategy": "local"}), url, "main").run
    rand = execute_recipe(parse_recipe({**base, "strategy": "random"}), url, "rand").run
    cmp = compare_runs(run, rand)
    assert cmp["baseline_strategy"] == "random" and f"{cmp['hv']:.4g}" in run_report(run, rand)
    png = plot_pareto(run, tmp_path / "front.png")
    text = run_report(run, rand, png.name)
    for item in ("Code", "Search seed", "Strategy and hyperparameters", "Hardware", "Library versions",
                 "Wall time", "Comparison to random search", "Latency table"):
        assert f"**{item}**" in text
    assert "- [x] **Comparison to random search**: HV" in text
    assert "| # | arch | params | latency_ms | weights |" in text and "(knee)" in text
    assert png.is_file() and png.stat().st_size > 1000
    sim = compare_runs(run)  # no baseline run: all objectives are cheap, so random search is simulated
    assert sim["baseline_strategy"] == "random" and sim["baseline_trials"] == 30 and sim["baseline_hv"] > 0
    assert "- [x] **Comparison to random search**: HV" in run_report(run)


def test_compare_runs_normalizes_both_runs_by_the_joint_front(bench_csv):
    """Conflicting objectives (table accuracy vs latency): the run holding the joint front's extremes
    scores higher, and swapping the roles swaps the values (one normalization for both)."""
    from hwnas.bench import TabularBenchmark
    from hwnas.execution import InlineExecutor
    from hwnas.pareto import hypervolume, non_dominated
    from hwnas.search.runner import run_search
    from hwnas.search.strategies import make_strategy
    from hwnas.storage import open_storage

    bench = TabularBenchmark(bench_csv, "accuracy", "pi5_onnx_latency_ms")
    storage = open_storage("memory://")
    runs = []
    for name, budget in (("short", 10), ("long", 200)):
        run = storage.create_run(name, bench.objectives, {}, {"strategy": {"name": "random"}})
        run_search(bench, make_strategy("random", bench.space, 2, 0), run, budget, InlineExecutor())
        runs.append(run)
    short, long = runs  # the same seed: the long run's first 10 archs are the short run's
    cmp = compare_runs(long, short)
    assert cmp["hv"] > cmp["baseline_hv"] > 0
    swapped = compare_runs(short, long)
    assert (swapped["hv"], swapped["baseline_hv"]) == pytest.approx((cmp["baseline_hv"], cmp["hv"]))
    joint = [long.minimized(t) for t in long.trials("COMPLETE")]
    front = [joint[i] for i in non_dominated(joint)]  # the long run holds the joint front
    lo, hi = [min(c) for c in zip(*front)], [max(c) for c in zip(*front)]
    assert cmp["hv"] == pytest.approx(hypervolume(front, lo, hi))
