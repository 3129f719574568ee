"""The Python API and the user's own data: data forms, checks before training, evaluate callables, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas import api
from hwnas.errors import ConfigError, DatasetError, HwnasError
from hwnas.metrics import count_params
from hwnas.objectives import Objective
from hwnas.search.recipe import build, load_recipe
from hwnas.spaces import get_space
from hwnas.train import load_image_folder, load_npz, splits_from_arrays, splits_from_datasets


def _blobs(n: int, classes: int = 3, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable uint8 images: class c is a bright square at a class-specific place."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 40, size=(n, size, size)).astype(np.uint8)
    step = size // classes
    for i, c in enumerate(y):
        x[i, c * step : (c + 1) * step, 4:12] = 220
    return x, y


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((30, 5)), np.arange(30) % 2, "shape"),
        (np.zeros((30, 8, 8)), np.zeros(30), "one class"),
        (np.full((30, 8, 8), np.nan), np.arange(30) % 2, "NaN"),
        (np.zeros((30, 8, 8)), np.arange(29) % 2, "one integer label per image"),
        (np.zeros((30, 8, 8)), (np.arange(30) % 2) + 0.5, "integer"),
        (np.zeros((30, 2, 2)), np.arange(30) % 2, "too small"),
        (np.zeros((30, 8, 8)), np.r_[np.zeros(29), 1], "class 1 has 1 image"),
    ],
)
def test_bad_arrays_are_clear_errors(x, y, message):
    with pytest.raises(DatasetError, match=message):
        splits_from_arrays(x, y, "mine")


def test_npz_channels_last_and_holdout(tmp_path):
    x, y = _blobs(100)
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.repeat(x[..., None], 3, axis=3), y=y)  # (N, H, W, 3)
    s = load_npz(path)
    assert s.input_shape == (3, 28, 28)
    assert [len(s.x_train), len(s.x_val), len(s.x_test)] == [70, 15, 15]
    assert sorted(torch.bincount(s.y_val).tolist()) == [5, 5, 5]  # stratified
    assert abs(float(s.x_train.mean())) < 1e-4  # standardised with train statistics


def test_npz_missing_array_and_pickles_refused(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((10, 8, 8)))
    with pytest.raises(DatasetError, match="no array 'x'"):
        load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.array([{"a": 1}] * 10, dtype=object), y=np.zeros(10))
    with pytest.raises(DatasetError, match="not a readable"):
        load_npz(tmp_path / "b.npz")


def test_image_folder(tmp_path):
    from PIL import Image

    for name, level in [("cat", 30), ("dog", 120), ("eel", 230)]:
        (tmp_path / name).mkdir()
        for i in range(5):
            size = (16, 10) if i == 0 else (12, 12)  # (width, height); all resized to the first image's
            Image.fromarray(np.full(size[::-1], level + i, np.uint8), "L").save(tmp_path / name / f"{i}.png")
    s = load_image_folder(tmp_path)
    assert s.num_classes == 3 and s.input_shape[0] == 1
    assert s.input_shape[1:] == (10, 16)  # cat/0.png: 16 wide, 10 high
    x = torch.cat([s.x_train, s.x_val, s.x_test])
    y = torch.cat([s.y_train, s.y_val, s.y_test])
    means = [float(x[y == c].mean()) for c in range(3)]
    assert means == sorted(means)  # folder order = class order: cat (dark) < dog < eel (bright)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="holds no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "missing")


def test_torch_datasets():
    x, y = _blobs(60, size=10)
    train = torch.utils.data.TensorDataset(torch.tensor(x[:40]), torch.tensor(y[:40]))
    val = torch.utils.data.TensorDataset(torch.tensor(x[40:]), torch.tensor(y[40:]))
    s = splits_from_datasets(train, val)
    assert (len(s.x_train), len(s.x_val), s.num_classes) == (40, 20, 3)
    assert torch.equal(s.y_test, s.y_val)  # no test set given: test = val
    ragged = [(torch.zeros(1, 8, 8), 0), (torch.zeros(1, 9, 9), 1)]
    with pytest.raises(DatasetError, match="different shapes"):
        splits_from_datasets(ragged, ragged)


def test_recipe_dataset_forms(tmp_path):
    x, y = _blobs(60)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", x=x, y=y)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("space: mobile:mnist\nobjectives: [accuracy, params]\ndataset: {npz: data/d.npz}\n")
    r = load_recipe(recipe)
    assert r.dataset == {"npz": str((tmp_path / "data" / "d.npz").resolve())}
    assert len(r.to_dict()["dataset"]["sha256"]) == 64
    recipe.write_text("space: mobile:mnist\nobjectives: [accuracy]\ndataset: {csv: d.csv}\n")
    with pytest.raises(DatasetError, match="image_folder"):
        load_recipe(recipe)
    recipe.write_text("space: mobile:mnist\nobjectives: [accuracy]\ndataset: mnist6k\n")
    with pytest.raises(HwnasError, match="mnist5k"):
        load_recipe(recipe)
    np.savez(tmp_path / "data" / "d.npz", x=x, y=np.zeros(60))  # one class: fails when built, before training
    recipe.write_text("space: mobile:mnist\nobjectives: [accuracy]\ndataset: {npz: data/d.npz}\n")
    with pytest.raises(DatasetError, match="one class"):
        build(load_recipe(recipe))


def test_search_own_npz_weights_provenance_resume(tmp_path):
    x, y = _blobs(90)
    data = tmp_path / "own.npz"
    np.savez(data, x=x, y=y)
    kw = dict(data=data, strategy="random", train={"epochs": 1, "batch_size": 32},
              storage=f"sqlite:///{tmp_path}/r.db", name="own")
    run = api.search("mobile:mnist", ["accuracy", "params"], budget=2, **kw)
    done = run.trials("COMPLETE")
    assert len(done) == 2
    assert all((run.artifact_dir / "weights" / f"{t.arch_id}.safetensors").is_file() for t in done)
    assert run.info["dataset"]["sha256"] == load_npz(data).describe()["sha256"]
    run = api.search("mobile:mnist", ["accuracy", "params"], budget=3, resume="own", **kw)
    assert len(run.trials("COMPLETE")) == 3 and [t.number for t in run.trials()][:2] == [t.number for t in done]
    np.savez(data, x=x, y=(y + 1) % 3)  # other labels under the same path: resuming must refuse
    with pytest.raises(ConfigError, match="dataset"):
        api.search("mobile:mnist", ["accuracy", "params"], budget=4, resume="own", **kw)


def _mark_weights(model: torch.nn.Module) -> dict[str, float]:
    """A user's evaluate: 'trains' by setting every weight to 0.01 and scores the parameter count."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
    return {"score": float(sum(p.numel() for p in model.parameters())), "note": "marked"}


def test_evaluate_callable_values_weights_and_export(tmp_path):
    from hwnas.export import load_weights

    run = api.search("mobile:mnist", ["latency_ms", Objective("score", "max", "expensive")],
                     evaluate=_mark_weights, latency_table="ort-cpu-1t/mobile-mnist", strategy="random",
                     budget=3, storage=f"sqlite:///{tmp_path}/r.db")
    space = get_space("mobile:mnist")
    for t in run.trials("COMPLETE"):
        assert t.values["score"] == count_params(space.build(t.arch))
        assert t.extras["note"] == "marked"
    assert run.info["evaluate"].endswith("_mark_weights")
    knee = run.knee()
    model = load_weights(knee.weights_path, knee.arch)
    assert all(bool((p == 0.01).all()) for p in model.parameters())  # the weights evaluate left are kept
    manifest = api.export(run, tmp_path / "out", recipe="fast", measure=False)
    assert manifest["source"]["trained"] and manifest["arch"]["id"] == knee.arch_id
    assert (tmp_path / "out" / "model.onnx").is_file()


def test_evaluate_missing_metric_stops_the_search_with_the_reason(tmp_path):
    from hwnas.search.runner import SearchFailedError

    with pytest.raises(SearchFailedError, match="no 'score'"):
        api.search("mobile:mnist", ["params", Objective("score", "max", "expensive")],
                   evaluate=lambda model: {"other": 1.0}, strategy="random", budget=1, storage="memory://")


def test_export_needs_a_journal():
    run = api.search("mobile:mnist", ["params"], strategy="random", budget=1, storage="memory://")
    with pytest.raises(ConfigError, match="SQLite"):
        api.export(run, "unused")


def test_method_names_a_searcher_such_as_fbnet():
    """`method=` reaches the registered searcher (its own parameter checks answer) before any run starts;
    a whole fbnet run through the same recipe path is tests/test_dnas.py's recipe test."""
    args = ("mobile:mnist", ["params", "latency_ms"])
    kw = {"data": "digits", "latency_table": "ort-cpu-1t/mobile-mnist", "storage": "memory://"}
    with pytest.raises(ConfigError, match="fbnet needs `targets:`"):
        api.search(*args, method="fbnet", **kw)
    with pytest.raises(ConfigError, match="method 'fbnet' has no parameter.*bogus"):
        api.search(*args, method={"name": "fbnet", "params": {"targets": [0.05], "bogus": 1}}, **kw)
    with pytest.raises(ConfigError, match="either a `strategy`"):
        api.search(*args, strategy="random", method={"name": "fbnet", "params": {"targets": [0.05]}}, **kw)


def test_the_api_lists_runs_and_opens_them_by_name(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    run = api.search("nb201", ["params", "macs"], strategy="random", budget=3, name="r1", storage=db)
    assert [r["name"] for r in api.runs(db)] == ["r1"] and api.runs(db)[0]["complete"] == 3
    assert api.open_run("r1", db).id == run.id
    with pytest.raises(ConfigError, match="no run journal at"):
        api.open_run("r1", f"sqlite:///{tmp_path / 'missing.db'}")
