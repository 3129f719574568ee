"""Search engine: determinism, dedupe, constraints before training, failures, recipes, CLI, kill -9 resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwnas.bench import TabularBenchmark
from hwnas.cli import main
from hwnas.execution import InlineExecutor, make_executor
from hwnas.search.constraints import parse_constraint
from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import STRATEGIES, make_strategy
from hwnas.storage import MemoryStorage, open_storage

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"


@pytest.fixture(scope="module")
def bench(bench_csv):
    return TabularBenchmark(bench_csv)


def _ids(bench, strategy, seed, budget=60):
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    run_search(bench, make_strategy(strategy, bench.space, 2, seed), run, budget)
    return [t.arch_id for t in run.trials()], run


_NO_OPTUNA = pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optional extra `peers`")


@pytest.mark.parametrize("strategy", [
    pytest.param(n, marks=_NO_OPTUNA) if n.startswith("optuna-") else n for n in STRATEGIES.names()
])
def test_same_seed_same_run_and_no_duplicate_evaluations(bench, strategy):
    a, run = _ids(bench, strategy, 3)
    b, _ = _ids(bench, strategy, 3)
    c, _ = _ids(bench, strategy, 4)
    assert a == b and a != c
    assert len(a) == len(set(a)) == 60  # each unique arch evaluated once; duplicates don't use budget
    asks = [e for e in run.events() if e.kind == "ask"]
    assert len(asks) >= len(a)


def test_duplicates_are_answered_from_the_cache(bench):
    # nsga2 re-proposes archs of earlier generations; they are told, never re-evaluated
    run = MemoryStorage().create_run("r", bench.objectives, {}, {})
    run_search(bench, make_strategy("nsga2", bench.space, 2, 0, {"population_size": 8}), run, 150)
    asks = [e.arch_id for e in run.events() if e.kind == "ask"]
    trials = [t.arch_id for t in run.trials()]
    assert len(asks) > len(trials) == len(set(trials)) == 150


class CountingExecutor(InlineExecutor):
    def __init__(self):
        super().__init__()
        self.submitted: list[str] = []

    def submit(self, key, job):
        self.submitted.append(key)
        super().submit(key, job)


def test_constraints_filter_before_training_and_weights_are_saved(tmp_path):
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (parse_constraint("latency_ms <= 0.09"),),
                          TABLE, "digits", {"epochs": 1, "data_fraction": 0.02})
    storage = open_storage(f"sqlite:///{tmp_path / 'run.db'}")
    run = storage.create_run("c", problem.objectives, {}, problem.info())
    ex = CountingExecutor()
    run_search(problem, make_strategy("random", problem.space, 2, 1), run, 1, ex)
    trials = run.trials()
    infeasible = [t for t in trials if t.status == "INFEASIBLE"]
    assert infeasible and all("accuracy" not in t.values and t.weights_path is None for t in infeasible)
    assert all(t.values["latency_ms"] > 0.09 and "violates" in t.error for t in infeasible)
    done = run.trials("COMPLETE")
    assert len(done) == 1 and sorted(ex.submitted) == sorted(t.arch_id for t in done)
    for t in done:
        assert t.values["latency_ms"] <= 0.1 and 0 <= t.values["accuracy"] <= 1
        assert Path(t.weights_path) == run.artifact_dir / "weights" / f"{t.arch_id}.safetensors"
        assert Path(t.weights_path).is_file()
    assert run.table_sha256 and run.info["latency_table"]["device"]


def test_failed_candidates_are_recorded_and_a_broken_setup_stops_loudly():
    # every training job raises in the worker process (unknown dataset): each is recorded FAILED, and
    # after 3 alike the search stops with that error (issue 13) instead of finishing with an empty front
    from hwnas.search.runner import SearchFailedError

    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, "no-such-dataset", {"epochs": 1})
    run = MemoryStorage().create_run("f", problem.objectives, {}, {})
    with make_executor("local", workers=1, threads_per_worker=1) as ex:
        with pytest.raises(SearchFailedError, match="first 3 evaluations all failed.*no-such-dataset"):
            run_search(problem, make_strategy("re", problem.space, 2, 0), run, 10, ex)
    assert run.status == "FAILED"
    failed = run.trials("FAILED")
    assert len(failed) == 3 and all("unknown dataset 'no-such-dataset'" in t.error for t in failed)
    assert all(t.values["latency_ms"] > 0 for t in failed)  # cheap values are kept
    assert run.pareto_front() == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


COST_RECIPE = f"""
name: cost
space: mobile:mnist
objectives: [params, latency_ms]
latency_table: {TABLE}
strategy: {{name: re, params: {{population_size: 8, sample_size: 3}}}}
seed: 5
budget: {{budget}}
executor: inline
"""


@pytest.mark.parametrize("body, message", [
    ("space: mobile\nobjectives: [params]\nbogus: 1\n", "unknown key(s) bogus"),
    ("space: mobile\nobjectives: [params]\nstrategy: sideways\n", "unknown strategy 'sideways'; valid: default, "),
    ("space: mobile\nobjectives: [params]\nstrategy: {name: re, params: {pop: 3}}\n", "no parameter(s) pop"),
    ("space: mobile\nobjectives: [params]\nconstraints: ['latency is small']\n", "cannot parse constraint"),
    ("space: mobile\nobjectives: [params]\nconstraints: ['accuracy >= 0.9']\n", "cheap metrics only"),
    ("space: mobile\nobjectives: [params, latency_ms]\n", "needs `latency_table"),
    ("space: mobile\nobjectives: [params]\ntrain: {epoch: 3}\n", "unknown train key(s) epoch"),
    ("space: mobile\nobjectives: [speed]\n", "unknown objective 'speed'"),
])
def test_bad_recipes_give_one_line_errors(tmp_path, capsys, body, message):
    recipe = _write(tmp_path / "bad.yaml", body)
    assert main(["search", str(recipe), "--storage", f"sqlite:///{tmp_path / 'r.db'}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_search_runs_show_json(tmp_path, capsys):
    recipe = _write(tmp_path / "cost.yaml", COST_RECIPE.replace("{budget}", "20"))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["search", str(recipe), "--storage", db, "--name", "c1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["evaluated"] == 20 and out["name"] == "c1" and Path(out["plot"]).is_file()
    assert main(["runs", "--storage", db, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in runs] == ["c1"] and runs[0]["complete"] == 20
    assert main(["show", "c1", "--storage", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"id", "name", "objectives", "config", "info", "pareto_front", "knee", "trials", "counts"} <= set(shown)
    assert len(shown["trials"]) == 20 and shown["pareto_front"]
    t = shown["trials"][0]
    assert {"number", "arch_id", "arch", "status", "values", "weights_path", "error"} <= set(t)
    assert shown["objectives"][0] == {"name": "params", "direction": "min", "kind": "cheap", "unit": "count"}
    assert main(["report", "c1", "--storage", db, "--out", str(tmp_path / "rep.md")]) == 0
    assert "Best-practices checklist" in (tmp_path / "rep.md").read_text()


def _count(db: Path, where: str = "1") -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(f"SELECT COUNT(*) FROM trials WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _search(recipe: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "hwnas", "search", str(recipe), "--storage", f"sqlite:///{db}", "--quiet", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _finished(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db, timeout=5) as con:
        return {r[0]: r[1:] for r in con.execute(
            'SELECT arch_id, finished, "values" FROM trials WHERE status IN (\'COMPLETE\', \'FAILED\')')}


def test_kill_9_and_resume_loses_and_repeats_nothing(tmp_path):
    budget = 100
    recipe = _write(tmp_path / "cost.yaml", COST_RECIPE.replace("{budget}", str(budget)))
    db = tmp_path / "killed.db"
    proc = _search(recipe, db, "--name", "k")
    kills, finished = 0, {}
    for threshold in (15, 50):
        deadline = time.time() + 120
        while _count(db) < threshold and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        finished.update(_finished(db))
        proc = _search(recipe, db, "--resume", "k")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= 1 and finished
    run = open_storage(f"sqlite:///{db}").get_run("k")
    ids = [t.arch_id for t in run.trials()]
    assert len(ids) == len(set(ids))
    assert len(run.trials("COMPLETE")) == budget and run.status == "FINISHED"
    after = _finished(db)
    assert {k: after[k] for k in finished} == finished  # finished before a kill: kept, never evaluated again


def test_a_run_started_with_another_strategy_resumes_with_the_default(tmp_path):
    """Runs whose recipe had no `strategy:` recorded `local` before `default` was the default."""
    from hwnas.errors import ConfigError
    from hwnas.search.recipe import execute_recipe, parse_recipe

    body = {"space": "mobile:mnist", "objectives": ["params", "latency_ms"], "latency_table": str(TABLE),
            "budget": 6, "executor": "inline"}
    url = f"sqlite:///{tmp_path / 'old.db'}"
    execute_recipe(parse_recipe({**body, "strategy": "local"}), url, "old")
    resumed = execute_recipe(parse_recipe({**body, "budget": 12}), url, resume="old").run
    ids = [t.arch_id for t in resumed.trials()]
    assert len(resumed.trials("COMPLETE")) == 12 and len(ids) == len(set(ids))
    with pytest.raises(ConfigError, match="seed differ"):
        execute_recipe(parse_recipe({**body, "seed": 3, "budget": 14}), url, resume="old")


def test_kill_9_during_training_reruns_that_trial_once(tmp_path):
    recipe = _write(tmp_path / "train.yaml", f"""
space: mobile:mnist
objectives: [accuracy, latency_ms]
latency_table: {TABLE}
strategy: random
budget: 3
dataset: digits
train: {{epochs: 1, data_fraction: 0.05}}
executor: inline
""")
    db = tmp_path / "t.db"
    proc = _search(recipe, db, "--name", "t")
    deadline = time.time() + 300
    while _count(db, "status='COMPLETE'") < 1 or _count(db, "status='RUNNING'") < 1:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        running = con.execute("SELECT arch_id FROM trials WHERE status='RUNNING'").fetchone()[0]
    proc = _search(recipe, db, "--resume", "t")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    run = open_storage(f"sqlite:///{db}").get_run("t")
    assert len(run.trials("COMPLETE")) == 3
    assert {t.arch_id: t.attempts for t in run.trials()} [running] == 2
    assert all(t.attempts == 1 for t in run.trials() if t.arch_id != running)
    assert all(Path(t.weights_path).is_file() for t in run.trials())


def test_measured_latency_is_an_expensive_objective(tmp_path):
    from hwnas.search.recipe import execute_recipe, parse_recipe

    recipe = parse_recipe({"space": "mobile:mnist", "objectives": ["params", "measured_latency_ms"],
                           "device": "ort-cpu-1t", "strategy": "random", "budget": 2, "executor": "inline"})
    run = execute_recipe(recipe, f"sqlite:///{tmp_path / 'm.db'}", "m").run
    done = run.trials("COMPLETE")
    assert len(done) == 2
    assert all(t.values["measured_latency_ms"] > 0 and t.weights_path is None for t in done)
    assert all(t.extras["measured_p10_ms"] <= t.extras["measured_p90_ms"] for t in done)
    assert run.info["measure_device"]["spec"] == "ort-cpu-1t"
    with pytest.raises(Exception, match="needs `device: SPEC`"):
        execute_recipe(parse_recipe({"space": "mobile", "objectives": ["measured_latency_ms"]}), "memory://")


def test_nsga2_is_steady_state_with_outstanding_results(bench):
    # three evaluations in flight, results told out of order: NSGA-II always has a proposal
    s = make_strategy("nsga2", bench.space, 2, 0)
    inflight, told = [], 0
    while told < 120:
        while len(inflight) < 3:
            arch = s.ask()
            assert arch is not None
            inflight.append(arch)
        arch = inflight.pop(1 if told % 2 else 0)
        v = bench.cheap(arch)
        s.tell(arch, (-v["accuracy"], v["pi5_onnx_latency_ms"]))
        told += 1
    assert s.algorithm.n_gen > 10


def test_cli_table_override_replaces_the_recipes_table(tmp_path, capsys):
    import shutil

    table = tmp_path / "mine.json"
    shutil.copy(REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json", table)
    recipe = REPO / "search" / "mobile-cost.yaml"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    argv = ["search", str(recipe), "--storage", db, "--budget", "3", "--name", "t", "--json"]
    assert main([*argv, "--table", str(table)]) == 0
    capsys.readouterr()
    assert main(["show", "t", "--storage", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["recipe"]["latency_table"] == shown["info"]["latency_table"]["path"] == str(table.resolve())
    assert main([*argv[:-3], "--name", "u", "--table", str(tmp_path / "missing.json")]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err


def test_recipe_names_a_strategy_or_a_method_never_both():
    from hwnas.errors import HwnasError
    from hwnas.search.recipe import parse_recipe

    base = {"space": "mobile", "objectives": ["params"]}
    with pytest.raises(HwnasError, match="not both"):
        parse_recipe({**base, "strategy": "random", "method": "fbnet"})
    with pytest.raises(HwnasError, match="unknown search method 'nope'"):
        parse_recipe({**base, "method": "nope"})
    with pytest.raises(HwnasError, match=r"unknown distill key\(s\) alpha; valid keys: temperature, weight"):
        parse_recipe({**base, "distill": {"alpha": 1}})
    recipe = parse_recipe({**base, "distill": {"weight": 0.5, "temperature": 2}})
    assert recipe.method is None and recipe.distill == {"weight": 0.5, "temperature": 2.0}


def test_runs_started_in_the_same_second_get_distinct_names(tmp_path, monkeypatch):
    import time as _time

    from hwnas.search.recipe import execute_recipe, parse_recipe

    monkeypatch.setattr(_time, "strftime", lambda fmt, *a: "20260101-000000")  # one frozen second
    recipe = parse_recipe({"space": "mobile", "objectives": ["params"], "strategy": "random", "budget": 1,
                           "executor": "inline"})
    url = f"sqlite:///{tmp_path / 'r.db'}"
    names = [execute_recipe(recipe, url).run.name for _ in range(3)]
    assert names == ["recipe-s0-20260101-000000", "recipe-s0-20260101-000000-2", "recipe-s0-20260101-000000-3"]
