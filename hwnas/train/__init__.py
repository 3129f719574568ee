"""Candidate training and evaluation on small real datasets, with multi-fidelity budgets."""

from hwnas.train.datasets import DATASETS, Splits, load_dataset
from hwnas.train.trainer import (
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    accuracy,
    train_arch,
    train_model,
)

__all__ = [
    "DATASETS", "Splits", "TrainConfig", "TrainResult", "TrainingDivergedError", "accuracy",
    "load_dataset", "train_arch", "train_model",
]
