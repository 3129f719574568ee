"""Generalisation of search strategies over tasks (shipped NB201 tables) and their 7 cost columns (each vs accuracy).

Usage:
  python benchmarks/bench_generalisation.py [--strategies default,random,optuna-tpe] [--seeds 20] [--jobs 2]
  python benchmarks/bench_generalisation.py --loto benchmarks/generalisation_grid.json   # + leave-one-task-out
  python benchmarks/bench_generalisation.py --tasks cifar100 --loco benchmarks/generalisation_grid.json  # + LOCO

`--tasks` names shipped tables (benchmarks/tables/nb201-hw360-TASK.csv) or NAME=PATH; every column of every
task is one problem, keyed TASK:COLUMN. `--loto GRID` runs every parameter set of the grid for `--strategy`,
then for each task picks the set with the best mean score over the *other* tasks' columns and reports it on
the held-out task as "STRATEGY (LOTO)": nothing is tuned on the task it is reported on.

Protocol (the one of `hwnas bench`): a query is one proposal (duplicates count), normalized HV at
25/50/100/300 queries, median and quartiles over seeds 0..N-1 (`--first-seed F`: F..F+N-1). `--loco GRID` also runs every parameter
set of the grid for `--strategy` on every column, then for each column picks the set with the best
mean median HV (over the other 6 columns and the 4 checkpoints) and reports the held-out column with
it as "STRATEGY (LOCO)": nothing is tuned on the column it is reported on. Timing: wall and summed
CPU seconds of all columns x seeds per strategy. Writes --out (JSON) and the markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread per job:
    os.environ.setdefault(_var, "1")  # --jobs processes with multi-threaded BLAS each oversubscribe the cores

import numpy as np  # noqa: E402

from hwnas.bench import TabularBenchmark, run_one  # noqa: E402
from hwnas.search.strategies import STRATEGIES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "benchmarks" / "tables"
COLUMNS = (
    "pi5_litert_latency_ms", "pi5_onnx_latency_ms", "pi5_torchmobile_latency_ms", "pixel_litert_latency_ms",
    "pi5_litert_energy_mj", "pi5_onnx_energy_mj", "pi5_torchmobile_energy_mj",
)
CHECKPOINTS = (25, 50, 100, 300)
_BENCHES: dict[str, TabularBenchmark] = {}


def _tables(spec: str) -> dict[str, str]:
    """TASK -> CSV path from `cifar100,darcy` or `name=path,...`."""
    out = {}
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        name, _, path = item.partition("=")
        out[name] = path or str(TABLES / f"nb201-hw360-{name}.csv")
    return out


def held_out(tuned: list[dict], problems: list[str], pick_on, budget: int) -> tuple[dict, dict]:
    """For each problem i: the tuned run with the best mean score over the problems `pick_on(i)`, and its stats."""
    chosen, stats_ = {}, {}
    for i, prob in enumerate(problems):
        others = pick_on(i)
        scores = [np.mean([score(r["hv"][j], budget) for j in others]) for r in tuned]
        best = tuned[int(np.argmax(scores))]
        chosen[prob] = best["params"]
        stats_[prob] = stats(best["hv"][i], best["unique"][i], budget)
    return chosen, stats_


def _task(args: tuple[str, str, int, int, dict]) -> tuple[np.ndarray, int, float]:
    column, strategy, seed, budget, params = args
    start = time.process_time()
    curve, unique = run_one(_BENCHES[column], strategy, seed, budget, params or None)
    return curve, unique, time.process_time() - start


def run_grid(configs: list[tuple[str, dict]], columns, seeds: int, budget: int, jobs: int, first_seed: int = 0) -> list[dict]:
    """For each (strategy, params): HV curves (columns x seeds x budget), unique archs, wall and CPU seconds."""
    out = []
    ctx = mp.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for strategy, params in configs:
            tasks = [(c, strategy, s, budget, params) for c in columns for s in range(first_seed, first_seed + seeds)]
            start = time.perf_counter()
            res = pool.map(_task, tasks, chunksize=1)
            wall = time.perf_counter() - start
            hv = np.array([r[0] for r in res]).reshape(len(columns), seeds, budget)
            unique = np.array([r[1] for r in res]).reshape(len(columns), seeds)
            out.append({"strategy": strategy, "params": params, "hv": hv, "unique": unique, "wall_s": wall,
                        "cpu_s": float(sum(r[2] for r in res))})
    return out


def stats(hv: np.ndarray, unique: np.ndarray, budget: int) -> dict:
    """Median and quartiles over seeds at each checkpoint (hv: seeds x budget)."""
    row = {str(b): {"median": float(np.median(hv[:, b - 1])), "q25": float(np.quantile(hv[:, b - 1], 0.25)),
                    "q75": float(np.quantile(hv[:, b - 1], 0.75))} for b in CHECKPOINTS if b <= budget}
    return {"hv": row, "unique_archs_median": float(np.median(unique))}


def score(hv: np.ndarray, budget: int) -> float:
    """Mean over checkpoints of the median HV over seeds (hv: seeds x budget)."""
    return float(np.mean([np.median(hv[:, b - 1]) for b in CHECKPOINTS if b <= budget]))


def medians(hv: np.ndarray, budget: int) -> dict[str, float]:
    """Median HV over seeds at each checkpoint (hv: seeds x budget)."""
    return {str(b): float(np.median(hv[:, b - 1])) for b in CHECKPOINTS if b <= budget}


def markdown(table: dict[str, dict[str, dict]], budget: int) -> str:
    """One row per column and strategy: median [q25, q75] HV at each checkpoint, median unique archs."""
    cps = [str(b) for b in CHECKPOINTS if b <= budget]
    lines = ["| task:cost column | strategy | " + " | ".join(f"HV@{b}" for b in cps) + " | unique archs |",
             "|---|---|" + "---|" * (len(cps) + 1)]
    for col, per in table.items():
        for name, st in per.items():
            cells = [f"{st['hv'][b]['median']:.4f} [{st['hv'][b]['q25']:.3f}, {st['hv'][b]['q75']:.3f}]" for b in cps]
            lines.append(f"| {col} | {name} | " + " | ".join(cells) + f" | {st['unique_archs_median']:.0f} |")
    return "\n".join(lines)


def _add_held_out(result: dict, table: dict, tuned: list[dict], problems: list[str], args) -> None:
    """Rows "STRATEGY (LOTO)" (picked on the other tasks) or "(LOCO)" (on the task's other columns)."""
    task_of = [p.split(":")[0] for p in problems]
    if args.loto:
        label = "LOTO"
        pick_on = lambda i: [j for j in range(len(problems)) if task_of[j] != task_of[i]]  # noqa: E731
    else:
        label = "LOCO"
        pick_on = lambda i: [j for j in range(len(problems)) if task_of[j] == task_of[i] and j != i]  # noqa: E731
    chosen, held = held_out(tuned, problems, pick_on, args.budget)
    for prob, st in held.items():
        table[prob][f"{args.strategy} ({label})"] = st
    result.update(grid=[r["params"] for r in tuned], chosen=chosen, grid_scores=[
        {"params": r["params"], "score_per_problem": {c: score(r["hv"][i], args.budget) for i, c in enumerate(problems)},
         "median_hv_per_problem": {c: medians(r["hv"][i], args.budget) for i, c in enumerate(problems)},
         "wall_s": round(r["wall_s"], 1), "cpu_s": round(r["cpu_s"], 1)} for r in tuned])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="cifar100,darcy", help="shipped task names or NAME=CSV, comma-separated")
    p.add_argument("--strategies", default="default,random,optuna-tpe")
    p.add_argument("--params", default="{}", help='JSON params per strategy, e.g. {"default": {"kappa": 1}}')
    p.add_argument("--loto", help="JSON list of parameter sets of --strategy to choose from per held-out task")
    p.add_argument("--loco", help="JSON list of parameter sets of --strategy to choose from per held-out column")
    p.add_argument("--strategy", default="surrogate", help="the strategy whose parameters --loto/--loco choose")
    p.add_argument("--columns", default=",".join(COLUMNS))
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1 (e.g. 10: held out from 0-9)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="bench_generalisation.json")
    args = p.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    tables = _tables(args.tasks)
    start = time.perf_counter()
    problems = [f"{t}:{c}" for t in tables for c in columns]
    for t, path in tables.items():
        for c in columns:
            _BENCHES[f"{t}:{c}"] = TabularBenchmark(path, "accuracy", c)
    result: dict = {"tables": tables, "columns": columns, "seeds": args.seeds, "first_seed": args.first_seed,
                    "budget": args.budget,
                    "protocol": "query = one proposal (duplicates count); normalized HV as in `hwnas bench`",
                    "load_s": round(time.perf_counter() - start, 2)}
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    params = json.loads(args.params)
    grid = json.loads(Path(args.loto or args.loco).read_text()) if (args.loto or args.loco) else []
    fixed_cfg = [(s, params.get(s, {})) for s in names]
    same = {i: grid.index(p) for i, (s, p) in enumerate(fixed_cfg)  # e.g. `default` = the grid's {} entry
            if STRATEGIES.get(s) is STRATEGIES.get(args.strategy) and p in grid}
    todo = [c for i, c in enumerate(fixed_cfg) if i not in same] + [(args.strategy, g) for g in grid]
    runs = run_grid(todo, problems, args.seeds, args.budget, args.jobs, args.first_seed)
    tuned = runs[len(todo) - len(grid):]
    rest = iter(runs[:len(todo) - len(grid)])
    fixed = [{**tuned[same[i]], "strategy": s} if i in same else next(rest) for i, (s, _) in enumerate(fixed_cfg)]
    table = {prob: {r["strategy"]: stats(r["hv"][i], r["unique"][i], args.budget) for r in fixed}
             for i, prob in enumerate(problems)}
    result.update(params=params, timing={r["strategy"]: {"wall_s": round(r["wall_s"], 1), "cpu_s": round(r["cpu_s"], 1)}
                                         for r in fixed})
    if tuned:
        _add_held_out(result, table, tuned, problems, args)
    result["results"] = table
    md = markdown(result["results"], args.budget)
    result["markdown"] = md
    Path(args.out).write_text(json.dumps(result, indent=2))
    Path(args.out).with_suffix(".md").write_text(md + "\n")
    print(md)
    print("timing (all problems x seeds, --jobs processes):", json.dumps(result["timing"]))
    if "chosen" in result:
        print("chosen per held-out problem:", json.dumps(result["chosen"]))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
