"""Client of the on-device agent: uploads ONNX bytes, returns a `Measurement`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from hwnas.devices.timing import Measurement
from hwnas.errors import HwnasError


class AgentError(HwnasError):
    """The agent refused a request or could not be reached."""


class AgentClient:
    """Talks to `hwnas agent serve` over HTTP with a bearer token."""

    def __init__(self, host: str, port: int, token: str, timeout_s: float = 120.0) -> None:
        self.base = f"http://{host}:{int(port)}"
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
        return cls(spec.host, spec.port, token, spec.timeout_s)

    def _request(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except Exception:  # noqa: BLE001
                detail = exc.reason
            raise AgentError(f"agent at {self.base} refused {method} {path} ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise AgentError(
                f"cannot reach the agent at {self.base} ({exc}); start it on the device with "
                "`hwnas agent serve --host 0.0.0.0 --port P --token T` and check host/port in the device spec"
            ) from None

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def measure(self, model: bytes, input_shape: tuple[int, ...] | None, spec: Any) -> Measurement:
        query = (f"threads={spec.threads}&warmup={spec.warmup}&repeats={spec.repeats}"
                 f"&graph_optimization={spec.graph_optimization}&batch_size={spec.batch_size}"
                 f"&measure_memory={int(spec.measure_memory)}")
        if input_shape is not None:
            query += "&input_shape=" + ",".join(str(int(d)) for d in input_shape)
        if getattr(spec, "cpus", None):  # cores of the device: the agent pins the measurement there
            query += "&cpus=" + ",".join(str(int(c)) for c in spec.cpus)
        data = self._request("POST", f"/measure?{query}", model)
        return Measurement.from_dict(data["measurement"])
