"""Successive halving over epochs for one candidate: after the rung epoch, stop it when it is clearly dominated."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from hwnas.train.datasets import Splits
from hwnas.train.trainer import TrainHook, accuracy


class HalvingHook(TrainHook):
    """Measures val accuracy after epoch `rung` (`rung_accuracy`) and sets `stop` when an earlier candidate
    had at least `margin` more accuracy at the same rung and was no worse on every cheap objective.

    `front` holds (rung accuracy, minimized cheap values) of the candidates trained so far in the run and
    `own` this candidate's minimized cheap values (latency, params, ...), both from the search driver.
    A stopped candidate keeps its rung accuracy as its result (asynchronous successive halving, as
    Hyperband / ASHA and Optuna's pruners do, with Pareto dominance instead of a quantile).
    """

    def __init__(self, data: Splits, rung: int, margin: float, front: Sequence, own: Sequence[float]) -> None:
        self.data, self.rung, self.margin = data, int(rung), float(margin)
        self.front = [(float(a), tuple(float(v) for v in vals)) for a, vals in front]
        self.own = tuple(float(v) for v in own)
        self.rung_accuracy: float | None = None
        self.stop = False

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        if epoch + 1 != self.rung:
            return
        self.rung_accuracy = accuracy(model, self.data.x_val, self.data.y_val)
        model.train()
        self.stop = any(
            a >= self.rung_accuracy + self.margin and all(v <= o for v, o in zip(vals, self.own))
            for a, vals in self.front
        )
