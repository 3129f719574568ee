"""Round trip on this CPU: search (train 1 epoch on digits, table latency) -> export the knee -> re-measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.export import read_manifest, verify_files
from hwnas.export.parity import ort_session
from hwnas.export.pipeline import default_table_path
from hwnas.search.runner import run_search
from hwnas.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    from hwnas.search.problem import ArchProblem
    from hwnas.search.strategies import make_strategy
    from hwnas.storage import open_storage

    root = tmp_path_factory.mktemp("search")
    db = f"sqlite:///{root / 'hwnas.db'}"
    table = default_table_path("ort-cpu-1t", "mobile:mnist")
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], latency_table=table, dataset="digits",
                          train={"epochs": 1, "data_fraction": 0.1, "batch_size": 64, "seed": 0})
    storage = open_storage(db)
    run = storage.create_run("roundtrip", problem.objectives, {"space": "mobile"}, problem.info())
    strategy = make_strategy("random", problem.space, len(problem.objectives), seed=0)
    run_search(problem, strategy, run, budget=3)
    return db, storage.get_run("roundtrip")


def test_search_export_remeasure_round_trip(searched, tmp_path, capsys):
    db, run = searched
    knee = run.knee()
    assert knee is not None and knee.weights_path
    out = tmp_path / "knee"
    rc = main(["export", "--run", "roundtrip", "--storage", db, "--pick", "knee", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = read_manifest(out)
    assert verify_files(out) == []
    assert m["source"]["run"] == "roundtrip" and m["source"]["trial"] == knee.number
    assert m["source"]["pick"] == "knee" and m["source"]["trained"]
    assert m["arch"]["id"] == knee.arch_id
    assert m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-5
    lat = m["latency"]
    # the prediction is the trial's own table latency (rescaled when this machine's drift reference
    # says so); the table hash chains run -> manifest
    assert lat["drift"] is not None
    assert lat["predicted_ms"] == pytest.approx(knee.values["latency_ms"] * lat["drift"]["factor"])
    assert lat["table_sha256"] == run.table_sha256 and lat["device"] == "ort-cpu-1t" and lat["same_device"]
    assert lat["measured_ms"] > 0
    # the exported graph is the trained network of the trial
    _, trained, _ = load_checkpoint(knee.weights_path)
    x = np.random.default_rng(3).standard_normal((2, 1, 28, 28), dtype=np.float32)[:1]
    with torch.no_grad():
        ref = trained(torch.from_numpy(x)).numpy()
    got = ort_session(out / "model.onnx").run(None, {"input": x})[0]
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_other_picks_on_the_searched_run(searched, tmp_path):
    db, run = searched
    for pick in ("best-accuracy", "index=0"):
        out = tmp_path / pick
        assert main(["export", "--run", "roundtrip", "--storage", db, "--pick", pick, "--out", str(out),
                     "--no-measure", "--recipe", "fast"]) == 0
        assert read_manifest(out)["source"]["pick"] == pick
