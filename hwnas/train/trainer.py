"""Train and evaluate one candidate network on a dataset, with a budget (epochs, data fraction)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.spaces import Arch, space_of
from hwnas.train.datasets import Splits, load_dataset


class TrainingDivergedError(HwnasError):
    """The loss became NaN or infinite; lower the learning rate."""


@dataclass(frozen=True)
class TrainConfig:
    """Training budget and hyper-parameters (SGD with Nesterov momentum and a cosine schedule)."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    data_fraction: float = 1.0  # share of the training split used (a cheap fidelity)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.data_fraction <= 1 or self.lr <= 0:
            raise HwnasError(
                "training needs epochs >= 1, batch_size >= 1, lr > 0 and 0 < data_fraction <= 1"
            )


@dataclass(frozen=True)
class TrainResult:
    """Accuracies in [0, 1], final training loss and wall time."""

    val_accuracy: float
    test_accuracy: float
    train_loss: float
    epochs: int
    wall_s: float


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` in eval mode."""
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / max(len(x), 1)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over `x` (cheap, no gradients).

    Short, high learning-rate training leaves the exponential running averages far from the
    final weights' statistics; recalibrating makes low-fidelity evaluations trustworthy.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.eval()


def train_model(
    model: nn.Module, data: Splits, config: TrainConfig = TrainConfig(), progress: bool = False
) -> TrainResult:
    """Train `model` in place on `data` (already shaped for it) and evaluate on val and test."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n = max(1, int(len(data.x_train) * config.data_fraction))
    x_train, y_train = data.x_train[:n], data.y_train[:n]
    steps_per_epoch = math.ceil(n / config.batch_size)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    epochs = range(config.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch")
    loss = torch.tensor(0.0)
    for _ in epochs:
        model.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"training loss became {loss.item()} at lr={config.lr}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    recalibrate_bn(model, x_train)
    return TrainResult(
        val_accuracy=accuracy(model, data.x_val, data.y_val),
        test_accuracy=accuracy(model, data.x_test, data.y_test),
        train_loss=float(loss.detach()),
        epochs=config.epochs,
        wall_s=time.perf_counter() - start,
    )


def train_arch(
    arch: Arch, dataset: str = "mnist5k", config: TrainConfig = TrainConfig(), progress: bool = False
) -> tuple[nn.Module, TrainResult]:
    """Build `arch` (seeded), fit the dataset to its input shape, train; returns the model and result."""
    space = space_of(arch)
    data = load_dataset(dataset).fit_to(space.input_shape)
    if data.num_classes > space.num_classes:
        raise HwnasError(
            f"dataset {dataset} has {data.num_classes} classes but space {space.spec} outputs "
            f"{space.num_classes}; pick a preset with enough classes"
        )
    torch.manual_seed(config.seed)
    model = space.build(arch)
    return model, train_model(model, data, config, progress)
