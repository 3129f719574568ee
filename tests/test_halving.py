"""Successive halving over epochs (train.halving_rung): a candidate clearly dominated at the rung stops there;
the runner hands each job the rung results of the trials trained before it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.objectives import minimized
from hwnas.search.problem import ArchProblem
from hwnas.search.runner import run_search
from hwnas.search.strategies import make_strategy
from hwnas.storage import MemoryStorage
from hwnas.train import TrainConfig
from hwnas.train.datasets import Splits
from hwnas.train.halving import HalvingHook
from hwnas.train.trainer import train_model

TABLE = Path(__file__).resolve().parents[1] / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json"


def _blobs() -> Splits:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 1, 4, 4, generator=g), torch.arange(120) % 2
    x[y == 1] += 1.0
    return Splits("blobs", x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:], 2)


@pytest.mark.parametrize("front, stops", [
    ([(1.0, (0.0,))], True),  # someone had 100% at the rung and is no slower: clearly dominated
    ([(1.0, (9.0,))], False),  # more accurate but slower: not dominated
    ([], False),  # the first candidate has nothing to lose against
])
def test_a_dominated_candidate_stops_at_the_rung(front, stops):
    data = _blobs()
    hook = HalvingHook(data, rung=1, margin=0.02, front=front, own=(1.0,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    res = train_model(model, data, TrainConfig(epochs=3, batch_size=16, device="cpu"), hooks=[hook])
    assert hook.rung_accuracy is not None and 0.0 <= hook.rung_accuracy <= 1.0
    assert hook.stop is stops and res.epochs == (1 if stops else 3)


def test_halving_config_is_checked():
    with pytest.raises(HwnasError, match="halving_rung"):
        TrainConfig(halving_rung=-1)


def test_the_search_halts_exactly_the_candidates_dominated_by_earlier_rung_results():
    train = {"epochs": 2, "data_fraction": 0.08, "batch_size": 32, "device": "cpu", "halving_rung": 1,
             "halving_margin": 0.0}
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"], (), TABLE, "digits", train)
    run = MemoryStorage().create_run("h", problem.objectives, {}, {})
    run_search(problem, make_strategy("random", problem.space, 2, 0), run, 4)  # inline: one after the other
    cheap = [o for o in problem.objectives if o.kind == "cheap"]
    earlier: list[tuple[float, tuple]] = []
    for t in run.trials("COMPLETE"):
        own, acc = minimized(cheap, t.values), t.extras["rung_accuracy"]
        dominated = any(a >= acc and all(v <= o for v, o in zip(vals, own)) for a, vals in earlier)
        assert t.extras["halved"] is dominated and t.extras["epochs"] == (1 if dominated else 2)
        earlier.append((acc, own))
    assert len(earlier) == 4
