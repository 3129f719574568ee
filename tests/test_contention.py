"""Issue 21 item 3: profile and validate measure how busy the machine was, record it, warn; --strict refuses.

The timing source is controlled: a fake profiler advances fake wall and CPU clocks, so a measurement
gets exactly the CPU share a test asks for (no absolute times are asserted).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.devices import DeviceSpec
from hwnas.devices.profilers import Profiler
from hwnas.devices.timing import summarize
from hwnas.latency import LatencyTable
from hwnas.latency.builder import build_table
from hwnas.latency.contention import (
    BUSY_SHARE,
    Contention,
    MachineBusyError,
    MeteredProfiler,
    metered,
    recorded_contention,
    report_contention,
)
from hwnas.latency.validation import validate_table

SPACE = "nb201:cifar10"


def spec(**changes) -> DeviceSpec:
    base = dict(name="test-ort", runtime="onnxruntime", threads=1, warmup=2, repeats=50, measure_memory=False)
    return DeviceSpec(**{**base, **changes})


class FakeCore(Profiler):
    """Measures nothing: each measurement returns a latency that grows with the module's parameters and
    advances fake clocks by 1 s of wall time, of which the measuring thread ran `share`."""

    def __init__(self, share: float) -> None:
        super().__init__(spec())
        self.share, self.wall, self.cpu = share, 0.0, 0.0

    def clocks(self) -> tuple[float, float]:
        return self.wall, self.cpu

    def measure_module(self, module, input_shape, key=None):
        self.wall += 1.0
        self.cpu += self.share
        ms = 0.01 + 1e-6 * sum(p.numel() for p in module.parameters())
        return summarize(np.full(50, ms) * np.linspace(1.0, 1.02, 50), warmup=2)

    def measure_onnx(self, model, input_shape=None):
        raise NotImplementedError


def fake(share: float) -> MeteredProfiler:
    core = FakeCore(share)
    return MeteredProfiler(core, clocks=core.clocks)


@pytest.fixture(scope="module")
def quiet_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("busy") / "quiet.json"
    build_table(spec(), SPACE, path, progress=False, profiler=fake(0.97), extra_rounds=0)
    return path


def test_a_profile_records_how_busy_the_machine_was_and_resuming_keeps_the_busier(quiet_table, tmp_path):
    quiet = recorded_contention(LatencyTable.load(quiet_table))
    assert quiet is not None and not quiet.busy and quiet.cpu_share > BUSY_SHARE
    assert quiet.measurements > len(LatencyTable.load(quiet_table))  # every block and reference timing
    # half the blocks on a quiet machine, the rest resumed on a busy one: the table records the busy run
    path = tmp_path / "resumed.json"
    data = json.loads(quiet_table.read_text())
    data["entries"] = dict(list(data["entries"].items())[: len(data["entries"]) // 2])
    path.write_text(json.dumps(data))
    table = build_table(spec(), SPACE, path, progress=False, profiler=fake(0.1), extra_rounds=0)
    busy = recorded_contention(LatencyTable.load(path))
    assert busy.busy and busy.cpu_share < BUSY_SHARE < quiet.cpu_share
    assert busy.measurements > quiet.measurements
    assert table.provenance["contention"]["busy"] is True


def test_a_busy_figure_is_one_warning_line_or_a_strict_refusal():
    lines: list[str] = []
    report_contention(Contention(0.95, 40), "profiling", warn=lines.append)
    assert lines == []  # quiet: nothing to say
    report_contention(Contention(0.12, 40, loadavg_1m=7.5, cpu_count=2), "profiling", warn=lines.append)
    assert len(lines) == 1 and lines[0].startswith("machine busy during profiling:")
    assert "12.0%" in lines[0] and f"{BUSY_SHARE:.0%}" in lines[0] and "7.5 on 2 cores" in lines[0]
    with pytest.raises(MachineBusyError, match="--strict refuses"):
        report_contention(Contention(0.12, 40), "validation", strict=True, warn=lines.append)
    report_contention(None, "profiling", strict=True)  # no figure (a remote device): nothing to refuse


def test_validate_reports_the_figure_and_strict_refuses_a_busy_machine(quiet_table):
    table = LatencyTable.load(quiet_table)
    quiet = validate_table(table, spec(), samples=4, progress=False, profiler=fake(0.95), strict=True)
    assert quiet["contention"]["busy"] is False and quiet["table_contention"]["busy"] is False
    busy = validate_table(table, spec(), samples=4, progress=False, profiler=fake(0.1))
    assert busy["contention"]["busy"] is True
    assert busy["contention"]["cpu_share"] < BUSY_SHARE < quiet["contention"]["cpu_share"]
    profiler = fake(0.1)
    with pytest.raises(MachineBusyError, match="drift check"):  # refused after the quick drift check
        validate_table(LatencyTable.load(quiet_table), spec(), samples=4, progress=False, profiler=profiler,
                       strict=True)
    assert len(profiler.shares) < 4  # before the archs were measured


def test_a_descheduled_measurement_is_seen_with_the_real_clocks():
    """A measurement whose thread waits (as when other processes hold its core) gets a low share."""

    class Waiting(FakeCore):
        def measure_module(self, module, input_shape, key=None):
            time.sleep(0.02)
            return super().measure_module(module, input_shape, key)

    from torch import nn

    profiler = metered(Waiting(1.0))
    for _ in range(3):
        profiler.measure_module(nn.Identity(), (1, 4, 4))
    found = profiler.contention()
    assert found.busy and found.measurements == 3
    assert metered(profiler) is profiler  # metered once


def test_remote_and_gpu_profilers_are_not_metered():
    for changes in ({"runtime": "remote", "host": "127.0.0.1", "port": 1}, {"device": "cuda"}):
        core = FakeCore(1.0)
        core.spec = spec(**changes)
        assert metered(core) is core


def _cli_busy(monkeypatch, share: float) -> None:
    """The CLI's profilers measure on a core that gives them `share` of its time."""
    import hwnas.devices
    import hwnas.latency.validation as validation

    monkeypatch.setattr(hwnas.devices, "get_profiler", lambda s: fake(share))
    monkeypatch.setattr(validation, "get_profiler", lambda s: fake(share))
    monkeypatch.setattr(validation, "load_device", lambda s: spec())


def test_cli_profile_warns_on_a_busy_machine_and_strict_refuses(tmp_path, capsys, monkeypatch):
    _cli_busy(monkeypatch, 0.1)
    args = ["profile", "--device", "ort-cpu-1t", "--space", SPACE, "--calibrate", "0", "--rounds", "1",
            "--no-progress", "--json"]
    assert main(args + ["--out", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr()
    warnings = [line for line in out.err.splitlines() if "machine busy" in line]
    assert len(warnings) == 1 and warnings[0].startswith("hwnas: warning: machine busy during profiling: ")
    assert json.loads(out.out)["contention"]["cpu_share"] < BUSY_SHARE
    assert main(args + ["--out", str(tmp_path / "b.json"), "--strict"]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("hwnas: error: machine busy during profiling")
    _cli_busy(monkeypatch, 0.97)
    assert main(args + ["--out", str(tmp_path / "c.json"), "--strict"]) == 0
    assert "machine busy" not in capsys.readouterr().err


def test_cli_validate_says_the_figure_and_strict_refuses(quiet_table, tmp_path, capsys, monkeypatch):
    _cli_busy(monkeypatch, 0.1)
    args = ["validate", "--table", str(quiet_table), "--device", "test-ort", "--samples", "3",
            "--rounds", "1", "--plot", str(tmp_path / "v.png")]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "contention: machine busy during validation" in out.out
    assert sum("hwnas: warning: machine busy during validation" in line for line in out.err.splitlines()) == 1
    assert main(args + ["--strict"]) == 2
    assert "--strict refuses" in capsys.readouterr().err
    _cli_busy(monkeypatch, 0.97)
    assert main(args + ["--strict"]) == 0
    out = capsys.readouterr()
    assert "contention: machine quiet enough during validation" in out.out and "machine busy" not in out.err
