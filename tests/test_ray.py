"""Ray executor on a local 2-CPU cluster: trials run as Ray tasks, failures are recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.storage import open_storage

ray = pytest.importorskip("ray", reason="install the ray extra: pip install 'hwnas[ray]'")
TABLE = Path(__file__).resolve().parents[1] / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"


def test_ray_local_cluster_runs_trials_as_tasks(tmp_path):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from hwnas.execution import make_executor

    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, "digits",
                          {"epochs": 1, "data_fraction": 0.02})
    storage = open_storage(f"sqlite:///{tmp_path / 'ray.db'}")
    run = storage.create_run("ray", problem.objectives, {}, problem.info())
    with make_executor("ray", num_cpus=2) as ex:
        assert ex.workers == 2
        result = run_search(problem, make_strategy("re", problem.space, 2, 0), run, 3, ex)
    assert result.evaluated == 3
    done = run.trials("COMPLETE")
    assert len(done) == 3 and all(Path(t.weights_path).is_file() for t in done)
    assert not ray.is_initialized()  # the executor shut down the cluster it started
