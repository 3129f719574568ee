"""A recipe's strategy against random search at equal budget, real evaluations (e.g. MNIST training).

Usage: python benchmarks/bench_recipe_vs_random.py search/mnist-mobile.yaml [--seeds 3] [--budget 24]
Runs the recipe as written and with `strategy: random` for seeds 0..N-1 (an in-memory journal each), then
scores every run by the HV of its COMPLETE trials, objectives normalized by the ideal and nadir of the
joint front of all runs (reference 1.1), and prints per-seed values and medians. Writes --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.pareto import hypervolume, non_dominated_mask
from hwnas.search.recipe import execute_recipe, load_recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, help="override the recipe's budget")
    p.add_argument("--workers", type=int, help="override the recipe's executor workers")
    p.add_argument("--out", default="bench_recipe_vs_random.json")
    args = p.parse_args(argv)
    recipe = load_recipe(args.recipe)
    executor = {**recipe.executor, **({"workers": args.workers} if args.workers else {})}
    recipe = recipe.with_overrides(budget=args.budget, executor=executor)
    fronts: dict[str, list[np.ndarray]] = {recipe.strategy: [], "random": []}
    walls: dict[str, list[float]] = {recipe.strategy: [], "random": []}
    for seed in range(args.seeds):
        for name, params in ((recipe.strategy, recipe.strategy_params), ("random", {})):
            start = time.perf_counter()
            r = recipe.with_overrides(seed=seed, strategy=name, strategy_params=params)
            run = execute_recipe(r, "memory://", run_name=f"{name}-{seed}").run
            F = np.array([run.minimized(t) for t in run.trials("COMPLETE")], float).reshape(-1, len(run.objectives))
            fronts[name].append(F)
            walls[name].append(time.perf_counter() - start)
            print(f"seed {seed} {name}: {len(F)} complete trials, {walls[name][-1]:.0f} s", flush=True)
    U = np.vstack([F for fs in fronts.values() for F in fs])
    J = U[non_dominated_mask(U)]
    lo, hi = J.min(axis=0), J.max(axis=0)
    hv = {name: [float(hypervolume(F, lo, hi)) for F in fs] for name, fs in fronts.items()}
    out = {"recipe": args.recipe, "budget": recipe.budget, "seeds": args.seeds, "hv": hv,
           "median": {k: float(np.median(v)) for k, v in hv.items()}, "wall_s": walls,
           "normalization": "ideal/nadir of the joint front of all runs, reference 1.1"}
    Path(args.out).write_text(json.dumps(out, indent=2))
    for k, v in hv.items():
        print(f"{k:<10} HV per seed {', '.join(f'{x:.4f}' for x in v)}  median {np.median(v):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
