"""DeviceSpec parsing and fingerprints, profilers (ORT, torch CPU/CUDA), the timing protocol and the lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.devices import (
    PROFILERS,
    DeviceSpec,
    DeviceUnavailableError,
    ProfilerError,
    get_profiler,
    load_device,
    measurement_lock,
)
from hwnas.errors import ConfigError, HwnasError
from hwnas.onnx_export import export_onnx_bytes
from hwnas.spaces import Block, get_space

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["ort-cpu-1t", "ort-cpu-2t", "torch-cpu", "torch-cuda", "ort-cuda", "remote-pi"]


def fast_spec(**changes) -> DeviceSpec:
    base = dict(name="test-ort", runtime="onnxruntime", threads=1, warmup=3, repeats=50, measure_memory=True)
    base.update(changes)
    return DeviceSpec(**base)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load_by_name_and_path(name):
    spec = load_device(name)
    assert spec == load_device(REPO / "devices" / f"{name}.yaml")
    assert spec.repeats >= 50 and spec.name == name


def test_fingerprint_has_cpu_and_runtime_versions():
    fp = load_device("ort-cpu-1t").fingerprint()
    assert fp["threads"] == 1 and fp["runtime"] == "onnxruntime"
    assert fp["host"]["cpu_model"] and "onnxruntime" in fp["host"]["versions"]


def test_unknown_keys_and_bad_values_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruntime: onnxruntime\nthreds: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) threds \(did you mean threads\?\)"):
        load_device(bad)
    bad.write_text("name: x\nruntime: onnxruntime\nrepeats: 10\n")
    with pytest.raises(ConfigError, match="repeats must be >= 50"):
        load_device(bad)
    bad.write_text("name: x\nruntime: tensorflow\n")
    with pytest.raises(ConfigError, match="runtime"):
        load_device(bad)
    with pytest.raises(ConfigError, match="known device specs: .*ort-cpu-1t"):
        load_device("no-such-device")


def test_every_shipped_device_spec_has_a_profiler():
    """A spec in devices/ whose runtime no profiler serves would fail only when someone profiles with it."""
    from hwnas.devices.profilers import profiler_name

    specs = sorted((Path(__file__).resolve().parents[1] / "devices").glob("*.yaml"))
    assert specs
    for path in specs:
        PROFILERS.get(profiler_name(load_device(path)))  # an unknown name raises, listing the valid ones


def _block(space, kernel, expansion):
    c_in, c_out, stride, hw = space.layers()[0]
    return Block("mbconv", c_in, c_out, hw, stride, kernel, expansion, 1)


def test_ort_protocol_statistics_and_block_ordering():
    space = get_space("mobile:mnist")
    profiler = get_profiler(fast_spec())
    small = profiler.measure_module(space.build_block(_block(space, 3, 1)), _block(space, 3, 1).input_shape)
    big = profiler.measure_module(space.build_block(_block(space, 5, 6)), _block(space, 5, 6).input_shape)
    for m in (small, big):
        assert m.p10_ms <= m.median_ms <= m.p90_ms
        assert m.n == 50 and m.warmup == 3 and m.cv >= 0
        assert m.activation_bytes and m.activation_bytes > 0
        assert m.memory_source in ("ort_profile_nodes", "")
    assert big.median_ms > 1.5 * small.median_ms
    assert big.activation_bytes > small.activation_bytes


def test_measure_onnx_from_bytes_path_and_feed(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    data = export_onnx_bytes(model, (1, 3, 16, 16))
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    profiler = get_profiler(fast_spec(measure_memory=False))
    for m in (profiler.measure_onnx(data, (3, 16, 16)), profiler.measure_onnx(path),
              profiler.measure_onnx(path, {"input": np.zeros((1, 3, 16, 16), np.float32)})):
        assert m.n == 50 and m.p10_ms <= m.median_ms <= m.p90_ms
    with pytest.raises(ProfilerError, match="could not load"):
        profiler.measure_onnx(b"\x08\x07garbage-not-a-model")
    with pytest.raises(ProfilerError, match="does not exist"):
        profiler.measure_onnx(tmp_path / "missing.onnx")


def test_torch_cpu_profiler_and_its_onnx_refusal():
    profiler = get_profiler(DeviceSpec(name="t", runtime="torch", warmup=2, repeats=50))
    m = profiler.measure_module(torch.nn.Conv2d(3, 8, 3), (3, 16, 16))
    assert m.p10_ms <= m.median_ms <= m.p90_ms and m.activation_bytes > 0
    with pytest.raises(ProfilerError, match="onnxruntime device spec"):
        profiler.measure_onnx(b"")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_spec_without_cuda_says_so():
    with pytest.raises(DeviceUnavailableError, match="CUDA"):
        get_profiler("torch-cuda")
    with pytest.raises(HwnasError, match="CUDAExecutionProvider"):
        get_profiler("ort-cuda")


@pytest.mark.gpu
def test_torch_cuda_profiler_measures_memory():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    m = get_profiler("torch-cuda").measure_module(torch.nn.Conv2d(3, 64, 3), (3, 64, 64))
    assert m.p10_ms <= m.median_ms <= m.p90_ms
    assert m.memory_source == "torch.cuda.max_memory_allocated" and m.measured_peak_bytes > 0


def test_measurement_lock_is_exclusive_across_processes(tmp_path, monkeypatch):
    lock = tmp_path / "measure.lock"
    monkeypatch.setenv("HWNAS_MEASURE_LOCK", str(lock))
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import os, time, pathlib
        os.environ["HWNAS_MEASURE_LOCK"] = {str(lock)!r}
        from hwnas.devices.timing import measurement_lock
        with measurement_lock():
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(1.0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 30
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.02)
        start = time.perf_counter()
        with measurement_lock(), measurement_lock():  # re-entrant in one thread
            waited = time.perf_counter() - start
    finally:
        proc.wait(timeout=30)
    assert waited > 0.3
