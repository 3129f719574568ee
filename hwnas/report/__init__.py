"""Run reports: markdown with the NAS best-practices checklist, Pareto plots, comparison to random search."""

from hwnas.report.markdown import compare_runs, run_report
from hwnas.report.plots import plot_pareto

__all__ = ["compare_runs", "plot_pareto", "run_report"]
