"""Successive halving over epochs (train.halving_rung): HV per CPU-second with and without, same proposals.

Usage: python benchmarks/halving_effect.py --data X.npz|digits|mnist5k [--budget 8] [--epochs 3] [--rung 1]
       [--margin 0.02] [--seeds 1] [--strategy random] [--json]
Each (seed, variant) is one inline search in this process (1 worker, `mobile:mnist`, objectives accuracy
and table latency, the shipped ORT table); `random` proposes the same archs with or without halving, so
the difference is only how long dominated candidates train. CPU seconds are this process's
(time.process_time) around each search. HV of (-accuracy, latency_ms) over the joint front of all runs,
reference 1.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas import api  # noqa: E402
from hwnas.pareto import hypervolume, non_dominated_mask  # noqa: E402

TABLE = ROOT / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"


def one(data: str, strategy: str, seed: int, train: dict, budget: int, storage: str) -> dict:
    """One inline search: its (-accuracy, latency) points, CPU seconds and trained epochs."""
    cpu = time.process_time()
    run = api.search("mobile:mnist", ["accuracy", "latency_ms"], data=data, latency_table=str(TABLE),
                     strategy=strategy, budget=budget, seed=seed, train=train, storage=storage,
                     name=f"h-{seed}-{train.get('halving_rung', 0)}-{time.time_ns()}")
    cpu = time.process_time() - cpu
    done = run.trials("COMPLETE")
    return {"points": [(-t.values["accuracy"], t.values["latency_ms"]) for t in done], "cpu_s": cpu,
            "epochs": sum(int(t.extras.get("epochs", 0)) for t in done),
            "halved": sum(bool(t.extras.get("halved")) for t in done)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rung", type=int, default=1)
    p.add_argument("--margin", type=float, default=0.02)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--strategy", default="random")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    base = {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "device": "cpu"}
    variants = {"full": base, "halving": {**base, "halving_rung": args.rung, "halving_margin": args.margin}}
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/runs.db"
        runs = {v: [one(args.data, args.strategy, s, t, args.budget, storage) for s in range(args.seeds)]
                for v, t in variants.items()}
    every = np.array([q for rs in runs.values() for r in rs for q in r["points"]], float).reshape(-1, 2)
    joint = every[non_dominated_mask(every)]
    lo, hi = joint.min(0), joint.max(0)
    out = {"data": args.data, "strategy": args.strategy, "budget": args.budget, "epochs": args.epochs,
           "rung": args.rung, "margin": args.margin, "seeds": args.seeds, "variants": {}}
    for v, rs in runs.items():
        hv = [hypervolume(r["points"], lo, hi) for r in rs]
        out["variants"][v] = {
            "hv": [round(h, 4) for h in hv], "cpu_s": [round(r["cpu_s"], 1) for r in rs],
            "hv_per_cpu_ks": [round(1000 * h / r["cpu_s"], 3) for h, r in zip(hv, rs)],
            "epochs_trained": [r["epochs"] for r in rs], "halved": [r["halved"] for r in rs]}
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
