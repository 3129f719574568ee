"""The on-device agent on loopback: token, ONNX-only, upload limit, bad models, and the remote profiler."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import urllib.request

import pytest
import torch

from hwnas.devices import AgentClient, AgentError, DeviceSpec, get_profiler
from hwnas.devices.agent import make_server
from hwnas.onnx_export import export_onnx_bytes

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def agent():
    server = make_server("127.0.0.1", 0, TOKEN, max_upload_bytes=200_000, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def model_bytes():
    return export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()),
                             (1, 3, 16, 16))


def _spec(port, **changes):
    base = dict(name="remote-test", runtime="remote", host="127.0.0.1", port=port, token_env="HWNAS_TEST_TOKEN",
                warmup=2, repeats=50, measure_memory=False)
    base.update(changes)
    return DeviceSpec(**base)


def test_default_bind_is_loopback():
    server = make_server(token="t")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    with pytest.raises(ValueError, match="token"):
        make_server(token="")


def test_measure_with_token(agent, model_bytes):
    host, port = agent
    m = AgentClient(host, port, TOKEN).measure(model_bytes, (3, 16, 16), _spec(port))
    assert m.n == 50 and m.p10_ms <= m.median_ms <= m.p90_ms
    info = AgentClient(host, port, TOKEN).info()
    assert info["agent_schema"] == 1 and "onnxruntime" in info["versions"]


def test_rejects_missing_or_wrong_token(agent, model_bytes):
    host, port = agent
    with pytest.raises(AgentError, match="401"):
        AgentClient(host, port, "wrong").measure(model_bytes, None, _spec(port))
    req = urllib.request.Request(f"http://{host}:{port}/info")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401


def test_rejects_pickle_and_other_non_onnx(agent):
    host, port = agent
    client = AgentClient(host, port, TOKEN)
    with pytest.raises(AgentError, match="415.*not an ONNX model"):
        client.measure(pickle.dumps({"evil": 1}), None, _spec(port))
    with pytest.raises(AgentError, match="415"):
        client.measure(b"hello world, definitely not onnx", None, _spec(port))


def test_rejects_oversized_upload(agent):
    host, port = agent
    with pytest.raises(AgentError, match="413.*exceeds"):
        AgentClient(host, port, TOKEN).measure(b"\x08" + b"\0" * 300_000, None, _spec(port))


def test_survives_a_bad_model(agent, model_bytes):
    host, port = agent
    client = AgentClient(host, port, TOKEN)
    with pytest.raises(AgentError, match="422.*could not load"):
        client.measure(b"\x08\x07" + b"\xff" * 64, None, _spec(port))
    with pytest.raises(AgentError, match="400.*repeats"):
        client.measure(model_bytes, None, _BadRepeats())
    m = client.measure(model_bytes, (3, 16, 16), _spec(port))  # still serving
    assert m.n == 50


class _BadRepeats:
    """A spec-like object asking for fewer repeats than the protocol allows."""

    def __init__(self):
        self.threads, self.warmup, self.repeats, self.graph_optimization = 1, 1, 5, "all"
        self.batch_size, self.measure_memory = 1, False


def test_remote_profiler_through_spec(agent, monkeypatch):
    host, port = agent
    monkeypatch.setenv("HWNAS_TEST_TOKEN", TOKEN)
    spec = _spec(port)
    profiler = get_profiler(spec)
    m = profiler.measure_module(torch.nn.Conv2d(3, 4, 3), (3, 12, 12))
    assert m.p10_ms <= m.median_ms <= m.p90_ms and m.activation_bytes > 0
    assert spec.fingerprint()["host"]["agent_schema"] == 1
    monkeypatch.delenv("HWNAS_TEST_TOKEN")
    with pytest.raises(AgentError, match="HWNAS_TEST_TOKEN"):
        get_profiler(spec)


def test_unreachable_agent_is_a_clear_error():
    with pytest.raises(AgentError, match="cannot reach the agent"):
        AgentClient("127.0.0.1", 9, TOKEN, timeout_s=2).info()


def test_agent_module_needs_no_torch():
    code = ("import sys; import hwnas.devices.agent as a; a.agent_info(); "
            "assert 'torch' not in sys.modules, 'agent imported torch'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cli = subprocess.run([sys.executable, "-m", "hwnas.devices.agent", "serve", "--port", "0", "--token", ""],
                         capture_output=True, text=True, timeout=60, env={"PATH": ""})
    assert cli.returncode == 2 and "token is required" in cli.stderr


def test_profile_a_table_through_the_agent(monkeypatch, tmp_path):
    from hwnas.latency import LatencyTable
    from hwnas.latency.builder import build_table

    server = make_server("127.0.0.1", 0, TOKEN, quiet=True)  # default upload limit (64 MiB)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv("HWNAS_TEST_TOKEN", TOKEN)
    out = tmp_path / "remote-nb201.json"
    try:
        table = build_table(_spec(port), "nb201:imagenet16", out, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert len(LatencyTable.load(out)) == len(table) > 5
    assert table.device["runtime"] == "remote" and table.device["host"]["agent_schema"] == 1
    conv3 = [e.median_ms for k, e in table.entries.items() if k.startswith("nor_conv_3x3")]
    conv1 = [e.median_ms for k, e in table.entries.items() if k.startswith("nor_conv_1x1")]
    assert sum(conv3) > sum(conv1)
