"""LEMONADE: inverse-density sampling, determinism with inherited weights, lineage through kill -9 and
resume, children of a parent without a checkpoint fail while the run goes on, lineage in show/report."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.search.strategies.lemonade import inverse_density_weights
from hwnas.storage import MemoryStorage, open_storage

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
TINY = {"epochs": 1, "data_fraction": 0.08, "batch_size": 32, "device": "cpu"}
PARAMS = {"init_size": 2, "n_pc": 12, "n_ac": 2, "max_operators": 2}


def test_inverse_density_sampling_favours_the_sparse_end_of_a_front():
    # a front crowded at small latency (11 points) with two lonely members at the large end
    lat = np.r_[np.linspace(0.0, 0.1, 11), 0.6, 1.0]
    front = np.c_[lat, 1.0 - lat]
    w = inverse_density_weights(front, front, bandwidth=0.2)
    assert w[-1] > w[-2] > w[:11].max()
    s = make_strategy("lemonade", ArchProblem("mobile", ["params"]).space, 1, seed=0)
    draws = [s._draw(w, 1)[0] for _ in range(3000)]
    sparse_share = sum(d >= 11 for d in draws) / len(draws)
    assert sparse_share > 0.5  # 2 of 13 members (15%) drawn more than half of the time
    picked = s._draw(w, 5)
    assert len(set(picked)) == 5  # acceptance draws without replacement


def _lemonade_run(seed: int, budget: int = 6):
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, "digits", TINY)
    run = MemoryStorage().create_run("l", problem.objectives, {}, {})
    strategy = make_strategy("lemonade", problem.space, 2, seed, {**PARAMS, "child_epochs": 1})
    run_search(problem, strategy, run, budget)
    return run


@pytest.mark.slow  # seed determinism of lemonade's ask/tell is in the default suite (tests/test_search.py)
def test_same_seed_same_run_with_inherited_weights():
    a, b = _lemonade_run(3), _lemonade_run(3)
    rows = lambda run: [(t.arch_id, t.lineage, t.values, t.status) for t in run.trials()]  # noqa: E731
    assert rows(a) == rows(b)
    children = [t for t in a.trials() if t.lineage is not None]
    assert len(children) == 4 and all(t.status == "COMPLETE" for t in children)
    ids = {t.arch_id for t in a.trials()}
    assert all(t.lineage.parent in ids and t.lineage.operators for t in children)
    assert all(t.budget == {"epochs": 1} for t in children)
    assert all(t.budget == {} for t in a.trials() if t.lineage is None)


def test_a_child_whose_parent_checkpoint_is_missing_fails_and_the_run_goes_on(tmp_path):
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, "digits", TINY)
    run = open_storage(f"sqlite:///{tmp_path / 'r.db'}").create_run("m", problem.objectives, {}, {})
    strategy = make_strategy("lemonade", problem.space, 2, 0, {**PARAMS, "init_size": 1, "n_ac": 3})

    def lose_weights(trial):  # the only parent's checkpoint disappears as soon as it is written
        if trial.lineage is None and trial.weights_path:
            Path(trial.weights_path).unlink()

    result = run_search(problem, strategy, run, 4, on_trial=lose_weights)
    assert result.stop_reason == "budget" and result.evaluated == 4
    children = [t for t in run.trials() if t.lineage is not None]
    assert len(children) == 3
    assert all(t.status == "FAILED" and "parent checkpoint missing" in t.error for t in children)
    assert all(t.values["latency_ms"] > 0 for t in children)  # cheap values are kept


def test_tabular_children_need_no_weights(bench_csv):
    # no expensive objective: lineage is recorded and no parent checkpoint is read
    from hwnas.bench import TabularBenchmark

    bench = TabularBenchmark(bench_csv)
    run = MemoryStorage().create_run("t", bench.objectives, {}, {})
    run_search(bench, make_strategy("lemonade", bench.space, 2, 0), run, 40)
    children = [t for t in run.trials() if t.lineage is not None]
    assert len(children) >= 30 and all(t.status == "COMPLETE" for t in children)


RECIPE = f"""
space: mobile:mnist
objectives: [accuracy, latency_ms]
latency_table: {TABLE}
strategy: {{name: lemonade, params: {json.dumps(PARAMS)}}}
distill: {{weight: 0.5, temperature: 2.0}}
budget: 6
dataset: digits
train: {json.dumps(TINY)}
executor: inline
"""


def _count(db: Path, where: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(f"SELECT COUNT(*) FROM trials WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _search(recipe: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "hwnas", "search", str(recipe), "--storage", f"sqlite:///{db}", "--quiet", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def test_kill_9_then_resume_keeps_lineage_and_shows_it(tmp_path, capsys):
    recipe = tmp_path / "lem.yaml"
    recipe.write_text(RECIPE)
    db = tmp_path / "k.db"
    proc = _search(recipe, db, "--name", "k")
    deadline = time.time() + 300
    while _count(db, "lineage IS NOT NULL AND status='COMPLETE'") < 1:  # a child trained, another one started
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r[0]: r[1] for r in sqlite3.connect(db).execute("SELECT arch_id, lineage FROM trials")}
    proc = _search(recipe, db, "--resume", "k")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    run = open_storage(f"sqlite:///{db}").get_run("k")
    trials = run.trials()
    assert len(run.trials("COMPLETE")) == 6 and run.status == "FINISHED"
    after = {t.arch_id: t.lineage for t in trials}
    for arch_id, lineage in before.items():  # lineage written before the kill is unchanged
        assert (json.loads(lineage) if lineage else None) == (after[arch_id].to_dict() if after[arch_id] else None)
    children = [t for t in trials if t.lineage is not None]
    assert len(children) == 4 and all(t.lineage.parent in after for t in children)
    assert all(Path(t.weights_path).is_file() for t in trials)
    url = f"sqlite:///{db}"
    assert main(["show", "k", "--storage", url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    parents = {t["arch_id"]: t["parent"] for t in shown["trials"]}
    assert {k: (v or None) and v["arch_id"] for k, v in parents.items()} == {
        t.arch_id: t.lineage.parent if t.lineage else None for t in trials
    }
    assert main(["show", "k", "--storage", url]) == 0
    text = capsys.readouterr().out
    child = children[0]
    number = {t.arch_id: t.number for t in trials}[child.lineage.parent]
    assert f"#{number} " in text and " ".join(child.lineage.operators) in text
    assert main(["report", "k", "--storage", url, "--out", str(tmp_path / "rep.md")]) == 0
    report = (tmp_path / "rep.md").read_text()
    assert "## Lineage" in report and "n_pc" in report and "distill" in report


def _told(problem, strategy, prop) -> None:
    from hwnas.objectives import minimized

    strategy.tell(prop.arch, minimized(problem.objectives, problem.cheap(prop.arch)))


def test_steady_state_proposes_a_child_whenever_a_worker_frees_up():
    # two workers: while one child trains, the other worker gets the next child at once
    problem = ArchProblem("mobile", ["params", "latency_ms"], (), TABLE)
    s = make_strategy("lemonade", problem.space, 2, 0, {"init_size": 2, "n_pc": 12})
    s.attach(problem.objectives, problem.preview)
    a, b = s.ask(), s.ask()
    assert a.parent is None and b.parent is None
    assert s.ask() is None  # the initial population is training, none of it told: nothing to mutate yet
    _told(problem, s, a)
    c = s.ask()  # b still training: a child of the population as it stands (only a)
    assert c is not None and c.parent == a.arch.id and c.operators
    d = s.ask()  # b and c still training
    assert d is not None and d.parent in (a.arch.id, c.arch.id) and d.arch.id != c.arch.id
    _told(problem, s, c)
    e = s.ask()
    assert e is not None and e.parent is not None


def test_generational_mode_waits_for_each_generation():
    problem = ArchProblem("mobile", ["params", "latency_ms"], (), TABLE)
    s = make_strategy("lemonade", problem.space, 2, 0, {"init_size": 2, "n_pc": 12, "n_ac": 2, "steady": False})
    s.attach(problem.objectives, problem.preview)
    for p in (s.ask(), s.ask()):
        _told(problem, s, p)
    kids = [s.ask(), s.ask()]
    assert all(k.parent is not None for k in kids)
    _told(problem, s, kids[0])
    assert s.ask() is None  # the generation's second child is still training
    _told(problem, s, kids[1])
    assert s.ask().parent is not None


class _SimExecutor:
    """Two simulated workers on a virtual clock: a job's result comes back after a random duration."""

    def __init__(self, workers: int, seed: int) -> None:
        import random

        self.workers, self.rng, self.now, self.busy = workers, random.Random(seed), 0.0, 0.0
        self.running: list[tuple[float, str, object]] = []

    @property
    def pending(self) -> int:
        return len(self.running)

    def has_capacity(self) -> bool:
        return self.pending < self.workers

    def submit(self, key, job) -> None:
        duration = self.rng.uniform(1.0, 3.0)
        self.busy += duration
        self.running.append((self.now + duration, key, job()))

    def wait(self):
        from hwnas.execution.base import Outcome

        self.running.sort(key=lambda r: r[0])
        end, key, result = self.running.pop(0)
        self.now = end
        return [Outcome(key, result)]


class _SimProblem(ArchProblem):
    """mobile:mnist with the real cheap objectives and a made-up accuracy instead of training."""

    def expensive_job(self, arch, parent=None, budget=None):
        acc = (hash(arch.id) % 1000) / 1000
        return lambda: {"values": {"accuracy": acc}, "weights": b"w"}


def _simulated_utilization(steady: bool, seed: int) -> float:
    problem = _SimProblem("mobile", ["accuracy", "latency_ms"], (), TABLE)
    run = MemoryStorage().create_run("u", problem.objectives, {}, {})
    ex = _SimExecutor(2, seed)
    strategy = make_strategy("lemonade", problem.space, 2, seed, {"steady": steady, "n_pc": 16})
    run_search(problem, strategy, run, 46, executor=ex)  # 6 initial + 5 generations of 8
    assert len(run.trials("COMPLETE")) == 46
    return ex.busy / (2 * ex.now)


def test_steady_state_keeps_both_workers_busy_where_generations_idle_one():
    steady = [_simulated_utilization(True, s) for s in range(3)]
    gen = [_simulated_utilization(False, s) for s in range(3)]
    assert min(steady) >= 0.95  # idle only while the last job of the budget runs alone
    assert all(s > g for s, g in zip(steady, gen))


def _operator_counts(params: dict, children: int) -> list[int]:
    """Operators per child over `children` children of a steady-state run told cheap objectives only."""
    problem = ArchProblem("mobile", ["params", "latency_ms"], (), TABLE)
    s = make_strategy("lemonade", problem.space, 2, 0, {"init_size": 2, "n_pc": 12, **params})
    s.attach(problem.objectives, problem.preview)
    counts = []
    while len(counts) < children:
        p = s.ask()
        if p.parent is not None:
            counts.append(len(p.operators))
        _told(problem, s, p)
    return counts


def test_max_operators_1_gives_exactly_one_operator_per_child():
    assert _operator_counts({"max_operators": 1}, children=6) == [1] * 6


def test_max_operators_above_1_gives_children_with_several_operators():
    counts = _operator_counts({"max_operators": 3}, children=10)
    assert set(counts) <= {1, 2, 3} and max(counts) > 1
    space = ArchProblem("mobile", ["params"]).space
    assert make_strategy("lemonade", space, 1, 0).params()["max_operators"] == 3  # default 1..3, docs/lemonade.md
