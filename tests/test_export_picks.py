"""`--pick` parsing and selection on a stored run, and the CLI's errors for bad inputs."""

from __future__ import annotations

import time

import pytest
import torch

from hwnas.cli import main
from hwnas.export import PickError, parse_pick, select_trial
from hwnas.export.source import source_from_run
from hwnas.objectives import get_objectives
from hwnas.spaces import get_space
from hwnas.storage import Event, Trial, open_storage
from hwnas.train.checkpoint import save_checkpoint

SPACE = get_space("mobile")
# (accuracy, latency_ms): front = a, b, c, d ; e is dominated by b
POINTS = {"a": (0.90, 0.20), "b": (0.95, 0.30), "c": (0.97, 0.45), "d": (0.98, 0.80), "e": (0.93, 0.50)}


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A SQLite run with five COMPLETE trials, each with saved (perturbed, i.e. 'trained') weights."""
    root = tmp_path_factory.mktemp("runs")
    db = f"sqlite:///{root / 'hwnas.db'}"
    storage = open_storage(db)
    run = storage.create_run("picks", get_objectives(["accuracy", "latency_ms"]), {}, {})
    by_name = {}
    for number, (name, (acc, lat)) in enumerate(POINTS.items()):
        arch = SPACE.sample(100 + number)
        torch.manual_seed(number)
        model = SPACE.build(arch)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        weights = save_checkpoint(root / f"{name}.safetensors", arch, model, {"name": name})
        base = dict(run_id=run.id, number=number, arch_id=arch.id, space=arch.space, arch_str=str(arch))
        storage.record_ask(run.id, Event(number, "ask", arch.id, str(arch)), Trial(status="PENDING", **base))
        storage.record_update(Trial(status="COMPLETE", values={"accuracy": acc, "latency_ms": lat},
                                    weights_path=str(weights), created=time.time(), **base))
        by_name[name] = number
    return db, storage.get_run("picks"), by_name


@pytest.mark.parametrize("text,kind,value", [
    ("knee", "knee", None), ("best-accuracy", "best-accuracy", None), ("latency<=0.5", "latency", 0.5),
    ("latency <= 2ms", "latency", 2.0), ("index=0", "index", 0), ("INDEX=3", "index", 3),
])
def test_parse_pick(text, kind, value):
    p = parse_pick(text)
    assert (p.kind, p.value) == (kind, value)


@pytest.mark.parametrize("text", ["best", "latency<0.5", "latency<=-1", "latency<=x", "index=-1", "index=a", ""])
def test_unknown_picks_list_valid_forms(text):
    with pytest.raises(PickError) as err:
        parse_pick(text)
    assert "knee" in str(err.value) or "must be" in str(err.value)


def test_select_on_the_front(stored_run):
    _, run, n = stored_run
    assert [t.number for t in sorted(run.pareto_front(), key=lambda t: t.number)] == [n[k] for k in "abcd"]
    assert select_trial(run, "best-accuracy").number == n["d"]
    assert select_trial(run, "latency<=0.5").number == n["c"]  # e (0.5 ms) is off the front
    assert select_trial(run, "latency<=0.3").number == n["b"]
    assert [select_trial(run, f"index={i}").number for i in range(4)] == [n[k] for k in "abcd"]
    assert select_trial(run, "knee").number == run.knee().number
    with pytest.raises(PickError, match="fastest predicts 0.2 ms"):
        select_trial(run, "latency<=0.1")
    with pytest.raises(PickError, match="index 0..3"):
        select_trial(run, "index=4")


def test_picked_trial_exports_its_trained_weights(stored_run):
    db, run, n = stored_run
    src = source_from_run(db, "picks", "best-accuracy")
    trial = run.trial(n["d"])
    assert src.arch.id == trial.arch_id and src.trained and str(src.weights) == trial.weights_path
    assert src.predicted_ms == 0.80 and src.pick == "best-accuracy" and src.run_id == run.id
    ref = SPACE.build(trial.arch)  # fresh init differs from the stored weights
    x = torch.randn(1, *SPACE.input_shape)
    with torch.no_grad():
        assert not torch.allclose(ref.eval()(x), src.model(x))


def _cli(capsys, *argv):
    rc = main(["export", *argv])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_cli_bad_inputs_give_one_clear_line(stored_run, tmp_path, capsys):
    db, _, _ = stored_run
    out = str(tmp_path / "out")
    cases = [
        (["--run", "picks", "--storage", db, "--pick", "fastest"], "unknown pick 'fastest'; valid forms: knee"),
        (["--run", "nope", "--storage", db, "--pick", "knee"], "run 'nope' not found"),
        (["--run", "picks", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--pick", "knee"], "no run journal at"),
        (["--run", "picks", "--storage", db, "--arch", SPACE.sample(999).text], "is not in run picks"),
        (["--run", "picks", "--storage", db], "exactly one of --pick"),
        (["--pick", "knee", "--space", "mobile"], "--pick needs --run"),
        (["--space", "mobile", "--arch", "k9_e1"], "mobile:mnist archs have 7 positions"),
        (["--space", "mobile", "--arch", SPACE.sample(0).text, "--format", "tflite"], "valid: executorch, litert, onnx, tensorrt"),
        (["--space", "mobile", "--arch", SPACE.sample(0).text, "--weights", str(tmp_path / "x.pt")], "does not exist"),
        (["--run", "picks", "--storage", db, "--pick", "knee", "--recipe", "nope"], "no export recipe 'nope'"),
    ]
    for argv, message in cases:
        rc, err = _cli(capsys, *argv, "--out", out, "--no-measure")
        assert rc == 2, argv
        assert len(err.splitlines()) == 1 and message in err, (argv, err)


def test_weights_of_another_arch_are_refused(stored_run, tmp_path, capsys):
    _, run, n = stored_run
    trial = run.trial(n["a"])
    other = SPACE.sample(5).text
    rc, err = _cli(capsys, "--space", "mobile", "--arch", other, "--weights", trial.weights_path,
                   "--out", str(tmp_path), "--no-measure")
    assert rc == 2 and "pass the matching --arch" in err
    # a torch state dict of another arch
    pt = tmp_path / "w.pt"
    torch.save(SPACE.build(trial.arch).state_dict(), pt)
    rc, err = _cli(capsys, "--space", "mobile", "--arch", other, "--weights", str(pt),
                   "--out", str(tmp_path), "--no-measure")
    assert rc == 2 and "do not fit arch" in err


def test_exporter_registry_refuses_duplicates_and_lists_the_valid_names():
    from hwnas.errors import DuplicateNameError, UnknownNameError
    from hwnas.export import EXPORTERS

    with pytest.raises(DuplicateNameError):
        EXPORTERS.add("onnx", EXPORTERS.get("onnx"))
    with pytest.raises(UnknownNameError, match="valid: " + ", ".join(EXPORTERS.names())):
        EXPORTERS.get("coreml")
