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
        from hwnas.execution import InlineExecutor
        from hwnas.search.recipe import build, parse_recipe
        from hwnas.storage import MemoryStorage

        sims = []
        for seed in range(seeds):
            r = parse_recipe({**recipe, "strategy": {"name": "random", "params": {}}, "method": None, "seed": seed,
                              "executor": {"name": "inline"}}, "the run's recipe")
            problem, searcher = build(r)
            sim = MemoryStorage().create_run(f"random-{seed}", problem.objectives, {}, {})
            searcher.search(sim, InlineExecutor(), resume=False)
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


def lineage_lines(trials) -> list[str]:
    """One line per child trial: `#child <- #parent operators (exact|approximate)`."""
    number = {t.arch_id: t.number for t in trials}
    return [
        f"#{t.number} <- #{number.get(t.lineage.parent, t.lineage.parent)} {' '.join(t.lineage.operators)} "
        f"({'exact' if t.lineage.exact else 'approximate'}) {t.status}"
        for t in trials if t.lineage is not None
    ]


def _dnas_section(run, dnas: dict[str, Any], out_dir) -> list[str]:
    """A fbnet run: per target its search cost and derived archs, and the choice-probability heatmap
    (written to `out_dir`, default the run's folder, and linked by file name)."""
    from pathlib import Path

    from hwnas.report.plots import plot_choice_heatmap

    lines = ["", "## DNAS (fbnet) sweep", "",
             f"{len(dnas['targets'])} targets, supernet search {dnas.get('supernet_wall_s')} s wall in total "
             f"(warm-up shared); {dnas.get('retrain', '')}.", "",
             "| target | search s (CPU s) | derived | cost | warnings |", "|---|---|---|---|---|"]
    folder = Path(out_dir) if out_dir is not None else run.artifact_dir
    images = []
    for i, t in enumerate(dnas["targets"]):
        name = t["cost"]
        derived = "<br>".join(f"{d['kind']} `{d['arch']}`" for d in t["derived"])
        costs = "<br>".join(_fmt(d[name]) for d in t["derived"])
        knob = ", ".join(f"{k}={_fmt(v)}" for k, v in t["target"].items())
        lines.append(f"| {knob} | {t['search_s']} ({t['search_cpu_s']}) | {derived} | {costs} | "
                     f"{len(t['warnings'])} |")
        if folder is not None and t.get("history"):
            img = plot_choice_heatmap(dnas["layers"], t["history"], Path(folder) / f"dnas-heatmap-{i}.png",
                                      f"{run.name} target {knob}: choice probabilities over epochs")
            images.append(f"![target {knob}]({img.name})")
    warned = sorted({w for t in dnas["targets"] for w in t["warnings"]})
    if warned:
        lines += ["", "Warnings: " + "; ".join(warned[:6])]
    if images:
        lines += ["", "Choice probabilities of every layer over epochs (rows: candidates), one figure per target:", ""]
        lines += images
    return lines


def _front_section(run, plot: str | None) -> list[str]:
    """The Pareto front table (knee marked) and the plot link."""
    knee = run.knee()
    names = [o.name for o in run.objectives]
    lines = ["## Pareto front", "", "| # | arch | " + " | ".join(names) + " | weights |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for t in run.pareto_front():
        mark = " (knee)" if knee is not None and t.number == knee.number else ""
        vals = " | ".join(_fmt(t.values.get(n)) for n in names)
        lines.append(f"| {t.number}{mark} | `{t.arch_str}` | {vals} | {'yes' if t.weights_path else 'no'} |")
    return lines + (["", f"![Pareto front]({plot})"] if plot else [])


def _trials_section(trials, counts: dict[str, int], lineage: list[str]) -> list[str]:
    """Status counts, the first failures and the lineage of morphism children."""
    lines = ["", "## Trials", "", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none", ""]
    lines += [f"- FAILED #{t.number} `{t.arch_str}`: {t.error}" for t in trials if t.status == "FAILED"][:10]
    if lineage:
        lines += ["", "## Lineage", "", "Children made by network morphisms from a parent trial (weights inherited):", ""]
        lines += [f"- {line}" for line in lineage]
    return lines


def _checklist(run, baseline, trials, counts: dict[str, int], lineage: list[str]) -> list[tuple[str, str]]:
    """(title, text) of each item of the NAS best-practices checklist."""
    info, recipe = run.info, (run.config or {}).get("recipe", {})
    strategy, host, table = info.get("strategy", {}), info.get("host", {}), info.get("latency_table") or {}
    eval_s = sum(float(t.extras.get("eval_wall_s", 0.0)) for t in trials)
    cmp = compare_runs(run, baseline)
    return [
        ("Code", f"hwnas git commit `{info.get('git_commit') or 'unknown'}`; recipe below"),
        ("Search seed", f"{recipe.get('seed')} (same seed, same run)"),
        ("Training seed", f"{(recipe.get('train') or {}).get('seed', 0)}"),
        ("Strategy and hyperparameters", f"{strategy.get('name')} {json.dumps(strategy.get('params', {}))}"),
        ("Weight inheritance",
         f"{len(lineage)} children inherit morphed parent weights "
         f"({sum(t.lineage.exact for t in trials if t.lineage)} exact); approximate ones distill from the parent: "
         f"distill {json.dumps(recipe.get('distill') or {})}" if lineage else "none (every trial trained from scratch)"),
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
        ("Library versions", ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())),
        ("Wall time", f"search {info.get('search_wall_s', '?')} s in total (driver, incl. waiting), "
                      f"evaluation {eval_s:.1f} s summed over trials"),
        ("Comparison to random search",
         f"HV {cmp['hv']:.4f} vs {cmp['baseline_hv']:.4f} for {cmp['baseline']} "
         f"({cmp['baseline_strategy']}, {cmp['baseline_trials']} trials; joint-front normalization, ref 1.1)"
         if cmp and "hv" in cmp else
         "not run (objectives need training): start the same recipe with `--strategy random --name BASE` and "
         "pass `--baseline BASE`"),
    ]


def run_report(run, baseline=None, plot: str | None = None, out_dir=None) -> str:
    """The markdown report of a run (optionally vs a baseline run, e.g. random search).

    `out_dir`: where the report goes (extra figures such as DNAS heatmaps are written there;
    default the run's folder)."""
    recipe = (run.config or {}).get("recipe", {})
    trials = run.trials()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    lineage = lineage_lines(trials)
    lines = [f"# Run report: {run.name}", "", f"Run id `{run.id}`, status {run.status}.", ""]
    if recipe.get("description"):
        lines += [recipe["description"], ""]
    lines += _front_section(run, plot)
    if run.info.get("dnas"):
        lines += _dnas_section(run, run.info["dnas"], out_dir)
    lines += _trials_section(trials, counts, lineage)
    lines += ["", "## Best-practices checklist", ""]
    for title, text in _checklist(run, baseline, trials, counts, lineage):
        lines.append(f"- [{'x' if 'unknown' not in text and 'not run' not in text else ' '}] **{title}**: {text}")
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    return "\n".join(lines)
