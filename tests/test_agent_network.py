"""The agent on a network: TLS with a pinned certificate, no clear-text token off loopback, a head deadline
against slowloris, and a torch-free entry point (a real agent on loopback; no torch in these tests)."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from onnx import TensorProto, helper

from hwnas.devices.agent import AgentLimits, AgentSetupError, make_server
from hwnas.devices.client import AgentClient, AgentError
from hwnas.devices.spec import DeviceSpec
from hwnas.devices.tls import certificate_fingerprint, self_signed, server_context

TOKEN = "net-token"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _onnx_model() -> bytes:
    """Conv + Relu built with onnx.helper (no torch)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.01 * i for i in range(108)])
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _spec(port: int, **changes) -> DeviceSpec:
    base = dict(name="net-test", runtime="remote", host="127.0.0.1", port=port, warmup=1, repeats=50,
                measure_memory=False)
    return DeviceSpec(**{**base, **changes})


def _start(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


@pytest.fixture
def tls_agent(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    server = make_server("127.0.0.1", 0, TOKEN, quiet=True, tls=server_context(cert, key))
    port = _start(server)
    yield port, certificate_fingerprint(cert)
    server.shutdown()
    server.server_close()


@needs_openssl
def test_tls_agent_serves_a_client_that_pins_its_certificate(tls_agent, tmp_path):
    port, fingerprint = tls_agent
    client = AgentClient("127.0.0.1", port, TOKEN, tls_fingerprint=fingerprint.replace(":", "").lower())
    assert client.base.startswith("https://") and client.info()["agent_schema"] == 1
    m = client.measure(_onnx_model(), None, _spec(port))
    assert m.n == 50 and m.p10_ms <= m.median_ms <= m.p90_ms
    with pytest.raises(AgentError, match="https"):  # a plain-HTTP client gets a hint, not a hang
        AgentClient("127.0.0.1", port, TOKEN, timeout_s=10).info()
    assert self_signed(tmp_path / "tls")[0].read_bytes()  # reused, so the printed fingerprint stays valid
    assert certificate_fingerprint(self_signed(tmp_path / "tls")[0]) == fingerprint


@needs_openssl
def test_a_wrong_pin_sends_no_byte_of_the_request(tmp_path):
    """A TLS server that records what it receives: a client whose pin does not match sends nothing."""
    cert, key = self_signed(tmp_path / "impostor")
    ctx = server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept_one() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(5)
            try:
                received.append(tls.recv(65536))
            except (OSError, ssl.SSLError):
                received.append(b"")

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    other = certificate_fingerprint(self_signed(tmp_path / "genuine")[0])
    with pytest.raises(AgentError, match="not the pinned tls_fingerprint.*token was not sent"):
        AgentClient("127.0.0.1", listener.getsockname()[1], TOKEN, tls_fingerprint=other).info()
    thread.join(10)
    listener.close()
    assert received == [b""] and TOKEN.encode() not in b"".join(received)


def test_no_clear_text_token_off_loopback():
    with pytest.raises(AgentSetupError, match="in clear.*--tls-self-signed.*--insecure"):
        make_server("0.0.0.0", 0, TOKEN, quiet=True)
    make_server("0.0.0.0", 0, TOKEN, quiet=True, insecure=True).server_close()
    with pytest.raises(AgentError, match="in clear.*tls_fingerprint"):
        AgentClient("192.0.2.7", 8765, TOKEN)
    assert AgentClient("192.0.2.7", 8765, TOKEN, tls_fingerprint="insecure").base.startswith("http://")
    with pytest.raises(AgentError, match="64 hex digits"):
        AgentClient("192.0.2.7", 8765, TOKEN, tls_fingerprint="AB:CD")


def _start_line(args: list[str], tmp_path) -> str:
    """The first line `hwnas-agent serve` prints (then it is stopped)."""
    proc = subprocess.Popen([sys.executable, "-m", "hwnas.devices.agent", "serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env={"HWNAS_AGENT_TOKEN": TOKEN, "PATH": "/usr/bin:/bin",
                                                                    "PYTHONPATH": ":".join(sys.path)})
    try:
        return proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)


@needs_openssl
def test_the_start_up_line_says_how_the_agent_is_reachable(tmp_path):
    line = _start_line(["--host", "0.0.0.0", "--tls-self-signed", str(tmp_path / "t")], tmp_path)
    fingerprint = certificate_fingerprint(tmp_path / "t" / "agent-cert.pem")
    assert "https://" in line and f"fingerprint {fingerprint}" in line, line
    line = _start_line(["--host", "0.0.0.0", "--insecure"], tmp_path)
    assert "http://" in line and "WITHOUT TLS" in line and "in clear" in line, line
    assert "loopback only" in _start_line([], tmp_path)
    refused = _start_line(["--host", "0.0.0.0"], tmp_path)
    assert refused.startswith("hwnas agent: error:") and "--insecure" in refused


def _slowloris(port: int, n: int, stop: threading.Event, interval_s: float) -> list[socket.socket]:
    """n token-less connections that send one byte of a request head every `interval_s`."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    head = b"GET /info HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10_000

    def drip(s: socket.socket) -> None:
        for byte in head:
            if stop.wait(interval_s):
                return
            try:
                s.sendall(bytes([byte]))
            except OSError:
                return

    for s in socks:
        threading.Thread(target=drip, args=(s,), daemon=True).start()
    return socks


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def test_slowloris_holds_no_slot_of_a_real_client_and_is_cut_at_the_head_deadline():
    head_s = 3.0
    server = make_server("127.0.0.1", 0, TOKEN, quiet=True, limits=AgentLimits(max_head_s=head_s))
    port = _start(server)
    stop = threading.Event()
    try:
        socks = _slowloris(port, 16, stop, interval_s=0.2)  # the audit's attack, 16 = the connection cap
        time.sleep(0.5)
        start = time.monotonic()
        client = AgentClient("127.0.0.1", port, TOKEN, timeout_s=30)
        assert client.info()["agent_schema"] == 1  # served while all 16 hold on
        m = client.measure(_onnx_model(), None, _spec(port))
        served_s = time.monotonic() - start
        assert m.n == 50
        assert not any(_closed_by_peer(s) for s in socks)  # they were still open while it was served
        assert served_s < head_s
        deadline = time.monotonic() + 4 * head_s
        while time.monotonic() < deadline and not all(_closed_by_peer(s) for s in socks):
            time.sleep(0.2)
        assert all(_closed_by_peer(s) for s in socks)  # still dripping bytes, yet cut at the head deadline
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@needs_openssl
def test_a_silent_tls_handshake_is_cut_at_the_head_deadline(tmp_path):
    cert, key = self_signed(tmp_path)
    limits = AgentLimits(max_head_s=1.0, socket_timeout_s=60.0)
    server = make_server("127.0.0.1", 0, TOKEN, quiet=True, limits=limits, tls=server_context(cert, key))
    port = _start(server)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            start = time.monotonic()
            assert s.recv(100) == b""  # closed by the agent, not by the 60 s socket timeout
            assert time.monotonic() - start < limits.socket_timeout_s / 4
    finally:
        server.shutdown()
        server.server_close()


_BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def test_the_agent_entry_point_serves_onnx_without_torch(tmp_path):
    """`python -m hwnas.devices.agent serve` (the `hwnas-agent` script) with `import torch` blocked."""
    code = _BLOCK_TORCH + ("import runpy; sys.argv = ['hwnas-agent', 'serve', '--port', '0', '--quiet']\n"
                           "runpy.run_module('hwnas.devices.agent', run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={"HWNAS_AGENT_TOKEN": TOKEN, "PATH": "", "PYTHONPATH": ":".join(sys.path)})
    try:
        line = proc.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line + proc.stderr.read() if proc.poll() is not None else line
        port = int(found.group(1))
        m = AgentClient("127.0.0.1", port, TOKEN).measure(_onnx_model(), None, _spec(port))
        assert m.n == 50 and m.median_ms > 0
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_agent_and_client_modules_import_without_torch():
    code = _BLOCK_TORCH + ("import hwnas.devices.agent as a, hwnas.devices.client, hwnas.devices.tls\n"
                           "a.agent_info(); assert 'torch' not in sys.modules; print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
