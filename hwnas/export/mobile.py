"""ExecuTorch (.pte) and LiteRT (.tflite) exports: the file built from the (trained) network, parity in that runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from hwnas.export.parity import ParityResult, check_runtime_parity

# FP32 max abs diff against PyTorch: XNNPACK reorders sums and fuses multiply-adds, so its logits differ by
# float32 rounding (1.3e-7 on a small untrained conv net here); 1e-4 is ten times ONNX Runtime's 1e-5 budget.
MOBILE_ATOL = 1e-4


@dataclass(frozen=True)
class MobileFormat:
    """One mobile runtime's file: how to build it from a module, load it for parity, and its device spec."""

    name: str
    filename: str
    device: str  # the device spec it is re-measured on by default
    require: Callable[[], str]
    build: Callable[[nn.Module, tuple[int, ...]], tuple[bytes, dict[str, Any]]]
    runner: Callable[[bytes], Callable[[np.ndarray], np.ndarray]]


def _require_executorch() -> str:
    from hwnas.devices.executorch_runtime import require_executorch

    return require_executorch()


def _build_pte(net: nn.Module, batch_shape: tuple[int, ...]) -> tuple[bytes, dict[str, Any]]:
    from hwnas.devices.executorch_runtime import lower_to_pte

    program = lower_to_pte(net, batch_shape)
    return program.data, program.to_dict()


def _pte_runner(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    from hwnas.devices.executorch_runtime import PteRunner

    return PteRunner(data, threads=1)


def _require_litert() -> str:
    from hwnas.devices.litert_runtime import require_converter, require_litert

    return f"{require_litert()} (litert-torch {require_converter()})"


def _build_tflite(net: nn.Module, batch_shape: tuple[int, ...]) -> tuple[bytes, dict[str, Any]]:
    from hwnas.devices.litert_runtime import TfliteRunner, convert_to_tflite

    data = convert_to_tflite(net, batch_shape)
    return data, {**TfliteRunner(data).plan(), "program_bytes": len(data)}


def _tflite_runner(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    from hwnas.devices.litert_runtime import TfliteRunner

    return TfliteRunner(data, threads=1)


MOBILE_FORMATS = {
    "executorch": MobileFormat("executorch", "model.pte", "executorch-xnnpack-1t", _require_executorch,
                               _build_pte, _pte_runner),
    "litert": MobileFormat("litert", "model.tflite", "litert-xnnpack-1t", _require_litert,
                           _build_tflite, _tflite_runner),
}


def export_mobile(fmt: MobileFormat, net: nn.Module, batch_shape: tuple[int, ...], out_dir: Path, *,
                  n_inputs: int = 3, seed: int = 0, atol: float = MOBILE_ATOL) -> tuple[Path, dict[str, Any]]:
    """Write `out_dir/<file>` from the eval-mode `net`, check parity in the runtime (ParityError above
    `atol`); returns the file and its manifest section (version, delegation, parity)."""
    version = fmt.require()
    data, program = fmt.build(net, batch_shape)
    path = Path(out_dir) / fmt.filename
    path.write_bytes(data)
    parity: ParityResult = check_runtime_parity(
        net, fmt.runner(path.read_bytes()), batch_shape, runtime=f"{fmt.name} {version} XNNPACK",
        atol=atol, n_inputs=n_inputs, seed=seed, name=fmt.name,
    )
    return path, {"path": fmt.filename, "version": version, "program": program, "parity": parity.to_dict()}
