"""Devices: DeviceSpec from YAML, fingerprints, profilers + registry, the on-device agent and its client.

Attributes load lazily so that `hwnas.devices.agent` runs on a device with only onnxruntime + numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DeviceSpec": "hwnas.devices.spec",
    "load_device": "hwnas.devices.spec",
    "device_from_dict": "hwnas.devices.spec",
    "Measurement": "hwnas.devices.timing",
    "measurement_lock": "hwnas.devices.timing",
    "Profiler": "hwnas.devices.profilers",
    "PROFILERS": "hwnas.devices.profilers",
    "get_profiler": "hwnas.devices.profilers",
    "DeviceUnavailableError": "hwnas.devices.ort_runtime",
    "ProfilerError": "hwnas.devices.ort_runtime",
    "AgentClient": "hwnas.devices.client",
    "AgentError": "hwnas.devices.client",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hwnas.devices' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
