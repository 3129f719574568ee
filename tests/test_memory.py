"""Peak memory as a prediction: the memory model's fit, tables without memory, the objective and constraint,
validation of predicted against measured end-to-end peaks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwnas.devices import DeviceSpec, get_profiler
from hwnas.devices.timing import summarize
from hwnas.latency import LatencyTable
from hwnas.latency.memory import MemoryModelError, fit_memory, measure_peak_bytes
from hwnas.latency.validation import memory_fidelity
from hwnas.search.constraints import parse_constraint
from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.spaces import get_space
from hwnas.storage import MemoryStorage

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"  # measured before memory: peaks are 0
SPACE = get_space("mobile:mnist")


def _table_with_memory() -> LatencyTable:
    """The shipped table with a peak per block that grows with its activations (as measured peaks do)."""
    table = LatencyTable.load(TABLE)
    table.entries = {k: replace(e, measured_peak_bytes=4096 + 3 * (e.activation_bytes or 0))
                     for k, e in table.entries.items()}
    return table


def _truth(table: LatencyTable, arch) -> float:
    """A whole-network peak of the kind measured: one program overhead plus part of the blocks' peaks."""
    f = table.memory_features(arch)
    return 250_000 + 0.6 * f["sum_peak_bytes"] + 0.3 * f["max_peak_bytes"]


def test_the_fitted_memory_model_predicts_unseen_archs_and_survives_save(tmp_path):
    table = _table_with_memory()
    archs = [SPACE.sample(s) for s in range(30)]
    fit, unseen = archs[:12], archs[12:]
    unfitted = [table.predict_peak_bytes(a) for a in unseen]
    table.memory = fit_memory([table.memory_features(a) for a in fit], [_truth(table, a) for a in fit],
                              [str(a) for a in fit])
    truth = np.array([_truth(table, a) for a in unseen])
    predicted = np.array([table.predict_peak_bytes(a) for a in unseen])
    assert np.abs(predicted / truth - 1).max() < 0.01 < np.abs(np.array(unfitted) / truth - 1).max()
    candidates = table.memory.candidates
    assert table.memory.cv_mape < 1 and table.memory.form == min(candidates, key=candidates.__getitem__) == "sum+max"
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert [loaded.predict_peak_bytes(a) for a in unseen] == pytest.approx(predicted.tolist(), rel=1e-12)
    assert "form=" in loaded.memory.describe() and loaded.sha256 == table.sha256
    # a table without a fitted memory model is written as before: its hash does not move
    assert "memory" not in LatencyTable.load(TABLE).to_dict()


def test_fitting_needs_enough_measured_archs():
    table = _table_with_memory()
    archs = [SPACE.sample(s) for s in range(3)]
    with pytest.raises(MemoryModelError, match="needs >= 4 archs.*--calibrate"):
        fit_memory([table.memory_features(a) for a in archs], [1e6] * 3)


def test_a_table_without_measured_memory_says_how_to_reprofile():
    from hwnas.latency.fit import FittedTable

    table = LatencyTable.load(TABLE)
    assert not table.has_memory() and _table_with_memory().has_memory()
    with pytest.raises(MemoryModelError, match="no measured memory.*hwnas profile .*measure_memory: true"):
        table.predict_peak_bytes(SPACE.sample(0))
    assert FittedTable.predict_peak_bytes is not LatencyTable.predict_peak_bytes  # the interface's refusal
    with pytest.raises(MemoryModelError, match="predicts no memory"):
        FittedTable.predict_peak_bytes(table, SPACE.sample(0))


def test_memory_bytes_is_an_objective_and_a_constraint(tmp_path):
    table = _table_with_memory()
    path = table.save(tmp_path / "mem.json")
    bound = float(np.median([table.predict_peak_bytes(SPACE.sample(s)) for s in range(20)]))
    constraint = parse_constraint(f"memory_bytes <= {bound:.6e}")  # written as in a recipe, e.g. 2e6
    problem = ArchProblem(SPACE, ["params", "memory_bytes"], (constraint,), path)
    run = MemoryStorage().create_run("m", problem.objectives, {}, problem.info())
    run_search(problem, make_strategy("random", problem.space, 1, 3), run, 6)
    trials = run.trials()
    assert {t.status for t in trials} == {"COMPLETE", "INFEASIBLE"}, "the bound should split the sample"
    for t in trials:
        assert t.values["memory_bytes"] == pytest.approx(table.predict_peak_bytes(t.arch), rel=1e-12)
        assert (t.values["memory_bytes"] <= constraint.bound) == (t.status == "COMPLETE")


class _FakeProfiler:
    """Measures a known peak per arch (scaled by `factor`), as the real profilers report it."""

    def __init__(self, table: LatencyTable, factor: float) -> None:
        self.table, self.factor = table, factor

    def measure_module(self, model, input_shape, key=None):
        arch = SPACE.parse(key.split("/", 1)[1])
        return summarize([1.0] * 50, 0, measured_peak_bytes=int(self.factor * _truth(self.table, arch)))


def test_validation_reports_memory_beside_latency():
    table = _table_with_memory()
    fit = [SPACE.sample(s) for s in range(10)]
    table.memory = fit_memory([table.memory_features(a) for a in fit], [_truth(table, a) for a in fit])
    archs = [SPACE.sample(s) for s in range(100, 110)]
    good = memory_fidelity(table, _FakeProfiler(table, 1.0), archs, progress=False)
    off = memory_fidelity(table, _FakeProfiler(table, 1.3), archs, progress=False)
    assert good["within_10pct"] == 1.0 and good["kendall_tau"] > 0.9 and good["n"] == len(good["rows"]) == 10
    assert off["within_10pct"] == 0.0 and off["mape"] > 20
    assert memory_fidelity(LatencyTable.load(TABLE), _FakeProfiler(table, 1.0), archs) is None


def test_calibration_fits_memory_only_from_enough_archs():
    from hwnas.latency.memory import calibrate_memory

    table = _table_with_memory()
    profiler = _FakeProfiler(table, 1.0)
    assert calibrate_memory(table, profiler, [SPACE.sample(s) for s in range(3)], progress=False).n == 0
    fitted = calibrate_memory(table, profiler, [SPACE.sample(s) for s in range(8)], progress=False)
    assert fitted.n == 8 and table.memory is fitted and fitted.cv_mape < 1


def test_a_bigger_network_measures_a_bigger_peak():
    spec = DeviceSpec(name="ort-mem-test", runtime="onnxruntime", threads=1, warmup=1, repeats=50, cpus=[])
    profiler = get_profiler(spec)
    small = SPACE.parse("skip-k3_e1_g2-skip-k3_e1-skip-k3_e1_g2-skip")
    big = SPACE.parse("-".join(["k5_e6"] * 7))
    peaks = [measure_peak_bytes(profiler, a, repeats=1) for a in (small, big)]
    if None in peaks:
        pytest.skip("peak resident memory is not measurable on this OS")
    assert peaks[1] > 2 * peaks[0] > 0
