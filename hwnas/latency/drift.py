"""Drift: a fixed small model measured with the blocks and again at use time; >5% apart rescales or refuses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hwnas.devices.profilers import Profiler
from hwnas.devices.timing import Measurement
from hwnas.latency.table import LatencyTableError

REFERENCE_MODEL = "hwnas-reference-conv-v1"  # change the name when the model below changes
REFERENCE_SHAPE = (1, 28, 28)
THRESHOLD = 0.05
USE_ROUNDS = 3  # at use time: the lowest median of this many short rounds (same rule as profiling)


class LatencyDriftError(LatencyTableError):
    """The machine is measurably faster or slower than when the table was profiled (with --strict)."""


def reference_module():
    """The drift reference: two 3x3 convs (16 channels) on 1x28x28, pooled to 10 outputs; fixed weights."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()


def measure_reference(profiler: Profiler) -> Measurement:
    """One measurement of the reference model with the profiler's spec (same options and affinity)."""
    return profiler.measure_module(reference_module(), REFERENCE_SHAPE, key="hwnas-reference")


def reference_ms(profiler: Profiler) -> float:
    """The reference's latency under the spec's statistic."""
    return measure_reference(profiler).value(profiler.spec.statistic)


def reference_record(value_ms: float, old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The table's `reference` after one more round: the lowest value over rounds, like a block
    (the key stays `median_ms`; with `statistic: p10` it holds the p10)."""
    fresh = not old or old.get("model") != REFERENCE_MODEL
    best = value_ms if fresh else min(value_ms, old["median_ms"])
    rounds = 1 if fresh else int(old.get("rounds", 1)) + 1
    return {"model": REFERENCE_MODEL, "median_ms": best, "rounds": rounds}


@dataclass(frozen=True)
class DriftCheck:
    """Reference latency at profiling vs now; `factor` = now / then is applied to predictions when `rescaled`."""

    reference_ms: float | None
    now_ms: float | None
    factor: float
    rescaled: bool
    message: str

    @property
    def drift(self) -> float | None:
        return None if self.reference_ms is None or self.now_ms is None else self.now_ms / self.reference_ms - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drift": self.drift}


def has_reference(table: Any) -> bool:
    ref = getattr(table, "reference", None)
    return bool(ref) and ref.get("model") == REFERENCE_MODEL


def check_drift(table: Any, profiler: Profiler, strict: bool = False, threshold: float = THRESHOLD,
                rounds: int = USE_ROUNDS, now_ms: float | None = None) -> DriftCheck:
    """Re-measure the table's reference model (`rounds` short rounds, well under a second; or take
    `now_ms`, the lowest reference median a caller measured interleaved with its own rounds); beyond
    `threshold`, rescale the table's predictions (`table.drift_factor`) or, with `strict`, raise
    LatencyDriftError. Tables without a reference (schema v1, fitted tables) are used as they are."""
    if not has_reference(table):
        why = "schema v1" if getattr(table, "schema_version", 2) < 2 else "no reference measurement"
        return DriftCheck(None, None, 1.0, False, f"drift not checked: the table has {why}; re-profile to add one")
    ref = table.reference
    table.drift_factor = 1.0
    now = now_ms if now_ms is not None else min(reference_ms(profiler) for _ in range(max(1, rounds)))
    then = float(ref["median_ms"])
    factor = now / then
    drift = factor - 1.0
    if abs(drift) <= threshold:
        return DriftCheck(then, now, 1.0, False, f"drift {drift:+.1%} (reference {then:.4f} -> {now:.4f} ms): within ±{threshold:.0%}")
    text = (f"this machine measures the reference model at {now:.4f} ms, the table recorded {then:.4f} ms "
            f"(drift {drift:+.1%}, over ±{threshold:.0%})")
    if strict:
        raise LatencyDriftError(f"{text}; --strict refuses it: wait for a quieter machine or re-profile the table")
    table.drift_factor = factor
    return DriftCheck(then, now, factor, True, f"{text}: predictions rescaled by {factor:.3f}")
