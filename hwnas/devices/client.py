"""Client of the on-device agent: uploads model bytes over HTTP(S), returns a `Measurement`.

Over TLS the client pins the agent's certificate by its SHA-256 fingerprint (`tls_fingerprint` of the
device spec) and sends the token only after the pin matched. It refuses plain HTTP to a non-loopback
agent unless the spec says `tls_fingerprint: insecure`.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import ssl
from typing import Any

from hwnas.devices.timing import Measurement
from hwnas.devices.tls import INSECURE, TlsError, check_pin, normalize_fingerprint, pinning_context
from hwnas.errors import HwnasError


class AgentError(HwnasError):
    """The agent refused a request or could not be reached."""


def _is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AgentClient:
    """Talks to `hwnas-agent serve` with a bearer token: HTTPS with a pinned certificate, or plain HTTP
    on loopback (or anywhere with `tls_fingerprint="insecure"`)."""

    def __init__(self, host: str, port: int, token: str, timeout_s: float = 120.0,
                 tls_fingerprint: str = "") -> None:
        self.host, self.port = host, int(port)
        self._connect_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]
        self.tls = bool(tls_fingerprint) and tls_fingerprint != INSECURE
        if self.tls:
            try:
                self.fingerprint = normalize_fingerprint(tls_fingerprint)
            except TlsError as exc:
                raise AgentError(str(exc)) from None
        elif not tls_fingerprint and not _is_loopback(host):
            raise AgentError(
                f"the agent at {host} is not on loopback and the device spec has no tls_fingerprint: the token "
                "would cross the network in clear. Start the agent with --tls-self-signed DIR and copy the "
                "fingerprint it prints into the spec (tls_fingerprint: ...), or set tls_fingerprint: insecure")
        self.base = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        self.token = token
        self.timeout_s = timeout_s

    @classmethod
    def from_spec(cls, spec: Any) -> AgentClient:
        token = os.environ.get(spec.token_env, "")
        if not token:
            raise AgentError(
                f"remote device {spec.name!r} needs the agent token in the environment variable "
                f"{spec.token_env}; export {spec.token_env}=<the token the agent was started with>"
            )
        return cls(spec.host, spec.port, token, spec.timeout_s, getattr(spec, "tls_fingerprint", ""))

    def _connect(self) -> http.client.HTTPConnection:
        """A connection whose peer is checked: over TLS the certificate matched the pin (nothing sent yet)."""
        if not self.tls:
            conn = http.client.HTTPConnection(self._connect_host, self.port, timeout=self.timeout_s)
            conn.connect()
            return conn
        conn = http.client.HTTPSConnection(self._connect_host, self.port, timeout=self.timeout_s, context=pinning_context())
        try:
            conn.connect()
            check_pin(conn.sock, self.fingerprint, self.base)
        except BaseException:
            conn.close()
            raise
        return conn

    def _request(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        try:
            conn = self._connect()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
            finally:
                conn.close()
        except TlsError as exc:
            raise AgentError(str(exc)) from None
        except ssl.SSLError as exc:
            raise AgentError(f"TLS with the agent at {self.base} failed ({exc.reason or exc}); is the agent serving "
                             "https (started with --tls-self-signed or --tls-cert)?") from None
        except (OSError, http.client.HTTPException) as exc:
            hint = "" if self.tls else " If the agent prints https://, put its fingerprint in tls_fingerprint."
            raise AgentError(
                f"cannot reach the agent at {self.base} ({exc or type(exc).__name__}); start it on the device with "
                "`hwnas-agent serve --host 0.0.0.0 --port P --tls-self-signed DIR` and check host/port in the "
                f"device spec.{hint}") from None
        if status >= 400:
            try:
                detail = json.loads(data).get("error", "")
            except (ValueError, AttributeError):
                detail = data[:200].decode(errors="replace")
            raise AgentError(f"agent at {self.base} refused {method} {path} ({status}): {detail}")
        return json.loads(data)

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def formats(self) -> list[str]:
        """The model formats the agent can time (`measure(model_format=...)`); agents before it listed them
        serve ONNX only."""
        return list(self.info().get("formats", ["onnx"]))

    def measure(self, model: bytes, input_shape: tuple[int, ...] | None, spec: Any,
                model_format: str = "onnx") -> Measurement:
        """Time `model` (bytes of `model_format`: onnx, pte or tflite) on the agent with the spec's protocol."""
        query = (f"format={model_format}&threads={spec.threads}&warmup={spec.warmup}&repeats={spec.repeats}"
                 f"&graph_optimization={spec.graph_optimization}&batch_size={spec.batch_size}"
                 f"&measure_memory={int(spec.measure_memory)}")
        if input_shape is not None:
            query += "&input_shape=" + ",".join(str(int(d)) for d in input_shape)
        if getattr(spec, "cpus", None):  # cores of the device: the agent pins the measurement there
            query += "&cpus=" + ",".join(str(int(c)) for c in spec.cpus)
        data = self._request("POST", f"/measure?{query}", model)
        return Measurement.from_dict(data["measurement"])
