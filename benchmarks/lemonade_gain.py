"""Lamarckian gain: a morphism child trained 1 epoch from its parent's weights vs the same arch 1 epoch from scratch.

Usage: python benchmarks/lemonade_gain.py [--parents 5] [--children 4] [--dataset mnist5k] [--parent-epochs 2]
       [--workers 2] [--seed 0] [--json]
Parents are random small `mobile:mnist` archs trained from scratch; children are made exactly as the
`lemonade` strategy makes them (1..3 random operators, 30% approximate), trained through the same
`TrainJob` a search uses (approximate children distil from the parent: weight 0.5, T 2). Reports the
median val-accuracy difference (inherited - scratch) over parents x children pairs, with quartiles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from hwnas.execution import make_executor
from hwnas.search.problem import Parent, TrainJob
from hwnas.search.strategies import make_strategy
from hwnas.spaces import get_space

SPACE = "mobile:mnist"


def _run(executor, jobs: dict[str, TrainJob]) -> dict[str, dict]:
    for key, job in jobs.items():
        executor.submit(key, job)
    out: dict[str, dict] = {}
    while len(out) < len(jobs):
        for o in executor.wait():
            if o.error:
                raise RuntimeError(f"{o.key}: {o.error}")
            out[o.key] = o.result
    return out


def measure(parents: int, children: int, dataset: str, parent_epochs: int, workers: int, seed: int) -> dict:
    space = get_space(SPACE)
    strategy = make_strategy("lemonade", space, 2, seed)  # its child-making code and RNG
    train = {"epochs": parent_epochs, "batch_size": 64, "lr": 0.05, "seed": 0, "device": "cpu"}
    archs = [space.sample(strategy.rng) for _ in range(8 * parents)]
    from hwnas.metrics import count_params

    archs = sorted(archs, key=lambda a: count_params(space.build(a)))[:parents]  # small, like an init population
    start = time.perf_counter()
    with make_executor("local", workers=workers, threads_per_worker=1) as ex:
        trained = _run(ex, {a.id: TrainJob(SPACE, str(a), dataset, train, keep_weights=True) for a in archs})
        pairs, jobs = [], {}
        for a in archs:
            for j in range(children):
                child, ops = strategy._mutate(a)
                exact = strategy.morphisms.is_exact(ops)
                parent = Parent(trained[a.id]["weights"], tuple(ops), exact)
                one = {**train, "epochs": 1}
                jobs[f"inh{a.id}{j}"] = TrainJob(SPACE, str(child), dataset, one, parent=parent,
                                                 distill={"weight": 0.5, "temperature": 2.0})
                jobs[f"scr{a.id}{j}"] = TrainJob(SPACE, str(child), dataset, one)
                pairs.append((a, child, ops, exact, f"inh{a.id}{j}", f"scr{a.id}{j}"))
        res = _run(ex, jobs)
    rows = [{
        "parent": str(a), "parent_acc": trained[a.id]["values"]["accuracy"], "child": str(c), "operators": ops,
        "exact": exact, "inherited_acc": res[i]["values"]["accuracy"], "scratch_acc": res[s]["values"]["accuracy"],
    } for a, c, ops, exact, i, s in pairs]
    diff = np.array([r["inherited_acc"] - r["scratch_acc"] for r in rows])
    q25, q75 = np.percentile(diff, [25, 75])
    return {
        "space": SPACE, "dataset": dataset, "pairs": len(rows), "parent_epochs": parent_epochs, "child_epochs": 1,
        "median_gain": float(statistics.median(diff)), "q25": float(q25), "q75": float(q75),
        "share_positive": float((diff > 0).mean()),
        "median_gain_exact": float(np.median([d for d, r in zip(diff, rows) if r["exact"]] or [np.nan])),
        "median_gain_approx": float(np.median([d for d, r in zip(diff, rows) if not r["exact"]] or [np.nan])),
        "wall_s": round(time.perf_counter() - start, 1), "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parents", type=int, default=5)
    p.add_argument("--children", type=int, default=4)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--parent-epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = measure(args.parents, args.children, args.dataset, args.parent_epochs, args.workers, args.seed)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['pairs']} pairs on {out['dataset']}: median gain {out['median_gain']:+.4f} "
              f"[{out['q25']:+.4f}, {out['q75']:+.4f}], positive in {out['share_positive']:.0%} "
              f"(exact {out['median_gain_exact']:+.4f}, approximate {out['median_gain_approx']:+.4f}), {out['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
