"""Memory figures of a model: a compiled program's own parts (weights, plan, delegate workspace), or the RSS peak growth of a call.

Stdlib only. The runtimes report `ProgramMemory`, read from the program or the runtime's own profile and
therefore identical on every load (`executorch_runtime.pte_memory`, `litert_runtime.TfliteRunner.memory`,
`ort_runtime.ort_memory`). `peak_growth` (the process's peak resident set over a call) is kept for the
agent's LiteRT runner: it repeats only to ~10% between processes (allocator reuse, page granularity). Linux: the peak (VmHWM) is reset through /proc/self/clear_refs, freed heap is
returned to the OS first (glibc `malloc_trim`) so that the call's allocations show up as new pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from hwnas.devices.timing import peak_rss_bytes, reset_peak_rss, rss_bytes

T = TypeVar("T")

RSS_SOURCE = "rss_peak_load_run"  # peak_growth over load + first run
# memory_source -> what its figure includes; figures of these sources are exact repeats across loads
PROGRAM_SOURCES: dict[str, str] = {
    "pte_plan+xnnpack_liveness": (
        "weights: the .pte's constant data (named data segments, constant buffer, data inside delegate blobs), "
        "as stored; plan: ExecuTorch's memory plan (execution_plan[0].non_const_buffer_sizes: the tensors "
        "outside XNNPACK and the delegates' inputs and outputs); workspace: per XNNPACK delegate, the "
        "liveness peak of the values inside its graph (read from the delegate's flatbuffer), an estimate of "
        "the workspace XNNPACK plans at load. Excluded: XNNPACK's packed copy of the weights, the runtime's "
        "fixed allocations"),
    "tflite_tensors+liveness": (
        "weights: the constant tensors of the .tflite (get_tensor_details of tensors no op produces), as "
        "stored; plan: the model's input and output tensors (LiteRT's arena); workspace: the liveness peak "
        "of the other activation tensors over the model's ops (_get_ops_details), an estimate of the arena "
        "and the XNNPACK delegate's workspace that hold them. Excluded: XNNPACK's packed copy of the weights, "
        "the interpreter's fixed allocations"),
    "ort_profile_nodes": (
        "weights: the sum of ONNX Runtime's per-node parameter_size (constant inputs as the optimized graph "
        "holds them: BatchNorm folded, NCHWc-reordered), from one profiled run; plan: 0; workspace: the "
        "largest activation_size + output_size of any node (its inputs and outputs alive together). "
        "Excluded: tensors alive across that node (a residual's input), arena rounding, the session's fixed "
        "allocations"),
}


@dataclass(frozen=True)
class ProgramMemory:
    """A compiled program's memory by part (bytes): `total_bytes` is its `measured_peak_bytes`."""

    weight_bytes: int  # constant data as the program stores it (weights, biases, shape constants)
    plan_bytes: int  # the runtime's planned buffers (program inputs and outputs, tensors between delegates)
    workspace_bytes: int  # activations inside the delegate(s): liveness peak of their intermediate tensors
    source: str  # a key of PROGRAM_SOURCES
    # the activation peak with the program's inputs and outputs counted like its other tensors (an input
    # freed after its last use): what its activations add inside a larger program made of such parts
    graph_activation_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.plan_bytes + self.workspace_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fields(self) -> dict[str, Any]:
        """The memory fields of a Measurement (`summarize(..., **memory.fields())`)."""
        return {"measured_peak_bytes": self.total_bytes, "memory_source": self.source,
                "extra": {"memory": {k: v for k, v in self.to_dict().items() if k != "source"}}}

    def __post_init__(self) -> None:
        if not self.graph_activation_bytes:
            object.__setattr__(self, "graph_activation_bytes", self.plan_bytes + self.workspace_bytes)


def liveness_peak_bytes(steps: Sequence[tuple[Iterable[int], Iterable[int]]], sizes: Mapping[int, int],
                        live_from_start: Iterable[int] = (), live_to_end: Iterable[int] = ()) -> int:
    """Peak bytes of tensors alive at once when `steps` (each: input ids, output ids) run in order.

    Only ids in `sizes` count (constants and other memory are left out by leaving them out of `sizes`).
    A tensor is alive from the step that produces it (the first step for `live_from_start`) to its last
    use (the last step for `live_to_end`; its producing step when unused), inputs and outputs of a step
    alive together: the peak an ideal planner reaches, which runtimes' greedy planners approach.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    end = max(len(steps) - 1, 0)
    for t in live_from_start:
        if t in sizes:
            first[t] = 0
    for i, (ins, outs) in enumerate(steps):
        for t in outs:
            if t in sizes:
                first.setdefault(t, i)
                last[t] = max(last.get(t, i), i)
        for t in ins:
            if t in sizes:
                first.setdefault(t, 0)
                last[t] = max(last.get(t, i), i)
    for t in live_to_end:
        if t in sizes:
            first.setdefault(t, end)
            last[t] = end
    live = [0] * (end + 1)
    for t, start in first.items():
        for i in range(start, last.get(t, start) + 1):
            live[i] += int(sizes[t])
    return max(live) if live else 0


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
