"""Few-shot fit-table on a slice of the shipped real measurements: beats a plain additive per-edge fit."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from hwnas.cli import main
from hwnas.errors import ConfigError, HwnasError
from hwnas.latency.fit import FittedTable, cell_features, dead_features, fit_table, read_measurements
from hwnas.latency.table import LatencyTableError
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import OPS


@pytest.fixture(scope="module")
def slice_csv(bench_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "slice.csv"
    with bench_csv.open() as src, path.open("w", newline="") as dst:
        rows = list(csv.reader(src))[:3001]
        csv.writer(dst).writerows(rows)
    return path


def test_dead_edges_cost_nothing():
    space = get_space("nb201")
    # node 1 is cut off from the input, so its conv edges are dead
    a = space.parse("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    b = space.parse("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    assert cell_features(a.genes) == cell_features(b.genes)
    empty = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert cell_features(empty.genes)[-1] == 1.0
    assert dead_features(a.genes) == [1.0, 0.0, 0.0, 0.0] and dead_features(b.genes) == [0.0] * 4


def test_representatives_replace_duplicate_rows(slice_csv):
    own, y_own = read_measurements(slice_csv, "arch_str", "pi5_onnx_latency_ms", rep_column=None)
    rep, y_rep = read_measurements(slice_csv, "arch_str", "pi5_onnx_latency_ms")
    assert np.array_equal(y_own, y_rep) and len(own) == len(rep)
    assert sum(a != b for a, b in zip(own, rep)) > 0
    with open(slice_csv) as fh:
        rows = list(csv.DictReader(fh))
    by_idx = {r["arch_idx"]: r["arch_str"] for r in rows}
    assert all(a == by_idx.get(r["rep_arch_idx"], r["arch_str"]) for a, r in zip(rep, rows))


def _additive_baseline(archs, y, train, seed):
    space = get_space("nb201")
    X = np.array([[float(g == op) for g in space.split(a) for op in OPS] for a in archs])
    X = np.hstack([X, np.ones((len(y), 1))])
    idx = np.random.default_rng(seed).permutation(len(y))
    tr, te = idx[:train], idx[train:]
    coef = np.linalg.lstsq(X[tr], y[tr], rcond=None)[0]
    return spearmanr(X[te] @ coef, y[te]).statistic


@pytest.mark.parametrize("column", ["pi5_litert_latency_ms", "pi5_onnx_latency_ms"])
def test_fit_beats_additive_per_edge_baseline(slice_csv, column):
    from hwnas.latency.fit import resolve_prior

    own, y = read_measurements(slice_csv, "arch_str", column, rep_column=None)
    archs, _ = read_measurements(slice_csv, "arch_str", column)
    baseline = _additive_baseline(own, y, 20, 0)
    for prior in (None, "auto"):
        fitted, held = fit_table(archs, y, space="nb201", train=20, seed=0, prior=resolve_prior(prior, "nb201"))
        ours = fitted.metrics["spearman"]
        assert fitted.metrics["n"] == len(y) - 20
        assert ours > baseline + 0.1 and ours > 0.85
        assert all(c >= 0 for c in fitted.coef)


def test_dead_edge_mode_follows_the_runtime(slice_csv):
    """ORT on the Pi runs NB201's `none` as x*0, so dead ops cost there; LiteRT prunes them."""
    onnx, y_onnx = read_measurements(slice_csv, "arch_str", "pi5_onnx_latency_ms")
    lite, y_lite = read_measurements(slice_csv, "arch_str", "pi5_litert_latency_ms")
    assert fit_table(onnx, y_onnx, train=50, seed=0)[0].dead_edges == "cost"
    assert fit_table(lite, y_lite, train=50, seed=0)[0].dead_edges == "free"
    with pytest.raises(ConfigError, match="dead_edges"):
        fit_table(onnx, y_onnx, train=20, dead_edges="maybe")


def test_cli_fit_table_json_and_saved_table(slice_csv, tmp_path, capsys):
    out = tmp_path / "fitted.json"
    args = ["fit-table", "--space", "nb201", "--measurements", str(slice_csv), "--arch-column", "arch_str",
            "--target-column", "pixel_litert_latency_ms", "--train", "20", "--seed", "1", "--json",
            "--out", str(out), "--plot", str(tmp_path / "fit.png")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"kendall_tau", "spearman", "mape", "within_10pct"} and result["n"] == 2980
    fitted = FittedTable.load(out)
    from hwnas.latency import load_predictor

    assert load_predictor(out).sha256 == fitted.sha256 and fitted.device["fitted"]
    arch = get_space("nb201").parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    small = get_space("nb201").parse("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert fitted.predict_ms(arch) > fitted.predict_ms(small)
    data = json.loads(out.read_text())
    data["schema_version"] = 99
    out.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="fitted table"):
        FittedTable.load(out)


def test_bad_inputs_are_clear_errors(slice_csv):
    with pytest.raises(ConfigError, match="no column 'nope'"):
        read_measurements(slice_csv, "arch_str", "nope")
    archs, y = read_measurements(slice_csv, "arch_str", "pi5_onnx_latency_ms")
    with pytest.raises(ConfigError, match="--train"):
        fit_table(archs, y, train=len(y))
    with pytest.raises(HwnasError, match="mobile"):  # nb201 cells are not mobile archs
        fit_table(archs, y, space="mobile", train=20)
