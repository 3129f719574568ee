"""Benchmark: the noise floor of end-to-end measurement, per statistic (issue #10).

The same archs measured twice (each pass: interleaved rounds, lowest value kept per arch); the
agreement of the two passes bounds what any latency table can reach on this machine now:
  nice python benchmarks/latency_noise_floor.py --device ort-cpu-1t --space mobile:mnist --samples 20
`--cpus ""` measures unpinned, `--cpus 1` pins to core 1 (default: the spec's own pinning).
"""

from __future__ import annotations

import argparse
import json

from hwnas.devices import get_profiler, load_device
from hwnas.latency.builder import sample_archs
from hwnas.latency.validation import fidelity_metrics
from hwnas.spaces import get_space

STATISTICS = ("median", "p10")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="ort-cpu-1t")
    p.add_argument("--space", default="mobile:mnist")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpus", help="comma-separated cores, or '' for unpinned (default: the spec's)")
    args = p.parse_args()
    spec = load_device(args.device)
    if args.cpus is not None:
        spec = spec.with_overrides(cpus=tuple(int(c) for c in args.cpus.split(",") if c))
    profiler = get_profiler(spec)
    space = get_space(args.space)
    archs = sample_archs(space, args.samples, args.seed, "validation")

    def one_pass() -> dict[str, list[float]]:
        best = {s: [float("inf")] * len(archs) for s in STATISTICS}
        for _ in range(args.rounds):
            for i, arch in enumerate(archs):
                m = profiler.measure_module(space.build(arch), space.input_shape)
                for s in STATISTICS:
                    best[s][i] = min(best[s][i], m.value(s))
        return best

    first, second = one_pass(), one_pass()
    print(json.dumps({"device": spec.name, "cpus": list(profiler.cpus), "samples": args.samples,
                      "rounds": args.rounds, **{s: fidelity_metrics(first[s], second[s]) for s in STATISTICS}},
                     indent=2))


if __name__ == "__main__":
    main()
