"""The report's comparison to random search: simulated only when every objective is cheap."""

from __future__ import annotations

from hwnas.objectives import get_objectives
from hwnas.report import compare_runs, run_report
from hwnas.storage import MemoryStorage


def test_expensive_objectives_still_need_a_baseline_run():
    run = MemoryStorage().create_run("r", get_objectives(["accuracy", "params"]), {"recipe": {"space": "mobile"}}, {})
    assert "error" in compare_runs(run)
    assert "- [ ] **Comparison to random search**: not run (objectives need training)" in run_report(run)
