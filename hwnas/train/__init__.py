"""Candidate training and evaluation on small real datasets, with multi-fidelity budgets."""

from hwnas.train.datasets import (
    DATASETS,
    Splits,
    load_dataset,
    load_image_folder,
    load_npz,
    resolve_dataset,
    splits_from_arrays,
    splits_from_datasets,
)
from hwnas.train.trainer import (
    TrainConfig,
    TrainHook,
    TrainingDivergedError,
    TrainResult,
    accuracy,
    recalibrate_bn,
    resolve_device,
    splits_for,
    train_arch,
    train_model,
)

__all__ = [
    "DATASETS", "Splits", "TrainConfig", "TrainHook", "TrainResult", "TrainingDivergedError", "accuracy",
    "load_dataset", "load_image_folder", "load_npz", "recalibrate_bn", "resolve_dataset", "resolve_device", "splits_from_arrays",
    "splits_from_datasets", "splits_for", "train_arch", "train_model",
]
