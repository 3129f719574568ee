"""examples/*.py run end to end with --small (a fresh process each, in an empty folder).

own_npz and own_evaluate are `slow` (about 12 s CPU each): the default suite covers their paths in
test_readme_examples (own .npz -> search -> export) and test_api (evaluate callable -> weights -> export)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("script", "expect"), [
    pytest.param("own_npz.py", "exported", marks=pytest.mark.slow),
    pytest.param("own_evaluate.py", "exported with trained weights: True", marks=pytest.mark.slow),
    ("custom_space.py", "report:"),
])
def test_example_runs_small(script, expect, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "examples" / script), "--small", "--out", str(tmp_path / "o")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert expect in done.stdout
