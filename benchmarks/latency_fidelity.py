"""Benchmark: latency-table fidelity vs end-to-end measurement (issue #3, item 7).

  nice python benchmarks/latency_fidelity.py --device ort-cpu-1t --space mobile:mnist --samples 100
The device spec pins its measurements itself (`cpus`, default: the last core for 1 thread); no taskset.
Profiles the space into --table when it is missing (resumes otherwise), calibrates on archs spread
over the latency range, then validates on `samples` random archs (a seeded stream distinct from the
calibration archs, after a drift check of the table's reference model) and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hwnas.devices import load_device
from hwnas.latency import LatencyTable
from hwnas.latency.builder import build_table, calibrate
from hwnas.latency.validation import validate_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="ort-cpu-1t")
    p.add_argument("--space", default="mobile:mnist")
    p.add_argument("--table", help="default latency_tables/<device>/<space>.json")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--calibrate", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plot", help="scatter PNG (default: next to the table, <table>-fidelity.png)")
    args = p.parse_args()
    spec = load_device(args.device)
    table_path = Path(args.table or f"latency_tables/{spec.name}/{args.space.replace(':', '-')}.json")
    start = time.perf_counter()
    table = build_table(spec, args.space, table_path, rounds=args.rounds)
    if table.calibration.n == 0:
        calibrate(table, spec, args.calibrate, 0, rounds=args.rounds)
        table.save(table_path)
    profile_s = time.perf_counter() - start
    table = LatencyTable.load(table_path)
    start = time.perf_counter()
    plot = args.plot or str(table_path.with_suffix("")) + "-fidelity.png"
    result = validate_table(table, spec, args.samples, seed=args.seed, plot=plot, rounds=args.rounds)
    result.pop("rows")
    result.update(table=str(table_path), profile_s=round(profile_s, 1),
                  validate_s=round(time.perf_counter() - start, 1))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
