"""Ray executor on a local 2-CPU cluster: trials run as Ray tasks, the user's data crosses the object
store once, failures are recorded. (Two nodes without a shared disk: tests/test_ray_multinode.py.)"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from hwnas.errors import ConfigError
from hwnas.execution import make_executor
from hwnas.search.problem import ArchProblem, Parent, TrainJob
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.storage import open_storage
from hwnas.train import load_dataset

ray = pytest.importorskip("ray", reason="install the ray extra: pip install 'hwnas[ray]'")
REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"


def test_train_job_payloads_are_its_loaded_data_and_parent_weights():
    own = load_dataset("digits")
    job = TrainJob("mobile", "k3_e3", own, {"epochs": 1}, parent=Parent(b"weights", ("op",), True))
    payloads = job.payloads()
    assert payloads["dataset"] is own and payloads["parent"] == b"weights"
    light = job.with_payloads({name: None for name in payloads})
    assert light.dataset is None and light.parent.checkpoint is None and light.parent.operators == ("op",)
    assert light.with_payloads(payloads) == job
    assert TrainJob("mobile", "k3_e3", "digits", {}).payloads() == {}  # built-in data loads on each node


def test_measuring_jobs_carry_the_loaded_device_spec_not_its_path(tmp_path):
    import pickle

    from hwnas.devices import load_device

    spec_file = tmp_path / "my-cpu.yaml"
    spec_file.write_text((REPO / "devices" / "ort-cpu-1t.yaml").read_text())
    problem = ArchProblem("mobile", ["accuracy", "measured_latency_ms"], (), dataset="digits", device=str(spec_file))
    job = problem.expensive_job(problem.space.sample(0))
    spec_file.unlink()  # a worker on another machine has no such file
    assert pickle.loads(pickle.dumps(job)).device == load_device(REPO / "devices" / "ort-cpu-1t.yaml")


def test_executor_options_are_checked_per_executor():
    with pytest.raises(ConfigError, match="executor local has no option.*address"):
        make_executor("local", address="10.0.0.1:6379")
    with pytest.raises(ConfigError, match="executor ray has no option.*threads_per_worker"):
        make_executor("ray", threads_per_worker=2)


def test_ray_local_cluster_ships_own_data_once_and_runs_trials_as_tasks(tmp_path):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    own = replace(load_dataset("digits"), name="own")
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, own, {"epochs": 1, "data_fraction": 0.02})
    storage = open_storage(f"sqlite:///{tmp_path / 'ray.db'}")
    run = storage.create_run("ray", problem.objectives, {}, problem.info())
    with make_executor("ray", num_cpus=2) as ex:
        assert ex.workers == 2
        result = run_search(problem, make_strategy("re", problem.space, 2, 0), run, 3, ex)
        shipped = ex.shipped_bytes
    assert result.evaluated == 3
    done = run.trials("COMPLETE")
    assert len(done) == 3 and all(Path(t.weights_path).is_file() for t in done)
    # one put for three jobs; each worker process fetched it at most once (2 workers, 3 trials)
    fetched = [t.extras["ray_fetched_mb"] for t in done if t.extras["ray_fetched_mb"] > 0]
    assert own.x_train.nbytes < shipped < 2 * (own.x_train.nbytes + own.x_val.nbytes + own.x_test.nbytes)
    assert 1 <= len(fetched) <= 2 and all(mb * 1e6 == pytest.approx(shipped, rel=1e-3) for mb in fetched)
    assert not ray.is_initialized()  # the executor shut down the cluster it started
