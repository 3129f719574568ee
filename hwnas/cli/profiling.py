"""Profiling commands: `profile`, `validate`, `fit-table`, `agent serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas import api
from hwnas.cli.output import add_json_flag, check_counts, emit
from hwnas.fileio import check_output_path


def cmd_profile(args: argparse.Namespace) -> int:
    check_counts(args, rounds=1, calibrate=0)
    check_output_path(args.out, "--out table")
    data = api.profile(args.device, args.space, args.out, calibrate=args.calibrate, recalibrate=args.recalibrate,
                       rounds=args.rounds, seed=args.seed, progress=not args.no_progress, strict=args.strict)
    emit(data, args.json)
    return 0


def _fidelity_text(result: dict) -> str:
    """The four prediction-quality numbers of a validation or fit, on one line."""
    return (f"kendall_tau={result['kendall_tau']:.3f} spearman={result['spearman']:.3f} "
            f"mape={result['mape']:.2f}% within_10pct={result['within_10pct']:.3f}")


def cmd_validate(args: argparse.Namespace) -> int:
    check_counts(args, samples=2, rounds=1)
    plot = args.plot or str(Path(args.table).with_suffix("")) + f"-validate-{args.samples}.png"
    check_output_path(plot, "--plot")
    result = api.validate(args.table, args.device, samples=args.samples, seed=args.seed, progress=not args.json,
                          plot=plot, rounds=args.rounds, strict=args.strict)
    if not args.rows:
        result.pop("rows")
    text = (f"{result['space']} on {result['device']}: n={result['n']} {_fidelity_text(result)}  plot: {result['plot']}\n"
            f"calibration: {result['calibration']['text']}\n"
            f"drift: {result['drift']['message']}"
            + (f"\ncontention: {result['contention_text']}" if result.get("contention_text") else ""))
    if "memory" in result:  # peak memory, predicted vs measured end to end (hwnas.latency.memory)
        text += f"\npeak memory: {_fidelity_text(result['memory'])}; {result['memory']['model']}"
        if not args.rows:
            result["memory"].pop("rows")
    emit(result, args.json, text)
    return 0


def cmd_fit_table(args: argparse.Namespace) -> int:
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            check_output_path(path, flag)
    common = {"train": args.train, "seed": args.seed, "prior": args.prior, "out": args.out, "plot": args.plot}
    if args.device is not None and args.measurements is None:
        result = api.fit_table(args.space, device=args.device, holdout=args.holdout, rounds=args.rounds,
                               progress=not args.json, **common)
        text = (f"{result['device']}: K={result['train']} on {result['n']} held-out archs: "
                f"{_fidelity_text(result)}")
        emit(result, args.json, text)
        return 0
    result = api.fit_table(args.space, measurements=args.measurements, device=args.device,
                           arch_column=args.arch_column, target_column=args.target_column,
                           dead_edges=args.dead_edges, rep_column=args.rep_column, **common)
    text = (f"{args.target_column}: K={result['train']} on {result['n']} held-out rows: "
            f"{_fidelity_text(result)} dead_edges={result['dead_edges']}")
    emit(result, args.json, text)
    return 0


def cmd_agent_serve(args: argparse.Namespace) -> int:
    from hwnas.devices.agent import run_serve

    return run_serve(args)


def register(sub: argparse._SubParsersAction) -> None:
    _register_profile(sub)
    _register_validate(sub)
    _register_fit_table(sub)
    _register_agent(sub)


def _register_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure every block of a space on a device into a latency table")
    p.add_argument("--device", required=True, help="device spec YAML or name under devices/")
    p.add_argument("--space", required=True, help="space spec, e.g. mobile:mnist")
    p.add_argument("--out", required=True, help="table path, e.g. latency_tables/ort-cpu-1t/mobile-mnist.json")
    p.add_argument("--calibrate", type=int, default=20,
                   help="end-to-end archs for the calibration fit, spread over the latency range (0: none)")
    p.add_argument("--recalibrate", action="store_true", help="refit the calibration of an existing table")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved measurement rounds; each model keeps its lowest-median round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) when the machine was busy while profiling (default: record it and warn)")
    add_json_flag(p)
    p.set_defaults(func=cmd_profile)


def _register_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="predicted vs measured end-to-end latency of sampled archs")
    p.add_argument("--table", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved measurement rounds; each model keeps its lowest-median round")
    p.add_argument("--plot", help="scatter PNG path (default next to the table)")
    p.add_argument("--rows", action="store_true", help="include every arch's numbers")
    p.add_argument("--strict", action="store_true",
                   help="refuse when the table's drift reference measures >5%% off or the machine is busy "
                        "(default: rescale, warn and say so)")
    add_json_flag(p)
    p.set_defaults(func=cmd_validate)


def _register_fit_table(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-table", help="fit a structure-aware latency table from end-to-end measurements")
    p.add_argument("--space", required=True, help="space spec (nb201 or mobile)")
    p.add_argument("--measurements", help="CSV with an arch column and a latency column")
    p.add_argument("--device", help="instead of a CSV: measure sampled archs end-to-end on this device spec "
                                    "(e.g. a remote agent) and fit on them")
    p.add_argument("--holdout", type=int, default=10, help="with --device: extra archs measured to score the fit")
    p.add_argument("--rounds", type=int, default=3, help="with --device: interleaved rounds per arch")
    p.add_argument("--arch-column", default="arch_str")
    p.add_argument("--target-column")
    p.add_argument("--train", type=int, default=20, help="K measured archs to fit on; metrics on all others")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior", default="auto",
                   help="latency table of a device you have, used as a feature (stored inside the fitted "
                        "table); `auto`: nb201: the ort-cpu-1t table shipped in the package, mobile: none; "
                        "`none`: structure features only")
    p.add_argument("--dead-edges", choices=("free", "cost", "auto"), default="auto",
                   help="whether ops on dead cell edges cost time on the device (auto: leave-one-out choice)")
    p.add_argument("--rep-column", default="auto",
                   help="column with the index of the representative arch that was measured (auto: rep_arch_idx "
                        "when present; none: off)")
    p.add_argument("--out", help="write the fitted table JSON here")
    p.add_argument("--plot", help="scatter PNG of the held-out rows")
    add_json_flag(p)
    p.set_defaults(func=cmd_fit_table)


def _register_agent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="on-device measurement agent")
    agent_sub = p.add_subparsers(dest="agent_command", metavar="ACTION")
    agent_sub.required = True
    from hwnas.devices.agent import add_serve_arguments

    s = agent_sub.add_parser("serve", help="serve the agent (loopback unless --host is given)")
    add_serve_arguments(s)
    s.set_defaults(func=cmd_agent_serve)
