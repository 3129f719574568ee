"""ONNX Runtime sessions, inputs, timing and memory figure; stdlib + numpy + onnxruntime only (the agent uses it)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from typing import Any

import numpy as np

from hwnas.devices.memory import ProgramMemory
from hwnas.devices.timing import Measurement, measurement_lock, summarize, time_runs
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


ORT_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}


_ENV_ARENA_BYTES: list[int] = []  # the process-wide capped CPU arena, registered once


def _capped_arena(max_bytes: int) -> None:
    """Register a CPU arena of at most `max_bytes` in the ONNX Runtime environment (once per process)."""
    ort = _ort()
    if not _ENV_ARENA_BYTES:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(int(max_bytes), -1, -1, -1))
        _ENV_ARENA_BYTES.append(int(max_bytes))
    elif _ENV_ARENA_BYTES[0] != int(max_bytes):
        raise ProfilerError(f"this process already capped the ONNX Runtime arena at {_ENV_ARENA_BYTES[0]} bytes")


_PROVIDER_LIBS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt",
                  "ROCMExecutionProvider": "rocm"}


def _why_provider_failed(provider: str) -> str:
    """Why ONNX Runtime could not load `provider`: the shared library its provider plug-in misses (found by
    loading the plug-in as ONNX Runtime does), else no usable device."""
    import ctypes
    from pathlib import Path

    kind = _PROVIDER_LIBS.get(provider)
    if kind is None:
        return f"{provider} did not load"
    plugin = Path(_ort().__file__).parent / "capi" / f"libonnxruntime_providers_{kind}.so"
    if not plugin.exists():
        return f"this onnxruntime has no {provider} plug-in ({plugin.name}); install onnxruntime-gpu"
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        missing = re.search(r"(lib[\w.+-]+\.so[\d.]*)", str(exc).replace(plugin.name, ""))
        name = missing.group(1) if missing else str(exc)[:200]
        return (f"the library {name} cannot be loaded; install the CUDA/cuDNN versions this onnxruntime-gpu "
                "needs (https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html) or put "
                "them on LD_LIBRARY_PATH")
    return "its libraries load but it found no usable device (driver, or device_id out of range)"


def check_providers(session, providers: tuple[str, ...]) -> None:
    """Raise DeviceUnavailableError unless the session really runs on the first provider asked for.

    ONNX Runtime lists an installed provider as available even when its libraries fail to load, and then
    falls back to the next provider silently: CPU numbers would be stored as CUDA numbers.
    """
    actual = list(session.get_providers())
    if providers[0] not in actual:
        raise DeviceUnavailableError(
            f"ONNX Runtime fell back to {', '.join(actual) or 'no provider'} because {providers[0]} did not "
            f"load: {_why_provider_failed(providers[0])}")


def _provider_list(providers: tuple[str, ...], options: dict[str, Any] | None) -> list:
    """The providers for InferenceSession; `options` (values as strings, as ORT wants) go to the first."""
    if not options:
        return list(providers)
    return [(providers[0], {k: str(v) for k, v in options.items()}), *providers[1:]]


def ort_session(model_bytes: bytes, threads: int, graph_optimization: str = "all",
                providers: tuple[str, ...] = ("CPUExecutionProvider",), arena: bool = True,
                arena_max_bytes: int | None = None, provider_options: dict[str, Any] | None = None):
    """An InferenceSession with fixed threads (inter-op 1, sequential) and the given optimization level.

    `arena_max_bytes` (CPU only) makes the session allocate its tensors from a process-wide arena of at
    most that many bytes: a model needing more fails to run instead of growing the process.
    `provider_options` go to the first provider. The session is checked to run on that provider (no
    silent CPU fallback) and ONNX Runtime's run-time fallback to CPU is switched off.
    """
    ort = _ort()
    so = ort.SessionOptions()
    if arena and arena_max_bytes is not None and providers[0] == "CPUExecutionProvider":
        _capped_arena(arena_max_bytes)
        so.add_session_config_entry("session.use_env_allocators", "1")
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPT_LEVELS[graph_optimization])
    so.enable_cpu_mem_arena = arena
    if not arena:
        so.enable_mem_pattern = False
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, sess_options=so,
                                       providers=_provider_list(providers, provider_options))
    except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad model
        raise ProfilerError(f"ONNX Runtime could not load the model: {str(exc).strip()[:500]}") from None
    check_providers(session, providers)
    if hasattr(session, "disable_fallback"):
        session.disable_fallback()
    return session


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def make_feed(session, input_shape: tuple[int, ...] | Feed | None, batch_size: int,
              max_elements: int | None = None) -> Feed:
    """Random inputs (seeded) for a session: per-sample shape for a single input, or the model's own shapes.

    `max_elements` caps the total input elements (checked before anything is allocated).
    """
    if isinstance(input_shape, dict):
        return {k: np.asarray(v) for k, v in input_shape.items()}
    inputs = session.get_inputs()
    shapes = []
    for i, inp in enumerate(inputs):
        if input_shape is not None and i == 0:
            shapes.append((batch_size, *tuple(input_shape)))
        else:
            shapes.append(tuple(d if isinstance(d, int) and d > 0 else (batch_size if j == 0 else 1)
                                for j, d in enumerate(inp.shape)))
    total = sum(int(np.prod(s, dtype=object)) for s in shapes)
    if max_elements is not None and total > max_elements:
        raise ProfilerError(f"the model's inputs need {total} elements, above the cap of {max_elements}")
    rng = np.random.default_rng(0)
    return {inp.name: rng.standard_normal(shape).astype(_ORT_DTYPES.get(inp.type, np.float32))
            for inp, shape in zip(inputs, shapes)}


def bind_outputs_once(session, binding, reference: list, device: str, device_id: int = 0) -> list:
    """Allocate every output once on `device` (shapes and types of `reference`, one plain run's outputs)
    and bind it, so every run writes into the same buffers; returns the OrtValues (keep them alive)."""
    ort = _ort()
    values = []
    for out, value in zip(session.get_outputs(), reference):
        array = np.asarray(value)
        ort_value = ort.OrtValue.ortvalue_from_shape_and_type(list(array.shape), array.dtype, device, device_id)
        binding.bind_ortvalue_output(out.name, ort_value)
        values.append(ort_value)
    return values


def bound_runner(session, feed: Feed, device: str = "cpu", device_id: int = 0):
    """A zero-argument run through IOBinding: inputs bound once as OrtValues on `device`.

    On a GPU every output is allocated once on the device and every timed run writes into it, so neither
    output allocation nor a host<->device copy is timed, and each run waits for its outputs (the GPU work
    is done when it returns). On CPU outputs stay bound by device, as the shipped CPU tables were measured
    (ONNX Runtime's arena hands out the same block each run: allocating them once changed medians by
    0.99x-1.024x, within noise, `benchmarks/ort_output_binding.py`). Binding moved the block-sum/end-to-end
    ratio on `mobile:mnist` from ~0.76 to ~0.86.
    """
    ort = _ort()
    binding = session.io_binding()
    for name, value in feed.items():
        binding.bind_ortvalue_input(
            name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), device, device_id))
    reference = session.run(None, feed)
    if device == "cpu":
        for out in session.get_outputs():
            binding.bind_output(out.name)

        def run() -> None:
            session.run_with_iobinding(binding)

        return run
    kept = bind_outputs_once(session, binding, reference, device, device_id)

    def run_on_device() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run_on_device.bound_outputs = kept  # type: ignore[attr-defined]
    return run_on_device


def _bound_device(providers: tuple[str, ...], options: dict[str, Any] | None) -> tuple[str, int]:
    """Where a session's inputs and outputs live: ("cuda", device_id) under the CUDA provider, else CPU."""
    if providers[0] == "CUDAExecutionProvider":
        return "cuda", int((options or {}).get("device_id", 0))
    return "cpu", 0


def ort_measure(model_bytes: bytes, input_shape: tuple[int, ...] | Feed | None, *, threads: int,
                graph_optimization: str, warmup: int, repeats: int, batch_size: int = 1,
                providers: tuple[str, ...] = ("CPUExecutionProvider",), measure_memory: bool = True,
                max_s: float | None = None, max_input_elements: int | None = None,
                arena_max_bytes: int | None = None, provider_options: dict[str, Any] | None = None) -> Measurement:
    """Time an ONNX model in ONNX Runtime; memory: ONNX Runtime's own node sizes from a profiled run (`ort_memory`).

    `max_s` caps the seconds spent holding the measurement lock (checked between runs);
    `max_input_elements` caps the generated inputs and `arena_max_bytes` the timed session's tensors (the
    memory pass runs only after the model ran within that cap).
    """
    with measurement_lock():
        deadline = None if max_s is None else time.perf_counter() + max_s
        session = ort_session(model_bytes, threads, graph_optimization, providers, arena_max_bytes=arena_max_bytes,
                              provider_options=provider_options)
        feed = make_feed(session, input_shape, batch_size, max_input_elements)
        try:
            run = bound_runner(session, feed, *_bound_device(providers, provider_options))
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"ONNX Runtime failed to run the model: {str(exc).strip()[:500]}") from None
        try:
            times = time_runs(run, warmup, repeats, deadline=deadline)
        except TimeoutError as exc:
            raise ProfilerError(f"the measurement took longer than {max_s:g} s ({exc}); "
                                "lower repeats/warmup or the model size") from None
        except Exception as exc:  # noqa: BLE001 - e.g. the capped arena ran out on a bound run
            raise ProfilerError(f"ONNX Runtime failed to run the model: {str(exc).strip()[:500]}") from None
        check_providers(session, providers)  # still on the provider asked for after the timed runs
        session = None  # free the timed session before the memory pass
        memory: dict[str, Any] = {}
        if measure_memory and "CPUExecutionProvider" == providers[0]:
            memory = ort_memory(model_bytes, feed, threads, graph_optimization).fields()
    return summarize(times, warmup, **memory)


ORT_MEMORY_SOURCE = "ort_profile_nodes"  # see hwnas.devices.memory.PROGRAM_SOURCES


def ort_memory(model_bytes: bytes, feed: dict[str, Any], threads: int = 1,
               graph_optimization: str = "all") -> ProgramMemory:
    """Run the model once in a profiling CPU session and read ONNX Runtime's per-node sizes (the same on every run).

    weights: the sum over nodes of `parameter_size` (the constant inputs as the optimized graph holds
    them: BatchNorm folded, NCHWc-reordered); plan: 0 (ORT exposes no figure of its memory pattern);
    workspace: the largest `activation_size + output_size` of any node (its non-constant inputs and its
    outputs, alive together while it runs).
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPT_LEVELS[graph_optimization])
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        try:
            session = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
            session.run(None, feed)
            path = session.end_profiling()
            with open(path) as fh:
                events = json.load(fh)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types
            raise ProfilerError(f"ONNX Runtime could not profile the model: {str(exc).strip()[:400]}") from None
    nodes = [e.get("args", {}) for e in events if e.get("cat") == "Node" and "parameter_size" in e.get("args", {})]
    if not nodes:
        raise ProfilerError("ONNX Runtime's profile has no node sizes (an onnxruntime without them); "
                            "measure memory with another onnxruntime version")
    weights = sum(int(n["parameter_size"]) for n in nodes)
    working = max(int(n.get("activation_size", 0)) + int(n.get("output_size", 0)) for n in nodes)
    return ProgramMemory(weights, 0, working, ORT_MEMORY_SOURCE, working)
