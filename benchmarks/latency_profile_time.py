"""Benchmark: wall time to profile each space on a device into a fresh latency table (issue #3, item 7).

  taskset -c 1 python benchmarks/latency_profile_time.py --device ort-cpu-1t --rounds 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hwnas.devices import load_device
from hwnas.latency.builder import build_table

SPACES = ("mobile:mnist", "mobile:cifar", "mobile:imagenet", "nb201:cifar10", "nb201:cifar100", "nb201:imagenet16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="ort-cpu-1t")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--spaces", default=",".join(SPACES))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for space in args.spaces.split(","):
            start = time.perf_counter()
            table = build_table(load_device(args.device), space, Path(tmp) / f"{space.replace(':', '-')}.json",
                                progress=False, rounds=args.rounds)
            rows.append({"space": space, "blocks": len(table), "rounds": args.rounds,
                         "profile_s": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"device": args.device, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
