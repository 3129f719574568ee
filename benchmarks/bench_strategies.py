"""Compare search strategies on the shipped NB201 hardware table (normalized HV at 25/50/100/300 over seeds).

Usage: python benchmarks/bench_strategies.py [--seeds 20] [--budget 300] [--latency-column pi5_onnx_latency_ms]
Writes the `hwnas bench --json` output to --out (default bench_strategies.json) and the HV plot next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from hwnas.cli import main

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "tables" / "nb201-hw360-cifar100.csv"


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default=str(CSV))
    p.add_argument("--latency-column", default="pi5_onnx_latency_ms")
    p.add_argument("--strategies", default="random,re,nsga2,local,default,optuna-tpe,optuna-nsga2")
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--out", default="bench_strategies.json")
    args = p.parse_args(argv)
    plot = str(Path(args.out).with_suffix(".png"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["bench", "--table", args.table, "--latency-column", args.latency_column, "--strategies",
                   args.strategies, "--budget", str(args.budget), "--seeds", str(args.seeds), "--json",
                   "--plot", plot])
    if rc:
        return rc
    data = json.loads(buf.getvalue())
    Path(args.out).write_text(json.dumps(data, indent=2))
    for row in data["strategies"]:
        cells = "  ".join(f"HV@{b}={e['median']:.4f}" for b, e in row["hv"].items())
        print(f"{row['strategy']:<13} {cells}  unique={row['unique_archs_median']:.0f}  ({row['wall_s']} s)")
    print(f"wrote {args.out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
