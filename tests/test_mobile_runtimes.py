"""ExecuTorch and LiteRT (XNNPACK, FP32): profilers, peak memory, exports (.pte / .tflite) with parity.

Each runtime's tests skip, saying which extra to install, only where that runtime is not installed:
`pip install -e '.[executorch]'` and `pip install -e '.[litert]'` (scripts/setup.sh decides the defaults).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.devices import DeviceUnavailableError, ProfilerError, get_profiler, load_device
from hwnas.devices.memory import PROGRAM_SOURCES, peak_growth
from hwnas.devices.ort_runtime import ort_measure
from hwnas.export import ParityError, read_manifest, verify_files
from hwnas.export.parity import check_runtime_parity
from hwnas.onnx_export import export_onnx_bytes

RUNTIMES = {  # device spec -> (module that must import, extra)
    "executorch-xnnpack-1t": ("executorch.runtime", "executorch"),
    "litert-xnnpack-1t": ("litert_torch", "litert"),
}


def _installed(spec: str):
    module, extra = RUNTIMES[spec]
    try:
        __import__(module)
    except ImportError:
        return pytest.param(spec, marks=pytest.mark.skip(
            reason=f"{module} is not installed: pip install -e '.[{extra}]'"))
    return spec


SPECS = [_installed(s) for s in RUNTIMES]


def _net(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU6(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(channels, 10)).eval()


def _fast(spec: str):
    return get_profiler(load_device(spec).with_overrides(repeats=50, warmup=3))


@pytest.mark.parametrize("spec", SPECS)
def test_a_bigger_block_is_slower_and_needs_more_memory(spec):
    profiler = _fast(spec)
    small = profiler.measure_module(_net(4), (1, 28, 28), key="small")
    big = profiler.measure_module(_net(128), (1, 28, 28), key="big")  # 128x128x3x3 weights: 590 KB
    assert big.value("p10") > 3 * small.value("p10")
    assert small.measured_peak_bytes > 0 and small.memory_source in PROGRAM_SOURCES
    assert big.measured_peak_bytes > small.measured_peak_bytes + 500_000
    assert big.activation_bytes > small.activation_bytes  # the analytic figure rides along


@pytest.mark.parametrize("spec", SPECS)
def test_a_runtime_profiler_refuses_onnx_files(spec):
    with pytest.raises(ProfilerError, match="not ONNX files"):
        _fast(spec).measure_onnx(export_onnx_bytes(_net(4), (1, 1, 28, 28)))


@pytest.mark.parametrize("spec,module", [("executorch-xnnpack-1t", "executorch.runtime"),
                                         ("litert-xnnpack-1t", "ai_edge_litert.interpreter")])
def test_a_missing_runtime_names_its_extra(spec, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import` of a None entry raises ImportError
    with pytest.raises(DeviceUnavailableError, match=r"pip install 'hwnas\[(executorch|litert)\]'"):
        get_profiler(spec)


def test_peak_growth_sees_what_a_call_allocates():
    _, big = peak_growth(lambda: np.ones(8_000_000))  # 64 MB touched
    _, small = peak_growth(lambda: np.ones(1000))
    assert big is not None and small is not None
    assert 0.9 * 64e6 < big < 1.5 * 64e6 and small < 0.1 * big


def test_onnx_runtime_memory_is_measured_and_grows_with_the_model():
    def peak(channels):
        m = ort_measure(export_onnx_bytes(_net(channels), (1, 1, 28, 28)), (1, 28, 28), threads=1,
                        graph_optimization="all", warmup=2, repeats=50)
        return m.measured_peak_bytes

    small, big = peak(4), peak(128)
    assert small > 0 and big > small + 500_000


def test_runtime_parity_catches_a_wrong_output():
    net = _net(4)
    with pytest.raises(ParityError, match="wrong-rt output differs"):
        check_runtime_parity(net, lambda x: net(torch.from_numpy(x)).detach().numpy() + 1e-3, (1, 28, 28),
                             runtime="wrong-rt 0.1", atol=1e-4)


# -- export of a searched winner: `hwnas export --run ... --pick knee --format executorch|litert` ---------
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    runner = pytest.importorskip("hwnas.search.runner", reason="the search runner has not landed")
    from hwnas.export.pipeline import default_table_path
    from hwnas.search.problem import ArchProblem
    from hwnas.search.strategies import make_strategy
    from hwnas.storage import open_storage

    db = f"sqlite:///{tmp_path_factory.mktemp('search') / 'hwnas.db'}"
    problem = ArchProblem("mobile", ["accuracy", "latency_ms"],
                          latency_table=default_table_path("ort-cpu-1t", "mobile:mnist"), dataset="digits",
                          train={"epochs": 1, "data_fraction": 0.1, "batch_size": 64, "seed": 0})
    storage = open_storage(db)
    run = storage.create_run("mobile", problem.objectives, {"space": "mobile"}, problem.info())
    runner.run_search(problem, make_strategy("random", problem.space, 2, seed=0), run, budget=2)
    return db, storage.get_run("mobile")


@pytest.mark.parametrize("spec", SPECS)
def test_the_knee_exports_with_parity_and_is_measured_in_its_runtime(spec, searched, tmp_path, capsys):
    from hwnas.cli import main
    from hwnas.train.checkpoint import load_checkpoint

    db, run = searched
    fmt, filename = {"executorch-xnnpack-1t": ("executorch", "model.pte"),
                     "litert-xnnpack-1t": ("litert", "model.tflite")}[spec]
    out = tmp_path / fmt
    rc = main(["export", "--run", "mobile", "--storage", db, "--pick", "knee", "--format", fmt, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = read_manifest(out)
    assert m["format"] == fmt and verify_files(out) == [] and (out / filename).is_file()
    section = m[fmt]
    assert section["parity"]["passed"] and section["parity"]["max_abs_diff"] <= section["parity"]["atol"]
    assert m["latency"]["device"] == spec and m["latency"]["measured_ms"] > 0
    assert m["latency"]["measured_peak_bytes"] > 0
    # the file is the trial's trained network, run in the runtime (not just what parity looked at)
    _, trained, _ = load_checkpoint(run.knee().weights_path)
    x = np.random.default_rng(5).standard_normal((1, 1, 28, 28), dtype=np.float32)
    from hwnas.export.mobile import MOBILE_FORMATS

    got = MOBILE_FORMATS[fmt].runner((out / filename).read_bytes())(x)
    with torch.no_grad():
        assert np.abs(got - trained(torch.from_numpy(x)).numpy()).max() <= section["parity"]["atol"]


def test_a_profiled_table_stores_each_blocks_peak_memory(tmp_path, monkeypatch):
    import hwnas.latency.builder as builder

    blocks = builder.space_blocks
    monkeypatch.setattr(builder, "space_blocks", lambda space: blocks(space)[:2])  # two blocks: fast
    spec = load_device("ort-cpu-1t").with_overrides(repeats=50, warmup=3)
    table = builder.build_table(spec, "mobile:mnist", tmp_path / "t.json", progress=False, extra_rounds=0)
    from hwnas.latency import LatencyTable

    entries = LatencyTable.load(tmp_path / "t.json").entries
    assert len(entries) == 2 and entries.keys() == table.entries.keys()
    assert all(e.measured_peak_bytes > 0 for e in entries.values())


@pytest.mark.parametrize("spec", SPECS)
def test_boundary_transposes_are_counted_at_a_blocks_ends_only(spec):
    """A block timed alone converts its NCHW input and output to XNNPACK's NHWC (in + out elements, the
    residual's output too); the transposes around a grouped conv's channel shuffle are inside and not
    counted; a whole network converts only at its ends, far less than its blocks alone."""
    from hwnas.latency.builder import space_blocks
    from hwnas.spaces import get_space

    profiler = get_profiler(load_device(spec))
    space = get_space("mobile:mnist")
    blocks = {b.key: b for b in space_blocks(space)}
    elems = {}
    for key in ("mbconv:k3:e1:g1:s1:c16-16:28x28", "mbconv:k5:e6:g2:s2:c16-24:28x28"):
        layout = profiler.layout(space.build_block(blocks[key]), blocks[key].input_shape)
        assert layout is not None and layout.input == layout.output == "nhwc"
        elems[key] = layout.boundary_elems
    assert elems["mbconv:k3:e1:g1:s1:c16-16:28x28"] == 2 * 16 * 28 * 28
    assert elems["mbconv:k5:e6:g2:s2:c16-24:28x28"] == 16 * 28 * 28 + 24 * 14 * 14
    arch = space.parse("k3_e3_g2-k5_e3_g2-k5_e3-k3_e3-k3_e6_g2-k5_e3_g2-k5_e1_g2")
    network = profiler.boundary_copy_elems(profiler.compile(space.build(arch).eval(), (1, 1, 28, 28)))
    assert network <= 28 * 28  # at most the 1-channel input
