"""Profilers behind one interface and a registry: ONNX Runtime (CPU/CUDA), PyTorch CPU/CUDA, remote agent."""

from __future__ import annotations

import contextlib
import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.devices.layout import NHWC, BlockLayout, block_layout
from hwnas.devices.ort_runtime import DeviceUnavailableError, Feed, ProfilerError, _ort, ort_measure
from hwnas.devices.spec import DeviceSpec, load_device
from hwnas.devices.timing import Measurement, cpu_affinity, measurement_lock, summarize, time_runs
from hwnas.registry import Registry

OnnxModel = str | os.PathLike[str] | bytes


def _analytic_bytes(module: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> int | None:
    from hwnas.metrics.memory import peak_activation_bytes

    try:
        return int(peak_activation_bytes(module, tuple(input_shape), batch_size=batch_size))
    except Exception:  # noqa: BLE001 - untraceable modules simply have no analytic figure
        return None


def read_onnx(model: OnnxModel) -> bytes:
    """ONNX bytes from bytes or a file path."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise ProfilerError(f"ONNX model {path} does not exist; pass a .onnx file path or the model bytes")
    return path.read_bytes()


class Profiler(ABC):
    """Measures latency (and memory where possible) with the spec's protocol, one measurement at a time.

    `input_shape` is per sample, (C, H, W); the spec's batch size is prepended.
    """

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.cpus = spec.pinned_cpus()
        self._exported: dict[str, tuple[bytes, int | None]] = {}  # key -> (ONNX bytes, activation bytes)

    @contextlib.contextmanager
    def conditions(self) -> Iterator[None]:
        """The same conditions for every measurement of this spec: alone on the host, pinned to `cpus`."""
        with measurement_lock(), cpu_affinity(self.cpus):
            yield

    def batch_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.spec.batch_size, *tuple(input_shape))

    def measure_module(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> Measurement:
        """Latency of a PyTorch module: exported to ONNX, then `measure_onnx` (torch profilers override).
        With `key` (a name for this module and shape), the export is kept and reused by later rounds."""
        from dataclasses import replace

        model, activation = self._export(module, input_shape, key)
        m = self.measure_onnx(model, tuple(input_shape))
        return replace(m, activation_bytes=activation)

    def _export(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None) -> tuple[bytes, int | None]:
        """ONNX bytes and analytic activation bytes of a module, cached under `key` (most recent 512)."""
        from hwnas.onnx_export import export_onnx_bytes

        if key is not None and key in self._exported:
            return self._exported[key]
        out = (export_onnx_bytes(module, self.batch_shape(input_shape)),
               _analytic_bytes(module, input_shape, self.spec.batch_size))
        if key is not None:
            if len(self._exported) >= 512:
                self._exported.pop(next(iter(self._exported)))
            self._exported[key] = out
        return out

    @abstractmethod
    def measure_onnx(self, model: OnnxModel, input_shape: tuple[int, ...] | Feed | None = None) -> Measurement:
        """Latency of an ONNX model; `input_shape` per sample, a full feed dict, or None (from the model)."""

    def layout(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> BlockLayout | None:
        """The runtime's tensor layouts at a block's boundaries (None: this runtime has no layout choice)."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        return self.spec.fingerprint()


PROFILERS: Registry[type[Profiler]] = Registry("profiler")


@PROFILERS.register("onnxruntime")
class OrtProfiler(Profiler):
    """ONNX Runtime with the spec's threads and graph optimization (CPU, or the CUDA provider)."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        if spec.dtype != "float32":
            raise ProfilerError(
                f"device {spec.name!r} asks for dtype {spec.dtype}, but the ONNX Runtime profiler times the FP32 "
                "graph hwnas exports (it would report FP32 numbers as FP16); use dtype: float32, a torch-cuda "
                "spec for FP16, or `hwnas export --format tensorrt --fp16`"
            )
        if spec.providers:
            self.providers = spec.providers
        elif spec.device == "cuda":
            self.providers = ("CUDAExecutionProvider", "CPUExecutionProvider")
        else:
            self.providers = ("CPUExecutionProvider",)
        available = _ort().get_available_providers()
        if self.providers[0] not in available:
            raise DeviceUnavailableError(
                f"device {spec.name!r} needs ONNX Runtime provider {self.providers[0]}, but this install has "
                f"{', '.join(available)}; install onnxruntime-gpu or use a CPU device spec"
            )

    def measure_onnx(self, model: OnnxModel, input_shape: tuple[int, ...] | Feed | None = None) -> Measurement:
        s = self.spec
        with self.conditions():
            return ort_measure(read_onnx(model), input_shape, threads=s.threads,
                               graph_optimization=s.graph_optimization, warmup=s.warmup, repeats=s.repeats,
                               batch_size=s.batch_size, providers=self.providers, measure_memory=s.measure_memory,
                               provider_options=s.provider_options)

    def layout(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> BlockLayout | None:
        """NCHW or NCHWc at the block's input and output (CPU provider; its optimizer picks NCHWc)."""
        if self.providers[0] != "CPUExecutionProvider":
            return None
        return block_layout(self._export(module, input_shape, key)[0], self.spec.graph_optimization)



class _TorchProfiler(Profiler):
    def _device(self):
        import torch

        return torch.device(self.spec.device)

    def _sync(self):
        return None

    def _memory(self, run) -> dict[str, Any]:
        return {}

    def measure_module(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> Measurement:
        import torch

        s = self.spec
        dtype = getattr(torch, s.dtype)
        activation = _analytic_bytes(module, input_shape, s.batch_size)
        device = self._device()
        # a copy: the caller's module keeps its device, dtype and train/eval mode
        module = copy.deepcopy(module).eval().to(device=device, dtype=dtype)
        x = torch.randn(self.batch_shape(input_shape), generator=torch.Generator().manual_seed(0)).to(device, dtype)
        prev_threads = torch.get_num_threads()
        with self.conditions(), torch.inference_mode():
            torch.set_num_threads(s.threads)
            try:
                def run():
                    return module(x)

                run()
                times = self._time(run)
                memory = self._memory(run) if s.measure_memory else {}
            except RuntimeError as exc:
                raise ProfilerError(f"PyTorch failed to run the module: {str(exc)[:500]}") from None
            finally:
                torch.set_num_threads(prev_threads)
        return summarize(times, s.warmup, activation_bytes=activation, **memory)

    def _time(self, run) -> list[float]:
        return time_runs(run, self.spec.warmup, self.spec.repeats, sync=self._sync)

    def measure_onnx(self, model: OnnxModel, input_shape: tuple[int, ...] | Feed | None = None) -> Measurement:
        raise ProfilerError(
            f"device {self.spec.name!r} runs PyTorch modules, not ONNX files; use an onnxruntime device spec "
            "(e.g. devices/ort-cpu-1t.yaml) to time ONNX models"
        )


@PROFILERS.register("torch-cpu")
class TorchCpuProfiler(_TorchProfiler):
    """PyTorch eager on CPU with the spec's thread count (memory: analytic only)."""


@PROFILERS.register("torch-cuda")
class TorchCudaProfiler(_TorchProfiler):
    """PyTorch eager on CUDA, timed with CUDA events and synchronize; memory from max_memory_allocated."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {spec.name!r} needs CUDA, but torch {torch.__version__} sees no CUDA device; "
                "install a CUDA build of torch on a GPU machine or use a CPU device spec"
            )

    def _sync(self):
        import torch

        torch.cuda.synchronize()

    def _time(self, run) -> list[float]:
        import torch

        for _ in range(self.spec.warmup):
            run()
        torch.cuda.synchronize()
        times = []
        for _ in range(self.spec.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            times.append(float(start.elapsed_time(end)))
        return times

    def _memory(self, run) -> dict[str, Any]:
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"measured_peak_bytes": int(peak - base), "memory_source": "torch.cuda.max_memory_allocated"}


@PROFILERS.register("remote")
class RemoteProfiler(Profiler):
    """Sends ONNX models to an `hwnas agent serve` process on the target device and returns its numbers."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        from hwnas.devices.client import AgentClient

        self.client = AgentClient.from_spec(spec)

    def measure_onnx(self, model: OnnxModel, input_shape: tuple[int, ...] | Feed | None = None) -> Measurement:
        if isinstance(input_shape, dict):
            raise ProfilerError("the remote agent generates its own inputs; pass a per-sample input shape or None")
        return self.client.measure(read_onnx(model), input_shape, self.spec)


class CompiledProfiler(Profiler):
    """A runtime that times its own file format (a module is compiled to it first, then `measure_file`)."""

    runtime = ""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.version = self._require()
        self._compiled: dict[str, bytes] = {}
        if spec.dtype != "float32" or spec.device != "cpu":
            raise ProfilerError(f"device {spec.name!r}: the {self.runtime} profiler times FP32 on the CPU; "
                                "use device: cpu and dtype: float32")

    def _require(self) -> str:
        raise NotImplementedError

    def compile(self, module: nn.Module, batch_shape: tuple[int, ...]) -> bytes:
        """The module in this runtime's file format (eval mode, fixed batch shape)."""
        raise NotImplementedError

    def _run(self, data: bytes, batch_shape: tuple[int, ...]) -> Measurement:
        raise NotImplementedError

    def measure_file(self, data: bytes | str | os.PathLike[str], input_shape: tuple[int, ...]) -> Measurement:
        """Latency and peak memory of a file in this runtime's format (bytes or a path); per-sample shape."""
        data = data if isinstance(data, bytes) else Path(data).read_bytes()
        with self.conditions():
            return self._run(data, self.batch_shape(input_shape))

    def measure_module(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> Measurement:
        """Compiled to this runtime (kept under `key`, most recent 512), then `measure_file`."""
        from dataclasses import replace

        m = self.measure_file(self._compiled_for(module, input_shape, key), tuple(input_shape))
        return replace(m, activation_bytes=_analytic_bytes(module, input_shape, self.spec.batch_size))

    def _compiled_for(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None) -> bytes:
        """The module compiled to this runtime, kept under `key` (the most recent 512)."""
        data = self._compiled.get(key) if key is not None else None
        if data is None:
            data = self.compile(copy.deepcopy(module), self.batch_shape(input_shape))
            if key is not None:
                if len(self._compiled) >= 512:
                    self._compiled.pop(next(iter(self._compiled)))
                self._compiled[key] = data
        return data

    def boundary_copy_elems(self, data: bytes) -> int:
        """Elements a program copies between NCHW and XNNPACK's NHWC at its boundary."""
        raise NotImplementedError

    def layout(self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None) -> BlockLayout | None:
        """NHWC inside XNNPACK on both sides (a network of blocks converts only at its ends), and the
        elements the block's own program converts at its boundary when timed alone."""
        data = self._compiled_for(module, input_shape, key)
        return BlockLayout(NHWC, NHWC, self.boundary_copy_elems(data))

    def measure_onnx(self, model: OnnxModel, input_shape: tuple[int, ...] | Feed | None = None) -> Measurement:
        raise ProfilerError(
            f"device {self.spec.name!r} runs {self.runtime} programs, not ONNX files; measure the PyTorch "
            "module (it is lowered to this runtime) or use an onnxruntime device spec for ONNX models"
        )

    def fingerprint(self) -> dict[str, Any]:
        data = self.spec.fingerprint()
        data.setdefault("host", {}).setdefault("versions", {})[self.runtime] = self.version
        return data


@PROFILERS.register("executorch")
class ExecuTorchProfiler(CompiledProfiler):
    """ExecuTorch with the XNNPACK delegate, FP32, the spec's thread count; memory: read from the .pte (pte_memory)."""

    runtime = "executorch"

    def _require(self) -> str:
        from hwnas.devices.executorch_runtime import require_executorch

        return require_executorch()

    def compile(self, module: nn.Module, batch_shape: tuple[int, ...]) -> bytes:
        from hwnas.devices.executorch_runtime import lower_to_pte

        return lower_to_pte(module, batch_shape).data

    def _run(self, data: bytes, batch_shape: tuple[int, ...]) -> Measurement:
        from hwnas.devices.executorch_runtime import executorch_measure

        s = self.spec
        return executorch_measure(data, batch_shape, threads=s.threads, warmup=s.warmup, repeats=s.repeats,
                                  measure_memory=s.measure_memory)

    def boundary_copy_elems(self, data: bytes) -> int:
        from hwnas.devices.executorch_runtime import pte_boundary_copy_elems

        return pte_boundary_copy_elems(data)


@PROFILERS.register("litert")
class LiteRTProfiler(CompiledProfiler):
    """LiteRT (TFLite) with the XNNPACK delegate, FP32, the spec's thread count; memory: read from the model (TfliteRunner.memory)."""

    runtime = "litert"

    def _require(self) -> str:
        from hwnas.devices.litert_runtime import require_litert

        return require_litert()

    def compile(self, module: nn.Module, batch_shape: tuple[int, ...]) -> bytes:
        from hwnas.devices.litert_runtime import convert_to_tflite

        return convert_to_tflite(module, batch_shape)

    def _run(self, data: bytes, batch_shape: tuple[int, ...]) -> Measurement:
        from hwnas.devices.litert_runtime import litert_measure

        s = self.spec
        return litert_measure(data, batch_shape, threads=s.threads, warmup=s.warmup, repeats=s.repeats,
                              measure_memory=s.measure_memory)

    def boundary_copy_elems(self, data: bytes) -> int:
        from hwnas.devices.litert_runtime import TfliteRunner

        return TfliteRunner(data, threads=1).boundary_copy_elems()



def profiler_name(spec: DeviceSpec) -> str:
    """Registry name of the profiler for a spec."""
    if spec.runtime == "torch":
        return f"torch-{spec.device}"
    return spec.runtime


def get_profiler(spec: DeviceSpec | str | os.PathLike[str]) -> Profiler:
    """The profiler for a device spec (or a spec path/name, loaded here: pass a loaded spec to load it once)."""
    if not isinstance(spec, DeviceSpec):
        spec = load_device(spec)
    return PROFILERS.get(profiler_name(spec))(spec)
