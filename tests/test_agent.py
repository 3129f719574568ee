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


# -- attacks from the reliability audit (issue 13): a real agent on loopback -----------------------
def _raw(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict]:
    """Send raw HTTP bytes, return (status, JSON body)."""
    import json
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post(port: int, body: bytes, query: str = "", token: str = TOKEN) -> tuple[int, dict]:
    return _raw(port, (f"POST /measure?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)


def _external_models(location: str) -> dict[str, bytes]:
    """Models that make ONNX Runtime read `location` from the agent's disk, one per place a tensor can sit."""
    import onnx
    from onnx import TensorProto, helper

    def ext_tensor(name: str) -> TensorProto:
        t = helper.make_tensor(name, TensorProto.INT64, [2], [0, 0])
        t.ClearField("int64_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "16")):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    reshape = helper.make_node("Reshape", ["x", "shape"], ["y"])

    def model(graph) -> bytes:
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()

    out = {"initializer": model(helper.make_graph([reshape], "g", [x], [y], [ext_tensor("shape")]))}
    const = helper.make_node("Constant", [], ["shape"], value=ext_tensor("v"))
    out["attribute"] = model(helper.make_graph([const, reshape], "g", [x], [y]))
    only_location = ext_tensor("shape")
    only_location.ClearField("external_data")  # data_location alone
    out["data_location"] = model(helper.make_graph([reshape], "g", [x], [y], [only_location]))
    branch = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [ext_tensor("shape")])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    iff = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    out["subgraph"] = model(helper.make_graph([iff], "g", [x, cond], [y]))
    sparse = helper.make_sparse_tensor(ext_tensor("shape"), helper.make_tensor("i", TensorProto.INT64, [2], [0, 1]), [2])
    g = helper.make_graph([reshape], "g", [x], [y])
    g.sparse_initializer.append(sparse)
    out["sparse"] = model(g)
    for data in out.values():
        onnx.load_from_string(data)  # well-formed ONNX
    return out


def test_models_with_external_data_are_refused_and_no_host_file_is_read(agent, tmp_path, monkeypatch):
    from hwnas.devices.agent import onnx_file_reference

    secret = "root:x:0:0:SECRET-LINE"
    (tmp_path / "passwd").write_text(secret + "\n" * 64)
    monkeypatch.chdir(tmp_path)  # the audit's attack: a path relative to the agent's working directory
    host, port = agent
    models = _external_models("passwd")
    assert len(models) == 5
    for where, data in models.items():
        assert onnx_file_reference(data), where
        status, body = _post(port, data, "input_shape=4")
        assert status == 422 and "external" in body["error"], (where, body)
        assert "SECRET" not in body["error"] and str(tmp_path) not in body["error"]


def test_a_self_contained_model_has_no_file_reference(model_bytes):
    from hwnas.devices.agent import MalformedModel, onnx_file_reference

    assert onnx_file_reference(model_bytes) is None
    with pytest.raises(MalformedModel):
        onnx_file_reference(b"\x08\x07\x12\xff\xff\xff")


def test_runtime_errors_carry_no_tensor_contents(agent):
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1234567, 7654321])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    status, body = _post(agent[1], data, "repeats=50&warmup=0")
    assert status == 422 and "withholds" in body["error"]
    assert "1234567" not in body["error"] and "7654321" not in body["error"]


def test_per_request_caps(agent, model_bytes):
    port = agent[1]
    status, body = _post(port, model_bytes, "batch_size=2048&input_shape=3,224,224")  # the audit's 93 bytes
    assert status == 400 and "batch_size" in body["error"] and "--max-batch-size" in body["error"]
    status, body = _post(port, model_bytes, "batch_size=64&input_shape=3,224,224")
    assert status == 413 and "--max-input-elements" in body["error"]
    status, body = _post(port, model_bytes, "repeats=100000")
    assert status == 400 and "--max-repeats" in body["error"]
    for bad in ("input_shape=0,3", "input_shape=-1,3", "input_shape=" + ",".join(["2"] * 9)):
        assert _post(port, model_bytes, bad)[0] == 400, bad
    big = export_onnx_bytes(torch.nn.ReLU(), (1, 3, 2048, 2048))  # declares 12.6 M input elements itself
    status, body = _post(port, big)
    assert status == 422 and "above the cap" in body["error"]


def _serve(**limits):
    from hwnas.devices.agent import AgentLimits

    server = make_server("127.0.0.1", 0, TOKEN, quiet=True, limits=AgentLimits(**limits))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_wall_time_cap_releases_the_lock(model_bytes):
    server = _serve(max_request_s=0.001)
    try:
        status, body = _post(server.server_address[1], model_bytes, "input_shape=3,16,16&repeats=1000")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 422 and "longer than 0.001 s" in body["error"]
    from hwnas.devices.timing import measurement_lock

    with measurement_lock():  # released: a new measurement can start
        pass


def test_idle_connections_are_dropped_and_capped():
    import socket
    import time

    server = _serve(socket_timeout_s=0.5, max_pending_connections=2)  # idle = still sending its head
    port = server.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        time.sleep(0.1)
        status, body = _raw(port, b"GET /info HTTP/1.1\r\n\r\n")  # a third connection: over the cap
        assert status == 503 and "busy" in body["error"]
        for s in idle:  # closed by the agent after its 0.5 s socket timeout, without a token ever sent:
            assert s.recv(100) == b""  # an empty read, not the client's own 5 s timeout (socket.timeout)
            s.close()
        time.sleep(0.1)
        assert _raw(port, f"GET /info HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_methods_get_json_after_auth(agent):
    port = agent[1]
    for method in ("PUT", "DELETE", "PATCH", "FOO"):
        status, body = _raw(port, f"{method} /measure HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())
        assert status == 401, method
        status, body = _raw(port, f"{method} /measure HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                                  "Content-Length: 0\r\n\r\n".encode())
        assert status == 405 and "not allowed" in body["error"], method
    assert _raw(port, f"GET /measure HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())[0] == 405


def test_ipv6_loopback_serves_or_refuses_in_one_line(capsys):
    import socket

    try:
        server = make_server("::1", 0, TOKEN, quiet=True)
    except ValueError as exc:
        assert "::1" in str(exc) and "\n" not in str(exc)
        return
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        info = AgentClient("[::1]", port, TOKEN).info()
        assert info["agent_schema"] == 1
    finally:
        server.shutdown()
        server.server_close()
    assert socket.has_ipv6


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "not a TCP port"),
    (["--port", "-1"], "not a TCP port"),
    (["--host", "no.such.host.invalid"], "not an address"),
    (["--max-upload-mb", "-1"], "--max-upload-mb must be a positive"),
    (["--max-request-s", "0"], "--max-request-s must be a positive"),
    (["--max-upload-mb", "nan"], "--max-upload-mb must be a positive"),
    (["--token-file", "/nonexistent/token"], "cannot read --token-file"),
])
def test_serve_flags_are_validated(argv, message, capsys, monkeypatch):
    from hwnas.cli import main

    monkeypatch.setenv("HWNAS_AGENT_TOKEN", TOKEN)
    assert main(["agent", "serve", "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_port_in_use_and_token_sources(capsys, monkeypatch, tmp_path):
    from hwnas.cli import main
    from hwnas.devices.agent import _token, add_serve_arguments

    server = make_server("127.0.0.1", 0, TOKEN, quiet=True)
    try:
        monkeypatch.setenv("HWNAS_AGENT_TOKEN", TOKEN)
        assert main(["agent", "serve", "--port", str(server.server_address[1])]) == 2
        assert "cannot listen" in capsys.readouterr().err
    finally:
        server.server_close()
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    (tmp_path / "tok").write_text("from-file\n")
    assert _token(parser.parse_args(["--token-file", str(tmp_path / "tok")])) == "from-file"
    assert _token(parser.parse_args([])) == TOKEN  # from HWNAS_AGENT_TOKEN
    monkeypatch.delenv("HWNAS_AGENT_TOKEN")
    (tmp_path / "empty").write_text("")
    assert main(["agent", "serve", "--token-file", str(tmp_path / "empty")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_a_model_over_the_memory_cap_is_refused(tmp_path):
    # a 64->64 conv on 16x3x128x128 needs 64 MiB per activation: over a 32 MiB arena. The arena is
    # process-wide (one agent per process), so this agent runs in its own process.
    model = export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1),
                                                  torch.nn.Conv2d(64, 64, 3, padding=1)), (16, 3, 128, 128))
    (tmp_path / "m.onnx").write_bytes(model)
    code = ("import sys, pathlib; from hwnas.devices.agent import measure_request, AgentLimits, AgentRequestError\n"
            f"m = pathlib.Path({str(tmp_path / 'm.onnx')!r}).read_bytes()\n"
            "try:\n    measure_request(m, {'warmup': ['0']}, AgentLimits(max_arena_bytes=32 * 2**20))\n"
            "except AgentRequestError as e:\n    print(e.status, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("413 the model needs more memory than the agent's cap of 32 MiB"), out


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="no CPU affinity API on this OS")
def test_the_agent_pins_a_measurement_to_the_specs_cores(agent, model_bytes, monkeypatch):
    import os

    import hwnas.devices.ort_runtime as ort_runtime

    port = agent[1]
    core = max(os.sched_getaffinity(0))
    seen: list[set[int]] = []  # the agent thread's cores while it measures

    measure = ort_runtime.ort_measure

    def spy(*args, **kwargs):
        seen.append(os.sched_getaffinity(0))
        return measure(*args, **kwargs)

    monkeypatch.setattr(ort_runtime, "ort_measure", spy)
    before = os.sched_getaffinity(0)
    status, body = _post(port, model_bytes, f"cpus={core}&warmup=1")
    assert status == 200 and body["measurement"]["n"] >= 50 and seen[-1] == {core}
    status, body = _post(port, model_bytes, "cpus=4096")
    assert status == 400 and "not available on this device" in body["error"] and "4096" in body["error"]
    assert _post(port, model_bytes, "cpus=one")[0] == 400
    assert os.sched_getaffinity(0) == before
    # a remote spec's cpus travel to the agent; they never pin this (client) process
    monkeypatch.setenv("HWNAS_TEST_TOKEN", TOKEN)
    spec = _spec(port, cpus=(core,))
    assert spec.pinned_cpus() == ()
    m = get_profiler(spec).measure_module(torch.nn.Conv2d(3, 4, 3), (3, 12, 12))
    assert m.median_ms > 0 and seen[-1] == {core}


# -- mobile formats (.pte, .tflite) --------------------------------------------------------------
DATA = __import__("pathlib").Path(__file__).parent / "data"


def _measure_format(body, fmt, **query):
    from hwnas.devices.agent import measure_request

    q = {"format": [fmt], "repeats": ["50"], "warmup": ["1"], **{k: [str(v)] for k, v in query.items()}}
    return measure_request(body, q)


def test_agent_lists_formats_and_says_which_runtime_is_missing(agent, monkeypatch):
    import importlib.util

    from hwnas.devices.agent import AgentRequestError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("executorch", "ai_edge_litert") else real(name, *a))
    host, port = agent
    client = AgentClient(host, port, TOKEN)
    assert client.formats() == ["onnx"]
    with pytest.raises(AgentError, match=r"\(501\).*no runtime for format=pte.*pip install executorch"):
        client.measure((DATA / "linear.pte").read_bytes(), (4,), _spec(port), model_format="pte")
    tflite = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    with pytest.raises(AgentRequestError, match="no runtime for format=tflite.*ai-edge-litert"):
        _measure_format(tflite, "tflite", input_shape=4)
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert set(client.formats()) >= {"onnx"} and set(client.formats()) <= {"onnx", "pte", "tflite"}


def test_pte_with_external_data_is_refused():
    from hwnas.devices.agent import AgentRequestError, pte_file_reference

    body = (DATA / "linear-external.pte").read_bytes()
    assert "EXTERNAL" in pte_file_reference(body)
    assert pte_file_reference((DATA / "linear.pte").read_bytes()) is None
    with pytest.raises(AgentRequestError, match="refused: a tensor's data is stored EXTERNAL") as exc:
        _measure_format(body, "pte", input_shape=4)
    assert exc.value.status == 422


def test_mobile_formats_refuse_foreign_and_broken_bytes(model_bytes):
    from hwnas.devices.agent import AgentRequestError

    for fmt in ("pte", "tflite"):
        with pytest.raises(AgentRequestError, match=f"not a .{fmt} file") as exc:
            _measure_format(model_bytes, fmt, input_shape=4)
        assert exc.value.status == 415
    good = (DATA / "linear.pte").read_bytes()
    for broken in (good[:40], good[:8] + b"\xff" * 64, good[:4] + b"ET12" + b"\x00" * 8):
        with pytest.raises(AgentRequestError) as exc:
            _measure_format(broken, "pte", input_shape=4)
        assert exc.value.status in (422, 501)  # refused as malformed, or (no runtime here) before loading


def test_pte_round_trip_through_the_agent(agent):
    pytest.importorskip("executorch.runtime")
    from hwnas.devices.executorch_runtime import lower_to_pte

    host, port = agent
    program = lower_to_pte(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()), (1, 1, 12, 12))
    client = AgentClient(host, port, TOKEN)
    assert "pte" in client.formats()
    m = client.measure(program.data, (1, 12, 12), _spec(port, measure_memory=True), model_format="pte")
    assert m.n == 50 and m.p10_ms <= m.median_ms <= m.p90_ms and (m.measured_peak_bytes or 0) > 0


def test_tflite_round_trip_through_the_agent(agent):
    pytest.importorskip("ai_edge_litert.interpreter")
    pytest.importorskip("litert_torch")
    from hwnas.devices.litert_runtime import convert_to_tflite

    host, port = agent
    data = convert_to_tflite(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()), (1, 1, 12, 12))
    m = AgentClient(host, port, TOKEN).measure(data, (1, 12, 12), _spec(port, measure_memory=True),
                                               model_format="tflite")
    assert m.n == 50 and m.p10_ms <= m.median_ms <= m.p90_ms and (m.measured_peak_bytes or 0) > 0
