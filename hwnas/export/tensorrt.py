"""TensorRT backend: subprocess probe, engine build (TensorRT 10 and 11 APIs), parity vs ORT, timing.

Never run on the machine this was written on (no GPU, TensorRT not installable there): the probe,
its failure paths and the FP16 ONNX conversion are tested; engine build/run tests are `gpu`-marked.

API differences handled:
- TensorRT 10: weakly-typed networks by default; FP16 via `BuilderFlag.FP16`; TF32 is cleared for
  FP32 parity.
- TensorRT 11: `BuilderFlag.FP16`/`INT8` are gone and networks are strongly typed: precision comes
  from the ONNX model's own tensor types, so FP16 builds parse an FP16 copy of the model
  (`hwnas.export.fp16.to_float16`, FP32 I/O kept). The same path is used on 10.x when the FP16
  flag is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import MissingBackendError
from hwnas.export.errors import ExportError, ParityError

EXTRA = "tensorrt"
PROBE_TIMEOUT_S = 60.0
_PROBE_CODE = r"""
import json, sys
out = {"available": False}
try:
    import tensorrt as trt
    out["version"] = trt.__version__
    out["has_fp16_flag"] = hasattr(trt.BuilderFlag, "FP16")
    out["has_strongly_typed"] = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    if builder is None:
        raise RuntimeError("trt.Builder returned None (no usable CUDA device or driver)")
    out["platform_has_fast_fp16"] = bool(getattr(builder, "platform_has_fast_fp16", False))
    out["available"] = True
except BaseException as exc:
    out["reason"] = f"{type(exc).__name__}: {exc}"
print("HWNAS_PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class TrtProbe:
    """What the subprocess probe found; `reason` says why TensorRT is unusable when it is."""

    available: bool
    version: str | None = None
    major: int | None = None
    has_fp16_flag: bool = False
    has_strongly_typed: bool = False
    platform_has_fast_fp16: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def probe_tensorrt(timeout_s: float = PROBE_TIMEOUT_S, python: str | None = None,
                   env: dict[str, str] | None = None) -> TrtProbe:
    """Import TensorRT and create a Builder in a child process, so a broken install (crash, hang,
    missing CUDA libraries) cannot take hwnas down. Never raises."""
    try:
        proc = subprocess.run(
            [python or sys.executable, "-c", _PROBE_CODE], capture_output=True, text=True,
            timeout=timeout_s, env=env,
        )
    except subprocess.TimeoutExpired:
        return TrtProbe(False, reason=f"importing tensorrt did not finish within {timeout_s:g} s")
    except OSError as exc:
        return TrtProbe(False, reason=f"could not start the probe process: {exc}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("HWNAS_PROBE ")), None)
    if line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return TrtProbe(False, reason=f"the probe process died with exit code {proc.returncode}: {tail[0][:200]}")
    data = json.loads(line[len("HWNAS_PROBE "):])
    version = data.get("version")
    major = int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else None
    return TrtProbe(
        available=bool(data.get("available")), version=version, major=major,
        has_fp16_flag=bool(data.get("has_fp16_flag")), has_strongly_typed=bool(data.get("has_strongly_typed")),
        platform_has_fast_fp16=bool(data.get("platform_has_fast_fp16")), reason=data.get("reason"),
    )


@lru_cache(maxsize=1)
def _cached_probe() -> TrtProbe:
    return probe_tensorrt()


def require_tensorrt(probe: TrtProbe | None = None) -> TrtProbe:
    """The probe result, or MissingBackendError naming `hwnas[tensorrt]` (also without a CUDA GPU)."""
    probe = probe or _cached_probe()
    if not probe.available:
        raise MissingBackendError("TensorRT", EXTRA, f"{probe.reason}; TensorRT also needs an NVIDIA GPU")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise MissingBackendError("PyTorch CUDA", EXTRA, str(exc)) from exc
    if not torch.cuda.is_available():
        raise MissingBackendError(
            "TensorRT", EXTRA, "tensorrt imports but torch sees no CUDA GPU; install a CUDA build of torch"
        )
    return probe


@dataclass(frozen=True)
class TrtEngine:
    """A serialized engine on disk and how it was built."""

    path: Path
    trt_version: str
    precision: str  # fp32 or fp16
    strongly_typed: bool
    precision_source: str  # "builder-flag" (TRT 10 FP16 flag), "onnx-types" (strongly typed), "fp32"
    build_s: float
    onnx_used: Path

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def _trt():
    import tensorrt as trt  # only after require_tensorrt(): the probe proved importing it is safe

    return trt


def _fp16_copy(onnx_path: Path) -> Path:
    """The FP16 model a strongly-typed FP16 engine is built from, checked against the FP32 model in ORT."""
    import onnx

    from hwnas.export.fp16 import check_fp16_parity, to_float16
    from hwnas.export.parity import ort_session

    model32 = onnx.load(str(onnx_path))
    model16 = to_float16(model32)
    check_fp16_parity(model32, model16, parity_feeds(ort_session(onnx_path), None, 2, 0))
    source = onnx_path.with_name(onnx_path.stem + ".fp16.onnx")
    onnx.save_model(model16, str(source))
    return source


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, fp16: bool = False,
                 workspace_mib: int = 1024, max_batch: int = 8, probe: TrtProbe | None = None) -> TrtEngine:
    """Parse the ONNX file and build a serialized engine with the installed TensorRT (10 or 11)."""
    probe = require_tensorrt(probe)
    trt = _trt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = probe.major or int(trt.__version__.split(".")[0])
    # 10.x: weak typing + FP16 flag; 11+: strongly typed, precision from the ONNX types
    use_flag = fp16 and major < 11 and hasattr(trt.BuilderFlag, "FP16")
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and (
        major >= 11 or (fp16 and not use_flag)
    )
    source = onnx_path
    if fp16 and not use_flag:
        source = _fp16_copy(onnx_path)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {source}: {errors}; try another --opset")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: TF32 breaks parity with ORT
    if use_flag and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            profile = profile or builder.create_optimization_profile()
            lo = tuple(1 if d < 0 else d for d in shape)
            hi = tuple(max_batch if d < 0 else d for d in shape)
            profile.set_shape(tensor.name, lo, lo, hi)
    if profile is not None:
        config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine from {source}; see its log above")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    precision = "fp16" if fp16 else "fp32"
    how = "fp32" if not fp16 else ("onnx-types" if strongly_typed or not use_flag else "builder-flag")
    return TrtEngine(engine_path, trt.__version__, precision, strongly_typed, how,
                     time.perf_counter() - start, source)


class TrtRunner:
    """Runs a serialized engine on CUDA through torch tensors (no pycuda needed).

    Every input and output of the engine is bound by name; `time` binds once and times with the device
    spec's protocol (warm-up, repeats, the measurement lock; host wall time from launch to the stream's
    synchronize, as ONNX Runtime CUDA is timed), so TensorRT and ORT CUDA numbers compare.
    """

    def __init__(self, engine_path: str | Path, probe: TrtProbe | None = None) -> None:
        require_tensorrt(probe)
        import torch

        trt = _trt()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise ExportError(f"TensorRT could not load the engine {engine_path}; rebuild it with this TensorRT")
        self._setup(engine, trt, torch)

    @classmethod
    def from_engine(cls, engine: Any, trt: Any, torch: Any) -> TrtRunner:
        """A runner of a deserialized engine with the given `tensorrt` and `torch` modules."""
        runner = cls.__new__(cls)
        runner._setup(engine, trt, torch)
        return runner

    def _setup(self, engine: Any, trt: Any, torch: Any) -> None:
        self.engine, self.torch = engine, torch
        self.context = engine.create_execution_context()
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in self.names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self._dtypes = {
            trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
            trt.int64: torch.int64, trt.bool: torch.bool,
        }
        self.stream = torch.cuda.Stream()

    def _dtype(self, name: str):
        dtype = self.engine.get_tensor_dtype(name)
        if dtype not in self._dtypes:
            raise ExportError(f"the engine's tensor {name!r} has type {dtype}, which hwnas cannot bind")
        return self._dtypes[dtype]

    def _feed(self, inputs: Any) -> dict[str, np.ndarray]:
        feed = inputs if isinstance(inputs, dict) else {self.inputs[0]: inputs} if len(self.inputs) == 1 else None
        if feed is None or set(feed) != set(self.inputs):
            raise ExportError(f"the engine has inputs {', '.join(self.inputs)}: pass one array per input by name")
        return feed

    def bind(self, inputs: Any) -> dict[str, Any]:
        """Copy every input to the GPU and allocate every output once, on the engine's stream (the copies
        are ordered before the execution); the context holds their addresses until the next bind."""
        torch, feed, tensors = self.torch, self._feed(inputs), {}
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                t = torch.from_numpy(np.ascontiguousarray(feed[name])).to("cuda", dtype=self._dtype(name))
                tensors[name] = t.contiguous()
                self.context.set_input_shape(name, tuple(tensors[name].shape))
                self.context.set_tensor_address(name, tensors[name].data_ptr())
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                tensors[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
                self.context.set_tensor_address(name, tensors[name].data_ptr())
        self.stream.synchronize()
        return tensors

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ExportError("TensorRT failed to execute the engine; see its log above")
        self.stream.synchronize()

    def run(self, inputs: Any) -> dict[str, np.ndarray]:
        """Every output (as float32 numpy) of one execution on `inputs` (an array, or arrays by input name)."""
        tensors = self.bind(inputs)
        self._execute()
        return {name: tensors[name].float().cpu().numpy() for name in self.outputs}

    def time(self, inputs: Any, spec: Any = None, *, warmup: int | None = None, repeats: int | None = None):
        """Latency of one execution as a Measurement, with the protocol of a device spec (default
        `ort-cuda`): its warm-up, repeats (>= the protocol's minimum) and statistic, under the lock."""
        from hwnas.devices.spec import MIN_REPEATS, load_device
        from hwnas.devices.timing import measurement_lock, summarize, time_runs

        spec = load_device(spec or "ort-cuda")
        warmup = spec.warmup if warmup is None else int(warmup)
        repeats = spec.repeats if repeats is None else int(repeats)
        if repeats < MIN_REPEATS or warmup < 0:
            raise ExportError(f"TensorRT timing needs warmup >= 0 and repeats >= {MIN_REPEATS}, got {warmup}, {repeats}")
        with measurement_lock():
            bound = self.bind(inputs)  # bound once: the timed runs only execute (`bound` keeps the buffers)
            times = time_runs(self._execute, warmup, repeats)
        del bound
        return summarize(times, warmup, extra={"statistic": spec.statistic, "protocol": spec.name})


def parity_feeds(session, input_shape, n_inputs: int, seed: int) -> list[dict[str, np.ndarray]]:
    """`n_inputs` random feeds for every input of an ORT session: the first input has `input_shape` (batch 1
    when it has 3 dims; None: the model's own), the others their shape with dynamic dims set to 1."""
    from hwnas.devices.ort_runtime import _ORT_DTYPES

    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n_inputs):
        feed = {}
        for i, inp in enumerate(session.get_inputs()):
            if i == 0 and input_shape is not None:
                shape = tuple(int(d) for d in input_shape)
                shape = (1, *shape) if len(shape) == 3 else shape
            else:
                shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
            feed[inp.name] = rng.standard_normal(shape).astype(_ORT_DTYPES.get(inp.type, np.float32))
        feeds.append(feed)
    return feeds


def compare_with_ort(engine_path: str | Path, onnx_path: str | Path, input_shape, *, atol: float,
                     n_inputs: int = 3, seed: int = 0, probe: TrtProbe | None = None,
                     runner: TrtRunner | None = None) -> dict[str, Any]:
    """Max abs diff over every output between the engine and ONNX Runtime CPU (FP32 ONNX) on random
    inputs (every input fed)."""
    from hwnas.export.parity import ort_session

    runner = runner or TrtRunner(engine_path, probe)
    sess = ort_session(onnx_path)
    names = [o.name for o in sess.get_outputs()]
    worst, where = 0.0, names[0]
    for feed in parity_feeds(sess, input_shape, n_inputs, seed):
        got = runner.run(feed)
        for name, ref in zip(names, sess.run(None, feed)):
            if name not in got:
                raise ParityError(f"the TensorRT engine has no output {name!r} (outputs: {', '.join(got)})")
            diff = float(np.max(np.abs(got[name].astype(np.float64) - ref))) if ref.size else 0.0
            worst, where = (diff, name) if diff > worst else (worst, where)
    result = {"max_abs_diff": worst, "atol": atol, "n_inputs": n_inputs, "passed": worst <= atol,
              "outputs": names, "reference": "onnxruntime CPUExecutionProvider (FP32)"}
    if worst > atol:
        raise ParityError(
            f"TensorRT engine output {where!r} differs from ONNX Runtime by {worst:.3g} > {atol:g}; "
            "rebuild without --fp16 or report the model"
        )
    return result
