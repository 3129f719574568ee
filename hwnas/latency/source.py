"""LatencySource: the interface every latency predictor implements (measured tables, fitted tables, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np

from hwnas.latency.memory import MemoryModelError
from hwnas.spaces import Arch


class LatencySource(ABC):
    """Predicts the end-to-end latency of a space's archs on one device.

    Implementations set `space` (the space spec) and `device` (what the numbers describe: a device
    fingerprint or identity, a dict with at least `name`). `reference` is the drift reference measured
    with the source (None: the source is used as it is, never rescaled); `drift_factor` rescales
    predictions when hwnas.latency.drift found the machine faster or slower than at profiling.
    """

    space: str
    device: dict[str, Any]
    reference: dict[str, Any] | None = None
    drift_factor: float = 1.0

    @abstractmethod
    def predict_ms(self, arch: Arch) -> float:
        """Predicted end-to-end latency of `arch` in ms."""

    def predict_many_ms(self, archs: Iterable[Arch]) -> np.ndarray:
        """`predict_ms` of each arch, in order."""
        return np.array([self.predict_ms(a) for a in archs], dtype=float)

    def predict_peak_bytes(self, arch: Arch) -> float:
        """Predicted peak memory (bytes) of running `arch` end to end; MemoryModelError where the source has
        no measured memory."""
        raise MemoryModelError(f"the latency source for {self.space} on {self.device_name!r} predicts no memory; "
                               "use a measured table profiled with `measure_memory: true` (`hwnas profile`)")

    @property
    @abstractmethod
    def sha256(self) -> str:
        """Content hash of the source, recorded by trials and manifests."""

    @abstractmethod
    def check_compatible(self, device_identity: dict[str, Any] | None = None, space: str | None = None) -> None:
        """Refuse use for another space or (given its identity settings) another device (LatencyTableError)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: how the source predicts (calibration form, fitted coefficients)."""

    @property
    def device_name(self) -> str:
        return str(self.device.get("name", ""))

    def fingerprint(self) -> dict[str, Any]:
        """What a run or manifest records about the source: its hash, device and space."""
        return {"sha256": self.sha256, "device": self.device, "space": self.space}
