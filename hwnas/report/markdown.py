"""Markdown run report with the NAS best-practices checklist (Lindauer & Hutter 2020)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hwnas.pareto import hypervolume, non_dominated_mask


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def compare_runs(run, baseline=None, seeds: int = 5) -> dict[str, Any]:
    """HV of both runs' COMPLETE trials, normalized by the ideal/nadir of their joint front (ref 1.1).

    Without a baseline run, when every objective of the run is cheap (no training, e.g. params vs table
    latency), random search is simulated on the run's own recipe for `seeds` seeds at the run's budget
    and the median of their HVs is the baseline; otherwise the result is an error entry.
    """
    names = [o.name for o in run.objectives]
    F = np.array([run.minimized(t) for t in run.trials("COMPLETE")], float).reshape(-1, len(names))
    if baseline is None:
        recipe = (run.config or {}).get("recipe")
        if not recipe or any(o.kind != "cheap" for o in run.objectives):
            return {"error": "no baseline run, and the objectives are not all cheap to simulate one"}
        from hwnas.search.recipe import build, parse_recipe
        from hwnas.search.runner import run_search
        from hwnas.storage import MemoryStorage

        sims = []
        for seed in range(seeds):
            r = parse_recipe({**recipe, "strategy": {"name": "random", "params": {}}, "seed": seed,
                              "executor": {"name": "inline"}}, "the run's recipe")
            problem, strategy = build(r)
            sim = MemoryStorage().create_run(f"random-{seed}", problem.objectives, {}, {})
            run_search(problem, strategy, sim, r.budget)
            sims.append(np.array([sim.minimized(t) for t in sim.trials("COMPLETE")], float).reshape(-1, len(names)))
        if not len(F) or not all(len(B) for B in sims):
            return {"error": "a run has no COMPLETE trials"}
        U = np.vstack([F, *sims])
        J = U[non_dominated_mask(U)]
        lo, hi = J.min(axis=0), J.max(axis=0)
        return {
            "baseline": f"simulated random search ({seeds} seeds, median)", "baseline_strategy": "random",
            "hv": hypervolume(F, lo, hi), "baseline_hv": float(np.median([hypervolume(B, lo, hi) for B in sims])),
            "trials": len(F), "baseline_trials": int(np.median([len(B) for B in sims])),
        }
    if [o.name for o in baseline.objectives] != names:
        return {"error": f"baseline {baseline.name} has different objectives"}
    B = np.array([baseline.minimized(t) for t in baseline.trials("COMPLETE")], float).reshape(-1, len(names))
    if not len(F) or not len(B):
        return {"error": "a run has no COMPLETE trials"}
    U = np.vstack([F, B])
    J = U[non_dominated_mask(U)]
    lo, hi = J.min(axis=0), J.max(axis=0)
    return {
        "baseline": baseline.name, "baseline_strategy": (baseline.info.get("strategy") or {}).get("name"),
        "hv": hypervolume(F, lo, hi), "baseline_hv": hypervolume(B, lo, hi),
        "trials": len(F), "baseline_trials": len(B),
    }


def run_report(run, baseline=None, plot: str | None = None) -> str:
    """The markdown report of a run (optionally vs a baseline run, e.g. random search)."""
    info = run.info
    recipe = (run.config or {}).get("recipe", {})
    trials = run.trials()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    eval_s = sum(float(t.extras.get("eval_wall_s", 0.0)) for t in trials)
    front = run.pareto_front()
    knee = run.knee()
    strategy = info.get("strategy", {})
    lines = [f"# Run report: {run.name}", "", f"Run id `{run.id}`, status {run.status}.", ""]
    if recipe.get("description"):
        lines += [recipe["description"], ""]
    lines += ["## Pareto front", ""]
    names = [o.name for o in run.objectives]
    lines.append("| # | arch | " + " | ".join(names) + " | weights |")
    lines.append("|---|---|" + "---|" * len(names) + "---|")
    for t in front:
        mark = " (knee)" if knee is not None and t.number == knee.number else ""
        vals = " | ".join(_fmt(t.values.get(n)) for n in names)
        lines.append(f"| {t.number}{mark} | `{t.arch_str}` | {vals} | {'yes' if t.weights_path else 'no'} |")
    if plot:
        lines += ["", f"![Pareto front]({plot})"]
    lines += ["", "## Trials", "", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none", ""]
    failed = [t for t in trials if t.status == "FAILED"]
    for t in failed[:10]:
        lines.append(f"- FAILED #{t.number} `{t.arch_str}`: {t.error}")
    cmp = compare_runs(run, baseline)
    versions = info.get("versions", {})
    host = info.get("host", {})
    table = info.get("latency_table") or {}
    lines += ["", "## Best-practices checklist", ""]
    check = [
        ("Code", f"hwnas git commit `{info.get('git_commit') or 'unknown'}`; recipe below"),
        ("Search seed", f"{recipe.get('seed')} (same seed, same run)"),
        ("Training seed", f"{(recipe.get('train') or {}).get('seed', 0)}"),
        ("Strategy and hyperparameters", f"{strategy.get('name')} {json.dumps(strategy.get('params', {}))}"),
        ("Training protocol", f"dataset {recipe.get('dataset')}, {json.dumps(recipe.get('train', {}))}; "
                              "objective accuracy = validation accuracy, test accuracy reported only"),
        ("Search space", f"{recipe.get('space')}"),
        ("Objectives / constraints", f"{', '.join(f'{o.name} ({o.direction})' for o in run.objectives)}; "
                                     f"constraints: {', '.join(recipe.get('constraints') or []) or 'none'}"),
        ("Budget", f"{recipe.get('budget')} evaluations; evaluated {counts.get('COMPLETE', 0) + counts.get('FAILED', 0)}"
                   f", infeasible (not trained) {counts.get('INFEASIBLE', 0)}"),
        ("Hardware", f"{host.get('system', '?')}, {host.get('cpus', '?')} CPUs; executor "
                     f"{json.dumps(info.get('executor', {}))}"),
        ("Latency table", f"{table.get('path')} sha256 {table.get('sha256')} device "
                          f"{(table.get('device') or {}).get('name')}" if table else "none"),
        ("Measurement device", json.dumps(info["measure_device"]) if info.get("measure_device")
         else "none (no measured objective)"),
        ("Library versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("Wall time", f"search {info.get('search_wall_s', '?')} s in total (driver, incl. waiting), "
                      f"evaluation {eval_s:.1f} s summed over trials"),
        ("Comparison to random search",
         f"HV {cmp['hv']:.4f} vs {cmp['baseline_hv']:.4f} for {cmp['baseline']} "
         f"({cmp['baseline_strategy']}, {cmp['baseline_trials']} trials; joint-front normalization, ref 1.1)"
         if cmp and "hv" in cmp else
         "not run (objectives need training): start the same recipe with `--strategy random --name BASE` and "
         "pass `--baseline BASE`"),
    ]
    for title, text in check:
        lines.append(f"- [{'x' if 'unknown' not in text and 'not run' not in text else ' '}] **{title}**: {text}")
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    return "\n".join(lines)
