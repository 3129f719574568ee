"""Search commands: `search`, `runs`, `show`, `bench`, `report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli.output import add_json_flag, check_counts, emit
from hwnas.errors import ConfigError
from hwnas.fileio import check_output_path


def _storage_flag(p: argparse.ArgumentParser) -> None:
    from hwnas.storage import DEFAULT_URL

    p.add_argument("--storage", default=DEFAULT_URL, help=f"run journal URL (default {DEFAULT_URL})")


def _existing_storage(url: str):
    """Open a journal to read from; a missing SQLite file is an error (nothing is created)."""
    from hwnas.storage import open_storage, sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(f"no journal at {path}; check --storage (runs are written by `hwnas search`)")
    return open_storage(url)


def _front_text(run) -> str:
    names = [o.name for o in run.objectives]
    knee = run.knee()
    rows = [f"{'#':>4}  " + "  ".join(f"{n:>14}" for n in names) + "  arch"]
    for t in run.pareto_front():
        k = "*" if knee is not None and knee.number == t.number else " "
        rows.append(f"{t.number:>3}{k}  " + "  ".join(f"{t.values[n]:>14.5g}" for n in names) + f"  {t.arch_str}")
    return "\n".join(rows)


def cmd_search(args: argparse.Namespace) -> int:
    from hwnas.report import plot_pareto
    from hwnas.search.recipe import execute_recipe, load_recipe
    from hwnas.storage import sqlite_path

    check_counts(args, budget=1, workers=1)
    journal = sqlite_path(args.storage)
    if journal is not None:
        check_output_path(journal, "--storage journal")
    if args.plot:
        check_output_path(args.plot, "--plot")
    recipe = load_recipe(args.recipe)
    executor = dict(recipe.executor)
    if args.executor:
        executor = {"name": args.executor}
    if args.workers:
        executor["workers"] = args.workers
    if args.ray_address:  # keep the recipe's Ray options (cpus_per_task), not a local pool's
        base = {k: v for k, v in executor.items() if k in ("cpus_per_task", "workers")} if executor.get("name") == "ray" else {}
        executor = {**base, **({"workers": args.workers} if args.workers else {}), "name": "ray", "address": args.ray_address}
    if args.strategy:
        from hwnas.search.strategies import STRATEGIES

        STRATEGIES.get(args.strategy)
    recipe = recipe.with_overrides(
        budget=args.budget, seed=args.seed, executor=executor,
        latency_table=str(Path(args.table).resolve()) if args.table else None,
        strategy=args.strategy, strategy_params={} if args.strategy else None,
        strict_drift=True if getattr(args, "strict", False) else None,
    )
    result = execute_recipe(
        recipe, args.storage, run_name=args.name, resume=args.resume, progress=not args.json and not args.quiet
    )
    run = result.run
    plot = None
    if run.artifact_dir is not None and run.pareto_front():
        plot = str(plot_pareto(run, args.plot or (run.artifact_dir / "pareto.png")))
    data = {
        "run": run.id, "name": run.name, "evaluated": result.evaluated, "stop_reason": result.stop_reason,
        "wall_s": round(result.wall_s, 2), "plot": plot, "storage": run.storage.url,
        "pareto_front": [t.to_dict() for t in run.pareto_front()],
    }
    text = (f"run {run.name} ({run.id}): {result.evaluated} evaluated, stopped on {result.stop_reason}, "
            f"{result.wall_s:.1f} s\n{_front_text(run)}\nplot: {plot}\n"
            f"show: hwnas show {run.name} --storage {run.storage.url}")
    emit(data, args.json, text)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import time

    from hwnas.storage.lock import STALE_AFTER_S, lock_holder

    storage = _existing_storage(args.storage)
    rows = []
    for info in storage.list_runs():
        trials = storage.trials(info.id)
        holder = lock_holder(storage, info.id)
        live = holder is not None and not holder.stale(time.time(), STALE_AFTER_S)
        rows.append({
            "id": info.id, "name": info.name, "status": info.status, "created": info.created,
            "strategy": (info.info.get("strategy") or {}).get("name"),
            "objectives": [o.name for o in info.objectives],
            "trials": len(trials), "complete": sum(t.status == "COMPLETE" for t in trials),
            "driver": f"pid {holder.pid} on {holder.host}" if live else None,
        })
    text = "\n".join(
        f"{r['id']}  {r['name']:<40} {r['status']:<9} {r['strategy'] or '':<7} {r['complete']}/{r['trials']} complete"
        + (f"  (driven by {r['driver']})" if r["driver"] else "")
        for r in rows
    ) or f"no runs in {storage.url}"
    emit(rows, args.json, text)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = _existing_storage(args.storage).get_run(args.run)
    data = run.to_dict(with_trials=True)
    from hwnas.report.markdown import lineage_lines

    text = (f"run {run.name} ({run.id}) {run.status}; trials {data['counts']}\n"
            f"objectives: {', '.join(f'{o.name} ({o.direction})' for o in run.objectives)}\n{_front_text(run)}")
    lineage = lineage_lines(run.trials())
    if lineage:
        text += "\nlineage (child <- parent operators):\n" + "\n".join(lineage)
    emit(data, args.json, text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hwnas.report import plot_pareto, run_report

    storage = _existing_storage(args.storage)
    run = storage.get_run(args.run)
    baseline = storage.get_run(args.baseline) if args.baseline else None
    if baseline is not None and [o.name for o in baseline.objectives] != [o.name for o in run.objectives]:
        raise ConfigError(
            f"--baseline {baseline.name} has objectives {', '.join(o.name for o in baseline.objectives)}, run "
            f"{run.name} has {', '.join(o.name for o in run.objectives)}; compare runs of the same objectives")
    out = check_output_path(args.out or ((run.artifact_dir or Path(".")) / "report.md"), "--out report")
    plot = None
    if run.pareto_front():
        plot = plot_pareto(run, out.parent / "pareto.png").name
    text = run_report(run, baseline, plot, out_dir=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    emit({"report": str(out), "plot": plot}, args.json, f"report written to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hwnas.bench import DEFAULT_CHECKPOINTS, TabularBenchmark, compare, plot_curves, summarize
    from hwnas.search.strategies import STRATEGIES, make_strategy

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise ConfigError(f"--strategies {args.strategies!r} names no strategy; e.g. random,re,nsga2,local")
    for s in strategies:
        STRATEGIES.get(s)
    check_counts(args, seeds=1, budget=1)
    if args.plot:
        check_output_path(args.plot, "--plot")
    from hwnas.fileio import data_dir, find_named_file

    args.table = str(find_named_file(args.table, [data_dir("benchmarks/tables")], "benchmark table", ".csv"))
    bench = TabularBenchmark(args.table, args.accuracy_column, args.latency_column, args.arch_column, args.space)
    if args.budget > len(bench.values):
        raise ConfigError(f"--budget {args.budget} is more than the {len(bench.values)} archs in {args.table}; "
                          f"use --budget <= {len(bench.values)}")
    for s in strategies:  # fail before any run, e.g. optuna-* without the `peers` extra
        make_strategy(s, bench.space, len(bench.objectives), 0)
    checkpoints = [b for b in DEFAULT_CHECKPOINTS if b <= args.budget]
    if args.budget not in checkpoints:
        checkpoints.append(args.budget)
    curves = compare(bench, strategies, args.budget, list(range(args.seeds)))
    rows = summarize(curves, checkpoints)
    plot = plot_curves(curves, args.plot, f"{Path(args.table).name}: {args.accuracy_column} vs {args.latency_column}") \
        if args.plot else None
    data = {
        "table": str(args.table), "table_sha256": bench.sha256, "objectives": [o.to_dict() for o in bench.objectives],
        "true_front_size": len(bench.true_front), "budget": args.budget, "seeds": args.seeds,
        "normalization": "HV(found)/HV(true front); objectives scaled by the true front's ideal/nadir to [0,1]; "
                         "reference point 1.1 (pymoo HV)",
        "protocol": "a query is one proposal (ask / Optuna trial); duplicates are answered from the cache and "
                    "count as queries, for every strategy; unique_archs_median counts the distinct archs",
        "strategies": rows, "plot": plot,
    }
    lines = [f"{'strategy':<13}" + "".join(f"{'HV@' + str(b):>34}" for b in checkpoints) + "  unique   wall_s"]
    for r in rows:
        cells = []
        for b in checkpoints:
            e = r["hv"][str(b)]
            p = e.get("p_vs_random")
            cells.append(f"{e['median']:.4f} [{e['q25']:.3f},{e['q75']:.3f}]" + (f" p={p:.0e}" if p is not None else ""))
        lines.append(f"{r['strategy']:<13}" + "".join(f"{c:>34}" for c in cells)
                     + f"  {r['unique_archs_median']:>6.0f}   {r['wall_s']}")
    lines.append("median [q25,q75] normalized HV over seeds after N queries (a query is one proposal, duplicates "
                 "included); unique = median unique archs in the budget; p = Mann-Whitney U vs random")
    emit(data, args.json, "\n".join(lines))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or --resume) a multi-objective search from a YAML recipe")
    p.add_argument("recipe", help="recipe YAML, or a built-in recipe's name (e.g. mobile-cost)")
    _storage_flag(p)
    p.add_argument("--name", help="run name (default: recipe name, seed and time)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                   help="continue a killed run (default: the newest run in --storage)")
    p.add_argument("--executor", choices=["inline", "local", "ray"], help="override the recipe's executor")
    p.add_argument("--workers", type=int, help="parallel evaluations")
    p.add_argument("--ray-address", help="connect to an existing Ray cluster (implies --executor ray)")
    p.add_argument("--strategy", help="override the recipe's strategy (default parameters)")
    p.add_argument("--budget", type=int, help="override the number of evaluations")
    p.add_argument("--table", help="override the recipe's latency table (e.g. one you just profiled)")
    p.add_argument("--seed", type=int, help="override the search seed")
    p.add_argument("--plot", help="Pareto plot PNG path (default <run dir>/pareto.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true",
                   help="with measured_latency_ms: refuse to search when the drift reference shows this machine "
                        "over 5%% faster or slower than when the table was profiled (default: rescale and say so)")
    add_json_flag(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("runs", help="list the runs of a storage")
    _storage_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="a run's Pareto front and trials")
    p.add_argument("run", help="run id, id prefix, name or `latest`")
    _storage_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="write a markdown run report with the NAS best-practices checklist")
    p.add_argument("run")
    _storage_flag(p)
    p.add_argument("--baseline", help="run to compare against (e.g. a random-search run)")
    p.add_argument("--out", help="markdown path (default <run dir>/report.md)")
    add_json_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="compare strategies on a tabular benchmark CSV (normalized HV over seeds)")
    p.add_argument("--table", required=True, help="CSV with arch_str, accuracy and latency columns, or a shipped table's name "
                   "(nb201-hw360-cifar100)")
    p.add_argument("--accuracy-column", default="accuracy")
    p.add_argument("--latency-column", default="pi5_onnx_latency_ms")
    p.add_argument("--arch-column", default="arch_str")
    p.add_argument("--space", default="nb201:cifar100", help="space whose arch strings the table holds")
    p.add_argument("--strategies", default="random,re,nsga2,local,default",
                   help="comma-separated strategies; `default` is the recipes' default; peers: optuna-tpe, "
                        "optuna-nsga2, optuna-random (pip install 'hwnas[peers]')")
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1)")
    p.add_argument("--plot", help="HV-over-queries PNG")
    add_json_flag(p)
    p.set_defaults(func=cmd_bench)

