"""Run report: checklist items, Pareto table and plot, comparison to a random-search baseline."""

from __future__ import annotations

from pathlib import Path

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
    assert 0 < cmp["hv"] <= 1.21 + 1e-9 and 0 < cmp["baseline_hv"] <= 1.21 + 1e-9 and cmp["baseline_strategy"] == "random"
    png = plot_pareto(run, tmp_path / "front.png")
    text = run_report(run, rand, png.name)
    for item in ("Code", "Search seed", "Strategy and hyperparameters", "Hardware", "Library versions",
                 "Wall time", "Comparison to random search", "Latency table"):
        assert f"**{item}**" in text
    assert "- [x] **Comparison to random search**: HV" in text
    assert "| # | arch | params | latency_ms | weights |" in text and "(knee)" in text
    assert png.is_file() and png.stat().st_size > 1000
    sim = compare_runs(run)  # no baseline run: all objectives are cheap, so random search is simulated
    assert sim["baseline_strategy"] == "random" and sim["baseline_trials"] == 30 and 0 < sim["baseline_hv"] <= 1.21 + 1e-9
    assert "- [x] **Comparison to random search**: HV" in run_report(run)
