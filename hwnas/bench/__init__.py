"""Tabular benchmark of search strategies: HV-over-queries curves, medians over seeds, tests vs random."""

from hwnas.bench.compare import DEFAULT_CHECKPOINTS, compare, hv_curve, plot_curves, run_one, summarize
from hwnas.bench.tabular import TabularBenchmark

__all__ = ["DEFAULT_CHECKPOINTS", "TabularBenchmark", "compare", "hv_curve", "plot_curves", "run_one", "summarize"]
