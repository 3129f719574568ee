"""Benchmark: where a latency table errs, by region of the mobile space (issue #10, the knee).

  python benchmarks/latency_corners.py --table T.json [--device ort-cpu-1t] [--rounds 3]

Measures end-to-end (timed next to the drift reference, like `hwnas validate`) four groups of
mobile archs and prints measured/predicted per group: 30 uniform samples (what `validate` checks),
15 with no skip layer, 15 made only of expansion-1 blocks (the fast end of a front, where a search's
knee tends to sit: small blocks, where what a block pays when timed alone weighs most), and the
given --arch (default: the knee of an earlier demo run). Prints JSON: per group the median, min and
max ratio and the share within ±10%.
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np

from hwnas.devices import get_profiler
from hwnas.latency import LatencyTable
from hwnas.latency.builder import measure_archs_paired, sample_archs
from hwnas.spaces import get_space

KNEE = "k5_e1-k5_e1-k3_e1-k3_e6-k5_e3-k5_e1_g2-k5_e1"


def groups(space, seed: int) -> dict[str, list]:
    """The four groups of archs, seeded."""
    rng = random.Random(seed)
    ops = [o for o in space.choices[1] if o != "skip"]
    small = [o for o in ops if "_e1" in o]
    return {
        "uniform": sample_archs(space, 30, seed, "corners"),
        "no_skip": [space.make([rng.choice(ops) for _ in space.choices]) for _ in range(15)],
        "expansion_1": [space.make([rng.choice(small) for _ in space.choices]) for _ in range(15)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True)
    p.add_argument("--device", default="ort-cpu-1t")
    p.add_argument("--arch", default=KNEE)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    table = LatencyTable.load(args.table)
    space = get_space(table.space)
    sets = {**groups(space, args.seed), "arch": [space.parse(args.arch)]}
    profiler = get_profiler(args.device)
    out: dict = {"table": args.table, "calibration": table.calibration.describe(), "groups": {}}
    for name, archs in sets.items():
        _, ratios, ref = measure_archs_paired(profiler, archs, args.rounds, True, name)
        r = np.array([q * ref / table.predict_ms(a) for q, a in zip(ratios, archs)])
        out["groups"][name] = {"n": len(archs), "median": round(float(np.median(r)), 3),
                               "min": round(float(r.min()), 3), "max": round(float(r.max()), 3),
                               "within_10pct": round(float(np.mean(np.abs(r - 1) <= 0.1)), 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
