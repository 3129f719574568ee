"""benchmarks/engines_compare.py: the digits-28 dataset it builds, worker utilisation from trial times, and HV
over a front normalised jointly across runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ec():
    spec = importlib.util.spec_from_file_location("engines_compare", REPO / "benchmarks" / "engines_compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_28_is_an_npz_the_searcher_loads(ec, tmp_path):
    from hwnas.train.datasets import load_npz

    splits = load_npz(ec.make_digits(tmp_path / "d.npz"))
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert sum(len(x) for x in (splits.x_train, splits.x_val, splits.x_test)) == 1797


def _trial(status, created, finished=None):
    return SimpleNamespace(status=status, created=created, finished=finished)


def test_utilization_counts_idle_workers_and_running_trials(ec):
    # two workers, 10 s: both busy all the time vs one idle half the time (a generation's tail)
    full = [_trial("COMPLETE", 0, 5), _trial("COMPLETE", 0, 5), _trial("COMPLETE", 5, 10), _trial("RUNNING", 5)]
    tail = [_trial("COMPLETE", 0, 5), _trial("COMPLETE", 0, 10), _trial("COMPLETE", 10, 10)]
    assert ec.utilization(full, 2, end=10) == pytest.approx(1.0)
    assert ec.utilization(tail, 2, end=10) == pytest.approx(0.75)
    assert ec.utilization([_trial("INFEASIBLE", 0, 0)], 2, end=10) == 0.0


def test_hv_is_normalised_jointly_and_grows_with_a_better_front(ec):
    # points: (seconds, -accuracy, latency_ms); run b dominates run a, and finishes its best point later
    a = {"points": [(10, -0.90, 0.10), (20, -0.80, 0.05)], "utilization": 1.0}
    b = {"points": [(10, -0.90, 0.10), (50, -0.95, 0.05)], "utilization": 0.5}
    result, grid, curves = ec.summarise({"a": [a], "b": [b]}, seconds=60, steps=6)
    by = {s["name"]: s for s in result["strategies"]}
    assert by["b"]["hv"]["median"] > by["a"]["hv"]["median"]
    assert by["b"]["best_accuracy"]["median"] == pytest.approx(0.95)
    assert curves["b"][0, 1] < curves["b"][0, -1]  # b's HV rises when its late point arrives
