"""Timing a compiled model (a .pte program, a .tflite model) under the spec's protocol, with its memory figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hwnas.devices.memory import ProgramMemory
from hwnas.devices.ort_runtime import ProfilerError
from hwnas.devices.timing import Measurement, measurement_lock, summarize, time_runs

R = TypeVar("R")


def measure_loaded(load: Callable[[], R], run: Callable[[R], Any], *, warmup: int, repeats: int, runtime: str,
                   memory: Callable[[R], ProgramMemory] | None = None) -> Measurement:
    """`load()` (which loads the model and runs it once) then time `run(loaded)` under the measurement lock;
    `memory(loaded)`, when given, is the model's memory figure (read from the program, not from the process);
    a failure inside the runtime is a ProfilerError naming it."""
    with measurement_lock():
        try:
            loaded = load()
            times = time_runs(lambda: run(loaded), warmup, repeats)
            figure = memory(loaded) if memory is not None else None
        except ProfilerError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"{runtime} failed to run the model: {str(exc).strip()[:400]}") from None
    return summarize(times, warmup, **(figure.fields() if figure is not None else {}))
