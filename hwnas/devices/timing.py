"""The timing protocol (warm-up, >=50 timed runs, median/p10/p90/CV), `Measurement`, the one-at-a-time lock.

Imports only the standard library and numpy so the on-device agent can use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_REPEATS = 50


@dataclass(frozen=True)
class Measurement:
    """Latency statistics of one model on one device, plus memory where known."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    cv: float
    n: int
    warmup: int
    activation_bytes: int | None = None  # analytic peak activation bytes (torch.fx liveness)
    measured_peak_bytes: int | None = None  # runtime-reported or RSS peak above baseline
    memory_source: str = ""  # e.g. torch.cuda.max_memory_allocated, rss_peak (arena off)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def value(self, statistic: str = "median") -> float:
        """The latency under a spec's `statistic`: `median` or `p10` (robust to a loaded machine)."""
        return float(getattr(self, f"{statistic}_ms"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def summarize(times_ms: list[float] | np.ndarray, warmup: int, **memory: Any) -> Measurement:
    """Statistics of the timed runs (the warm-up runs are already excluded)."""
    t = np.asarray(times_ms, dtype=float)
    if t.size == 0:
        raise ValueError("no timed runs to summarize")
    mean = float(t.mean())
    return Measurement(
        median_ms=float(np.median(t)),
        p10_ms=float(np.percentile(t, 10)),
        p90_ms=float(np.percentile(t, 90)),
        mean_ms=mean,
        cv=float(t.std() / mean) if mean > 0 else 0.0,
        n=int(t.size),
        warmup=int(warmup),
        **memory,
    )


def time_runs(run: Callable[[], object], warmup: int, repeats: int,
              sync: Callable[[], object] | None = None, deadline: float | None = None) -> list[float]:
    """Call `run` `warmup` times untimed, then `repeats` times timed (ms, perf_counter).

    With a `deadline` (a perf_counter value), raises TimeoutError once it has passed (checked between runs).
    """
    for _ in range(warmup):
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError("warm-up ran past the deadline")
        run()
    if sync is not None:
        sync()
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        if deadline is not None and start > deadline:
            raise TimeoutError(f"the deadline passed after {i} of {repeats} timed runs")
        run()
        if sync is not None:
            sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


# -- same conditions: CPU affinity ---------------------------------------------------------------
def default_cpus(threads: int) -> tuple[int, ...]:
    """The cores a spec without `cpus` runs on: the last `threads` cores this process may use.

    The last core, not core 0, because the kernel and most other processes favour the low cores.
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return ()
    return tuple(allowed[-int(threads):]) if threads <= len(allowed) else ()


@contextlib.contextmanager
def cpu_affinity(cpus: tuple[int, ...] | list[int]) -> Iterator[tuple[int, ...]]:
    """Pin the calling thread (and threads it starts) to `cpus` for the block; restores the old mask after.

    Yields the cores actually used: () where the OS has no affinity API or `cpus` is empty.
    """
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield ()
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield tuple(sorted(cpus))
    finally:
        os.sched_setaffinity(0, old)


# -- one measurement at a time -------------------------------------------------------------------
_THREAD_LOCK = threading.RLock()
_depth = threading.local()


def _lock_path() -> Path:
    return Path(os.environ.get("HWNAS_MEASURE_LOCK", Path(tempfile.gettempdir()) / "hwnas-measure.lock"))


def lock_held() -> bool:
    """Whether this thread holds the measurement lock (what every timed run must hold)."""
    return getattr(_depth, "n", 0) > 0


@contextlib.contextmanager
def measurement_lock() -> Iterator[None]:
    """Exclusive across threads and processes of this host (an flock on a lock file); re-entrant."""
    with _THREAD_LOCK:
        depth = getattr(_depth, "n", 0)
        if depth:
            _depth.n = depth + 1
            try:
                yield
            finally:
                _depth.n -= 1
            return
        path = _lock_path()
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            _depth.n = 1
            try:
                yield
            finally:
                _depth.n = 0
                fcntl.flock(fh, fcntl.LOCK_UN)


# -- process memory ----------------------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024
