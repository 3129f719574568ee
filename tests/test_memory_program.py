"""Memory figures read from compiled programs (ExecuTorch .pte, LiteRT .tflite): repeatable, growing with the
model, split into weights and activations, recorded in tables, and predicted for whole archs from their blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwnas.devices import get_profiler, load_device
from hwnas.devices.memory import PROGRAM_SOURCES, liveness_peak_bytes
from hwnas.latency import LatencyTable
from hwnas.latency.memory import measure_memory
from hwnas.latency.table import TableEntry
from hwnas.spaces import get_space

SPACE = get_space("mobile:mnist")
RUNTIMES = {"executorch-xnnpack-1t": "executorch.runtime", "litert-xnnpack-1t": "litert_torch"}


def _installed(spec: str):
    try:
        __import__(RUNTIMES[spec])
    except ImportError:
        return pytest.param(spec, marks=pytest.mark.skip(reason=f"{RUNTIMES[spec]} is not installed"))
    return spec


SPECS = [_installed(s) for s in RUNTIMES]


def _fast(spec: str):
    return get_profiler(load_device(spec).with_overrides(repeats=50, warmup=1))


def _net(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU6(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(channels, 10)).eval()


def test_liveness_frees_a_tensor_after_its_last_use_and_keeps_a_residual():
    sizes = {0: 10, 1: 100, 2: 100, 3: 10}
    chain = [([0], [1]), ([1], [2]), ([2], [3])]
    assert liveness_peak_bytes(chain, sizes) == 200  # 1 and 2 together; 0 is gone by then
    residual = [([0], [1]), ([1], [2]), ([2, 0], [3])]  # the input is added back at the end
    assert liveness_peak_bytes(residual, sizes) == 210
    assert liveness_peak_bytes(chain, sizes, live_from_start=[0], live_to_end=[0]) == 210
    assert liveness_peak_bytes(chain, {1: 100}) == 100  # ids left out of `sizes` (constants) do not count


@pytest.mark.parametrize("spec", SPECS)
def test_the_figure_repeats_exactly_and_grows_with_the_model(spec):
    profiler = _fast(spec)
    small = [profiler.measure_module(_net(8), (1, 28, 28), key="small") for _ in range(2)]
    big = profiler.measure_module(_net(64), (1, 28, 28), key="big")
    assert small[0].memory_source in PROGRAM_SOURCES and big.memory_source == small[0].memory_source
    assert small[0].measured_peak_bytes == small[1].measured_peak_bytes > 0
    assert small[0].extra["memory"] == small[1].extra["memory"]
    s, b = small[0].extra["memory"], big.extra["memory"]
    conv = 64 * 64 * 9 * 4  # the big net's second conv alone, float32
    assert conv <= b["weight_bytes"] < 2 * conv and s["weight_bytes"] < b["weight_bytes"] / 20  # weights stored once
    assert b["weight_bytes"] + b["plan_bytes"] + b["workspace_bytes"] == big.measured_peak_bytes
    assert 0 < b["graph_activation_bytes"] <= b["plan_bytes"] + b["workspace_bytes"]

    def activations(parts):
        return parts["plan_bytes"] + parts["workspace_bytes"]

    assert activations(b) > 4 * activations(s) > 0  # 8x wider activations


def _mini_table(profiler, archs) -> LatencyTable:
    table = LatencyTable(SPACE.spec, {"name": "t", "runtime": profiler.spec.runtime})
    for arch in archs:
        for block in SPACE.blocks(arch):
            if block.key not in table.entries:
                m = profiler.measure_module(SPACE.build_block(block), block.input_shape, key=block.key)
                table.entries[block.key] = TableEntry.from_measurement(m)
    return table


@pytest.mark.parametrize("spec", SPECS)
def test_weights_summed_plus_the_largest_blocks_activations_predict_the_whole_arch(spec):
    profiler = _fast(spec)
    archs = [SPACE.parse("k5_e6-k5_e6-skip-k3_e1_g2-skip-k5_e6_g2-skip")]  # small and large blocks, skips (one arch: compiling is the cost)
    table = _mini_table(profiler, archs)
    assert all(0 < e.weight_bytes < e.measured_peak_bytes and 0 < e.graph_activation_bytes
               for e in table.entries.values())
    for arch in archs:
        measured, source = measure_memory(profiler, arch)
        assert source in PROGRAM_SOURCES
        ratio = table.predict_peak_bytes(arch) / measured
        assert 0.85 < ratio < 1.15, f"{arch}: predicted / measured = {ratio:.3f}"


@pytest.mark.parametrize("spec", SPECS)
def test_a_profiled_table_records_the_memory_source_and_the_weights(spec, tmp_path, monkeypatch):
    import hwnas.latency.builder as builder

    blocks = builder.space_blocks
    monkeypatch.setattr(builder, "space_blocks", lambda space: blocks(space)[:2])  # two blocks: fast
    device = load_device(spec).with_overrides(repeats=50, warmup=1)
    builder.build_table(device, "mobile:mnist", tmp_path / "t.json", progress=False, extra_rounds=0)
    table = LatencyTable.load(tmp_path / "t.json")
    assert table.provenance["memory"]["source"] in PROGRAM_SOURCES and "weights" in table.provenance["memory"]["includes"]
    assert len(table.entries) == 2 and all(0 < e.weight_bytes < e.measured_peak_bytes for e in table.entries.values())
    assert table.has_memory()


def test_an_entry_without_a_weights_split_is_written_as_before():
    entry = TableEntry(1.0, 0.9, 1.1, 50, measured_peak_bytes=1000)
    assert "weight_bytes" not in entry.to_dict()
    assert TableEntry.from_dict({**entry.to_dict(), "weight_bytes": 400}).weight_bytes == 400


def test_with_the_weights_split_the_unfitted_and_fitted_predictions_are_weights_plus_the_largest_activations():
    from dataclasses import replace
    from pathlib import Path

    from hwnas.latency.memory import fit_memory

    table = LatencyTable.load(Path(__file__).resolve().parents[1] / "latency_tables" / "ort-cpu-1t" / "mobile-mnist.json")
    table.entries = {k: replace(e, measured_peak_bytes=(e.activation_bytes or 0) + 1000 * (i + 1), weight_bytes=1000 * (i + 1))
                     for i, (k, e) in enumerate(sorted(table.entries.items()))}
    archs = [SPACE.sample(s) for s in range(24)]

    def truth(arch):  # one program: every block's weights, the largest block's activations, a fixed overhead
        entries = [table.entry(b) for b in table.blocks(arch)]
        return 50_000 + sum(e.weight_bytes for e in entries) + max(e.activation_bytes for e in entries)

    for arch in archs:
        assert table.predict_peak_bytes(arch) == truth(arch) - 50_000  # unfitted: exactly weights + max
    table.memory = fit_memory([table.memory_features(a) for a in archs[:12]], [truth(a) for a in archs[:12]])
    assert table.memory.form == "weights+max" and table.memory.cv_mape < 0.1
    assert all(abs(table.predict_peak_bytes(a) / truth(a) - 1) < 0.001 for a in archs[12:])
