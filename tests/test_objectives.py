"""Objectives compute themselves: a new one is one definition, and the problem loads what it needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import ConfigError
from hwnas.latency import LatencyTable
from hwnas.objectives import OBJECTIVES, Objective
from hwnas.search.constraints import parse_constraint
from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.spaces import get_space
from hwnas.storage import MemoryStorage

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
# the worked example of a new objective: energy per inference at a nominal 2 W, from the table's latency
ENERGY = Objective("energy_mj", "min", "cheap", "mJ", "predicted latency x 2 W",
                   compute=lambda c: 2.0 * c.latency.predict_ms(c.arch), needs=("latency_table",))


def test_a_new_objective_is_one_definition_the_search_evaluates():
    problem = ArchProblem("mobile:mnist", (ENERGY, OBJECTIVES.get("params")), (), TABLE)
    run = MemoryStorage().create_run("e", problem.objectives, {}, problem.info())
    run_search(problem, make_strategy("random", problem.space, 2, 0), run, 4)
    table = LatencyTable.load(TABLE)
    done = run.trials("COMPLETE")
    assert len(done) == 4 and len({t.values["energy_mj"] for t in done}) == 4
    for t in done:
        assert t.values["energy_mj"] == pytest.approx(2.0 * table.predict_ms(t.arch), rel=1e-12)
    assert run.info["latency_table"]["sha256"] == table.sha256  # loaded because energy_mj needs it
    with pytest.raises(ConfigError, match="energy_mj needs `latency_table: PATH`"):
        ArchProblem("mobile:mnist", (ENERGY,))


def test_a_constrained_metric_is_computed_even_when_not_an_objective():
    table = LatencyTable.load(TABLE)
    space = get_space("mobile:mnist")
    bound = float(np.median(table.predict_many_ms([space.sample(s) for s in range(20)])))
    problem = ArchProblem(space, ["params"], (parse_constraint(f"latency_ms <= {bound}"),), TABLE)
    run = MemoryStorage().create_run("c", problem.objectives, {}, {})
    run_search(problem, make_strategy("random", problem.space, 1, 3), run, 4)
    trials = run.trials()
    assert {t.status for t in trials} == {"COMPLETE", "INFEASIBLE"}, "the bound should split the sample"
    for t in trials:
        assert t.values["latency_ms"] == pytest.approx(table.predict_ms(t.arch), rel=1e-12)
        assert (t.values["latency_ms"] <= bound) == (t.status == "COMPLETE")


def test_an_objective_without_a_computation_is_refused_up_front():
    with pytest.raises(ConfigError, match="'score' has no computation.*evaluate"):
        ArchProblem("mobile:mnist", ["params", Objective("score", "max", "expensive")])
    with pytest.raises(ConfigError, match="'guess' has no computation"):
        ArchProblem("mobile:mnist", (Objective("guess", "min", "cheap"),))
    with pytest.raises(ConfigError, match="needs 'power' is not one of"):
        Objective("energy_j", needs=("power",))
