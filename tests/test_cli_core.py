"""The foundation CLI commands: JSON formats and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hwnas.cli import main
from hwnas.spaces import get_space


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_spaces_lists_every_preset(capsys):
    rows = run_json(capsys, "spaces")
    for r in rows:  # each row describes the space its spec resolves to
        space = get_space(r["spec"])
        assert (r["positions"], r["size"], r["input_shape"]) == (len(space.choices), space.size(),
                                                                 list(space.input_shape))
    families = [r["spec"].split(":")[0] for r in rows]
    assert sorted(f for f, r in zip(families, rows) if r["default"]) == sorted(set(families))  # one default each


def test_sample_is_seeded_and_parseable(capsys):
    first = run_json(capsys, "sample", "nb201", "--n", "4", "--seed", "7")
    again = run_json(capsys, "sample", "nb201", "--n", "4", "--seed", "7")
    other = run_json(capsys, "sample", "nb201", "--n", "4", "--seed", "8")
    assert first == again and first != other
    space = get_space("nb201")
    assert [space.parse(r["arch"]).id for r in first] == [r["id"] for r in first]


def test_cost_json_has_units(capsys):
    arch = str(get_space("mobile").sample(0))
    data = run_json(capsys, "cost", "mobile", arch)
    assert set(data) >= {"params", "macs", "flops", "activation_bytes", "uncounted_ops"}
    assert data["flops"] == 2 * data["macs"] > 0
    assert data["activation_bytes"] > 0 and data["params"] > 0


def test_train_json_reports_accuracy(capsys):
    arch = str(get_space("mobile").sample(1))
    data = run_json(capsys, "train", "mobile", arch, "--dataset", "digits", "--epochs", "1")
    assert 0.0 <= data["test_accuracy"] <= 1.0 and data["dataset"] == "digits"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["cost", "resnet", "x"], "unknown search space 'resnet'; valid: mobile, nb201"),
        (["cost", "nb201", "|oops|"], "expected NAS-Bench-201 form"),
        (["train", "mobile", "k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1-k3_e1", "--dataset", "imagenet"],
         "unknown dataset 'imagenet'; valid: digits, mnist5k"),
    ],
)
def test_bad_input_exits_nonzero_with_one_clear_line(argv, fragment):
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas", *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
