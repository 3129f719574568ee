"""FBNet sweep benchmark: does the latency target steer the derived archs, what does it cost, and how does
its front compare with NSGA-II (and LEMONADE where registered) at equal wall-clock on the same recipe?

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/dnas_sweep.py --json                 # sweep only
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/dnas_sweep.py --json --compare --seeds 0 1 2
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/dnas_sweep.py --json --search-only --seeds 0 1 2

`--search-only` runs the supernets and derives archs (no retraining, no journal run): the argmax claim.
`--finetune` also trains every unique derived arch at the recipe's `train` fidelity twice, from scratch
and from its supernet path's weights (`derive_init: supernet`), and compares the fronts per CPU-second.

Prints {"targets", "latency_ms" (per target the median table latency of its K sampled archs: FBNet derives
archs by sampling the trained distribution), "argmax_latency_ms", "spearman_target_latency" (on latency_ms),
"search_s" (supernet wall, all targets), "search_cpu_s", ...}; with --compare the HV (joint-front
normalisation, `hwnas.report.compare_runs`) of the fbnet run vs each baseline strategy run for the same
wall-clock time, per seed and the median with min/max. FBNet's anchor: 216 GPU-hours per search
(Wu et al., CVPR 2019, Table 3 / Sec. 4.1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FBNET_GPU_HOURS = 216


class _Stop(Exception):
    pass


def run_fbnet(recipe, storage: str, name: str) -> dict:
    from hwnas.search.recipe import execute_recipe

    start = time.perf_counter()
    res = execute_recipe(recipe, storage, run_name=name)
    wall = time.perf_counter() - start
    return {"run": res.run, "wall_s": wall, **summarise(res.run.info["dnas"])}


def run_supernets(recipe) -> dict:
    """The supernet searches and derived archs of a recipe, without retraining them (the argmax claim)."""
    from hwnas.search.recipe import build

    _, searcher = build(recipe)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnas-sweep-") as tmp:
        targets = searcher.supernets(Path(tmp))
    wall = time.perf_counter() - start
    return {"run": None, "wall_s": wall, **summarise({"targets": targets, "supernet_wall_s": round(wall, 2)})}


def finetune_vs_scratch(recipe) -> dict:
    """One supernet sweep; each unique derived arch trained from scratch and from the supernet: val
    accuracy, training CPU-s and the HV of (1 - accuracy, latency) per init (joint normalisation)."""
    import dataclasses

    import torch

    from hwnas.pareto import hypervolume
    from hwnas.search.recipe import build
    from hwnas.train import TrainConfig
    from hwnas.train.trainer import train_arch

    recipe = dataclasses.replace(recipe, method_params={**recipe.method_params, "derive_init": "supernet"})
    problem, searcher = build(recipe)
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="dnas-sweep-") as tmp:
        targets = searcher.supernets(Path(tmp))
    supernet_cpu = time.process_time() - cpu0
    space, cost, config = problem.space, searcher._cost(), TrainConfig(**{**recipe.train, "device": "cpu"})
    archs = {d["arch_id"]: space.parse(d["arch"]) for t in targets for d in t["derived"]}
    from hwnas.train.checkpoint import load_checkpoint_bytes

    rows = []
    for arch_id, arch in archs.items():
        lat = cost.of(space.encode(arch))
        for init in ("scratch", "supernet"):
            model = load_checkpoint_bytes(searcher.starts[arch_id])[1] if init == "supernet" else None
            torch.manual_seed(config.seed)
            c0 = time.process_time()
            _, res = train_arch(arch, problem.dataset, config, model=model)
            rows.append({"arch_id": arch_id, "init": init, "latency_ms": lat, "val_accuracy": res.val_accuracy,
                         "train_cpu_s": round(time.process_time() - c0, 2)})
    inits = ("scratch", "supernet")
    pts = {i: [(1 - r["val_accuracy"], r["latency_ms"]) for r in rows if r["init"] == i] for i in inits}
    both = [p for v in pts.values() for p in v]
    ideal = [min(p[k] for p in both) for k in (0, 1)]
    nadir = [max(p[k] for p in both) for k in (0, 1)]
    out = {"supernet_cpu_s": round(supernet_cpu, 1), "archs": len(archs), "rows": rows}
    for i, v in pts.items():
        cpu = supernet_cpu + sum(r["train_cpu_s"] for r in rows if r["init"] == i)
        out[i] = {"hv": hypervolume(v, ideal, nadir), "cpu_s": round(cpu, 1),
                  "median_val_accuracy": statistics.median(r["val_accuracy"] for r in rows if r["init"] == i)}
        out[i]["hv_per_cpu_s"] = out[i]["hv"] / cpu
    return out


def within(argmax: list[float], targets: list[float], fastest: float, tol: float = 0.15) -> list[bool | None]:
    """Per budget: is the argmax within +-tol of it (None where the budget is below the fastest arch)."""
    return [None if t < fastest else abs(a - t) <= tol * t for a, t in zip(argmax, targets)]


def summarise(dnas: dict) -> dict:
    from scipy.stats import spearmanr

    targets = [t["knob"] for t in dnas["targets"]]
    name_ = dnas["targets"][0]["cost"]
    argmax = [next(d[name_] for d in t["derived"] if d["kind"] == "argmax") for t in dnas["targets"]]
    samples = [statistics.median([d[name_] for d in t["derived"] if d["kind"] == "sample"] or [float("nan")])
               for t in dnas["targets"]]
    rho_a = spearmanr(targets, argmax).statistic if len(set(argmax)) > 1 else 0.0
    rho_s = spearmanr(targets, samples).statistic if len(set(samples)) > 1 else 0.0
    # FBNet derives archs by sampling the trained distribution: latency_ms is the samples' median
    mode = [t["mode"][name_] if "mode" in t else float("nan") for t in dnas["targets"]]
    rho_m = spearmanr(targets, mode).statistic if len(set(mode)) > 1 else 0.0
    return {
        "targets": targets, "latency_ms": samples, "argmax_latency_ms": argmax,
        "decode": dnas["targets"][0].get("decode", "mode"), "mode_latency_ms": mode,
        "spearman_target_latency": float(rho_s), "spearman_target_argmax_latency": float(rho_a),
        "spearman_target_mode_latency": float(rho_m),
        "search_s": dnas["supernet_wall_s"],
        # the shared warm-up counted once: first target's total + the others' own epochs
        "search_cpu_s": round(dnas["targets"][0]["search_cpu_s"]
                              + sum(t.get("own_search_cpu_s", t["search_cpu_s"]) for t in dnas["targets"][1:]), 1),
        "per_target_search_s": [t["search_s"] for t in dnas["targets"]],
        "expected_latency_ms": [t["history"][-1]["expected_cost"] for t in dnas["targets"]],
    }


def run_baseline(recipe, strategy: str, storage: str, name: str, wall_s: float):
    """The same recipe with an ask/tell strategy, stopped once `wall_s` seconds have passed."""
    import dataclasses

    from hwnas.search.recipe import execute_recipe

    recipe = dataclasses.replace(recipe, strategy=strategy, strategy_params={}, budget=1000, method=None,
                                 method_params={})
    start = time.perf_counter()

    def stop(trial):
        if time.perf_counter() - start > wall_s:
            raise _Stop

    try:
        execute_recipe(recipe, storage, run_name=name, on_trial=stop)
    except _Stop:
        pass
    from hwnas.storage import open_storage

    return open_storage(storage).get_run(name)


def fastest_ms(recipe) -> float:
    """The table latency of the recipe space's fastest arch (budgets below it are unreachable)."""
    from hwnas.search.recipe import build

    _, searcher = build(recipe)
    cost = searcher._cost()
    return cost.of(cost.fastest())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(REPO / "search" / "fbnet-mnist.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--compare", action="store_true", help="also run nsga2 (and lemonade) for the same wall time")
    p.add_argument("--finetune", action="store_true", help="derived archs from scratch vs from supernet weights")
    p.add_argument("--search-only", action="store_true", help="supernets and derived archs only, no retraining")
    p.add_argument("--storage", help="sqlite path (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from hwnas.report import compare_runs
    from hwnas.search.recipe import load_recipe
    from hwnas.search.strategies import STRATEGIES

    base = load_recipe(args.recipe)
    tmp = tempfile.mkdtemp(prefix="dnas-sweep-")
    storage = f"sqlite:///{args.storage or Path(tmp) / 'bench.db'}"
    baselines = [s for s in ("nsga2", "lemonade") if s in STRATEGIES]
    seeds = []
    if args.finetune:
        rows = [{"seed": s, **finetune_vs_scratch(base.with_overrides(seed=s))} for s in args.seeds]
        print(json.dumps(rows, indent=1, default=float))
        return 0
    for seed in args.seeds:
        recipe = base.with_overrides(seed=seed)
        if args.search_only:
            fb = run_supernets(recipe)
        else:
            fb = run_fbnet(recipe, storage, f"fbnet-s{seed}-{int(time.time())}")
        row = {k: v for k, v in fb.items() if k != "run"}
        row["seed"] = seed
        if fb["targets"] and recipe.method_params.get("loss", "budget") == "budget":
            row["argmax_within_15pct"] = within(fb["argmax_latency_ms"], fb["targets"], fastest_ms(recipe))
        if args.compare and not args.search_only:
            for strat in baselines:
                other = run_baseline(recipe, strat, storage, f"{strat}-s{seed}-{int(time.time())}", fb["wall_s"])
                cmp = compare_runs(fb["run"], other)
                row[f"hv_vs_{strat}"] = {"fbnet": cmp.get("hv"), strat: cmp.get("baseline_hv"),
                                         "fbnet_trials": cmp.get("trials"), f"{strat}_trials": cmp.get("baseline_trials")}
        seeds.append(row)
    first = seeds[0]
    out = {
        "recipe": str(Path(args.recipe).name), "seeds": args.seeds,
        "targets": first["targets"], "latency_ms": first["latency_ms"],
        "argmax_latency_ms": first["argmax_latency_ms"],
        "expected_latency_ms": first["expected_latency_ms"],
        "spearman_target_latency": statistics.median(s["spearman_target_latency"] for s in seeds),
        "spearman_target_argmax_latency": statistics.median(s["spearman_target_argmax_latency"] for s in seeds),
        "spearman_target_argmax_latency_min": min(s["spearman_target_argmax_latency"] for s in seeds),
        "spearman_target_mode_latency": statistics.median(s["spearman_target_mode_latency"] for s in seeds),
        "search_s": statistics.median(s["search_s"] for s in seeds),
        "search_cpu_s": statistics.median(s["search_cpu_s"] for s in seeds),
        "sweep_wall_s": statistics.median(s["wall_s"] for s in seeds),
        "fbnet_paper_gpu_hours": FBNET_GPU_HOURS,
        "per_seed": seeds,
        "baselines_skipped": [s for s in ("nsga2", "lemonade") if s not in STRATEGIES],
    }
    for strat in baselines if args.compare and not args.search_only else []:
        fbv = [s[f"hv_vs_{strat}"]["fbnet"] for s in seeds]
        bv = [s[f"hv_vs_{strat}"][strat] for s in seeds]
        out[f"hv_vs_{strat}"] = {"fbnet_median": statistics.median(fbv), f"{strat}_median": statistics.median(bv),
                                 "fbnet_range": [min(fbv), max(fbv)], f"{strat}_range": [min(bv), max(bv)]}
    if args.json:
        print(json.dumps(out, indent=1, default=float))
    else:
        for k, v in out.items():
            if k != "per_seed":
                print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
