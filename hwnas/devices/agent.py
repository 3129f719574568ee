"""The on-device agent: an HTTP(S) server that times uploaded models (needs only onnxruntime + numpy).

Run on the target: `HWNAS_AGENT_TOKEN=T hwnas-agent serve --port 8765` (also `python -m hwnas.devices.agent
serve` or `hwnas agent serve`; none of the first two imports torch; the token may also come from
`--token-file`). Off loopback it needs TLS (`--tls-self-signed DIR` or `--tls-cert/--tls-key`) unless
`--insecure` is given. Protocol (schema 1): `GET /info` -> host fingerprint;
`POST /measure?format=onnx&threads=..&warmup=..&repeats=..&graph_optimization=..&batch_size=..&input_shape=C,H,W`
with the model bytes as body -> Measurement JSON; `format=pte` (ExecuTorch) and `format=tflite` (LiteRT)
are served where their runtime is installed (`/info` lists `formats`). Every request needs
`Authorization: Bearer <token>`. The agent touches nothing but the model it was sent: only self-contained
ONNX protobuf, .pte and .tflite are accepted (no pickle, no external data or other file references),
inputs, repeats and time per request are capped
(`AgentLimits`), a request head must be complete within `max_head_s`, and error messages carry no tensor
contents and no host paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import ipaddress
import json
import os
import platform
import re
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

AGENT_SCHEMA_VERSION = 1
DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = (LOOPBACK, "localhost", "::1")
TOKEN_ENV = "HWNAS_AGENT_TOKEN"


@dataclass(frozen=True)
class AgentLimits:
    """Per-request caps (the operator raises them with `serve` flags) and connection handling.

    Defaults keep one request under ~1 GiB of memory (64 MiB upload, 4 Mi input elements = 16 MiB of
    float32 per feed, batch <= 64, a 640 MiB ONNX Runtime arena for the model's tensors) and the
    measurement lock under 60 s; an unauthenticated connection lives at most `max_head_s`.
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_arena_bytes: int = 640 * 2**20
    max_input_elements: int = 4 * 2**20
    max_batch_size: int = 64
    max_warmup: int = 1000
    max_repeats: int = 1000
    max_request_s: float = 60.0
    max_connections: int = 16  # authenticated connections at once
    socket_timeout_s: float = 10.0
    # a request head (TLS handshake, request line, headers) must be complete within this time, however
    # slowly its bytes trickle in; connections still sending their head are capped separately, so that
    # token-less slow connections (slowloris) cannot take the authenticated clients' slots
    max_head_s: float = 10.0
    max_pending_connections: int = 64

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{f.name.replace('_', '-')} must be a positive number, got {value!r}")


class AgentRequestError(Exception):
    """A request the agent refuses; carries the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def agent_info() -> dict[str, Any]:
    """Fingerprint of the device the agent runs on."""
    import numpy as np
    import onnxruntime as ort

    from hwnas.devices.spec import cpu_model

    return {
        "agent_schema": AGENT_SCHEMA_VERSION,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__},
        "providers": ort.get_available_providers(),
        "formats": served_formats(),  # `format=` values of /measure whose runtime is installed
    }


def looks_like_onnx(body: bytes) -> bool:
    """ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08. Pickle starts with 0x80."""
    return len(body) > 8 and body[0] == 0x08


# -- file references in an ONNX model (protobuf wire format, no `onnx` package needed) ------------
# message kind -> {field number: kind of the sub-message}; every place a TensorProto can sit.
_ONNX_MESSAGES: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "function": {7: "node", 11: "attribute"},
    "training": {1: "graph", 2: "graph"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_MAX_NESTING = 64


class MalformedModel(ValueError):
    """The bytes are not well-formed protobuf."""


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= end or shift > 63:
            raise MalformedModel("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, wire type, value) of one message; value is an int or a (start, end) span."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
            yield number, wire, value
        elif wire == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise MalformedModel("truncated field")
            yield number, wire, (i, i + n)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise MalformedModel(f"unsupported wire type {wire}")
    if i != end:
        raise MalformedModel("truncated message")


def onnx_file_reference(body: bytes) -> str | None:
    """Why the model would make ONNX Runtime read a file (external data of any tensor), or None.

    Walks initializers, sparse initializers, attribute tensors, subgraphs, functions and training graphs.
    Raises MalformedModel on bytes that are not protobuf.
    """
    stack = [("model", 0, len(body), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > _MAX_NESTING:
            raise MalformedModel(f"messages nested deeper than {_MAX_NESTING}")
        children = _ONNX_MESSAGES[kind]
        for number, wire, value in _fields(body, start, end):
            if kind == "tensor":
                if number == _TENSOR_EXTERNAL_DATA:
                    return "a tensor names external data (a file on the agent's host)"
                if number == _TENSOR_DATA_LOCATION and wire == 0 and value != 0:
                    return "a tensor's data_location is EXTERNAL (a file on the agent's host)"
            elif number in children and wire == 2:
                stack.append((children[number], value[0], value[1], depth + 1))
    return None


_ORT_STATUS = re.compile(r"\b([A-Z][A-Z_]{3,})\b")


def _safe_error(exc: Exception) -> str:
    """What went wrong, without the runtime's detail text (it can hold tensor contents and host paths)."""
    text = str(exc)
    if ":" not in text:  # the agent's own message (a cap or the deadline), nothing from the runtime
        return text
    head = text.split(":", 1)[0].strip()  # our own prefix, e.g. "ONNX Runtime could not load the model"
    status = _ORT_STATUS.search(text.split(":", 1)[1] if ":" in text else "")
    code = f" ({status.group(1)})" if status else ""
    return (f"{head}{code}; the agent withholds the runtime's details (they can hold tensor data or host "
            "paths): run the model locally with onnxruntime to see them")


def _int_param(q: dict[str, list[str]], key: str, default: int, lo: int, hi: int, flag: str = "") -> int:
    raw = q.get(key, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise AgentRequestError(400, f"query parameter {key}={raw[:40]!r} must be an integer") from None
    if not lo <= value <= hi:
        raise AgentRequestError(
            400, f"query parameter {key}={value} must be in [{lo}, {hi}]"
            + (f" (the agent's operator can raise the cap with `serve {flag}`)" if flag and value > hi else ""))
    return value


def _cpus_param(q: dict[str, list[str]]) -> tuple[int, ...]:
    """The `cpus` query parameter (cores of this device to pin the measurement to; empty: unpinned)."""
    raw = q.get("cpus", [""])[0]
    if not raw:
        return ()
    try:
        cpus = tuple(sorted({int(c) for c in raw.split(",")}))
    except ValueError:
        raise AgentRequestError(400, f"cpus={raw[:40]!r} must be comma-separated core numbers, e.g. 3 or 2,3") from None
    if not hasattr(os, "sched_getaffinity"):
        raise AgentRequestError(400, "this agent's OS cannot pin a measurement to cores; drop `cpus` from the spec")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise AgentRequestError(400, f"cpus {missing} are not available on this device (allowed: {sorted(allowed)}); "
                                     "change `cpus` in the device spec")
    return cpus


@dataclass(frozen=True)
class MeasureParams:
    """The validated query of one /measure request (what any format's runner gets)."""

    threads: int
    warmup: int
    repeats: int
    batch_size: int
    graph_optimization: str
    input_shape: tuple[int, ...] | None
    measure_memory: bool
    cpus: tuple[int, ...]


def _shape_param(query: dict[str, list[str]], batch_size: int, limits: AgentLimits) -> tuple[int, ...] | None:
    raw = query.get("input_shape", [""])[0]
    if not raw:
        return None
    try:
        shape = tuple(int(d) for d in raw.split(","))
    except ValueError:
        raise AgentRequestError(400, "input_shape must be comma-separated integers, e.g. 3,32,32") from None
    if not shape or len(shape) > 8 or any(d < 1 for d in shape):
        raise AgentRequestError(400, "input_shape must be 1 to 8 positive integers, e.g. 3,32,32")
    elements = batch_size
    for d in shape:
        elements *= d
    if elements > limits.max_input_elements:
        raise AgentRequestError(
            413, f"batch_size x input_shape is {elements} input elements, above the agent's cap of "
                 f"{limits.max_input_elements} (the operator can raise it with `serve --max-input-elements`)")
    return shape


def measure_params(query: dict[str, list[str]], limits: AgentLimits) -> MeasureParams:
    """Validate the query of a /measure request against `limits`."""
    from hwnas.devices.timing import MIN_REPEATS

    batch_size = _int_param(query, "batch_size", 1, 1, limits.max_batch_size, "--max-batch-size")
    threads = _int_param(query, "threads", 1, 1, 256)
    warmup = _int_param(query, "warmup", 10, 0, limits.max_warmup, "--max-warmup")
    repeats = _int_param(query, "repeats", MIN_REPEATS, MIN_REPEATS, limits.max_repeats, "--max-repeats")
    opt = query.get("graph_optimization", ["all"])[0]
    if opt not in GRAPH_OPT_LEVELS:
        raise AgentRequestError(400, f"graph_optimization={opt[:40]!r} must be one of {', '.join(GRAPH_OPT_LEVELS)}")
    shape = _shape_param(query, batch_size, limits)
    memory = query.get("measure_memory", ["1"])[0] not in ("0", "false")
    return MeasureParams(threads, warmup, repeats, batch_size, opt, shape, memory, _cpus_param(query))


def _measure_onnx(body: bytes, params: MeasureParams, limits: AgentLimits) -> Any:
    """Time self-contained ONNX bytes in ONNX Runtime (CPU) under `limits`."""
    from hwnas.devices.ort_runtime import ProfilerError, ort_measure

    if not looks_like_onnx(body):
        raise AgentRequestError(415, "the body is not an ONNX model (expected ONNX protobuf bytes; pickle and "
                                     "other formats are refused)")
    try:
        reference = onnx_file_reference(body)
    except MalformedModel as exc:
        raise AgentRequestError(422, f"ONNX Runtime could not load the model: not well-formed protobuf ({exc})") from None
    if reference:
        raise AgentRequestError(422, f"model refused: {reference}; send a self-contained model (save it without "
                                     "external data, e.g. onnx.save(model, path, save_as_external_data=False))")
    try:
        return ort_measure(body, params.input_shape, threads=params.threads,
                           graph_optimization=params.graph_optimization, warmup=params.warmup,
                           repeats=params.repeats, batch_size=params.batch_size,
                           measure_memory=params.measure_memory, max_s=limits.max_request_s,
                           max_input_elements=limits.max_input_elements, arena_max_bytes=limits.max_arena_bytes)
    except ProfilerError as exc:
        if "bfc_arena" in str(exc).lower() or "available memory of" in str(exc).lower():
            raise AgentRequestError(
                413, f"the model needs more memory than the agent's cap of {limits.max_arena_bytes // 2**20} MiB "
                     "for one request's tensors (the operator can raise it with `serve --max-arena-mb`)") from None
        raise AgentRequestError(422, _safe_error(exc)) from None


# -- ExecuTorch .pte and LiteRT .tflite (FlatBuffers, read without either runtime) -----------------
_PTE_TENSOR = 5  # KernelTypes union index of Tensor in program.fbs (0 is the implicit NONE)
_PTE_EXTERNAL = 1  # TensorDataLocation.EXTERNAL


def _fb_uint(buf: bytes, i: int, size: int = 4, signed: bool = False) -> int:
    if i < 0 or i + size > len(buf):
        raise MalformedModel("offset out of bounds")
    return int.from_bytes(buf[i:i + size], "little", signed=signed)


def _fb_field(buf: bytes, table: int, slot: int) -> int | None:
    """Position of field `slot` of the FlatBuffers table at `table`, None when absent."""
    vtable = table - _fb_uint(buf, table, signed=True)
    if 4 + 2 * slot + 2 > _fb_uint(buf, vtable, 2):
        return None
    offset = _fb_uint(buf, vtable + 4 + 2 * slot, 2)
    return table + offset if offset else None


def _fb_tables(buf: bytes, field: int | None) -> list[int]:
    """Positions of the tables of the vector at `field` (none when absent)."""
    if field is None:
        return []
    vector = field + _fb_uint(buf, field)
    n = _fb_uint(buf, vector)
    if n > len(buf) // 4:
        raise MalformedModel("vector longer than the file")
    return [vector + 4 + 4 * i + _fb_uint(buf, vector + 4 + 4 * i) for i in range(n)]


def pte_file_reference(body: bytes) -> str | None:
    """Why an ExecuTorch program would need data outside the file (a tensor stored EXTERNAL, i.e. in a
    .ptd file), or None; walks every execution plan's values (program.fbs). MalformedModel on bad bytes."""
    root = _fb_uint(body, 0)
    for plan in _fb_tables(body, _fb_field(body, root, 1)):  # Program.execution_plan
        for value in _fb_tables(body, _fb_field(body, plan, 2)):  # ExecutionPlan.values
            kind, ref = _fb_field(body, value, 0), _fb_field(body, value, 1)  # EValue.val (union)
            if kind is None or ref is None or _fb_uint(body, kind, 1) != _PTE_TENSOR:
                continue
            extra = _fb_field(body, ref + _fb_uint(body, ref), 9)  # Tensor.extra_tensor_info
            if extra is None:
                continue
            location = _fb_field(body, extra + _fb_uint(body, extra), 2)  # ExtraTensorInfo.location
            if location is not None and _fb_uint(body, location, 1) == _PTE_EXTERNAL:
                return "a tensor's data is stored EXTERNAL (a .ptd file on the agent's host)"
    return None


# format -> (FlatBuffers file identifier, module whose presence means the runtime is installed, pip name)
MOBILE_FORMATS = {"pte": (b"ET12", "executorch", "executorch"), "tflite": (b"TFL3", "ai_edge_litert", "ai-edge-litert")}


def _mobile_body(fmt: str, body: bytes, params: MeasureParams,
                 file_reference: Callable[[bytes], str | None] | None = None) -> tuple[int, ...]:
    """Check an upload of a FlatBuffers format (identifier, no file references) and that its runtime is
    here; the batch shape to feed."""
    import importlib.util

    ident, module, pip = MOBILE_FORMATS[fmt]
    if len(body) < 16 or body[4:8] != ident:
        raise AgentRequestError(415, f"the body is not a .{fmt} file (expected the {ident.decode()} identifier)")
    try:
        reference = file_reference(body) if file_reference else None
    except MalformedModel as exc:
        raise AgentRequestError(422, f"the .{fmt} file is not well-formed ({exc})") from None
    if reference:
        raise AgentRequestError(422, f"model refused: {reference}; send a self-contained .{fmt} (export it "
                                     "without external constants)")
    if importlib.util.find_spec(module) is None:
        raise AgentRequestError(501, f"this agent has no runtime for format={fmt} ({module} is not installed on the "
                                     f"device: pip install {pip}); GET /info lists the formats it serves")
    if params.input_shape is None:
        raise AgentRequestError(400, f"format={fmt} needs input_shape (per sample, e.g. 1,28,28)")
    return (params.batch_size, *params.input_shape)


def _measure_pte(body: bytes, params: MeasureParams, limits: AgentLimits) -> Any:
    """Time a self-contained ExecuTorch program (XNNPACK) on the CPU; loaded without any external data map
    (ExecuTorch's Python runtime works on torch tensors: this runner imports torch, the others do not)."""
    batch_shape = _mobile_body("pte", body, params, pte_file_reference)
    from hwnas.devices.executorch_runtime import executorch_measure
    from hwnas.devices.ort_runtime import ProfilerError

    try:
        return executorch_measure(body, batch_shape, threads=params.threads, warmup=params.warmup,
                                  repeats=params.repeats, measure_memory=params.measure_memory)
    except ProfilerError as exc:
        raise AgentRequestError(422, _safe_error(exc)) from None


def _measure_tflite(body: bytes, params: MeasureParams, limits: AgentLimits) -> Any:
    """Time a .tflite model with LiteRT's XNNPACK delegate on the CPU (numpy only, no torch)."""
    import time

    import numpy as np

    from hwnas.devices.memory import peak_growth
    from hwnas.devices.timing import measurement_lock, summarize, time_runs

    batch_shape = _mobile_body("tflite", body, params)
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).standard_normal(batch_shape).astype(np.float32)

    def load_and_run() -> Any:
        it = Interpreter(model_content=body, num_threads=params.threads)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it

    with measurement_lock():
        try:
            it, peak = peak_growth(load_and_run)
            times = time_runs(it.invoke, params.warmup, params.repeats,
                              deadline=time.perf_counter() + limits.max_request_s)
        except TimeoutError:
            raise AgentRequestError(422, f"the measurement took longer than {limits.max_request_s:g} s; lower "
                                         "repeats/warmup or the model size") from None
        except Exception as exc:  # noqa: BLE001 - the interpreter raises several types for a bad model
            raise AgentRequestError(422, _safe_error(RuntimeError(f"LiteRT could not run the model: {exc}"))) from None
    memory = {"measured_peak_bytes": peak, "memory_source": "rss_peak_load_run"} \
        if params.measure_memory and peak is not None else {}
    return summarize(times, params.warmup, **memory)


# The one place that maps a model format (`format=` of /measure) to the runner that times it: a runner
# validates the bytes itself and returns a Measurement.
RUNNERS: dict[str, Callable[[bytes, MeasureParams, AgentLimits], Any]] = {
    "onnx": _measure_onnx, "pte": _measure_pte, "tflite": _measure_tflite}
RUNTIME_MODULES = {"onnx": "onnxruntime", **{f: m for f, (_, m, _) in MOBILE_FORMATS.items()}}


def served_formats() -> list[str]:
    """The formats whose runtime is installed here (found without importing it)."""
    import importlib.util

    return sorted(f for f in RUNNERS if importlib.util.find_spec(RUNTIME_MODULES[f]) is not None)


def measure_request(body: bytes, query: dict[str, list[str]], limits: AgentLimits | None = None) -> dict[str, Any]:
    """Validate a /measure request against `limits` and time the model with the shared protocol."""
    from hwnas.devices.timing import cpu_affinity

    limits = limits or AgentLimits()
    fmt = query.get("format", ["onnx"])[0]
    if fmt not in RUNNERS:
        raise AgentRequestError(400, f"format={fmt[:40]!r} is not served by this agent; it serves "
                                     f"{', '.join(sorted(RUNNERS))}")
    params = measure_params(query, limits)
    with cpu_affinity(params.cpus):
        m = RUNNERS[fmt](body, params, limits)
    return {"agent_schema": AGENT_SCHEMA_VERSION, "measurement": m.to_dict()}


class AgentHandler(BaseHTTPRequestHandler):
    """Token check, size limit and routing; every answer is JSON."""

    server_version = "hwnas-agent/1"
    token: str = ""
    limits: AgentLimits = AgentLimits()
    quiet: bool = False
    timeout = AgentLimits.socket_timeout_s  # socket timeout: an idle or slow connection is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors of the base class (bad request line, unknown method) as JSON, never HTML."""
        self.close_connection = True
        if code == 501 and getattr(self, "headers", None) is not None:  # a method without a do_ handler
            self._handle(self.command)
            return
        self._send(code, {"error": f"bad request: {message or code}", "status": code})

    def _authorized(self) -> bool:
        got = self.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        return bool(self.token) and hmac.compare_digest(got.encode(), expected.encode())

    def _admit(self) -> None:
        """The head is complete: check the token, stop the head deadline, take an authenticated slot."""
        if not self._authorized():
            self.close_connection = True
            raise AgentRequestError(401, "missing or wrong token; send `Authorization: Bearer <token>`")
        self._disarm_head_deadline()
        if not self.server.slots.promote(self.request):
            self.close_connection = True
            raise AgentRequestError(503, "the agent is busy (connection cap reached); retry later")

    # -- the head deadline: a whole request head (TLS handshake, request line, headers) within max_head_s
    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        timer = threading.Timer(self.limits.max_head_s, self._head_expired)
        timer.daemon = True
        self._head_timer = timer
        timer.start()

    def _disarm_head_deadline(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        """Shut the socket down under the reading thread: its read returns and the connection ends."""
        self.close_connection = True
        try:
            socket.socket.shutdown(self.request, socket.SHUT_RDWR)  # the raw socket, also under TLS
        except OSError:
            pass

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self._arm_head_deadline()
            try:
                self.request.do_handshake()
            except (OSError, ValueError):  # not TLS, a slow or broken handshake: nothing to answer
                return
            finally:
                self._disarm_head_deadline()
        super().handle()

    def handle_one_request(self) -> None:
        self._arm_head_deadline()
        try:
            super().handle_one_request()
        except OSError:  # the deadline shut the socket, or the client went away
            self.close_connection = True
        finally:
            self._disarm_head_deadline()

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        try:
            self._admit()
            if url.path not in ("/info", "/measure"):
                raise AgentRequestError(404, f"no endpoint {url.path[:80]}; use GET /info or POST /measure")
            if (method, url.path) not in (("GET", "/info"), ("POST", "/measure")):
                self.close_connection = True
                raise AgentRequestError(405, f"method {method[:20]} is not allowed on {url.path}; "
                                             "use GET /info or POST /measure")
            if url.path == "/info":
                self._send(200, agent_info())
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise AgentRequestError(411, "a Content-Length header is required")
            if int(length) > self.limits.max_upload_bytes:
                self.close_connection = True
                raise AgentRequestError(
                    413, f"upload of {int(length)} bytes exceeds the agent limit of {self.limits.max_upload_bytes} "
                         "bytes (the operator can raise it with `serve --max-upload-mb`)")
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                self.close_connection = True
                raise AgentRequestError(400, "the upload ended before Content-Length bytes arrived")
            self._send(200, measure_request(body, parse_qs(url.query), self.limits))
        except AgentRequestError as exc:
            self._send(exc.status, {"error": str(exc), "status": exc.status})
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the agent survives anything a request triggers
            self._send(500, {"error": f"agent failed: {type(exc).__name__} (details withheld)", "status": 500})

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class ConnectionSlots:
    """Connections still sending their request head (`pending`) and authenticated ones (`active`), each
    capped; a connection moves from pending to active once its token is checked."""

    def __init__(self, active: int, pending: int) -> None:
        self._lock = threading.Lock()
        self.caps = {"active": int(active), "pending": int(pending)}
        self.counts = {"active": 0, "pending": 0}
        self._state: dict[int, str] = {}

    def open(self, conn: object) -> bool:
        with self._lock:
            if self.counts["pending"] >= self.caps["pending"]:
                return False
            self.counts["pending"] += 1
            self._state[id(conn)] = "pending"
            return True

    def promote(self, conn: object) -> bool:
        with self._lock:
            state = self._state.get(id(conn))
            if state == "active":
                return True
            if state is None or self.counts["active"] >= self.caps["active"]:
                return False
            self.counts["pending"] -= 1
            self.counts["active"] += 1
            self._state[id(conn)] = "active"
            return True

    def close(self, conn: object) -> None:
        with self._lock:
            state = self._state.pop(id(conn), None)
            if state is not None:
                self.counts[state] -= 1


_BUSY = json.dumps({"error": "the agent is busy (connection cap reached); retry later", "status": 503}).encode()


class AgentServer(ThreadingHTTPServer):
    """A threading HTTP(S) server with caps on simultaneous connections (extra ones get a JSON 503).

    With `tls`, accepted sockets are wrapped without a handshake; the handler thread does the handshake
    under the head deadline (a slow handshake never blocks the accepting thread).
    """

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, limits: AgentLimits,
                 tls: ssl.SSLContext | None = None) -> None:
        self.slots = ConnectionSlots(limits.max_connections, limits.max_pending_connections)
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self.slots.open(request):
            if self.tls is None:  # under TLS a plain answer would be garbage to the client: just close
                try:
                    request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                    + f"Content-Length: {len(_BUSY)}\r\nConnection: close\r\n\r\n".encode() + _BUSY)
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.close(request)
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.close(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke (reset, bad TLS) is the client's business: one line, no traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            print(f"hwnas agent: a connection from {client_address[0]} failed: {type(exc).__name__}",
                  file=sys.stderr)


class AgentSetupError(ValueError):
    """The agent cannot start with the given host, port, token or limits."""


def _loopback(sockaddr_host: str) -> bool:
    try:
        return ipaddress.ip_address(sockaddr_host.split("%")[0]).is_loopback
    except ValueError:
        return False


def make_server(host: str = LOOPBACK, port: int = 0, token: str = "",
                max_upload_bytes: int | None = None, quiet: bool = False,
                limits: AgentLimits | None = None, tls: ssl.SSLContext | None = None,
                insecure: bool = False) -> AgentServer:
    """A ready-to-serve agent (port 0 picks a free port: read `server.server_address`).

    A non-loopback address needs `tls` (a server context, see `hwnas.devices.tls`) or `insecure=True`:
    without TLS the token and the models cross the network in clear.
    """
    if not token:
        raise AgentSetupError(f"the agent needs a token: set {TOKEN_ENV} or pass --token-file (or --token)")
    limits = limits or AgentLimits()
    if max_upload_bytes is not None:
        limits = dataclasses.replace(limits, max_upload_bytes=int(max_upload_bytes))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise AgentSetupError(f"--port {port} is not a TCP port; use 1-65535 (0 picks a free one)")
    handler = type("BoundAgentHandler", (AgentHandler,),
                   {"token": token, "limits": limits, "quiet": quiet, "timeout": limits.socket_timeout_s})
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise AgentSetupError(f"--host {host!r} is not an address of this machine ({exc.strerror}); "
                              f"use {LOOPBACK} (default), ::1 or 0.0.0.0") from None
    if tls is None and not insecure and not _loopback(str(sockaddr[0])):
        raise AgentSetupError(f"--host {host} is reachable from the network and the token and models would cross "
                              "it in clear: add --tls-self-signed DIR (or --tls-cert/--tls-key), or --insecure "
                              "on a network you trust")
    server_cls = type("BoundAgentServer", (AgentServer,), {"address_family": family})
    try:
        return server_cls((host, port), handler, limits, tls)
    except OSError as exc:
        raise AgentSetupError(f"cannot listen on {host} port {port}: {exc.strerror or exc}; "
                              "pick another --port or --host") from None


def serve(host: str, port: int, token: str, max_upload_bytes: int | None = None,
          quiet: bool = False, limits: AgentLimits | None = None,
          tls_files: tuple[str, str] | None = None, insecure: bool = False) -> None:
    """Serve until interrupted; `tls_files` = (certificate, key) PEM paths serve HTTPS."""
    from hwnas.devices.tls import certificate_fingerprint, server_context

    tls = server_context(*tls_files) if tls_files else None
    server = make_server(host, port, token, max_upload_bytes, quiet, limits, tls, insecure)
    h, p = server.server_address[:2]
    shown = f"[{h}]" if ":" in h else h
    lim = server.RequestHandlerClass.limits
    if tls is not None:
        how = (f"https://{shown}:{p} with TLS; certificate SHA-256 fingerprint {certificate_fingerprint(tls_files[0])} "
               "(put it in the device spec as tls_fingerprint)")
    elif _loopback(h):
        how = f"http://{shown}:{p} without TLS, loopback only"
    else:
        how = (f"http://{shown}:{p} WITHOUT TLS (--insecure): the token and the models cross the network in "
               "clear")
    print(f"hwnas agent: serving on {how} (max upload {lim.max_upload_bytes} bytes, {lim.max_request_s:g} s per "
          f"request, {lim.max_connections} connections, {lim.max_head_s:g} s per request head)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


_LIMIT_FLAGS = {  # flag -> (AgentLimits field, type, unit scale)
    "--max-upload-mb": ("max_upload_bytes", float, 2**20),
    "--max-arena-mb": ("max_arena_bytes", float, 2**20),
    "--max-input-elements": ("max_input_elements", int, 1),
    "--max-batch-size": ("max_batch_size", int, 1),
    "--max-warmup": ("max_warmup", int, 1),
    "--max-repeats": ("max_repeats", int, 1),
    "--max-request-s": ("max_request_s", float, 1),
    "--max-connections": ("max_connections", int, 1),
    "--socket-timeout-s": ("socket_timeout_s", float, 1),
    "--max-head-s": ("max_head_s", float, 1),
    "--max-pending-connections": ("max_pending_connections", int, 1),
}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=LOOPBACK, help="address to bind (default loopback only; ::1 for IPv6)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token-file", help="file whose first line is the shared secret clients must send")
    p.add_argument("--token", help=f"shared secret (visible in `ps`: prefer ${TOKEN_ENV} or --token-file)")
    defaults = AgentLimits()
    for flag, (name, kind, scale) in _LIMIT_FLAGS.items():
        default = getattr(defaults, name) / scale
        p.add_argument(flag, type=kind, default=kind(default), help=f"per-request cap (default {kind(default):g})")
    tls = p.add_argument_group("TLS (needed off loopback unless --insecure)")
    tls.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS with (needs --tls-key)")
    tls.add_argument("--tls-key", help="the certificate's unencrypted PEM private key")
    tls.add_argument("--tls-self-signed", metavar="DIR",
                     help="serve HTTPS with a self-signed certificate kept in DIR (created with openssl once, "
                          "then reused); clients pin the fingerprint printed at start-up")
    tls.add_argument("--insecure", action="store_true",
                     help="allow plain HTTP on a non-loopback address (token and models in clear)")
    p.add_argument("--quiet", action="store_true", help="do not log requests")


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentSetupError(f"cannot read --token-file {args.token_file}: {exc}") from None
        if not token:
            raise AgentSetupError(f"--token-file {args.token_file} is empty; write the token on its first line")
        return token
    if args.token:
        print(f"hwnas agent: warning: a token on the command line shows in `ps`; prefer {TOKEN_ENV} or "
              "--token-file", file=sys.stderr)
        return str(args.token)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise AgentSetupError(f"a token is required: set {TOKEN_ENV}, or pass --token-file FILE (or --token T)")
    return token


def limits_from_args(args: argparse.Namespace) -> AgentLimits:
    """AgentLimits from the `serve` flags; a non-positive value is a clear error."""
    values = {}
    for flag, (name, _kind, scale) in _LIMIT_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None or not value > 0 or value != value:
            raise AgentSetupError(f"{flag} must be a positive number, got {value}")
        values[name] = type(getattr(AgentLimits, name))(value * scale)
    return AgentLimits(**values)


def _tls_files(args: argparse.Namespace) -> tuple[str, str] | None:
    """(certificate, key) from the TLS flags, creating the self-signed pair where asked; None: plain HTTP."""
    from hwnas.devices.tls import self_signed

    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        raise AgentSetupError("pass either --tls-self-signed DIR or --tls-cert/--tls-key, not both")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise AgentSetupError("--tls-cert and --tls-key go together: pass both (or --tls-self-signed DIR)")
    if args.tls_self_signed:
        cert, key = self_signed(args.tls_self_signed)
        return str(cert), str(key)
    return (args.tls_cert, args.tls_key) if args.tls_cert else None


def run_serve(args: argparse.Namespace) -> int:
    from hwnas.devices.tls import TlsError

    try:
        token = _token(args)
        limits = limits_from_args(args)
        serve(args.host, args.port, token, quiet=args.quiet, limits=limits, tls_files=_tls_files(args),
              insecure=args.insecure)
    except (AgentSetupError, TlsError) as exc:
        print(f"hwnas agent: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwnas-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve the measurement agent"))
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
