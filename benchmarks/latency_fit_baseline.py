"""Benchmark: fit-table vs an honest baseline (per-op counts, plain least squares) on the shipped table.

  python benchmarks/latency_fit_baseline.py --seeds 10 --ks 10,20,50

For each device column of benchmarks/tables/nb201-hw360-cifar100.csv, K and seed, both methods see the
same K training rows (fit_table's own split: `permutation(seed)[:K]`) and the same arch strings (the
measured representatives), and are scored on all other rows. Baseline: counts of conv3x3 / conv1x1 /
avg-pool / skip over the 6 edges plus an intercept, `numpy.linalg.lstsq` (no structure, no prior, no
sign constraint). Prints, per method, median [q25, q75] over seeds of Spearman, Kendall tau and MAPE,
and the paired margin fit-table minus baseline (median [q25, q75], seeds won) as JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hwnas.fileio import data_dir
from hwnas.latency.fit import CELL_OPS, fit_table, read_measurements, resolve_prior
from hwnas.latency.validation import fidelity_metrics
from hwnas.spaces import get_space

CSV = data_dir("benchmarks/tables") / "nb201-hw360-cifar100.csv"
COLUMNS = ("pi5_onnx_latency_ms", "pi5_litert_latency_ms", "pixel_litert_latency_ms")
METRICS = ("spearman", "kendall_tau", "mape")


def op_counts(archs: list[str]) -> np.ndarray:
    """Per-op counts over all 6 edges (`none` is the remainder) and a constant column."""
    space = get_space("nb201")
    X = np.array([[sum(g == op for g in space.split(a)) for op in CELL_OPS] for a in archs], float)
    return np.hstack([X, np.ones((len(X), 1))])


def baseline_metrics(X: np.ndarray, y: np.ndarray, k: int, seed: int) -> dict[str, float]:
    idx = np.random.default_rng(seed).permutation(len(y))  # the same split as fit_table
    tr, te = idx[:k], idx[k:]
    coef = np.linalg.lstsq(X[tr], y[tr], rcond=None)[0]
    return fidelity_metrics(X[te] @ coef, y[te])


def spread(values: list[float]) -> dict[str, float]:
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    return {"median": round(float(med), 4), "q25": round(float(q25), 4), "q75": round(float(q75), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", default=str(CSV))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--ks", default="10,20,50")
    p.add_argument("--columns", default=",".join(COLUMNS))
    args = p.parse_args()
    prior = resolve_prior("auto", "nb201")
    out: dict = {"csv": args.csv, "seeds": args.seeds, "baseline": "per-op counts + intercept, plain lstsq",
                 "results": {}}
    for column in args.columns.split(","):
        archs, y = read_measurements(args.csv, "arch_str", column)
        X = op_counts(archs)
        res: dict = {}
        for k in (int(k) for k in args.ks.split(",")):
            per: dict[str, list[dict[str, float]]] = {"per_op_counts_lstsq": [], "fit_table": [],
                                                       "fit_table_cpu_prior": []}
            for s in range(args.seeds):
                per["per_op_counts_lstsq"].append(baseline_metrics(X, y, k, s))
                per["fit_table"].append(fit_table(archs, y, train=k, seed=s)[0].metrics)
                per["fit_table_cpu_prior"].append(fit_table(archs, y, train=k, seed=s, prior=prior)[0].metrics)
            row: dict = {name: {m: spread([r[m] for r in runs]) for m in METRICS} for name, runs in per.items()}
            for name in ("fit_table", "fit_table_cpu_prior"):
                margin = [a["spearman"] - b["spearman"] for a, b in zip(per[name], per["per_op_counts_lstsq"])]
                mape = [a["mape"] - b["mape"] for a, b in zip(per[name], per["per_op_counts_lstsq"])]
                row[f"margin_{name}"] = {"spearman": spread(margin), "mape_points": spread(mape),
                                         "seeds_won_spearman": int(sum(m > 0 for m in margin))}
            res[f"K={k}"] = row
            print(column, f"K={k}", json.dumps({n: row[n] for n in row if n.startswith("margin")}), flush=True)
        out["results"][column] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
