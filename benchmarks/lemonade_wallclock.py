"""Equal wall-clock: hypervolume of (val accuracy, table latency) over time for lemonade vs nsga2, re, random.

Usage: python benchmarks/lemonade_wallclock.py [--recipe search/lemonade-mnist.yaml] [--seconds 600] [--seeds 3]
       [--strategies lemonade,nsga2,re,random] [--workers 2] [--out lemonade_wallclock] [--data-fraction F]
`lemonade-generational` is the recipe with `steady: false` (a generation waits for its slowest child).
Each (strategy, seed) runs `hwnas search RECIPE` (same recipe, dataset, training and workers; baselines
with `--strategy S`, i.e. their default parameters, each candidate trained from scratch at the recipe's
epochs) with an unlimited evaluation budget, and is stopped with SIGKILL after `--seconds` of wall clock
(the journal keeps every finished trial). HV(t) uses the COMPLETE trials finished by time t after launch,
objectives (-accuracy, latency_ms) normalised by the ideal/nadir of the joint front of all runs
(reference 1.1). Writes OUT.json (per strategy: median [q25, q75] HV at each time, best accuracy on
each run's front, worker utilisation: busy seconds of trials / (workers x seconds from the first
trial to the kill), see engines_compare.utilization) and OUT.png (median HV over time with the quartile band). Runs are sequential, so
every run has the machine to itself (on a shared machine, others' load still adds noise).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from engines_compare import utilization  # noqa: E402  (this folder is on sys.path when run as a script)

from hwnas.pareto import hypervolume, non_dominated_mask
from hwnas.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]


def variant(recipe: str, out: Path, steady: bool, data_fraction: float | None) -> str:
    """The recipe with lemonade's `steady` set (and `train.data_fraction`), written under `out`."""
    import yaml

    r = yaml.safe_load(Path(recipe).read_text())
    if r.get("latency_table"):
        r["latency_table"] = str((Path(recipe).parent / r["latency_table"]).resolve())
    r["strategy"]["params"] = {**r["strategy"].get("params", {}), "steady": steady}
    if data_fraction is not None:
        r["train"] = {**r.get("train", {}), "data_fraction": data_fraction}
    path = out / f"recipe-{'steady' if steady else 'generational'}.yaml"
    path.write_text(yaml.safe_dump(r))
    return str(path)


def launch(recipe: str, db: Path, name: str, strategy: str, seed: int, workers: int, seconds: float) -> float:
    """Run one search for `seconds` of wall clock, then SIGKILL its process group; returns the launch time
    (a baseline `strategy` replaces the recipe's; "recipe" keeps it)."""
    argv = [sys.executable, "-m", "hwnas", "search", recipe, "--storage", f"sqlite:///{db}", "--name", name,
            "--seed", str(seed), "--budget", "100000", "--workers", str(workers), "--quiet"]
    if strategy != "recipe":
        argv += ["--strategy", strategy]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the search and its worker processes
        proc.wait()
    return start


def points(run, start: float) -> list[tuple[float, float, float]]:
    """(seconds after launch, -accuracy, latency_ms) of each COMPLETE trial."""
    return [(t.finished - start, -t.values["accuracy"], t.values["latency_ms"]) for t in run.trials("COMPLETE")]


def _plot(out: Path, grid: np.ndarray, result: dict, title: str) -> None:
    """OUT/hv_over_time.png: median HV over time with the quartile band, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, r in result["strategies"].items():
        ax.plot(grid, r["hv_median"], label=s)
        ax.fill_between(grid, r["hv_q25"], r["hv_q75"], alpha=0.2)
    ax.set_xlabel("wall clock (s)")
    ax.set_ylabel("HV (accuracy, table latency)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hv_over_time.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "search" / "lemonade-mnist.yaml"))
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--strategies", default="lemonade,nsga2,re,random")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="lemonade_wallclock")
    p.add_argument("--steps", type=int, default=30, help="time points of the HV curve")
    p.add_argument("--data-fraction", type=float, help="replace the recipe's train.data_fraction (faster trials)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "runs.db"
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    traces: dict[str, list[list[tuple[float, float, float]]]] = {s: [] for s in strategies}
    busy: dict[str, list[float]] = {s: [] for s in strategies}
    recipes = {s: variant(args.recipe, out, s == "lemonade", args.data_fraction)
               for s in ("lemonade", "lemonade-generational")}
    for seed in range(args.seeds):
        for s in strategies:
            name = f"{s}-s{seed}-{int(time.time())}"
            lem = s in recipes
            start = launch(recipes.get(s, recipes["lemonade"]), db, name, "recipe" if lem else s, seed, args.workers,
                           args.seconds)
            run = open_storage(f"sqlite:///{db}").get_run(name)
            traces[s].append(points(run, start))
            busy[s].append(round(utilization(run.trials(), args.workers, start + args.seconds), 3))
            print(f"{name}: {len(traces[s][-1])} complete, utilization {busy[s][-1]}", file=sys.stderr)
    every = np.array([q[1:] for runs in traces.values() for r in runs for q in r], float).reshape(-1, 2)
    joint = every[non_dominated_mask(every)] if len(every) else every
    lo, hi = (joint.min(0), joint.max(0)) if len(joint) else (np.zeros(2), np.ones(2))
    grid = np.linspace(0, args.seconds, args.steps + 1)[1:]
    result: dict = {"recipe": args.recipe, "seconds": args.seconds, "seeds": args.seeds, "workers": args.workers,
                    "normalization": "joint front of all runs, reference 1.1", "time_s": grid.round(1).tolist(),
                    "strategies": {}}
    for s, runs in traces.items():
        hv = np.array([[hypervolume([q[1:] for q in r if q[0] <= t], lo, hi) if any(q[0] <= t for q in r) else 0.0
                        for t in grid] for r in runs])
        best = [max((-q[1] for q in r), default=0.0) for r in runs]
        result["strategies"][s] = {
            "hv_median": np.median(hv, 0).round(4).tolist(), "hv_q25": np.percentile(hv, 25, 0).round(4).tolist(),
            "hv_q75": np.percentile(hv, 75, 0).round(4).tolist(), "final_hv": hv[:, -1].round(4).tolist(),
            "best_accuracy": best, "evaluated": [len(r) for r in runs], "utilization": busy[s],
        }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    _plot(out, grid, result, f"{Path(args.recipe).name}: median of {args.seeds} seed(s), {args.workers} workers")
    summary = {s: {"final_hv_median": float(np.median(r["final_hv"])), "best_accuracy_median":
                   float(np.median(r["best_accuracy"])), "evaluated": r["evaluated"],
                   "utilization_median": float(np.median(r["utilization"]))}
               for s, r in result["strategies"].items()}
    print(json.dumps({"out": str(out), "seconds": args.seconds, "seeds": args.seeds, "summary": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
