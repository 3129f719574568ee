"""Contention: the share of its core each measurement got (CPU / wall time); say it, record it, refuse it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.devices.profilers import Profiler
from hwnas.devices.timing import Measurement, measurement_lock
from hwnas.latency.table import LatencyTableError

# A measurement runs on one pinned core and never sleeps, so its thread runs for the wall time it
# takes unless other processes are scheduled on that core. Measured on the 2-core dev VM (docs/latency.md,
# "A busy machine"): with other users' jobs only (load 9-15), measurements got 26-29% of their core and
# validate gave 100% within ±10%; with a 2-worker training search beside them, 22-23% and 80%.
BUSY_SHARE = 0.25


class MachineBusyError(LatencyTableError):
    """The machine was too busy while measuring for the numbers to be trusted (with --strict)."""


@dataclass(frozen=True)
class Contention:
    """How busy the machine was during a run of measurements: `cpu_share` is the median, over the
    measurements, of the measuring thread's CPU time / wall time (1.0: it had its core to itself)."""

    cpu_share: float
    measurements: int
    loadavg_1m: float | None = None  # the system's 1-minute load average at the end, and its cores
    cpu_count: int | None = None
    threshold: float = BUSY_SHARE
    spread: float | None = None  # median (p90 - p10) / median of the measurements' timed runs

    @property
    def busy(self) -> bool:
        return self.cpu_share < self.threshold

    def message(self, what: str) -> str:
        """One line with the figure, e.g. `machine busy during profiling: ...`."""
        load = ("" if self.loadavg_1m is None
                else f"; load average {self.loadavg_1m:.1f} on {self.cpu_count} cores")
        state = "busy" if self.busy else "quiet enough"
        return (f"machine {state} during {what}: its {self.measurements} measurements got a median "
                f"{self.cpu_share:.1%} of their CPU core (limit {self.threshold:.0%}{load})")

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_share": round(self.cpu_share, 3), "measurements": self.measurements,
                "loadavg_1m": self.loadavg_1m, "cpu_count": self.cpu_count, "threshold": self.threshold,
                "busy": self.busy, "spread": None if self.spread is None else round(self.spread, 3)}

    @classmethod
    def from_dict(cls, data: Any) -> Contention | None:
        """A recorded figure, or None where there is none (tables from before it, fitted tables)."""
        if not isinstance(data, dict) or not isinstance(data.get("cpu_share"), (int, float)):
            return None
        return cls(float(data["cpu_share"]), int(data.get("measurements", 0)), data.get("loadavg_1m"),
                   data.get("cpu_count"), float(data.get("threshold", BUSY_SHARE)), data.get("spread"))

    def merged(self, older: Contention | None) -> Contention:
        """This run combined with an earlier one into the same table: the busier share, all measurements."""
        if older is None:
            return self
        busier = self if self.cpu_share <= older.cpu_share else older
        return Contention(busier.cpu_share, self.measurements + older.measurements, busier.loadavg_1m,
                          busier.cpu_count, self.threshold, busier.spread)


def thread_clocks() -> tuple[float, float]:
    """(wall seconds, CPU seconds of the calling thread, which runs the measurement)."""
    return time.perf_counter(), time.thread_time()


class MeteredProfiler:
    """A profiler whose every measurement also records the CPU share it got (see `Contention`)."""

    def __init__(self, profiler: Profiler, clocks: Callable[[], tuple[float, float]] = thread_clocks) -> None:
        self.profiler = profiler
        self.clocks = clocks
        self.shares: list[float] = []
        self.spreads: list[float] = []  # (p90 - p10) / median of each measurement

    def __getattr__(self, name: str) -> Any:  # spec, cpus, layout, ...: the wrapped profiler's
        return getattr(self.profiler, name)

    def measure_module(self, *args: Any, **kwargs: Any) -> Measurement:
        return self._metered(self.profiler.measure_module, *args, **kwargs)

    def measure_onnx(self, *args: Any, **kwargs: Any) -> Measurement:
        return self._metered(self.profiler.measure_onnx, *args, **kwargs)

    def _metered(self, measure: Callable[..., Measurement], *args: Any, **kwargs: Any) -> Measurement:
        with measurement_lock():  # taken first: waiting for another process's measurement is not contention
            wall, cpu = self.clocks()
            m = measure(*args, **kwargs)
            wall_end, cpu_end = self.clocks()
            if wall_end > wall:
                self.shares.append(min(1.0, (cpu_end - cpu) / (wall_end - wall)))
                self.spreads.append((m.p90_ms - m.p10_ms) / m.median_ms if m.median_ms > 0 else 0.0)
        return m

    def contention(self) -> Contention | None:
        """The figure over every measurement so far (None before the first)."""
        if not self.shares:
            return None
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return Contention(float(np.median(self.shares)), len(self.shares),
                          None if load is None else round(load, 2), os.cpu_count(),
                          spread=float(np.median(self.spreads)))


def metered(profiler: Profiler | MeteredProfiler) -> Profiler | MeteredProfiler:
    """`profiler`, metered where its CPU time means something: local CPU runtimes (a remote agent or a
    GPU waits by design, so its share says nothing about the machine)."""
    spec = profiler.spec
    if isinstance(profiler, MeteredProfiler) or spec.runtime == "remote" or spec.device != "cpu":
        return profiler
    return MeteredProfiler(profiler)


def contention_of(profiler: Any) -> Contention | None:
    return profiler.contention() if isinstance(profiler, MeteredProfiler) else None


def warn_stderr(text: str) -> None:
    print(f"hwnas: warning: {text}", file=sys.stderr)


def report_contention(found: Contention | None, what: str, strict: bool = False,
                      warn: Callable[[str], None] = warn_stderr) -> None:
    """Busy: with `strict` raise MachineBusyError, else one warning line with the figure; quiet: nothing."""
    if found is None or not found.busy:
        return
    if strict:
        raise MachineBusyError(f"{found.message(what)}; --strict refuses numbers measured on a busy machine: "
                               "stop other work on this machine (or wait) and run it again")
    warn(f"{found.message(what)}; its numbers may be off by 10% or more: measure on a quieter machine")


def refuse_if_busy(profiler: Any, what: str, strict: bool) -> None:
    """With `strict`, raise MachineBusyError where the profiler's measurements so far saw a busy machine."""
    if strict:
        report_contention(contention_of(profiler), what, strict=True)


def record_contention(table: Any, profiler: Any) -> Contention | None:
    """Store this run's figure in the table's provenance, merged with an earlier run's (a resumed table)."""
    found = contention_of(profiler)
    if found is None:
        return None
    found = found.merged(Contention.from_dict(table.provenance.get("contention")))
    table.provenance["contention"] = found.to_dict()
    return found


def recorded_contention(table: Any) -> Contention | None:
    """The figure a table's provenance records (None: profiled before it existed, or a fitted table)."""
    return Contention.from_dict((getattr(table, "provenance", None) or {}).get("contention"))
