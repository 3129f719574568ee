"""Search with your own training loop and metric: `evaluate(model) -> {metric: value}`.

hwnas builds each candidate network and hands it to `evaluate`; whatever it trains is saved as the
trial's weights, so the winner exports with them. Here: Adam on sklearn's digits, scored by balanced
accuracy (a metric hwnas does not know, declared as an Objective), against table latency.

    python examples/own_evaluate.py            # 6 candidates
    python examples/own_evaluate.py --small    # 2 candidates on 300 images (CI)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from hwnas import api
from hwnas.objectives import Objective
from hwnas.train import recalibrate_bn


def digits_28() -> tuple[torch.Tensor, ...]:
    """sklearn digits upsampled to the 1x28x28 input of mobile:mnist: (x_train, y_train, x_val, y_val)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = F.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None], size=(28, 28), mode="bilinear")
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target)
    return x[:1400], y[:1400], x[1400:], y[1400:]


X_TRAIN, Y_TRAIN, X_VAL, Y_VAL = digits_28()


def evaluate(model: torch.nn.Module) -> dict[str, float]:
    """One epoch of Adam, then balanced accuracy on the held-out digits."""
    from sklearn.metrics import balanced_accuracy_score

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for idx in torch.randperm(len(X_TRAIN)).split(64):
        loss = F.cross_entropy(model(X_TRAIN[idx]), Y_TRAIN[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    recalibrate_bn(model, X_TRAIN)  # BatchNorm statistics of the final weights (then eval mode)
    with torch.no_grad():
        pred = model(X_VAL).argmax(1)
    return {"balanced_accuracy": float(balanced_accuracy_score(Y_VAL, pred)), "final_loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/own-evaluate")
    parser.add_argument("--small", action="store_true", help="2 candidates, 300 training images")
    args = parser.parse_args()
    if args.small:
        global X_TRAIN, Y_TRAIN
        X_TRAIN, Y_TRAIN = X_TRAIN[:300], Y_TRAIN[:300]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = api.search(
        "mobile:mnist", [Objective("balanced_accuracy", "max", "expensive"), "latency_ms"], evaluate=evaluate,
        latency_table="ort-cpu-1t/mobile-mnist", strategy="random", budget=2 if args.small else 6,
        storage=f"sqlite:///{out}/runs.db",
    )
    for t in run.pareto_front():
        print(f"{t.values['balanced_accuracy']:.3f}  {t.values['latency_ms']:.3f} ms  {t.arch_str}")
    manifest = api.export(run, out / "export", pick="knee", recipe="fast", measure=False)
    print(f"exported with trained weights: {manifest['source']['trained']} -> {out / 'export'}")


if __name__ == "__main__":
    main()
