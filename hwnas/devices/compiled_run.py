"""Timing a compiled model (a .pte program, a .tflite model) under the spec's protocol, with its peak memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hwnas.devices.memory import peak_growth
from hwnas.devices.ort_runtime import ProfilerError
from hwnas.devices.timing import Measurement, measurement_lock, summarize, time_runs

MEMORY_SOURCE = "rss_peak_load_run"  # see hwnas.devices.memory.peak_growth
R = TypeVar("R")


def measure_loaded(load: Callable[[], R], run: Callable[[R], Any], *, warmup: int, repeats: int,
                   measure_memory: bool, runtime: str) -> Measurement:
    """`load()` (which loads the model and runs it once: its peak memory growth is the model's) then time
    `run(loaded)` under the measurement lock; a failure inside the runtime is a ProfilerError naming it."""
    with measurement_lock():
        try:
            loaded, peak = peak_growth(load)
            times = time_runs(lambda: run(loaded), warmup, repeats)
        except ProfilerError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"{runtime} failed to run the model: {str(exc).strip()[:400]}") from None
    memory = {"measured_peak_bytes": peak, "memory_source": MEMORY_SOURCE} if measure_memory and peak is not None else {}
    return summarize(times, warmup, **memory)
