"""Benchmark: what each contention figure sees now (issue #21): the drift reference vs a large arch.

Times the drift reference back to back (`--pairs`+1 timings: the share of consecutive timings more
than 5% apart, as profiling's re-time rule counts them) and then the reference and a large arch
`--repeats` times each (how far their p10 moves between measurements, and the CPU share each got):
  python benchmarks/contention_probe.py            # run once quiet, once beside a training search
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from hwnas.devices import get_profiler, load_device
from hwnas.latency.contention import MeteredProfiler
from hwnas.latency.drift import REFERENCE_SHAPE, reference_module
from hwnas.spaces import get_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="ort-cpu-1t")
    p.add_argument("--arch", default="-".join(["k5_e6"] * 7), help="a mobile:mnist arch")
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--repeats", type=int, default=8)
    args = p.parse_args()
    spec = load_device(args.device)
    profiler = MeteredProfiler(get_profiler(spec))
    space = get_space("mobile:mnist")
    ref = reference_module()
    refs = np.array([profiler.measure_module(ref, REFERENCE_SHAPE, key="ref").value(spec.statistic)
                     for _ in range(args.pairs + 1)])
    out = {"loadavg": os.getloadavg(),
           "reference_pairs_over_5pct": round(float((np.abs(refs[1:] / refs[:-1] - 1) > 0.05).mean()), 3)}
    arch = space.build(space.parse(args.arch))
    for name, module, shape in (("reference", ref, REFERENCE_SHAPE), ("arch", arch, space.input_shape)):
        profiler.shares.clear()
        p10 = [profiler.measure_module(module, shape, key=name).p10_ms for _ in range(args.repeats)]
        out[name] = {"p10_max_over_min": round(max(p10) / min(p10), 3),
                     "cpu_share": round(float(np.median(profiler.shares)), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
