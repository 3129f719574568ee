"""Private ONNX export of a module/block to bytes (to be merged with hwnas.export's shared helper)."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from hwnas.errors import HwnasError


class OnnxExportError(HwnasError):
    """A module could not be exported to ONNX."""


def export_onnx_bytes(module: nn.Module, input_shape: tuple[int, ...], exporter: str = "legacy",
                      dtype: torch.dtype = torch.float32) -> bytes:
    """ONNX bytes of `module` in eval mode for one input of `input_shape` (batch included).

    `legacy` (TorchScript, opset 17) takes ~10 ms a block; `dynamo` (opset 18) ~3 s, so tables use
    legacy and fall back to dynamo when legacy fails (and vice versa).
    """
    was_training = module.training
    module.eval()
    example = (torch.zeros(*input_shape, dtype=dtype),)
    order = ["legacy", "dynamo"] if exporter == "legacy" else ["dynamo", "legacy"]
    errors = []
    try:
        for kind in order:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if kind == "legacy":
                        buf = io.BytesIO()
                        torch.onnx.export(module, example, buf, dynamo=False, opset_version=17,
                                          input_names=["input"], output_names=["output"])
                        return buf.getvalue()
                    program = torch.onnx.export(module, example, dynamo=True, opset_version=18,
                                                input_names=["input"], output_names=["output"],
                                                verbose=False)
                    return program.model_proto.SerializeToString()
            except Exception as exc:  # noqa: BLE001 - try the other exporter, report both
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
    finally:
        module.train(was_training)
    raise OnnxExportError(
        f"could not export {type(module).__name__} to ONNX ({'; '.join(errors)}); "
        "check that the module is traceable for the given input shape"
    )
