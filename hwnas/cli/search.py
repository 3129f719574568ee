"""Search commands: `search`, `runs`, `show`, `bench`, `report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas import api
from hwnas.cli.output import add_json_flag, check_counts, emit
from hwnas.errors import ConfigError
from hwnas.fileio import check_output_path


def _storage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=api.DEFAULT_URL, help=f"run journal URL (default {api.DEFAULT_URL})")


def _front_text(run) -> str:
    names = [o.name for o in run.objectives]
    knee = run.knee()
    rows = [f"{'#':>4}  " + "  ".join(f"{n:>14}" for n in names) + "  arch"]
    for t in run.pareto_front():
        k = "*" if knee is not None and knee.number == t.number else " "
        rows.append(f"{t.number:>3}{k}  " + "  ".join(f"{t.values[n]:>14.5g}" for n in names) + f"  {t.arch_str}")
    return "\n".join(rows)


def cmd_search(args: argparse.Namespace) -> int:
    check_counts(args, budget=1, workers=1)
    if args.plot:
        check_output_path(args.plot, "--plot")
    run = api.search_recipe(
        args.recipe, args.storage, name=args.name, resume=args.resume, progress=not args.json and not args.quiet,
        executor=args.executor, workers=args.workers, ray_address=args.ray_address, budget=args.budget,
        seed=args.seed, latency_table=str(Path(args.table).resolve()) if args.table else None,
        strategy=args.strategy, strategy_params={} if args.strategy else None,
        strict_drift=True if args.strict else None,
    )
    plot = api.plot_front(run, args.plot)
    evaluated = len(run.trials(("COMPLETE", "FAILED")))
    reason, wall = run.info.get("stop_reason"), float(run.info.get("search_wall_s", 0.0))
    data = {
        "run": run.id, "name": run.name, "evaluated": evaluated, "stop_reason": reason, "wall_s": round(wall, 2),
        "plot": plot and str(plot), "storage": run.storage.url,
        "pareto_front": [t.to_dict() for t in run.pareto_front()],
    }
    text = (f"run {run.name} ({run.id}): {evaluated} evaluated, stopped on {reason}, {wall:.1f} s\n"
            f"{_front_text(run)}\nplot: {plot}\nshow: hwnas show {run.name} --storage {run.storage.url}")
    emit(data, args.json, text)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    rows = api.runs(args.storage)
    text = "\n".join(
        f"{r['id']}  {r['name']:<40} {r['status']:<9} {r['strategy'] or '':<7} {r['complete']}/{r['trials']} complete"
        + (f"  (driven by {r['driver']})" if r["driver"] else "")
        for r in rows
    ) or f"no runs in {args.storage}"
    emit(rows, args.json, text)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = api.open_run(args.run, args.storage)
    data = run.to_dict(with_trials=True)
    text = (f"run {run.name} ({run.id}) {run.status}; trials {data['counts']}\n"
            f"objectives: {', '.join(f'{o.name} ({o.direction})' for o in run.objectives)}\n{_front_text(run)}")
    lineage = api.lineage(run)
    if lineage:
        text += "\nlineage (child <- parent operators):\n" + "\n".join(lineage)
    emit(data, args.json, text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    run = api.open_run(args.run, args.storage)
    baseline = api.open_run(args.baseline, args.storage) if args.baseline else None
    out = check_output_path(args.out or ((run.artifact_dir or Path(".")) / "report.md"), "--out report")
    out = api.report(run, out, baseline)
    plot = "pareto.png" if run.pareto_front() else None
    emit({"report": str(out), "plot": plot}, args.json, f"report written to {out}")
    return 0


def _bench_text(data: dict) -> str:
    checkpoints = data["checkpoints"]
    lines = [f"{'strategy':<13}" + "".join(f"{'HV@' + str(b):>34}" for b in checkpoints) + "  unique   wall_s"]
    for r in data["strategies"]:
        cells = []
        for b in checkpoints:
            e = r["hv"][str(b)]
            p = e.get("p_vs_random")
            cells.append(f"{e['median']:.4f} [{e['q25']:.3f},{e['q75']:.3f}]" + (f" p={p:.0e}" if p is not None else ""))
        lines.append(f"{r['strategy']:<13}" + "".join(f"{c:>34}" for c in cells)
                     + f"  {r['unique_archs_median']:>6.0f}   {r['wall_s']}")
    lines.append("median [q25,q75] normalized HV over seeds after N queries (a query is one proposal, duplicates "
                 "included); unique = median unique archs in the budget; p = Mann-Whitney U vs random")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        raise ConfigError(f"--strategies {args.strategies!r} names no strategy; e.g. random,re,nsga2,local")
    check_counts(args, seeds=1, budget=1)
    if args.plot:
        check_output_path(args.plot, "--plot")
    data = api.bench(args.table, strategies, budget=args.budget, seeds=args.seeds,
                     accuracy_column=args.accuracy_column, latency_column=args.latency_column,
                     arch_column=args.arch_column, space=args.space, plot=args.plot)
    emit(data, args.json, _bench_text(data))
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

