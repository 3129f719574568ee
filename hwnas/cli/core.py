"""Foundation commands: `spaces`, `sample`, `cost`, `train`."""

from __future__ import annotations

import argparse

from hwnas import api
from hwnas.cli.output import add_json_flag, check_counts, emit


def cmd_spaces(args: argparse.Namespace) -> int:
    rows = api.spaces()
    text = "\n".join(
        f"{r['spec']:<18} {'(default) ' if r['default'] else '':<10} positions={r['positions']:<3} "
        f"archs={r['size']:.3g}  input={'x'.join(map(str, r['input_shape']))}  classes={r['num_classes']}"
        for r in rows
    )
    emit(rows, args.json, text)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    check_counts(args, n=1)
    archs = api.sample(args.space, args.n, args.seed)
    emit([{"arch": str(a), "id": a.id} for a in archs], args.json, "\n".join(map(str, archs)))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    emit(api.cost(args.space, args.arch), args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    check_counts(args, epochs=1, batch_size=1)
    data = api.train(args.space, args.arch, args.dataset, progress=not args.json, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    emit(data, args.json)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list search spaces and their presets")
    add_json_flag(p)
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="print random arch strings of a space")
    p.add_argument("space", help="space spec, e.g. nb201, mobile, mobile:cifar")
    p.add_argument("--n", type=int, default=5, help="number of archs")
    p.add_argument("--seed", type=int, default=0)
    add_json_flag(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("cost", help="params, MACs, FLOPs and peak activation bytes of an arch")
    p.add_argument("space")
    p.add_argument("arch", help="arch string (see `hwnas sample`)")
    add_json_flag(p)
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("train", help="train an arch on a small real dataset and report accuracy")
    p.add_argument("space")
    p.add_argument("arch")
    p.add_argument("--dataset", default="mnist5k", help="mnist5k or digits")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    add_json_flag(p)
    p.set_defaults(func=cmd_train)
