"""The CUDA and TensorRT paths, checked here without a GPU: fake ONNX Runtime / TensorRT / torch.cuda objects
record every call (device of each binding, providers checked, lock held, bound once) and the real code runs
against them. The same paths on a real GPU: the `gpu` tests and scripts/gpu_check.sh."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

from hwnas.devices import ort_runtime
from hwnas.devices.ort_runtime import DeviceUnavailableError, ort_measure
from hwnas.devices.spec import load_device
from hwnas.devices.timing import lock_held
from hwnas.export.errors import ExportError, ParityError


# -- a fake onnxruntime ---------------------------------------------------------------------------
class _Value:
    def __init__(self, device: str, device_id: int, shape) -> None:
        self.device, self.device_id, self.shape = device, device_id, tuple(shape)


class _Binding:
    def __init__(self, log: dict) -> None:
        self.log = log

    def bind_ortvalue_input(self, name, value) -> None:
        self.log["inputs"].append((name, value.device, value.device_id))

    def bind_ortvalue_output(self, name, value) -> None:
        self.log["outputs"].append((name, value.device, value.device_id, value.shape))

    def bind_output(self, name, *args) -> None:  # by device only: ORT allocates inside every run
        self.log["outputs_by_device"].append(name)

    def synchronize_outputs(self) -> None:
        self.log["syncs"] += 1


class _Session:
    def __init__(self, fake, providers) -> None:
        self.fake, self.log = fake, fake.log
        self.log["asked"] = providers
        self.actual = list(fake.actual)

    def get_providers(self):
        self.log["providers_checked"] += 1
        return list(self.actual)

    def disable_fallback(self) -> None:
        self.log["fallback_disabled"] = True

    def get_inputs(self):
        return [SimpleNamespace(name="x", shape=[1, 3, 8, 8], type="tensor(float)"),
                SimpleNamespace(name="mask", shape=["batch", 4], type="tensor(int64)")]

    def get_outputs(self):
        return [SimpleNamespace(name="y"), SimpleNamespace(name="z")]

    def run(self, names, feed):
        return [np.zeros((1, 10), np.float32), np.zeros((1, 4), np.int64)]

    def io_binding(self):
        return _Binding(self.log)

    def run_with_iobinding(self, binding) -> None:
        self.log["runs"].append(lock_held())
        if self.fake.fall_back_after is not None and len(self.log["runs"]) >= self.fake.fall_back_after:
            self.actual = ["CPUExecutionProvider"]


class _FakeOrt:
    """Enough of onnxruntime for ort_runtime; `actual` = the providers the session really got."""

    __file__ = "/nonexistent/onnxruntime/__init__.py"
    ExecutionMode = SimpleNamespace(ORT_SEQUENTIAL=0)
    GraphOptimizationLevel = SimpleNamespace(ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1, ORT_ENABLE_EXTENDED=2,
                                             ORT_ENABLE_ALL=99)

    def __init__(self, actual, fall_back_after=None) -> None:
        self.actual, self.fall_back_after = actual, fall_back_after
        self.log = {"inputs": [], "outputs": [], "outputs_by_device": [], "runs": [], "syncs": 0,
                    "providers_checked": 0, "fallback_disabled": False}
        fake = self

        class OrtValue:
            @staticmethod
            def ortvalue_from_numpy(array, device="cpu", device_id=0):
                return _Value(device, device_id, array.shape)

            @staticmethod
            def ortvalue_from_shape_and_type(shape, dtype, device="cpu", device_id=0):
                fake.log.setdefault("allocated", []).append((tuple(shape), np.dtype(dtype), device))
                return _Value(device, device_id, shape)

        self.OrtValue = OrtValue

    def SessionOptions(self):  # noqa: N802 - the onnxruntime name
        return SimpleNamespace(add_session_config_entry=lambda *a: None)

    def InferenceSession(self, model, sess_options=None, providers=None):  # noqa: N802
        return _Session(self, providers)

    def get_available_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _use(monkeypatch, fake: _FakeOrt) -> _FakeOrt:
    monkeypatch.setattr(ort_runtime, "_ort", lambda: fake)
    return fake


CUDA = ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_ort_cuda_binds_every_input_and_output_once_on_the_device_under_the_lock(monkeypatch):
    fake = _use(monkeypatch, _FakeOrt(list(CUDA)))
    m = ort_measure(b"model", None, threads=1, graph_optimization="all", warmup=3, repeats=50, providers=CUDA,
                    measure_memory=False, provider_options={"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC"})
    log = fake.log
    assert log["asked"] == [("CUDAExecutionProvider", {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC"}),
                            "CPUExecutionProvider"]
    assert sorted(log["inputs"]) == [("mask", "cuda", 1), ("x", "cuda", 1)]
    assert [(n, d, i) for n, d, i, _ in log["outputs"]] == [("y", "cuda", 1), ("z", "cuda", 1)]
    assert [s for *_, s in log["outputs"]] == [(1, 10), (1, 4)] and not log["outputs_by_device"]
    assert [a[1] for a in log["allocated"]] == [np.dtype(np.float32), np.dtype(np.int64)]
    assert len(log["runs"]) == 53 and all(log["runs"])  # warm-up + timed, every one under the lock
    assert log["syncs"] == 53 and log["fallback_disabled"] and log["providers_checked"] >= 2
    assert m.n == 50 and m.warmup == 3


def test_ort_cuda_refuses_a_session_that_fell_back_to_cpu(monkeypatch):
    fake = _use(monkeypatch, _FakeOrt(["CPUExecutionProvider"]))  # CUDA listed as available, yet not loaded
    with pytest.raises(DeviceUnavailableError, match="fell back to CPUExecutionProvider.*CUDAExecutionProvider"):
        ort_measure(b"model", None, threads=1, graph_optimization="all", warmup=1, repeats=50, providers=CUDA,
                    measure_memory=False)
    assert fake.log["runs"] == [] and fake.log["inputs"] == []  # refused before anything was timed


def test_ort_cuda_refuses_a_fallback_during_the_timed_runs(monkeypatch):
    _use(monkeypatch, _FakeOrt(list(CUDA), fall_back_after=10))
    with pytest.raises(DeviceUnavailableError, match="fell back"):
        ort_measure(b"model", None, threads=1, graph_optimization="all", warmup=1, repeats=50, providers=CUDA,
                    measure_memory=False)


def test_ort_cpu_binds_inputs_on_the_cpu_and_outputs_by_device_without_syncs(monkeypatch):
    fake = _use(monkeypatch, _FakeOrt(["CPUExecutionProvider"]))
    ort_measure(b"model", None, threads=1, graph_optimization="all", warmup=0, repeats=50, measure_memory=False)
    assert {d for _, d, _ in fake.log["inputs"]} == {"cpu"} and fake.log["outputs_by_device"] == ["y", "z"]
    assert fake.log["syncs"] == 0 and len(fake.log["runs"]) == 50


def test_the_ort_cuda_spec_carries_its_provider_options_to_the_session(monkeypatch):
    from hwnas.devices import profilers

    fake = _use(monkeypatch, _FakeOrt(list(CUDA)))
    monkeypatch.setattr(profilers, "_ort", lambda: fake)
    spec = load_device("ort-cuda")
    assert spec.provider_options and "provider_options" in spec.identity()
    profilers.get_profiler(spec).measure_onnx(b"model")
    asked = fake.log["asked"][0]
    assert asked[1] == {k: str(v) for k, v in spec.provider_options.items()}
    assert len(fake.log["runs"]) == spec.warmup + spec.repeats


def test_outputs_bound_once_are_written_in_place_by_real_onnxruntime():
    """Real ONNX Runtime (on CPU, the same calls as on CUDA): every run writes into the one bound buffer."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    session = ort_runtime.ort_session(model, 1)
    feed = {"x": np.array([[-1, 2, -3, 4]], np.float32)}
    binding = session.io_binding()
    binding.bind_cpu_input("x", feed["x"])
    (out,) = ort_runtime.bind_outputs_once(session, binding, session.run(None, feed), "cpu")
    before = out.data_ptr()
    session.run_with_iobinding(binding)
    session.run_with_iobinding(binding)
    assert out.data_ptr() == before and out.numpy().tolist() == [[0, 2, 0, 4]]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a provider plug-in")
def test_a_fallback_names_the_missing_library(tmp_path, monkeypatch):
    """A CUDA provider plug-in linked against a library that is not installed: the error names that library."""
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int dep(void); int provider(void) { return dep(); }\n")
    capi = tmp_path / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libcudnn_fake.so.9"), str(tmp_path / "dep.c"),
                    "-Wl,-soname,libcudnn_fake.so.9"], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(capi / "libonnxruntime_providers_cuda.so"),
                    str(tmp_path / "plugin.c"), str(tmp_path / "libcudnn_fake.so.9")], check=True)
    (tmp_path / "libcudnn_fake.so.9").unlink()  # the library the plug-in needs is missing now
    fake = _use(monkeypatch, _FakeOrt(["CPUExecutionProvider"]))
    fake.__file__ = str(tmp_path / "onnxruntime" / "__init__.py")
    with pytest.raises(DeviceUnavailableError, match=r"the library libcudnn_fake\.so\.9 cannot be loaded"):
        ort_runtime.ort_session(b"model", 1, providers=CUDA)


# -- a fake TensorRT engine and torch.cuda ----------------------------------------------------------
class _Tensor:
    _next = [0x1000]

    def __init__(self, shape, dtype, device) -> None:
        self.shape, self.dtype, self.device = tuple(shape), dtype, device
        self.ptr = self._next[0]
        self._next[0] += 0x1000

    def to(self, device, dtype=None):
        return _Tensor(self.shape, dtype or self.dtype, device)

    def contiguous(self):
        return self

    def data_ptr(self) -> int:
        return self.ptr

    def float(self):
        return self

    def cpu(self):
        return _Tensor(self.shape, self.dtype, "cpu")

    def numpy(self):
        return np.full(self.shape, 0.5, np.float32)


class _Stream:
    cuda_stream = 7

    def synchronize(self) -> None:
        pass


def _fake_torch():
    return SimpleNamespace(
        float32="t.f32", float16="t.f16", int32="t.i32", int64="t.i64", bool="t.bool",
        from_numpy=lambda a: _Tensor(a.shape, "numpy", "cpu"),
        empty=lambda shape, dtype, device: _Tensor(shape, dtype, device),
        cuda=SimpleNamespace(Stream=_Stream, stream=lambda s: contextlib.nullcontext()))


class _Context:
    def __init__(self, log: dict, fail: bool) -> None:
        self.log, self.fail, self.addresses = log, fail, {}

    def set_input_shape(self, name, shape) -> None:
        self.log["shapes"][name] = shape

    def set_tensor_address(self, name, ptr) -> None:
        self.log["addresses"].append(name)
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        return (self.log["shapes"]["a"][0], 10) if name == "logits" else (self.log["shapes"]["a"][0],)

    def execute_async_v3(self, stream) -> bool:
        self.log["executions"].append((lock_held(), dict(self.addresses), stream))
        return not self.fail


class _Engine:
    names = {"a": "in", "b": "in", "logits": "out", "index": "out"}
    dtypes = {"a": "f32", "b": "f16", "logits": "f32", "index": "i64"}

    def __init__(self, fail: bool = False) -> None:
        self.log = {"shapes": {}, "addresses": [], "executions": []}
        self.fail = fail
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i):
        return list(self.names)[i]

    def get_tensor_mode(self, name):
        return self.names[name]

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def create_execution_context(self):
        self.context = _Context(self.log, self.fail)
        return self.context


_TRT = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="in", OUTPUT="out"), float32="f32", float16="f16",
                       int32="i32", int64="i64", bool="bool")


def _runner(engine):
    from hwnas.export.tensorrt import TrtRunner

    return TrtRunner.from_engine(engine, _TRT, _fake_torch())


FEED = {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 3), np.float32)}


def test_tensorrt_timing_follows_the_spec_protocol_with_every_tensor_bound_once():
    engine = _Engine()
    spec = load_device("ort-cuda").with_overrides(warmup=4, repeats=60, statistic="p10")
    m = _runner(engine).time(FEED, spec)
    log = engine.log
    assert sorted(log["addresses"]) == ["a", "b", "index", "logits"]  # every tensor, bound once
    assert log["shapes"] == {"a": (2, 3), "b": (2, 3)}
    assert len(log["executions"]) == 64 and all(held for held, _, _ in log["executions"])
    assert all(addr == log["executions"][0][1] for _, addr, _ in log["executions"])  # same buffers each run
    assert m.n == 60 and m.warmup == 4 and m.extra == {"statistic": "p10", "protocol": "ort-cuda"}


def test_tensorrt_binds_inputs_on_cuda_with_the_engines_types():
    runner = _runner(_Engine())
    tensors = runner.bind(FEED)
    assert {n: (t.device, t.dtype) for n, t in tensors.items()} == {
        "a": ("cuda", "t.f32"), "b": ("cuda", "t.f16"), "logits": ("cuda", "t.f32"), "index": ("cuda", "t.i64")}
    assert set(runner.run(FEED)) == {"logits", "index"}


def test_tensorrt_refuses_short_protocols_missing_inputs_and_failed_executions():
    with pytest.raises(ExportError, match="repeats >= 50"):
        _runner(_Engine()).time(FEED, repeats=10)
    with pytest.raises(ExportError, match="inputs a, b"):
        _runner(_Engine()).run(np.zeros((2, 3), np.float32))  # one array for a two-input engine
    with pytest.raises(ExportError, match="failed to execute"):
        _runner(_Engine(fail=True)).run(FEED)


def _two_io_model(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["logits"]), helper.make_node("Mul", ["a", "b"], ["index"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("logits", "index")])
    path = tmp_path / "two.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


class _OrtBackedRunner:
    """A runner that answers with ONNX Runtime itself, optionally off on one output."""

    def __init__(self, path, broken: str | None = None) -> None:
        from hwnas.export.parity import ort_session

        self.session, self.broken, self.feeds = ort_session(path), broken, []

    def run(self, feed):
        self.feeds.append(sorted(feed))
        out = dict(zip(["logits", "index"], self.session.run(None, feed)))
        if self.broken:
            out[self.broken] = out[self.broken] + 1.0
        return out


def test_tensorrt_parity_feeds_every_input_and_compares_every_output(tmp_path):
    from hwnas.export.tensorrt import compare_with_ort

    path = _two_io_model(tmp_path)
    good = _OrtBackedRunner(path)
    result = compare_with_ort(None, path, (2, 3), atol=1e-6, runner=good)
    assert result["passed"] and result["outputs"] == ["logits", "index"] and good.feeds == [["a", "b"]] * 3
    with pytest.raises(ParityError, match="'index' differs"):
        compare_with_ort(None, path, (2, 3), atol=1e-3, runner=_OrtBackedRunner(path, broken="index"))


# -- FP16 through onnxconverter-common -----------------------------------------------------------
def _fp16_trap_model():
    """The cases a hand-written converter missed: a Constant value, ConstantOfShape, value_info, an op
    that must stay FP32 (TopK), and an integer output."""
    const = helper.make_tensor("c", TensorProto.FLOAT, [1, 8], [0.25 * i for i in range(8)])
    nodes = [helper.make_node("Constant", [], ["k"], value=const),
             helper.make_node("Add", ["x", "k"], ["a"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["o"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])),
             helper.make_node("Mul", ["a", "o"], ["m"]),
             helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", TensorProto.INT64, [1], [2])),
             helper.make_node("TopK", ["m", "two"], ["values", "indices"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, 2]),
                           helper.make_tensor_value_info("indices", TensorProto.INT64, [1, 2])],
                          value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 8]) for n in ("a", "m")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_conversion_handles_constants_constantofshape_value_info_and_fp32_ops():
    pytest.importorskip("onnxconverter_common")
    from hwnas.export.fp16 import FP16_ATOL, check_fp16_parity, to_float16

    model32 = _fp16_trap_model()
    model16 = to_float16(model32)
    g = model16.graph
    assert [o.type.tensor_type.elem_type for o in g.output] == [TensorProto.FLOAT, TensorProto.INT64]
    assert g.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    values = {n.op_type: n.attribute[0].t.data_type for n in g.node if n.op_type in ("ConstantOfShape",)}
    assert values == {"ConstantOfShape": TensorProto.FLOAT16}
    floats = [n.attribute[0].t.data_type for n in g.node if n.op_type == "Constant"
              and n.attribute[0].t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert floats == [TensorProto.FLOAT16]
    assert {v.name: v.type.tensor_type.elem_type for v in g.value_info if v.name in ("a", "m")} == {
        "a": TensorProto.FLOAT16, "m": TensorProto.FLOAT16}
    topk = next(n for n in g.node if n.op_type == "TopK")  # blocked op: fed FP32 through a Cast
    producer = {o: n for n in g.node for o in n.output}[topk.input[0]]
    assert producer.op_type == "Cast" and producer.attribute[0].i == TensorProto.FLOAT
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 8)).astype(np.float32)} for s in range(3)]
    assert check_fp16_parity(model32, model16, feeds) <= FP16_ATOL


def test_fp16_parity_refuses_a_model_off_beyond_the_tolerance():
    pytest.importorskip("onnxconverter_common")
    from hwnas.export.fp16 import check_fp16_parity, to_float16

    model32 = _fp16_trap_model()
    model16 = to_float16(model32)
    feeds = [{"x": np.full((1, 8), 3000.0, np.float32)}]  # x*1.5 beyond FP16's precision at this scale
    with pytest.raises(ParityError, match="differs from FP32"):
        check_fp16_parity(model32, model16, feeds, atol=1e-6)


def test_fp16_without_the_converter_names_the_extra(monkeypatch):
    import sys

    from hwnas.errors import MissingBackendError
    from hwnas.export.fp16 import to_float16

    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)  # import fails
    with pytest.raises(MissingBackendError, match=r"hwnas\[tensorrt\]"):
        to_float16(_fp16_trap_model())


# -- the same paths on a real GPU (run with -m gpu; scripts/gpu_check.sh runs them) ------------------
@pytest.mark.gpu
def test_ort_cuda_really_runs_on_the_gpu():
    import onnxruntime as ort

    from hwnas.devices.profilers import get_profiler

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu")
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.01 * i for i in range(216)])
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    session = ort_runtime.ort_session(model, 1, providers=CUDA, provider_options={"device_id": 0})
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    run = ort_runtime.bound_runner(session, {"x": np.ones((1, 3, 32, 32), np.float32)}, "cuda", 0)
    run()
    assert [v.device_name().lower() for v in run.bound_outputs] == ["cuda"]
    m = get_profiler("ort-cuda").measure_onnx(model)
    assert m.n == load_device("ort-cuda").repeats and m.p10_ms <= m.median_ms <= m.p90_ms
