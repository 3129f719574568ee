"""Peak process-memory growth of one call (load + first run of a model): the memory figure of the mobile runtimes.

Stdlib only. Linux: the peak resident set (VmHWM) is reset through /proc/self/clear_refs, freed heap is
returned to the OS first (glibc `malloc_trim`) so that the call's allocations show up as new pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import TypeVar

from hwnas.devices.timing import peak_rss_bytes, reset_peak_rss, rss_bytes

T = TypeVar("T")


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc only; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_growth(fn: Callable[[], T], warm: bool = True) -> tuple[T, int | None]:
    """`fn()` and by how many bytes it raised this process's peak resident memory (None: not measurable here).

    With `warm`, `fn` runs once before (result dropped), so one-time initialisation of the runtime (its
    libraries, thread pool, kernel caches) is not counted: measured here, a first ONNX Runtime session
    of a `mobile:mnist` arch raised the peak by 34 MB, the next ones by 0.7 MB, repeatably to 5%.

    What it includes: every page the call touched for the first time (the runtime's arena or memory plan,
    packed weights, kernel workspaces, the runtime's own allocations); pages the process already held are
    not counted, so a figure is a lower bound when the allocator reuses freed memory.
    """
    if warm:
        fn()
    _trim_heap()
    base = rss_bytes()
    if base is None or not reset_peak_rss():
        return fn(), None
    out = fn()
    peak = peak_rss_bytes()
    return out, None if peak is None else max(0, peak - base)
