"""LatencyTable schema v3, resumable builder, refusals, predictor + calibration (layout-aware), validation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.devices import DeviceSpec
from hwnas.latency import Calibration, LatencyTable, LatencyTableError, MissingEntryError, TableEntry
from hwnas.latency.builder import build_table, fit_calibration, space_blocks
from hwnas.latency.validation import fidelity_metrics, validate_table
from hwnas.spaces import get_space

SPACE = "mobile:mnist"


def spec(**changes) -> DeviceSpec:
    base = dict(name="test-ort", runtime="onnxruntime", threads=1, warmup=2, repeats=50, measure_memory=False)
    base.update(changes)
    return DeviceSpec(**base)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "mobile-mnist.json"
    build_table(spec(), SPACE, path, progress=False)
    return path


def test_space_blocks_cover_every_arch():
    for name in ("mobile:mnist", "nb201:cifar10"):
        space = get_space(name)
        keys = {b.key for b in space_blocks(space)}
        for i in range(30):
            assert {b.key for b in space.blocks(space.sample(i))} <= keys


def test_table_has_every_block_with_statistics(table_path):
    table = LatencyTable.load(table_path)
    assert len(table) == len(space_blocks(get_space(SPACE)))
    for entry in table.entries.values():
        assert entry.p10_ms <= entry.median_ms <= entry.p90_ms and entry.n == 50
        assert entry.activation_bytes > 0
    assert table.device["name"] == "test-ort" and table.device["host"]["cpu_model"]
    assert table.provenance["created_utc"] and table.protocol["repeats"] == 50


def test_predict_is_calibrated_sum_and_orders_archs(table_path):
    table = LatencyTable.load(table_path)
    space = get_space(SPACE)
    small = space.parse("-".join(["k3_e1"] * 7))
    big = space.parse("-".join(["k5_e6"] * 7))
    assert table.predict_ms(big) > table.predict_ms(small)
    table.calibration = Calibration(scale=0.5, per_block_ms=0.01, offset_ms=0.1, n=3)
    n_blocks = len(space.blocks(small))
    assert table.predict_ms(small) == pytest.approx(0.5 * table.sum_ms(small) + 0.01 * n_blocks + 0.1)
    assert table.peak_activation_bytes(big) > table.peak_activation_bytes(small)


def test_missing_entry_raises_never_zero(table_path):
    table = LatencyTable.load(table_path)
    arch = get_space(SPACE).sample(0)
    del table.entries[table.blocks(arch)[1].key]
    with pytest.raises(MissingEntryError, match="no entry for block"):
        table.predict_ms(arch)


def test_schema_v3_roundtrip_and_content_hash(table_path, tmp_path):
    table = LatencyTable.load(table_path)
    data = json.loads(table_path.read_text())
    assert data["schema"] == "hwnas.latency_table" and data["schema_version"] == 3
    assert data["reference"]["median_ms"] > 0
    copy = tmp_path / "copy.json"
    table.save(copy)
    again = LatencyTable.load(copy)
    assert again.sha256 == table.sha256 and again.entries == table.entries
    key = next(iter(again.entries))
    e = again.entries[key]
    again.entries[key] = TableEntry(e.median_ms * 2, e.p10_ms, e.p90_ms * 2, e.n)
    assert again.sha256 != table.sha256


@pytest.mark.parametrize("version", [0, 4, None])
def test_other_schema_versions_are_refused(table_path, tmp_path, version):
    data = json.loads(table_path.read_text())
    data["schema_version"] = version
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="schema_version"):
        LatencyTable.load(path)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(LatencyTableError, match="not an hwnas latency table"):
        LatencyTable.load(path)


def test_resume_after_interruption_measures_only_the_rest(tmp_path):
    path = tmp_path / "t.json"
    total = len(space_blocks(get_space(SPACE)))
    seen: list[str] = []

    def interrupt(block, entry):
        seen.append(block.key)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_table(spec(), SPACE, path, progress=False, on_entry=interrupt, extra_rounds=0)
    partial = LatencyTable.load(path)
    assert len(partial) == 5
    resumed: list[str] = []
    table = build_table(spec(), SPACE, path, progress=False, on_entry=lambda b, e: resumed.append(b.key),
                        extra_rounds=0)
    assert len(resumed) == total - 5 and not set(resumed) & set(seen)
    assert all(table.entries[k] == partial.entries[k] for k in seen)  # finished entries kept as measured


def test_wrong_device_or_space_is_refused(table_path):
    with pytest.raises(LatencyTableError, match="threads"):
        build_table(spec(threads=2), SPACE, table_path, progress=False)
    with pytest.raises(LatencyTableError, match="space"):
        build_table(spec(), "nb201:cifar10", table_path, progress=False)
    with pytest.raises(LatencyTableError, match="is for space"):
        LatencyTable.load(table_path).check_compatible(space="mobile:cifar")


def test_fit_calibration_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    sums = rng.uniform(0.1, 1.0, 12)
    blocks = rng.integers(5, 10, 12)
    measured = 0.8 * sums + 0.004 * blocks + 0.02
    cal = fit_calibration(list(sums), list(blocks), list(measured))
    assert cal.apply(0.5, 7) == pytest.approx(0.8 * 0.5 + 0.004 * 7 + 0.02, rel=0.02)
    assert fit_calibration([], [], []) == Calibration()


def test_fidelity_metrics_known_values():
    m = fidelity_metrics([1.0, 2.0, 3.3, 4.0], [1.0, 2.0, 3.0, 4.5])
    assert m["kendall_tau"] == pytest.approx(1.0) and m["spearman"] == pytest.approx(1.0)
    assert m["within_10pct"] == pytest.approx(0.75)
    assert m["mape"] == pytest.approx(100 * (0.1 + 0.5 / 4.5) / 4)


def test_validate_measures_end_to_end_and_plots(table_path, tmp_path):
    table = LatencyTable.load(table_path)
    # 3 rounds: the median ratio and the lowest plain value, so one busy moment of a shared machine does not decide
    result = validate_table(table, spec(), samples=4, seed=3, progress=False, plot=tmp_path / "s.png", rounds=3)
    assert result["n"] == 4 and set(result) >= {"kendall_tau", "spearman", "mape", "within_10pct"}
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # each arch timed next to the drift reference: reported at the quiet speed, near its plain lowest value
    # (the median within 30 %, none off by 2x: on this shared VM one arch now and then lands near 0.66, its
    # pairs all in a slow spell the quiet reference missed; seen once in 20 runs, and again in a clean CI run)
    ratios = [r["measured_ms"] / r["raw_measured_ms"] for r in result["rows"]]
    assert 0.7 < float(np.median(ratios)) < 1.3 and all(0.5 < q < 2.0 for q in ratios), ratios
    with pytest.raises(LatencyTableError, match="not this device"):
        validate_table(table, spec(threads=2), samples=2, progress=False)


def test_cli_profile_resume_validate_and_errors(tmp_path, capsys):
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: cli-ort\nruntime: onnxruntime\nthreads: 1\nwarmup: 2\nrepeats: 50\nmeasure_memory: false\n")
    out = tmp_path / "lut" / "nb201.json"
    args = ["profile", "--device", str(dev), "--space", "nb201:cifar10", "--out", str(out), "--calibrate", "3",
            "--no-progress", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["measured_now"] == first["entries"] > 5 and first["calibration"]["n"] == 3
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["measured_now"] == 0
    png = tmp_path / "v.png"
    assert main(["validate", "--table", str(out), "--device", str(dev), "--samples", "3", "--json",
                 "--plot", str(png)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and png.is_file()
    assert main(["validate", "--table", str(out), "--device", "ort-cpu-2t", "--samples", "2", "--json"]) == 2
    assert "not this device" in capsys.readouterr().err
    assert main(["profile", "--device", str(dev), "--space", "mobile:mnist", "--out", str(out)]) == 2
    assert "space" in capsys.readouterr().err


def test_shipped_mobile_mnist_table_predicts():
    from hwnas.cli.profiling import __file__ as cli_file  # noqa: F401 - the CLI module imports

    path = __import__("pathlib").Path(__file__).resolve().parents[1] / "latency_tables/ort-cpu-1t/mobile-mnist.json"
    table = LatencyTable.load(path)
    assert table.space == SPACE and table.device["name"] == "ort-cpu-1t" and table.calibration.n > 0
    space = get_space(SPACE)
    values = [table.predict_ms(space.sample(i)) for i in range(20)]
    assert all(v > 0 for v in values)


def test_interleaved_rounds_keep_the_lowest_median(tmp_path):
    path = tmp_path / "r.json"
    first = build_table(spec(), "nb201:imagenet16", path, progress=False, rounds=1, extra_rounds=0)
    before = dict(first.entries)
    table = build_table(spec(), "nb201:imagenet16", path, progress=False, rounds=2, extra_rounds=0)
    assert table.protocol["rounds"] == 2
    for key, entry in table.entries.items():
        assert entry.rounds == 2 and entry.median_ms <= before[key].median_ms


# -- layout-aware tables (hwnas.devices.layout) ---------------------------------------------------
def _nchwc_or_skip(table: LatencyTable) -> None:
    if not any(e.layouts and "nchwc" in e.layouts for e in table.entries.values()):
        pytest.skip("this CPU's ONNX Runtime runs no block in the blocked NCHWc layout")


def test_entries_record_layouts_and_what_a_lone_block_converts(table_path):
    table = LatencyTable.load(table_path)
    assert all(e.layouts is not None and set(e.layouts) <= {"nchw", "nchwc"} for e in table.entries.values())
    _nchwc_or_skip(table)
    space = get_space(SPACE)
    blocks = {b.key: b for b in space_blocks(space)}
    import torch

    for key, e in table.entries.items():
        b = blocks[key]
        n_in = int(np.prod(b.input_shape))
        n_out = space.build_block(b).eval()(torch.zeros(1, *b.input_shape)).numel()
        # alone, a block converts its input where it starts NCHWc, its output (and a residual add) where it ends so
        first, last = (layout == "nchwc" for layout in e.layouts)
        assert e.boundary_elems in {n_in * first + n_out * last * k for k in (1, 2)}
    # grouped 1x1 convs with 8 channels per group stay NCHW while plain ones go NCHWc: layouts differ by op
    assert len({table.entries[k].layouts for k in blocks if k.startswith("mbconv:")}) > 1


def test_layout_kelems_count_switches_only_between_differing_neighbours(table_path):
    table = LatencyTable.load(table_path)
    _nchwc_or_skip(table)
    space = get_space(SPACE)
    same, mixed = [], []
    for i in range(300):
        arch = space.sample(i)
        layouts = [table.entry(b).layouts for b in table.blocks(arch)]
        alone, switch = table.layout_kelems(arch)
        assert alone > 0
        changes = sum(a[1] != b[0] for a, b in zip(layouts, layouts[1:]))
        assert (switch > 0) == (changes > 0)
        (same if changes == 0 else mixed).append(arch)
    assert mixed
    # uncalibrated layout terms leave the prediction alone; calibrated ones move it by exactly their share
    arch = mixed[0]
    before = table.predict_ms(arch)
    table.calibration = Calibration(scale=1.0, n=3, alone_ms_per_kelem=-0.001, switch_ms_per_kelem=0.002)
    alone, switch = table.layout_kelems(arch)
    assert table.predict_ms(arch) == pytest.approx(before - 0.001 * alone + 0.002 * switch)


def test_v2_tables_without_layouts_still_predict(table_path, tmp_path):
    data = json.loads(table_path.read_text())
    data["schema_version"] = 2
    for e in data["entries"].values():
        e.pop("layout"), e.pop("boundary_elems")
    for k in ("alone_ms_per_kelem", "switch_ms_per_kelem"):
        data["calibration"].pop(k)
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data))
    table = LatencyTable.load(path)
    arch = get_space(SPACE).sample(0)
    assert table.layout_kelems(arch) == (0.0, 0.0) and table.predict_ms(arch) > 0
    data["entries"][next(iter(data["entries"]))]["layout"] = "nchwc"
    data["schema_version"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="input>output"):
        LatencyTable.load(path)


def test_fit_calibration_picks_the_layout_form_when_layout_explains_the_error():
    rng = np.random.default_rng(0)
    n = 24
    sums = rng.uniform(0.05, 0.25, n)
    blocks = rng.integers(6, 10, n).astype(float)
    lay = np.stack([rng.uniform(5, 10, n), rng.uniform(0, 2, n)], axis=1)
    overhead = 0.003
    measured = 1.02 * (sums - blocks * overhead) - 0.0015 * lay[:, 0] + 0.0025 * lay[:, 1] + 0.004
    measured *= 1 + rng.normal(0, 0.003, n)
    cal = fit_calibration(list(sums), list(blocks), list(measured), overhead_ms=overhead,
                          layout_kelems=[tuple(r) for r in lay])
    assert cal.form == "layout" and cal.candidates["layout"] < cal.candidates["overhead+offset"] / 3
    assert cal.alone_ms_per_kelem == pytest.approx(-0.0015, rel=0.15)
    assert cal.switch_ms_per_kelem == pytest.approx(0.0025, rel=0.15)
    pred = [cal.apply(s, k, a, w) for s, k, (a, w) in zip(sums, blocks, lay)]
    assert np.max(np.abs(np.array(pred) / measured - 1)) < 0.02
    # without layout features the form is not offered
    assert "layout" not in fit_calibration(list(sums), list(blocks), list(measured), overhead_ms=overhead).candidates
