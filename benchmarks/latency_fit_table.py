"""Benchmark: few-shot fit-table Spearman on the real HW-NAS-Bench-360 nb201 measurements (issue #3, item 7).

  python benchmarks/latency_fit_table.py --seeds 10
For each device column and K, fits on K random rows per seed and scores on ALL other rows; compares
the structure-aware fit with and without this CPU's nb201 table as a prior (features from the measured
representative, `rep_arch_idx`), the same fit on each row's own arch string, and a plain additive
per-edge least-squares baseline on the own arch strings. Prints JSON (mean and min over seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hwnas.latency.fit import fit_table, read_measurements, resolve_prior
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import OPS

CSV = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nb201_hw360_cifar100.csv"
COLUMNS = ("pi5_onnx_latency_ms", "pi5_litert_latency_ms", "pixel_litert_latency_ms")


def additive_baseline(archs: list[str], y: np.ndarray, k: int, seed: int) -> float:
    space = get_space("nb201")
    X = np.array([[float(g == op) for g in space.split(a) for op in OPS] for a in archs])
    X = np.hstack([X, np.ones((len(y), 1))])
    idx = np.random.default_rng(seed).permutation(len(y))
    coef = np.linalg.lstsq(X[idx[:k]], y[idx[:k]], rcond=None)[0]
    return float(spearmanr(X[idx[k:]] @ coef, y[idx[k:]]).statistic)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=str(CSV))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--ks", default="10,20,50")
    args = p.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    prior = resolve_prior("auto", "nb201")
    out: dict = {"prior_table": prior.sha256 if prior else None, "seeds": args.seeds, "results": {}}
    for column in COLUMNS:
        archs, y = read_measurements(args.csv, "arch_str", column)  # representatives' arch strings
        own, _ = read_measurements(args.csv, "arch_str", column, rep_column=None)
        res: dict = {}
        for k in ks:
            row = {}
            for name, pr in (("with_cpu_prior", prior), ("structure_only", None)):
                fits = [fit_table(archs, y, train=k, seed=s, prior=pr)[0].metrics for s in range(args.seeds)]
                sp = [m["spearman"] for m in fits]
                row[name] = {"spearman_mean": round(float(np.mean(sp)), 4), "spearman_min": round(float(np.min(sp)), 4),
                             "kendall_mean": round(float(np.mean([m["kendall_tau"] for m in fits])), 4)}
            fits = [fit_table(own, y, train=k, seed=s, prior=prior)[0].metrics for s in range(args.seeds)]
            row["with_cpu_prior_own_arch_str"] = {"spearman_mean": round(float(np.mean([m["spearman"] for m in fits])), 4)}
            base = [additive_baseline(own, y, k, s) for s in range(args.seeds)]
            row["additive_per_edge_lstsq"] = {"spearman_mean": round(float(np.mean(base)), 4)}
            res[f"K={k}"] = row
        out["results"][column] = res
        print(column, json.dumps(res), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
