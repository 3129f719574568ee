"""Strategy comparison on a tabular benchmark: normalized HV over queries, medians/quartiles over seeds.

Normalized HV = HV(found front) / HV(true front of the table), both computed by pymoo after mapping
each objective to [0, 1] with the ideal and nadir of the table's true front, reference point
(1.1, 1.1) (see `hwnas.pareto`). A query is one proposal (one `ask`, one Optuna trial): a duplicate
proposal is answered from the cache but counts as a query, the same for every strategy and peer;
the number of unique archs among the queries is reported next to the HV.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.bench.tabular import TabularBenchmark
from hwnas.pareto import hypervolume
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.storage import MemoryStorage

DEFAULT_CHECKPOINTS = (25, 50, 100, 300)


@dataclass(frozen=True)
class StrategyCurve:
    """HV after each query (1..budget) for every seed of one strategy."""

    strategy: str
    seeds: tuple[int, ...]
    hv: np.ndarray  # (n_seeds, budget)
    wall_s: float
    unique: np.ndarray | None = None  # (n_seeds,) unique archs among the `budget` queries


def hv_curve(bench: TabularBenchmark, F: np.ndarray) -> np.ndarray:
    """Normalized HV after each of the rows of F (minimized values in query order)."""
    T = bench.true_front
    ideal, nadir = T.min(axis=0), T.max(axis=0)
    full = hypervolume(T, ideal, nadir)
    out = np.zeros(len(F))
    last, front = 0.0, np.zeros((0, F.shape[1]))
    for i, f in enumerate(F):
        if not np.all(np.isfinite(f)):  # a failed query adds nothing
            out[i] = last
            continue
        if not len(front) or not np.any(np.all(front <= f, axis=1)):  # f is not weakly dominated
            keep = ~np.all(f <= front, axis=1)
            front = np.vstack([front[keep], f])
            last = hypervolume(front, ideal, nadir) / full
        out[i] = last
    return out


def run_one(
    bench: TabularBenchmark, strategy: str, seed: int, budget: int, params: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, int]:
    """HV curve over the first `budget` queries of one strategy/seed (padded with the last value if it
    stops early) and the number of unique archs among them."""
    storage = MemoryStorage()
    run = storage.create_run(f"{strategy}-{seed}", bench.objectives, {}, {})
    strat = make_strategy(strategy, bench.space, len(bench.objectives), seed, params)
    run_search(bench, strat, run, budget)
    trials = {t.arch_id: t for t in run.trials()}
    asked = [ev.arch_id for ev in run.events() if ev.kind == "ask"][:budget]
    F = np.array([run.minimized(trials[a]) if trials[a].status == "COMPLETE" else (np.inf, np.inf) for a in asked],
                 dtype=float).reshape(len(asked), 2)
    curve = hv_curve(bench, F)
    if len(curve) < budget:
        curve = np.concatenate([curve, np.full(budget - len(curve), curve[-1] if len(curve) else 0.0)])
    return curve, len(set(asked))


def compare(
    bench: TabularBenchmark, strategies: Sequence[str], budget: int, seeds: Sequence[int],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[StrategyCurve]:
    out = []
    for name in strategies:
        start = time.perf_counter()
        runs = [run_one(bench, name, s, budget, (params or {}).get(name)) for s in seeds]
        hv = np.array([c for c, _ in runs])
        unique = np.array([u for _, u in runs])
        out.append(StrategyCurve(name, tuple(seeds), hv, time.perf_counter() - start, unique))
    return out


def summarize(
    curves: Sequence[StrategyCurve], checkpoints: Sequence[int] = DEFAULT_CHECKPOINTS, baseline: str = "random"
) -> list[dict[str, Any]]:
    """Per strategy and checkpoint: median, quartiles, and the Mann-Whitney p-value vs `baseline`."""
    from scipy.stats import mannwhitneyu

    base = next((c for c in curves if c.strategy == baseline), None)
    rows = []
    for c in curves:
        row: dict[str, Any] = {"strategy": c.strategy, "seeds": len(c.seeds), "wall_s": round(c.wall_s, 2), "hv": {}}
        if c.unique is not None:
            row["unique_archs_median"] = float(np.median(c.unique))
        for b in checkpoints:
            if b > c.hv.shape[1]:
                continue
            x = c.hv[:, b - 1]
            entry = {
                "median": float(np.median(x)), "q25": float(np.quantile(x, 0.25)),
                "q75": float(np.quantile(x, 0.75)),
            }
            if base is not None and c is not base and len(x) > 1:
                y = base.hv[:, b - 1]
                p = mannwhitneyu(x, y, alternative="two-sided").pvalue if np.ptp(np.r_[x, y]) > 0 else 1.0
                entry["p_vs_" + baseline] = float(p)
            row["hv"][str(b)] = entry
        rows.append(row)
    return rows


def plot_curves(curves: Sequence[StrategyCurve], path: str, title: str = "") -> str:
    """Median normalized HV over queries with the interquartile band, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in curves:
        q = np.arange(1, c.hv.shape[1] + 1)
        ax.plot(q, np.median(c.hv, axis=0), label=c.strategy)
        ax.fill_between(q, np.quantile(c.hv, 0.25, axis=0), np.quantile(c.hv, 0.75, axis=0), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("queries (proposals, duplicates included)")
    ax.set_ylabel("normalized hypervolume")
    ax.set_ylim(max(0.0, min(float(np.median(c.hv[:, min(9, c.hv.shape[1] - 1)])) for c in curves) - 0.05), 1.002)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "HV over queries (median, IQR over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
