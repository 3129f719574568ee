"""The on-device agent: an HTTP server that times uploaded ONNX models (needs only onnxruntime + numpy).

Run on the target: `python -m hwnas.devices.agent serve --port 8765 --token T` (or `hwnas agent serve`).
Protocol (schema 1): `GET /info` -> host fingerprint; `POST /measure?threads=..&warmup=..&repeats=..`
`&graph_optimization=..&batch_size=..&input_shape=C,H,W` with the ONNX bytes as body -> Measurement JSON.
Every request needs `Authorization: Bearer <token>`. Only ONNX protobuf is accepted (never pickle).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import platform
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

AGENT_SCHEMA_VERSION = 1
DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")
LOOPBACK = "127.0.0.1"


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
    }


def looks_like_onnx(body: bytes) -> bool:
    """ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08. Pickle starts with 0x80."""
    return len(body) > 8 and body[0] == 0x08


def _int_param(q: dict[str, list[str]], key: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(key, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise AgentRequestError(400, f"query parameter {key}={raw!r} must be an integer") from None
    if not lo <= value <= hi:
        raise AgentRequestError(400, f"query parameter {key}={value} must be in [{lo}, {hi}]")
    return value


def measure_request(body: bytes, query: dict[str, list[str]]) -> dict[str, Any]:
    """Validate a /measure request and time the model with the shared protocol."""
    from hwnas.devices.ort_runtime import ProfilerError, ort_measure

    if not looks_like_onnx(body):
        raise AgentRequestError(415, "the body is not an ONNX model (expected ONNX protobuf bytes; pickle and "
                                     "other formats are refused)")
    threads = _int_param(query, "threads", 1, 1, 256)
    warmup = _int_param(query, "warmup", 10, 0, 10_000)
    repeats = _int_param(query, "repeats", 50, 50, 100_000)
    batch_size = _int_param(query, "batch_size", 1, 1, 4096)
    opt = query.get("graph_optimization", ["all"])[0]
    if opt not in GRAPH_OPT_LEVELS:
        raise AgentRequestError(400, f"graph_optimization={opt!r} must be one of {', '.join(GRAPH_OPT_LEVELS)}")
    shape = None
    if query.get("input_shape", [""])[0]:
        try:
            shape = tuple(int(d) for d in query["input_shape"][0].split(","))
        except ValueError:
            raise AgentRequestError(400, "input_shape must be comma-separated integers, e.g. 3,32,32") from None
    memory = query.get("measure_memory", ["1"])[0] not in ("0", "false")
    try:
        m = ort_measure(body, shape, threads=threads, graph_optimization=opt, warmup=warmup, repeats=repeats,
                        batch_size=batch_size, measure_memory=memory)
    except ProfilerError as exc:
        raise AgentRequestError(422, str(exc)) from None
    return {"agent_schema": AGENT_SCHEMA_VERSION, "measurement": m.to_dict()}


class AgentHandler(BaseHTTPRequestHandler):
    """Token check, size limit and routing; every answer is JSON."""

    server_version = "hwnas-agent/1"
    token: str = ""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    quiet: bool = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        got = self.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        return bool(self.token) and hmac.compare_digest(got.encode(), expected.encode())

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        try:
            if not self._authorized():
                raise AgentRequestError(401, "missing or wrong token; send `Authorization: Bearer <token>`")
            if method == "GET" and url.path == "/info":
                self._send(200, agent_info())
                return
            if method == "POST" and url.path == "/measure":
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise AgentRequestError(411, "a Content-Length header is required")
                if int(length) > self.max_upload_bytes:
                    self.close_connection = True
                    raise AgentRequestError(
                        413, f"upload of {int(length)} bytes exceeds the agent limit of {self.max_upload_bytes} bytes")
                body = self.rfile.read(int(length))
                self._send(200, measure_request(body, parse_qs(url.query)))
                return
            raise AgentRequestError(404, f"no endpoint {method} {url.path}; use GET /info or POST /measure")
        except AgentRequestError as exc:
            self._send(exc.status, {"error": str(exc), "status": exc.status})
        except Exception as exc:  # noqa: BLE001 - the agent survives anything a request triggers
            self._send(500, {"error": f"agent failed: {type(exc).__name__}: {exc}", "status": 500})

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


def make_server(host: str = LOOPBACK, port: int = 0, token: str = "",
                max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, quiet: bool = False) -> ThreadingHTTPServer:
    """A ready-to-serve agent (port 0 picks a free port: read `server.server_address`)."""
    if not token:
        raise ValueError("the agent needs a token: pass --token or set HWNAS_AGENT_TOKEN")
    handler = type("BoundAgentHandler", (AgentHandler,),
                   {"token": token, "max_upload_bytes": int(max_upload_bytes), "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(host: str, port: int, token: str, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
          quiet: bool = False) -> None:
    """Serve until interrupted."""
    server = make_server(host, port, token, max_upload_bytes, quiet)
    h, p = server.server_address[:2]
    if host not in (LOOPBACK, "localhost", "::1"):
        print(f"hwnas agent: warning: listening on {h}, reachable from the network (token-protected)",
              file=sys.stderr)
    print(f"hwnas agent: serving on http://{h}:{p} (max upload {max_upload_bytes} bytes)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=LOOPBACK, help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN", ""),
                   help="shared secret clients must send (default $HWNAS_AGENT_TOKEN)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20)
    p.add_argument("--quiet", action="store_true", help="do not log requests")


def run_serve(args: argparse.Namespace) -> int:
    if not args.token:
        print("hwnas agent: error: a token is required: pass --token T or set HWNAS_AGENT_TOKEN", file=sys.stderr)
        return 2
    serve(args.host, args.port, args.token, int(args.max_upload_mb * 2**20), args.quiet)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwnas.devices.agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve the measurement agent"))
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
