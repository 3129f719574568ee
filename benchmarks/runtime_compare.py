"""Benchmark: why per-runtime tables matter — the same archs timed on ONNX Runtime, ExecuTorch, LiteRT and torch.

  python benchmarks/runtime_compare.py [--space mobile:mnist] [--n 50] [--rounds 3] [--seed 0]
      [--devices ort-cpu-1t executorch-xnnpack-1t litert-xnnpack-1t torch-cpu]

Samples `--n` archs (seeded), measures each end to end on every device spec (the lowest of `--rounds`
rounds under the spec's statistic; each spec's own protocol, affinity and thread count), and prints JSON:
per device the latencies and peak memory, then for every pair of devices the Spearman rank correlation of
latency (and of peak memory where both measure it) and how many archs change Pareto status between them
in (latency, -MACs): MACs stand in for accuracy (no training here), so a front is "fastest for its
compute". A device whose runtime is not installed is reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
from scipy.stats import spearmanr

from hwnas.devices import get_profiler
from hwnas.errors import HwnasError
from hwnas.latency.builder import sample_archs
from hwnas.metrics import arch_cost
from hwnas.pareto import non_dominated_mask
from hwnas.spaces import get_space

DEVICES = ["ort-cpu-1t", "executorch-xnnpack-1t", "litert-xnnpack-1t", "torch-cpu"]


def measure_device(device: str, space, archs, rounds: int) -> dict:
    """Latency (ms, the spec's statistic) and peak memory (bytes, None where not measured) of every arch."""
    try:
        profiler = get_profiler(device)
    except HwnasError as exc:
        return {"skipped": str(exc)}
    stat = profiler.spec.statistic
    start = time.perf_counter()
    lat, mem = [], []
    for arch in archs:
        model = space.build(arch)
        ms = [profiler.measure_module(model, space.input_shape, key=str(arch)) for _ in range(rounds)]
        lat.append(min(m.value(stat) for m in ms))
        peaks = [m.measured_peak_bytes for m in ms if m.measured_peak_bytes]
        mem.append(min(peaks) if peaks else None)
    seconds = round(time.perf_counter() - start, 1)
    print(f"{device}: {len(archs)} archs in {seconds} s", file=sys.stderr)
    return {"statistic": stat, "latency_ms": lat, "peak_bytes": mem, "seconds": seconds}


def compare(a: dict, b: dict, macs: np.ndarray) -> dict:
    """Spearman of latency and of memory, and the archs whose Pareto status in (latency, -MACs) differs."""
    la, lb = np.array(a["latency_ms"]), np.array(b["latency_ms"])
    front_a = non_dominated_mask(np.column_stack([la, -macs]))
    front_b = non_dominated_mask(np.column_stack([lb, -macs]))
    out = {"spearman_latency": round(float(spearmanr(la, lb)[0]), 3),
           "pareto_changes": int(np.sum(front_a != front_b)),
           "front_sizes": [int(front_a.sum()), int(front_b.sum())],
           "latency_ratio_median": round(float(np.median(lb / la)), 3)}
    if all(m is not None for m in a["peak_bytes"] + b["peak_bytes"]):
        out["spearman_memory"] = round(float(spearmanr(a["peak_bytes"], b["peak_bytes"])[0]), 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobile:mnist")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", nargs="+", default=DEVICES)
    args = p.parse_args()
    space = get_space(args.space)
    archs = sample_archs(space, args.n, args.seed, "runtime-compare")
    macs = np.array([arch_cost(a).macs for a in archs], dtype=float)
    results = {d: measure_device(d, space, archs, args.rounds) for d in args.devices}
    done = [d for d in args.devices if "skipped" not in results[d]]
    pairs = {f"{a} vs {b}": compare(results[a], results[b], macs) for a, b in itertools.combinations(done, 2)}
    print(json.dumps({"space": args.space, "n": args.n, "rounds": args.rounds, "seed": args.seed,
                      "archs": [str(a) for a in archs], "devices": results, "pairs": pairs}, indent=1))


if __name__ == "__main__":
    main()
