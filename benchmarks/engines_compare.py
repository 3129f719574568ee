"""Engines head-to-head at equal wall clock: HV of (val accuracy, table latency) on any 28x28 `.npz` dataset.

Usage: python benchmarks/engines_compare.py --data X.npz|mnist5k [--minutes 10] [--seeds 3]
       [--strategies lemonade,fbnet,default,random,optuna-tpe] [--workers 2] [--out DIR] [--json]
       python benchmarks/engines_compare.py --make-digits digits28.npz   # sklearn digits, 8x8 -> 28x28
Each (strategy, seed) runs `hwnas search` on one recipe written here: `mobile:mnist`, objectives
(accuracy, latency_ms), the shipped ONNX Runtime CPU table, the same training (2 epochs, batch 64,
lr 0.05) and `--workers` local workers; `lemonade` with the shipped recipe's parameters (children
train 1 epoch from inherited weights), `fbnet` as the shipped fbnet-mnist recipe's `method` (its own
budget of derived archs), every other name as an ask/tell strategy with its default parameters and an
unlimited budget. Each run is SIGKILLed after `--minutes`; runs are sequential. HV(t) uses the COMPLETE
trials finished by t after launch, (-accuracy, latency_ms) normalised by the ideal/nadir of the joint
front of all runs of this invocation, reference 1.1. Worker utilisation = busy seconds of trials
(created -> finished, or -> the kill while running) / (workers x seconds from the first trial to the end);
for fbnet it misses the supernet phase, which is not a trial. Writes OUT/result.json and OUT/hv_over_time.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.pareto import hypervolume, non_dominated_mask  # noqa: E402
from hwnas.storage import open_storage  # noqa: E402

TABLE = ROOT / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"
TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.05, "data_fraction": 1.0, "seed": 0}
LEMONADE = {"init_size": 6, "n_pc": 64, "n_ac": 8, "max_operators": 3, "approx_prob": 0.3, "bandwidth": 0.2,
            "child_epochs": 1}


def make_digits(path: Path) -> Path:
    """sklearn's 1797 8x8 digits, bilinearly resized to 28x28 in [0, 1], as an .npz with x (n, 28, 28), y."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x.numpy().astype(np.float32), y=d.target.astype(np.int64))
    return path


def recipe(strategy: str, data: str, workers: int) -> dict:
    """The recipe of one engine; `data` is a dataset name or an .npz path."""
    r: dict = {
        "name": f"cmp-{strategy}", "space": "mobile:mnist", "objectives": ["accuracy", "latency_ms"],
        "latency_table": str(TABLE), "seed": 0, "budget": 100000,
        "dataset": {"npz": str(Path(data).resolve())} if data.endswith(".npz") else data,
        "train": dict(TRAIN), "executor": {"name": "local", "workers": workers, "threads_per_worker": 1},
    }
    if strategy == "fbnet":
        import yaml

        shipped = yaml.safe_load((ROOT / "search" / "fbnet-mnist.yaml").read_text())
        r["method"], r["budget"] = shipped["method"], shipped["budget"]
    elif strategy == "lemonade":
        r["strategy"] = {"name": "lemonade", "params": dict(LEMONADE)}
        r["distill"] = {"weight": 0.5, "temperature": 2.0}
    else:
        r["strategy"] = strategy
    return r


def launch(recipe_path: Path, db: Path, name: str, seed: int, seconds: float) -> tuple[float, float]:
    """One search, SIGKILLed (with its workers) after `seconds`; returns (launch time, end time)."""
    argv = [sys.executable, "-m", "hwnas", "search", str(recipe_path), "--storage", f"sqlite:///{db}",
            "--name", name, "--seed", str(seed), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=seconds)
        if proc.returncode:
            print(f"{name}: exit {proc.returncode}: {err.decode()[-400:]}", file=sys.stderr)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return start, time.time()


def utilization(trials, workers: int, end: float) -> float:
    """Busy worker-seconds of the trials that ran (created -> finished, or -> `end` if still running)
    / (workers x seconds from the first trial's creation to `end`)."""
    ran = [t for t in trials if t.status in ("COMPLETE", "FAILED", "RUNNING")]
    if not ran:
        return 0.0
    first = min(t.created for t in ran)
    busy = sum(min(t.finished or end, end) - t.created for t in ran)
    return busy / (workers * max(end - first, 1e-9))


def _stats(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 4), "q25": round(float(np.percentile(values, 25)), 4),
            "q75": round(float(np.percentile(values, 75)), 4), "seeds": [round(float(v), 4) for v in values]}


def _plot(out: Path, grid: np.ndarray, curves: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, hv in curves.items():
        ax.plot(grid / 60, np.median(hv, 0), label=s)
        ax.fill_between(grid / 60, np.percentile(hv, 25, 0), np.percentile(hv, 75, 0), alpha=0.2)
    ax.set_xlabel("wall clock (min)")
    ax.set_ylabel("HV (val accuracy, table latency)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hv_over_time.png", dpi=120)


def summarise(runs: dict, seconds: float, steps: int) -> tuple[dict, np.ndarray, dict]:
    """Per strategy: HV at the end and over time (joint normalisation), best accuracy, utilisation."""
    every = np.array([p[1:] for rs in runs.values() for r in rs for p in r["points"]], float).reshape(-1, 2)
    joint = every[non_dominated_mask(every)] if len(every) else every
    lo, hi = (joint.min(0), joint.max(0)) if len(joint) else (np.zeros(2), np.ones(2))
    grid = np.linspace(0, seconds, steps + 1)[1:]
    out, curves = [], {}
    for s, rs in runs.items():
        hv = np.array([[hypervolume([p[1:] for p in r["points"] if p[0] <= t], lo, hi)
                        if any(p[0] <= t for p in r["points"]) else 0.0 for t in grid] for r in rs])
        curves[s] = hv
        out.append({"name": s, "hv": _stats(hv[:, -1].tolist()),
                    "best_accuracy": _stats([max((-p[1] for p in r["points"]), default=0.0) for r in rs]),
                    "utilization": _stats([r["utilization"] for r in rs]),
                    "completed": [len(r["points"]) for r in rs]})
    return {"strategies": out}, grid, curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="an .npz with x (n, 28, 28) and y, or a dataset name (mnist5k)")
    p.add_argument("--make-digits", metavar="PATH", help="write sklearn digits resized to 28x28 as PATH and exit")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--strategies", default="lemonade,fbnet,default,random,optuna-tpe")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="engines_compare")
    p.add_argument("--steps", type=int, default=30, help="time points of the HV curve")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.make_digits:
        print(make_digits(Path(args.make_digits)))
        return 0
    if not args.data:
        p.error("--data X.npz (or a dataset name) is required")
    import yaml

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db, seconds = out / "runs.db", args.minutes * 60
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    runs: dict[str, list[dict]] = {s: [] for s in names}
    for seed in range(args.seeds):
        for s in names:
            path = out / f"{s}.yaml"
            path.write_text(yaml.safe_dump(recipe(s, args.data, args.workers)))
            name = f"{s}-s{seed}-{int(time.time())}"
            start, end = launch(path, db, name, seed, seconds)
            trials = open_storage(f"sqlite:///{db}").get_run(name).trials()
            pts = [(t.finished - start, -t.values["accuracy"], t.values["latency_ms"])
                   for t in trials if t.status == "COMPLETE"]
            runs[s].append({"points": pts, "utilization": utilization(trials, args.workers, end)})
            print(f"{name}: {len(pts)} complete, utilization {runs[s][-1]['utilization']:.2f}", file=sys.stderr)
    result, grid, curves = summarise(runs, seconds, args.steps)
    result = {"minutes": args.minutes, "seeds": args.seeds, "data": args.data, "workers": args.workers,
              "normalization": "joint front of all runs, reference 1.1", **result}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    _plot(out, grid, curves, f"{Path(args.data).name}: median of {args.seeds} seed(s), {args.workers} workers")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
