"""TensorRT backend: the subprocess probe survives broken installs; errors name the extra; GPU tests skip here."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from hwnas.cli import main
from hwnas.errors import MissingBackendError
from hwnas.export import export_onnx
from hwnas.export.fp16 import to_float16
from hwnas.export.parity import ort_session, random_inputs
from hwnas.export.tensorrt import TrtProbe, probe_tensorrt, require_tensorrt
from hwnas.spaces import get_space


def _fake_tensorrt(tmp_path, body: str) -> dict[str, str]:
    pkg = tmp_path / "tensorrt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(body)
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.parametrize("body,reason", [
    ("import os\nos.abort()\n", "died with exit code"),  # a crashing native library
    ("raise OSError('libnvinfer.so.10: cannot open shared object file')\n", "libnvinfer"),
    ("__version__ = '10.3.0'\nclass BuilderFlag: FP16 = 1\n", "AttributeError"),  # half an install
])
def test_probe_survives_broken_installs(tmp_path, body, reason):
    probe = probe_tensorrt(timeout_s=60, env=_fake_tensorrt(tmp_path, body))
    assert not probe.available and reason in probe.reason


def test_probe_times_out_on_a_hanging_import(tmp_path):
    probe = probe_tensorrt(timeout_s=2, env=_fake_tensorrt(tmp_path, "import time\ntime.sleep(60)\n"))
    assert not probe.available and "did not finish within 2 s" in probe.reason


def test_missing_tensorrt_names_the_extra():
    with pytest.raises(MissingBackendError, match=r"hwnas\[tensorrt\]"):
        require_tensorrt(TrtProbe(False, reason="ModuleNotFoundError: No module named 'tensorrt'"))


def test_cli_tensorrt_without_tensorrt_is_one_clear_line(tmp_path, capsys):
    if probe_tensorrt().available:
        pytest.skip("TensorRT is installed here; see the gpu tests")
    rc = main(["export", "--space", "mobile", "--arch", get_space("mobile").sample(0).text,
               "--format", "tensorrt", "--out", str(tmp_path), "--no-measure"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "pip install 'hwnas[tensorrt]'" in err


def test_fp16_onnx_for_strongly_typed_engines(tmp_path):
    """The FP16 copy TensorRT 11 builds from: FP32 I/O, FP16 inside, close to the FP32 model in ORT."""
    pytest.importorskip("onnxconverter_common")
    space = get_space("nb201")
    exp = export_onnx(space.build(space.sample(4)), space.input_shape, tmp_path / "m.onnx")
    half = to_float16(onnx.load(str(exp.path)))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in half.graph.initializer if i.data_type in (1, 10)} == {onnx.TensorProto.FLOAT16}
    x = random_inputs(exp.input_shape, 1, 0)[0]
    y32 = ort_session(exp.path).run(None, {"input": x})[0]
    y16 = ort_session(half.SerializeToString()).run(None, {"input": x})[0]
    assert y16.dtype == np.float32 and np.max(np.abs(y16 - y32)) < 5e-2


def _require_gpu_tensorrt() -> TrtProbe:
    probe = probe_tensorrt()
    if not probe.available:
        pytest.skip(f"TensorRT not usable here: {probe.reason}")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return probe


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("spec", ["mobile", "nb201"])
def test_engine_build_parity_and_timing(tmp_path, spec, fp16):
    from hwnas.export.tensorrt import TrtRunner, build_engine, compare_with_ort

    probe = _require_gpu_tensorrt()
    space = get_space(spec)
    exp = export_onnx(space.build(space.sample(0)), space.input_shape, tmp_path / "m.onnx")
    engine = build_engine(exp.path, tmp_path / "m.engine", fp16=fp16, probe=probe)
    assert engine.path.stat().st_size > 0 and engine.precision == ("fp16" if fp16 else "fp32")
    if probe.major and probe.major >= 11:
        assert engine.strongly_typed
    parity = compare_with_ort(engine.path, exp.path, exp.input_shape, atol=5e-2 if fp16 else 1e-3, probe=probe)
    assert parity["passed"]
    m = TrtRunner(engine.path, probe).time(random_inputs(exp.input_shape, 1, 0)[0], repeats=50)
    assert m.n == 50 and m.median_ms > 0


@pytest.mark.gpu
def test_cli_tensorrt_export_writes_engine_and_manifest(tmp_path):
    _require_gpu_tensorrt()
    from hwnas.export import read_manifest

    rc = main(["export", "--space", "mobile", "--arch", get_space("mobile").sample(0).text,
               "--format", "tensorrt", "--out", str(tmp_path), "--no-measure"])
    assert rc == 0
    m = read_manifest(tmp_path)
    assert m["format"] == "tensorrt" and m["tensorrt"]["parity"]["passed"]
    assert any(f["role"] == "tensorrt-engine" for f in m["files"])

