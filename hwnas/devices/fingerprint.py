"""Host fingerprint: CPU model, core count, OS and the versions of the runtimes that were measured."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model string (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - an absent or broken runtime is simply not listed
        return None
    return str(getattr(mod, "__version__", "unknown"))


def host_fingerprint(cuda: bool = False) -> dict[str, Any]:
    """What the numbers depend on besides the spec: CPU model, cores, OS, runtime versions."""
    data: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {
            k: v for k in ("onnxruntime", "torch", "numpy", "onnx") if (v := _version(k)) is not None
        },
    }
    if cuda:
        try:
            import torch

            if torch.cuda.is_available():
                data["cuda_device"] = torch.cuda.get_device_name(0)
                data["cuda_version"] = torch.version.cuda
        except Exception:  # noqa: BLE001
            pass
    return data
