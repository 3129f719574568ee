"""The memory model: a whole arch's peak memory from its blocks' memory figures (forms, fit, measurement).

Each table entry's `measured_peak_bytes` is the block's memory figure under the profiler's
`memory_source` (the table's `provenance["memory"]` says what it includes). The compiled runtimes read
it from the program (hwnas.devices.memory.PROGRAM_SOURCES: weights + planned buffers + activation
workspace, the same on every load) and record the weights' part (`weight_bytes`): a whole network
holds every block's weights at once but the activations of one block at a time, so its figure is the
sum of the blocks' weights plus the largest block's activations (form `weights+max`, the prediction
of an unfitted table with that split; a block's activations are counted as inside a network, its input
freed after its last use, `graph_activation_bytes`: alone, its input and output are held throughout). Older figures (the RSS peak growth of loading and running,
hwnas.devices.memory.peak_growth) have no split: a linear form over the blocks' peaks (`FORMS`) is
fitted to end-to-end figures measured the same way and chosen by leave-one-out error, as the latency
calibration is (hwnas.latency.model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.devices.profilers import Profiler
    from hwnas.spaces import Arch

# form -> the features it weighs (plus an intercept): a fitted line over these per-arch features
FORMS: dict[str, tuple[str, ...]] = {
    "sum": ("sum_peak_bytes",),  # every block's peak adds up (weights dominate)
    "sum+blocks": ("sum_peak_bytes", "blocks"),  # ... less a per-program overhead counted once
    "max": ("max_peak_bytes",),  # the largest block decides (activations dominate)
    "sum+max": ("sum_peak_bytes", "max_peak_bytes"),
    # with the weights' part recorded: weights add up, one block's activations are live at a time
    "weights+max": ("sum_weight_bytes", "max_activation_bytes"),
}
MIN_FIT = 4  # end-to-end measurements below which no form is fitted


class MemoryModelError(HwnasError):
    """A latency source cannot predict memory (no measured per-block peaks, or none fitted)."""


def memory_features(peaks: Sequence[int], weights: Sequence[int] | None = None,
                    graph_activations: Sequence[int] | None = None) -> dict[str, float]:
    """The memory model's features of one arch from its blocks' memory figures (bytes) and, where recorded,
    their weights' parts and their activation peaks as parts of a larger graph (else figure - weights)."""
    features = {"sum_peak_bytes": float(sum(peaks)), "max_peak_bytes": float(max(peaks)), "blocks": float(len(peaks))}
    if weights is not None:
        activations = graph_activations if graph_activations is not None else [p - w for p, w in zip(peaks, weights)]
        features["sum_weight_bytes"] = float(sum(weights))
        features["max_activation_bytes"] = float(max(activations))
    return features


@dataclass(frozen=True)
class MemoryCalibration:
    """Coefficients of the chosen form: peak_bytes = intercept_bytes + sum of coefficient x feature.

    Unfitted (n = 0): the blocks' weights summed plus the largest block's activations where the table
    records the weights' part (`weights+max` with coefficients 1), else the sum of the blocks' peaks
    (every block's weights, workspace and overhead at once).
    """

    form: str = ""
    intercept_bytes: float = 0.0
    coefficients: dict[str, float] = field(default_factory=lambda: {"sum_peak_bytes": 1.0})
    n: int = 0
    cv_mape: float | None = None  # leave-one-out MAPE (%) of the chosen form
    candidates: dict[str, float] = field(default_factory=dict)  # form -> leave-one-out MAPE (%)
    fitted_on: list[str] = field(default_factory=list)

    def predict(self, features: dict[str, float]) -> float:
        if self.n == 0 and "sum_weight_bytes" in features:
            return features["sum_weight_bytes"] + features["max_activation_bytes"]
        return self.intercept_bytes + sum(c * features[k] for k, c in self.coefficients.items())

    def describe(self) -> str:
        if self.n == 0:
            return "memory: uncalibrated (sum of the blocks' weights + largest block's activations, or sum of peaks)"
        terms = " ".join(f"{k}x{c:.4f}" for k, c in self.coefficients.items())
        cv = f" cv_mape={self.cv_mape:.2f}%" if self.cv_mape is not None else ""
        return f"memory: form={self.form} intercept={self.intercept_bytes:.0f}B {terms} n={self.n}{cv}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "memory calibration") -> MemoryCalibration:
        fields = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) - fields:
            raise MemoryModelError(f"{where} must be a mapping with keys among {sorted(fields)}; "
                                   "refit it with `hwnas profile --recalibrate`")
        coefficients = data.get("coefficients", {})
        features = set().union(*FORMS.values())
        if not isinstance(coefficients, dict) or set(coefficients) - features:
            raise MemoryModelError(f"{where}: coefficients must map features among {sorted(features)} to numbers")
        return cls(**data)


def _fit_form(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with an intercept, weighted by 1/y (relative errors matter)."""
    a = np.column_stack([np.ones(len(y)), x]) / y[:, None]
    return np.linalg.lstsq(a, np.ones(len(y)), rcond=None)[0]


def _loo_mape(x: np.ndarray, y: np.ndarray) -> float:
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef = _fit_form(x[keep], y[keep])
        errors.append(abs(coef[0] + x[i] @ coef[1:] - y[i]) / y[i])
    return float(100.0 * np.mean(errors))


def fit_memory(features: Sequence[dict[str, float]], measured: Sequence[float],
               fitted_on: Sequence[str] = ()) -> MemoryCalibration:
    """The form with the lowest leave-one-out MAPE over end-to-end peaks `measured` (bytes)."""
    y = np.asarray(measured, dtype=float)
    if len(y) < MIN_FIT or not (y > 0).all():
        raise MemoryModelError(f"fitting the memory model needs >= {MIN_FIT} archs with a measured peak > 0, got "
                               f"{int((y > 0).sum())}; calibrate on more archs (`hwnas profile --calibrate 20`)")
    columns = {name: np.array([[f[k] for k in keys] for f in features]) for name, keys in FORMS.items()
               if all(k in f for f in features for k in keys)}
    candidates = {name: _loo_mape(x, y) for name, x in columns.items() if len(y) > x.shape[1] + 2}
    form = min(candidates, key=candidates.__getitem__)
    coef = _fit_form(columns[form], y)
    return MemoryCalibration(form, float(coef[0]), {k: float(c) for k, c in zip(FORMS[form], coef[1:])}, len(y),
                             candidates[form], {k: round(v, 3) for k, v in candidates.items()}, list(fitted_on))


def measure_memory(profiler: Profiler, arch: Arch, repeats: int = 3) -> tuple[int | None, str]:
    """End-to-end memory figure of an arch's whole network, measured as the blocks' were, and its source.

    A figure read from the program (hwnas.devices.memory.PROGRAM_SOURCES) is measured once; an RSS
    figure is the median of `repeats` measurements (one varies by up to ~10% with what the allocator
    still holds). None when the profiler measures no memory.
    """
    from hwnas.devices.memory import PROGRAM_SOURCES
    from hwnas.spaces import get_space

    space = get_space(arch.space)
    model, key = space.build(arch), f"{arch.space}/{arch}"
    peaks, source = [], ""
    for _ in range(repeats):
        m = profiler.measure_module(model, space.input_shape, key=key)
        peaks.append(m.measured_peak_bytes)
        source = m.memory_source
        if source in PROGRAM_SOURCES:
            break
    if any(p is None for p in peaks):
        return None, source
    return int(np.median(peaks)), source


def measure_peak_bytes(profiler: Profiler, arch: Arch, repeats: int = 3) -> int | None:
    """`measure_memory`'s figure alone."""
    return measure_memory(profiler, arch, repeats)[0]


def calibrate_memory(table: Any, profiler: Profiler, archs: Sequence[Arch], progress: bool = True) -> MemoryCalibration:
    """Measure the end-to-end peak of `archs` and store the fitted memory model in `table` (a LatencyTable
    whose entries have measured peaks); with fewer than `MIN_FIT` archs the table's model is left as it was."""
    from tqdm import tqdm

    if len(archs) < MIN_FIT:
        return table.memory
    rows = [(a, measure_peak_bytes(profiler, a))
            for a in tqdm(archs, desc="calibrate (memory)", unit="arch", disable=not progress)]
    rows = [(a, p) for a, p in rows if p]
    if len(rows) < MIN_FIT:
        return table.memory
    table.memory = fit_memory([table.memory_features(a) for a, _ in rows], [p for _, p in rows],
                              [str(a) for a, _ in rows])
    return table.memory
