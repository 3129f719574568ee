"""Tabular benchmark on the shipped NB201 CSV: HV normalization, strategy vs random, CLI, any CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hwnas.bench import TabularBenchmark, compare, hv_curve, summarize
from hwnas.cli import main


@pytest.fixture(scope="module")
def bench(bench_csv):
    return TabularBenchmark(bench_csv, "accuracy", "pi5_onnx_latency_ms")


def test_true_front_scores_one(bench):
    curve = hv_curve(bench, bench.true_front)
    assert curve[-1] == pytest.approx(1.0)
    assert np.all(np.diff(curve) >= -1e-12)  # HV never decreases with more queries


def test_local_search_beats_random_at_300(bench):
    seeds = [0, 1, 2]
    curves = {c.strategy: c for c in compare(bench, ["random", "local"], 300, seeds)}
    rand, local = (np.median(curves[s].hv[:, -1]) for s in ("random", "local"))
    assert local > rand
    rows = summarize(list(curves.values()), (25, 100, 300))
    assert set(rows[1]["hv"]["300"]) == {"median", "q25", "q75", "p_vs_random"}


def test_bench_cli_on_any_csv_with_the_columns(bench_csv, tmp_path, capsys):
    with open(bench_csv) as f:
        rows = list(csv.DictReader(f))[:3000]
    small = tmp_path / "small.csv"
    with open(small, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_str", "acc", "lat"])
        for r in rows:
            w.writerow([r["arch_str"], r["accuracy"], r["pixel_litert_latency_ms"]])
    plot = tmp_path / "hv.png"
    assert main(["bench", "--table", str(small), "--accuracy-column", "acc", "--latency-column", "lat",
                 "--strategies", "random,re", "--budget", "60", "--seeds", "3", "--json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in out["strategies"]] == ["random", "re"]
    assert set(out["strategies"][0]["hv"]) == {"25", "50", "60"}
    medians = [out["strategies"][0]["hv"][b]["median"] for b in ("25", "50", "60")]
    assert medians == sorted(medians) and plot.is_file()  # more queries never lose hypervolume
    # the true front is the brute-force non-dominated set of (max acc, min lat) over the rows
    P = np.array([(-float(r["accuracy"]), float(r["pixel_litert_latency_ms"])) for r in rows])
    P = P[np.isfinite(P).all(axis=1)]
    le, lt = (P[:, None, :] <= P[None]).all(-1), (P[:, None, :] < P[None]).any(-1)  # [q, p]: q vs p
    assert out["true_front_size"] == int((~(le & lt).any(axis=0)).sum())
    assert main(["bench", "--table", str(small), "--accuracy-column", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
