"""Train and evaluate one candidate network on a dataset, with a budget (epochs, data fraction)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
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
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    halving_rung: int = 0  # successive halving: after this epoch a clearly dominated candidate stops (0: off)
    halving_margin: float = 0.02  # "clearly": another candidate had >= this much more accuracy at the rung

    def __post_init__(self) -> None:
        if self.halving_rung < 0 or self.halving_margin < 0:
            raise HwnasError("training needs halving_rung >= 0 (0: off) and halving_margin >= 0")
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.data_fraction <= 1 or self.lr <= 0:
            raise HwnasError(
                "training needs epochs >= 1, batch_size >= 1, lr > 0 and 0 < data_fraction <= 1"
            )
        if self.device not in DEVICES:
            raise HwnasError(f"train.device must be one of {', '.join(DEVICES)}, got {self.device!r}")


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; asking for `cuda` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HwnasError("train.device is cuda but no CUDA device is available; use device: auto or cpu")
    if name not in ("cpu", "cuda"):
        raise HwnasError(f"train.device must be one of {', '.join(DEVICES)}, got {name!r}")
    return torch.device(name)


class TrainHook:
    """Extends `train_model` without copying it: extra loss terms (knowledge distillation, a latency
    cost) and extra steps (a second optimizer for architecture parameters). All methods are no-ops."""

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        return None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch given the cross-entropy `loss` (return it to leave it as is)."""
        return loss

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each weight update (e.g. an architecture step on a separate split)."""
        return None

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after each epoch; a hook whose `stop` attribute is then True ends training there."""
        return None


@dataclass(frozen=True)
class TrainResult:
    """Accuracies in [0, 1], final training loss and wall time."""

    val_accuracy: float
    test_accuracy: float
    train_loss: float
    epochs: int
    wall_s: float


def _device_of(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` in eval mode (batches moved to the model's device)."""
    model.eval()
    dev = _device_of(model)
    correct = sum(
        int((model(x[i : i + batch_size].to(dev)).argmax(1).cpu() == y[i : i + batch_size]).sum())
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
    dev = _device_of(model)
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size].to(dev))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.eval()


def _sgd(model: nn.Module, config: TrainConfig, parameters: Iterable[nn.Parameter] | None,
         total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (Nesterov when there is momentum) over `parameters` (default: the model's), one-cycle schedule."""
    opt = torch.optim.SGD(
        list(model.parameters() if parameters is None else parameters), lr=config.lr, momentum=config.momentum,
        nesterov=config.momentum > 0, weight_decay=config.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps, pct_start=0.15)
    return opt, sched


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hooks: Sequence[TrainHook],
          opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, lr: float) -> torch.Tensor:
    """One weight update on a batch; returns its loss (hooks' terms included)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    for hook in hooks:
        loss = hook.loss(model, x, y, logits, loss)
    if not torch.isfinite(loss):
        raise TrainingDivergedError(f"training loss became {loss.item()} at lr={lr}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss


def train_model(
    model: nn.Module, data: Splits, config: TrainConfig = TrainConfig(), progress: bool = False,
    hooks: Sequence[TrainHook] = (), parameters: Iterable[nn.Parameter] | None = None,
) -> TrainResult:
    """Train `model` in place on `data` (already shaped for it) and evaluate on val and test.

    The model moves to `config.device`. `parameters` are what SGD trains (default: all of the
    model's); `hooks` add loss terms and extra steps (see `TrainHook`).
    """
    start = time.perf_counter()
    dev = resolve_device(config.device)
    model.to(dev)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n = max(1, int(len(data.x_train) * config.data_fraction))
    x_train, y_train = data.x_train[:n].to(dev), data.y_train[:n].to(dev)
    opt, sched = _sgd(model, config, parameters, config.epochs * math.ceil(n / config.batch_size))
    epochs = range(config.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch")
    loss = torch.tensor(0.0)
    step = done = 0
    for epoch in epochs:
        model.train()
        for hook in hooks:
            hook.on_epoch_start(model, epoch)
        order = torch.randperm(n, generator=gen).to(dev)
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = _step(model, x_train[idx], y_train[idx], hooks, opt, sched, config.lr)
            step += 1
            for hook in hooks:
                hook.after_step(model, step)
        for hook in hooks:
            hook.on_epoch_end(model, epoch)
        done = epoch + 1
        if any(getattr(hook, "stop", False) for hook in hooks):  # e.g. successive halving (hwnas.train.halving)
            break
    recalibrate_bn(model, x_train)
    return TrainResult(
        val_accuracy=accuracy(model, data.x_val, data.y_val),
        test_accuracy=accuracy(model, data.x_test, data.y_test),
        train_loss=float(loss.detach()),
        epochs=done,
        wall_s=time.perf_counter() - start,
    )


def splits_for(arch: Arch, dataset: str | Splits) -> Splits:
    """The dataset (a registered name or loaded `Splits`) shaped for `arch`'s space."""
    space = space_of(arch)
    data = (load_dataset(dataset) if isinstance(dataset, str) else dataset).fit_to(space.input_shape)
    if data.num_classes > space.num_classes:
        raise HwnasError(
            f"dataset {data.name} has {data.num_classes} classes but space {space.spec} outputs "
            f"{space.num_classes}; pick a preset with enough classes"
        )
    return data


def train_arch(
    arch: Arch, dataset: str | Splits = "mnist5k", config: TrainConfig = TrainConfig(), progress: bool = False,
    model: nn.Module | None = None, hooks: Sequence[TrainHook] = (),
) -> tuple[nn.Module, TrainResult]:
    """Train `arch` on a dataset shaped for its space; returns the model and result.

    `model` is a network of `arch` to start from (inherited weights); by default a fresh one is
    built with the seed.
    """
    data = splits_for(arch, dataset)
    if model is None:
        torch.manual_seed(config.seed)
        model = space_of(arch).build(arch)
    return model, train_model(model, data, config, progress, hooks)
