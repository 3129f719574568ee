"""ONNX Runtime sessions, inputs and timing; stdlib + numpy + onnxruntime only (the agent uses it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.devices.timing import (
    Measurement,
    measurement_lock,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    summarize,
    time_runs,
)
from hwnas.errors import HwnasError

Feed = dict[str, np.ndarray]


class DeviceUnavailableError(HwnasError):
    """The device a spec asks for (e.g. CUDA) is not present on this machine."""


class ProfilerError(HwnasError):
    """A model could not be measured (bad ONNX, wrong input shape, runtime failure)."""


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeviceUnavailableError("onnxruntime is not installed; `pip install onnxruntime`") from None
    return ort


_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}


def ort_session(model_bytes: bytes, threads: int, graph_optimization: str = "all",
                providers: tuple[str, ...] = ("CPUExecutionProvider",), arena: bool = True):
    """An InferenceSession with fixed threads (inter-op 1, sequential) and the given optimization level."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT[graph_optimization])
    so.enable_cpu_mem_arena = arena
    if not arena:
        so.enable_mem_pattern = False
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, sess_options=so, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad model
        raise ProfilerError(f"ONNX Runtime could not load the model: {str(exc).strip()[:500]}") from None


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def make_feed(session, input_shape: tuple[int, ...] | Feed | None, batch_size: int) -> Feed:
    """Random inputs (seeded) for a session: per-sample shape for a single input, or the model's own shapes."""
    if isinstance(input_shape, dict):
        return {k: np.asarray(v) for k, v in input_shape.items()}
    inputs = session.get_inputs()
    rng = np.random.default_rng(0)
    feed = {}
    for i, inp in enumerate(inputs):
        if input_shape is not None and i == 0:
            shape = (batch_size, *tuple(input_shape))
        else:
            shape = tuple(d if isinstance(d, int) and d > 0 else (batch_size if j == 0 else 1)
                          for j, d in enumerate(inp.shape))
        dtype = _ORT_DTYPES.get(inp.type, np.float32)
        feed[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def bound_runner(session, feed: Feed, device: str = "cpu"):
    """A zero-argument run through IOBinding: inputs bound once as OrtValues, outputs left in ORT memory.

    This keeps numpy conversion and output copies out of the timing, which matters for small blocks
    (it moved the block-sum/end-to-end ratio on `mobile:mnist` from ~0.76 to ~0.86 and raised Kendall tau).
    With `device="cuda"` inputs are copied to the GPU once and outputs stay there, so no host<->device
    copy is timed; each run waits for its outputs (the GPU work is done when it returns).
    """
    import onnxruntime as ort

    binding = session.io_binding()
    for name, value in feed.items():
        array = np.ascontiguousarray(value)
        ort_value = (ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0) if device == "cuda"
                     else ort.OrtValue.ortvalue_from_numpy(array))
        binding.bind_ortvalue_input(name, ort_value)
    for out in session.get_outputs():
        if device == "cuda":
            binding.bind_output(out.name, "cuda", 0)
        else:
            binding.bind_output(out.name)

    if device == "cuda":
        def run() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
    else:
        def run() -> None:
            session.run_with_iobinding(binding)

    return run


def ort_measure(model_bytes: bytes, input_shape: tuple[int, ...] | Feed | None, *, threads: int,
                graph_optimization: str, warmup: int, repeats: int, batch_size: int = 1,
                providers: tuple[str, ...] = ("CPUExecutionProvider",), measure_memory: bool = True) -> Measurement:
    """Time an ONNX model in ONNX Runtime; memory from a second, arena-off session's peak RSS."""
    with measurement_lock():
        session = ort_session(model_bytes, threads, graph_optimization, providers)
        feed = make_feed(session, input_shape, batch_size)
        try:
            session.run(None, feed)
            run = bound_runner(session, feed, "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu")
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"ONNX Runtime failed to run the model: {str(exc).strip()[:500]}") from None
        times = time_runs(run, warmup, repeats)
        session = None  # free the timed session before the memory pass
        memory: dict[str, Any] = {}
        if measure_memory and "CPUExecutionProvider" == providers[0]:
            quiet = ort_session(model_bytes, threads, graph_optimization, providers, arena=False)
            base = rss_bytes()
            if base is not None and reset_peak_rss():
                quiet.run(None, feed)
                peak = peak_rss_bytes()
                if peak is not None:
                    memory = {"measured_peak_bytes": max(0, peak - base), "memory_source": "rss_peak_arena_off"}
    return summarize(times, warmup, **memory)
