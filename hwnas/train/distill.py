"""Knowledge distillation as a training hook: a child learns from its parent's outputs too."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.train.trainer import TrainHook


class DistillHook(TrainHook):
    """loss = (1 - weight) * CE + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    The teacher (the parent network) is frozen and evaluated in eval mode on the same batch.
    """

    def __init__(self, teacher: nn.Module, weight: float = 0.5, temperature: float = 2.0) -> None:
        if not 0.0 <= weight <= 1.0 or temperature <= 0:
            raise HwnasError(
                f"distillation needs 0 <= weight <= 1 and temperature > 0, got weight={weight}, "
                f"temperature={temperature}"
            )
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight, self.temperature = float(weight), float(temperature)

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        first = next(iter(model.parameters()), None)
        if first is not None:
            self.teacher.to(first.device)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        if self.weight == 0.0:
            return loss
        with torch.no_grad():
            target = F.softmax(self.teacher(x) / self.temperature, dim=1)
        kd = F.kl_div(F.log_softmax(logits / self.temperature, dim=1), target, reduction="batchmean")
        return (1.0 - self.weight) * loss + self.weight * self.temperature**2 * kd
