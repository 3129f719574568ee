"""Latency truth (issue #10): calibration forms, CPU affinity, drift reference, noise, fitted tables everywhere."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.devices import DeviceSpec, ProfilerError, device_from_dict, get_profiler
from hwnas.devices.profilers import OrtProfiler
from hwnas.devices.timing import cpu_affinity
from hwnas.errors import ConfigError
from hwnas.latency import LatencyTable, LatencyTableError, load_predictor
from hwnas.latency.builder import build_table, calibration_archs, fit_calibration, sample_archs
from hwnas.latency.drift import LatencyDriftError, check_drift
from hwnas.latency.fit import FittedTable, default_prior, fit_table_from_device
from hwnas.latency.validation import validate_table
from hwnas.spaces import get_space

HAS_AFFINITY = hasattr(os, "sched_getaffinity")


def spec(**changes) -> DeviceSpec:
    base = dict(name="truth-ort", runtime="onnxruntime", threads=1, warmup=2, repeats=50, measure_memory=False)
    base.update(changes)
    return DeviceSpec(**base)


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "nb201.json"
    build_table(spec(), "nb201:imagenet16", path, progress=False, extra_rounds=0)
    return path


# -- item 2: the same conditions ------------------------------------------------------------------
@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity API on this OS")
def test_affinity_defaults_to_the_last_core_and_is_restored():
    allowed = os.sched_getaffinity(0)
    assert spec().pinned_cpus() == (max(allowed),)
    assert spec(runtime="remote", host="h", port=1).pinned_cpus() == ()  # a remote device pins itself
    assert spec(cpus=()).pinned_cpus() == ()  # `cpus: []` opts out
    with cpu_affinity((min(allowed),)) as used:
        assert os.sched_getaffinity(0) == {min(allowed)} and used == (min(allowed),)
    assert os.sched_getaffinity(0) == allowed
    with pytest.raises(ConfigError, match="not available"):
        spec(cpus=(max(allowed) + 1000,)).pinned_cpus()


def test_cpus_parse_and_validate():
    base = {"name": "x", "runtime": "onnxruntime"}
    assert device_from_dict({**base, "cpus": [0]}).cpus == (0,)
    assert device_from_dict(base).cpus is None
    with pytest.raises(ConfigError, match="list of core numbers"):
        device_from_dict({**base, "cpus": "1"})
    with pytest.raises(ConfigError, match="2 threads need"):
        device_from_dict({**base, "cpus": [0], "threads": 2})


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)


@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity API on this OS")
def test_torch_profiler_pins_and_measures_a_copy():
    profiler = get_profiler(spec(runtime="torch"))
    calls: dict[frozenset[int], int] = {}

    class Spy(_Recorder):
        def forward(self, x):
            mask = frozenset(os.sched_getaffinity(0))
            calls[mask] = calls.get(mask, 0) + 1
            return self.conv(x)

    spy = Spy().train()
    profiler.measure_module(spy, (1, 8, 8))
    assert spy.training  # the caller's module keeps its mode (the profiler switched a copy to eval)
    assert calls.get(frozenset(profiler.cpus), 0) >= 50  # every timed run happened on the pinned core


def test_ort_refuses_float16_instead_of_timing_fp32():
    with pytest.raises(ProfilerError, match="float16"):
        OrtProfiler(spec(device="cuda", dtype="float16"))


# -- item 1: calibration --------------------------------------------------------------------------
def test_calibration_picks_the_overhead_form_that_scale_cannot_express():
    rng = np.random.default_rng(0)
    overhead = 0.005
    k = rng.integers(5, 10, 20).astype(float)
    s = rng.uniform(0.05, 0.3, 20)
    measured = 0.95 * (s - k * overhead) + overhead
    measured *= 1 + rng.normal(0, 0.005, 20)
    cal = fit_calibration(list(s), list(k), list(measured), overhead_ms=overhead)
    assert cal.form in {"overhead", "overhead+offset", "per_block"}
    assert cal.cv_mape < cal.candidates["scale"] / 3
    pred = np.array([cal.apply(a, b) for a, b in zip(s, k)])
    assert np.max(np.abs(pred / measured - 1)) < 0.03
    assert "form=" in cal.describe() and "overhead_ms" in cal.describe()


def test_calibration_archs_cover_the_latency_range(small_table):
    table = LatencyTable.load(small_table)
    space = get_space(table.space)
    chosen = calibration_archs(table, space, 12, seed=0)
    assert len({a.id for a in chosen}) == 12
    random_sums = sorted(table.sum_ms(a) for a in sample_archs(space, 200, 7, "validation"))
    sums = [table.sum_ms(a) for a in chosen]
    assert min(sums) <= random_sums[2] and max(sums) >= random_sums[-3]


# -- item 3: drift and the schema -----------------------------------------------------------------
def test_schema_v1_table_is_read_without_a_reference(small_table, tmp_path):
    data = json.loads(small_table.read_text())
    assert data["schema_version"] == 3 and data["reference"]["median_ms"] > 0
    data["schema_version"] = 1
    del data["reference"]
    for entry in data["entries"].values():
        for key in ("second_ms", "layout", "boundary_elems"):
            entry.pop(key, None)
    data["calibration"] = {"scale": 1.0, "per_block_ms": 0.0, "offset_ms": 0.0, "n": 0, "fitted_on": []}
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(data))
    table = LatencyTable.load(old)
    assert table.schema_version == 1 and table.reference is None
    check = check_drift(table, get_profiler(spec()))
    assert check.factor == 1.0 and not check.rescaled and "schema v1" in check.message
    table.save(tmp_path / "v3.json")  # saving upgrades to the current version
    assert json.loads((tmp_path / "v3.json").read_text())["schema_version"] == 3


@pytest.mark.parametrize("recorded", [0.4, 2.5])
def test_drift_rescales_predictions_or_strict_refuses(small_table, recorded):
    table = LatencyTable.load(small_table)
    arch = get_space(table.space).sample(0)
    before = table.predict_ms(arch)
    table.reference = {**table.reference, "median_ms": table.reference["median_ms"] * recorded}
    with pytest.raises(LatencyDriftError, match="--strict"):
        check_drift(table, get_profiler(spec()), strict=True)
    assert table.drift_factor == 1.0
    check = check_drift(table, get_profiler(spec()))
    assert check.rescaled and "rescaled" in check.message
    assert table.predict_ms(arch) / before == pytest.approx(check.factor)
    assert (check.factor > 1.5) if recorded < 1 else (check.factor < 0.67)


# -- item 4: noise --------------------------------------------------------------------------------
class _BusyOnce(OrtProfiler):
    """A real profiler whose first measurement of one block lands in a busy moment (3x slower)."""

    def __init__(self, s: DeviceSpec, key_shape: tuple[int, ...]) -> None:
        super().__init__(s)
        self.shape, self.calls = key_shape, 0

    def measure_module(self, module, input_shape, key=None):
        m = super().measure_module(module, input_shape, key)
        if tuple(input_shape) == self.shape:
            self.calls += 1
            if self.calls == 1:
                return replace(m, median_ms=m.median_ms * 3)
        return m


class _AlwaysBusy(OrtProfiler):
    """A real profiler on a machine whose timings of one block always spread widely."""

    def __init__(self, s: DeviceSpec, key_shape: tuple[int, ...]) -> None:
        super().__init__(s)
        self.shape = key_shape

    def measure_module(self, module, input_shape, key=None):
        m = super().measure_module(module, input_shape, key)
        return replace(m, p90_ms=m.median_ms * 3) if tuple(input_shape) == self.shape else m


def test_busy_rounds_are_remeasured_and_persistent_noise_is_reported(tmp_path, monkeypatch):
    import hwnas.latency.builder as builder

    # one try per block: a retry after an unsteady drift reference (a noisy machine) would discard the
    # busy 3x measurement this test is about
    monkeypatch.setattr(builder, "PAIR_TRIES", 1)
    space = get_space("nb201:imagenet16")
    stem = next(b for b in get_space("nb201:imagenet16").blocks(space.sample(0)) if b.kind == "stem")
    busy = _BusyOnce(spec(), stem.input_shape)
    table = build_table(spec(), space, tmp_path / "a.json", progress=False, profiler=busy, rounds=2,
                        warn=lambda text: None)
    assert busy.calls >= 3  # two rounds disagreed, so the block was measured again
    entry = table.entries[stem.key]
    assert entry.rounds >= 3 and entry.disagreement() < 1.0  # the busy 3x round is neither kept nor second
    warnings: list[str] = []
    table = build_table(spec(), space, tmp_path / "b.json", progress=False, profiler=_AlwaysBusy(spec(), stem.input_shape),
                        warn=warnings.append, extra_rounds=1)
    assert len(warnings) == 1 and stem.key in warnings[0]
    assert re.search(re.escape(stem.key) + r": median [0-9.]+ ms, \(p90-p10\)/median 2\.\d\d", warnings[0])
    assert stem.key in table.provenance["noise"]["noisy_blocks"]


# -- item 5: fitted tables are a latency source everywhere ----------------------------------------
def test_default_nb201_prior_ships_in_the_package():
    prior = default_prior("nb201:cifar100")
    assert prior is not None and prior.space.startswith("nb201") and len(prior) > 0
    assert default_prior("mobile:mnist") is None  # mobile derives its features from the arch


def test_mobile_fitted_table_searches_validates_and_refuses_other_devices(tmp_path):
    from hwnas.search.recipe import execute_recipe, parse_recipe

    out = tmp_path / "fit.json"
    result = fit_table_from_device(spec(), space="mobile:mnist", train=10, holdout=4, seed=0, out=str(out))
    assert result["n"] == 4 and result["features"][-1] == "mbconv_blocks"
    fitted = load_predictor(out)
    assert isinstance(fitted, FittedTable) and fitted.device["name"] == "truth-ort"
    space = get_space("mobile:mnist")
    small, big = space.parse("-".join(["k3_e1"] * 7)), space.parse("-".join(["k5_e6"] * 7))
    assert fitted.predict_ms(big) > fitted.predict_ms(small) > 0
    recipe = parse_recipe({"space": "mobile:mnist", "objectives": ["params", "latency_ms"],
                           "latency_table": str(out), "strategy": "random", "budget": 4, "executor": "inline"},
                          "fitted-recipe")
    run = execute_recipe(recipe, f"sqlite:///{tmp_path}/runs.db").run
    trials = run.trials("COMPLETE")
    assert len(trials) == 4 and run.table_sha256 == fitted.sha256
    for t in trials:
        assert t.values["latency_ms"] == pytest.approx(fitted.predict_ms(space.parse(t.arch_str)))
    checked = validate_table(fitted, spec(), samples=3, seed=2, progress=False)
    assert checked["n"] == 3 and checked["calibration"]["form"] == "fitted"
    with pytest.raises(LatencyTableError, match="not this device spec"):
        validate_table(fitted, spec(threads=2, cpus=None), samples=2, progress=False)


def test_fitted_nb201_table_predicts_without_its_prior_file(bench_csv, tmp_path, monkeypatch):
    import csv

    from hwnas.latency.fit import fit_table_from_csv

    rows = list(csv.reader(bench_csv.open()))[:400]
    small = tmp_path / "m.csv"
    with small.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    out = tmp_path / "fit.json"
    fit_table_from_csv(small, space="nb201:cifar100", arch_column="arch_str", target_column="pi5_onnx_latency_ms",
                       train=20, seed=0, prior="auto", out=str(out))
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2 and "path" not in data["prior"] and data["prior"]["table"]["entries"]
    monkeypatch.chdir(tmp_path)  # nothing is read relative to the checkout
    fitted = load_predictor(out)
    arch = get_space("nb201:cifar100").sample(3)
    assert fitted.predict_ms(arch) > 0


# -- item 6: exclusive measurement ----------------------------------------------------------------
@pytest.mark.parametrize("executor", [{"name": "local", "workers": 2}, {"name": "ray"}])
def test_measured_latency_with_parallel_workers_is_refused(executor, tmp_path):
    from hwnas.search.recipe import check_exclusive_measurement, parse_recipe

    recipe = parse_recipe({"space": "mobile:mnist", "objectives": ["params", "measured_latency_ms"],
                           "device": "ort-cpu-1t", "executor": executor}, "r")
    with pytest.raises(ConfigError, match="run alone"):
        check_exclusive_measurement(recipe)
    check_exclusive_measurement(recipe.with_overrides(executor={"name": "local", "workers": 1}))


# -- item 7: GPU paths (run only where CUDA exists) -----------------------------------------------
@pytest.mark.gpu
def test_torch_cuda_float16_measures_a_copy_in_half_precision():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    m = get_profiler(spec(runtime="torch", device="cuda", dtype="float16")).measure_module(module, (3, 32, 32))
    assert m.median_ms > 0
    assert next(module.parameters()).device.type == "cpu" and next(module.parameters()).dtype == torch.float32


@pytest.mark.gpu
def test_ort_cuda_binds_device_buffers():
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no ONNX Runtime CUDA provider")
    space = get_space("mobile:mnist")
    m = get_profiler(spec(device="cuda")).measure_module(space.build(space.sample(0)), space.input_shape)
    assert m.median_ms > 0 and m.n == 50


@pytest.mark.slow  # two full exports (ONNX, parity, 3 measurement rounds)
def test_export_remeasure_rescales_by_drift_or_strict_refuses(small_table, tmp_path):
    from hwnas.export import run_export, source_from_arch

    table = LatencyTable.load(small_table)
    table.reference = {**table.reference, "median_ms": table.reference["median_ms"] * 0.4}
    moved = table.save(tmp_path / "moved.json")
    arch = get_space(table.space).sample(1)
    source = source_from_arch(table.space, str(arch))
    with pytest.raises(LatencyDriftError):
        run_export(source, tmp_path / "strict", device=spec(), table=str(moved), strict=True)
    latency = run_export(source, tmp_path / "out", device=spec(), table=str(moved))["latency"]
    assert latency["drift"]["rescaled"] and latency["cpus"] == list(spec().pinned_cpus())
    assert latency["predicted_ms"] == pytest.approx(table.predict_ms(arch) * latency["drift"]["factor"])


def test_measured_search_rescales_by_drift_or_strict_refuses(small_table, tmp_path):
    import yaml

    from hwnas.search.recipe import build, parse_recipe

    table = LatencyTable.load(small_table)
    table.reference = {**table.reference, "median_ms": table.reference["median_ms"] * 0.4}
    moved = table.save(tmp_path / "moved.json")
    device = tmp_path / "truth-ort.yaml"
    device.write_text(yaml.safe_dump(spec().to_dict()))
    data = {"space": table.space, "objectives": ["latency_ms", "measured_latency_ms"], "latency_table": str(moved),
            "device": str(device), "dataset": None}
    problem, _ = build(parse_recipe(data, "r"))
    assert problem.drift["rescaled"] and problem.drift["factor"] > 1.5
    with pytest.raises(LatencyDriftError, match="--strict"):
        build(parse_recipe({**data, "strict_drift": True}, "r"))
    with pytest.raises(ConfigError, match="strict_drift must be"):
        parse_recipe({**data, "strict_drift": "yes"}, "r")
