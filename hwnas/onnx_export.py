"""PyTorch -> ONNX conversion (the bottom-layer module profilers and export share): dynamo exporter (legacy fallback), checker, shape inference and onnxsim.

This is the one shared helper that turns a module into a checked ONNX file; profilers and the
export pipeline both call `export_onnx`.

Default opset 18 (see export/default.yaml): the lowest opset the torch 2.13 dynamo exporter emits
natively (it up-converts lower requests), inside what ONNX Runtime >= 1.14 and TensorRT 8.6/10/11
parse. Verified here with torch 2.13.0 + onnxscript 0.7 + onnx 1.23 + onnxruntime 1.32 for opsets
18, 20, 21 and 23 on both spaces.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from hwnas.errors import ExportError
from hwnas.fileio import sha256_file

DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"
Exporter = Literal["auto", "dynamo", "legacy", "fast"]
# The exporters tried, in order: `auto` prefers dynamo (the supported path); `fast` prefers the legacy
# TorchScript exporter (~10 ms a block instead of ~1-3 s), for profiling many blocks.
_EXPORTER_ORDER: dict[str, tuple[str, ...]] = {
    "auto": ("dynamo", "legacy"), "fast": ("legacy", "dynamo"), "dynamo": ("dynamo",), "legacy": ("legacy",),
}


@dataclass(frozen=True)
class OnnxExport:
    """A checked ONNX file and how it was produced.

    `input_shape` includes the batch dimension (the example batch); with `dynamic_batch` the
    file's first input dimension is the symbol `batch`.
    """

    path: Path
    opset: int
    exporter: str  # "dynamo" or "legacy"
    fallback_reason: str | None
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int | str, ...]
    dynamic_batch: bool
    simplified: bool
    simplify_note: str | None
    num_nodes: int
    op_types: tuple[str, ...]
    sha256: str

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "opset": self.opset, "exporter": self.exporter,
            "fallback_reason": self.fallback_reason, "input_name": self.input_name,
            "output_name": self.output_name, "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape), "dynamic_batch": self.dynamic_batch,
            "simplified": self.simplified, "simplify_note": self.simplify_note,
            "num_nodes": self.num_nodes, "op_types": list(self.op_types), "sha256": self.sha256,
        }


def prepare_for_export(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of `model` with search-only parts removed.

    Zero ops and dead edges never reach a built network (the spaces prune them in `build`).
    Supernet leftovers are removed through a protocol: any submodule with an `export_module()`
    method (e.g. a mixed op that keeps every candidate) is replaced by what that method returns,
    the chosen path alone. Dropout and BatchNorm switch to inference behaviour via `eval()`.
    """
    model = copy.deepcopy(model)
    if hasattr(model, "export_module"):
        model = model.export_module()
    _replace_search_only(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _replace_search_only(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if hasattr(child, "export_module"):
            setattr(module, name, child.export_module())
        else:
            _replace_search_only(child)


def _input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:  # (C, H, W) as search spaces give it
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ExportError(f"input shape {input_shape} must be (C, H, W) or (N, C, H, W) with positive sizes")
    return shape


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints and warnings (they go to stdout/stderr otherwise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _export_dynamo(model: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool):
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    with _quiet():
        program = torch.onnx.export(
            model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], verbose=False, **kwargs,
        )
    return program.model_proto


def _export_legacy(model: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool):
    import onnx

    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with _quiet():
        torch.onnx.export(
            model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def _check(proto, what: str):
    """onnx.checker (full) and strict shape inference; returns the shape-inferred model."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"the {what} ONNX graph fails onnx.checker/shape inference: {exc}") from exc


def _simplify(proto) -> tuple[object, bool, str | None]:
    """onnxsim the graph; a simplifier failure keeps the checked graph and records why."""
    try:
        import onnxsim
    except ImportError as exc:
        return proto, False, f"onnxsim not importable: {exc}"
    try:
        with _quiet():
            simplified, ok = onnxsim.simplify(proto, check_n=0)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from C++
        return proto, False, f"onnxsim failed: {str(exc).splitlines()[0][:200]}"
    if not ok:
        return proto, False, "onnxsim could not validate the simplified graph"
    return simplified, True, None


def _dims(value_info) -> tuple[int | str, ...]:
    return tuple(
        d.dim_param if d.HasField("dim_param") else int(d.dim_value)
        for d in value_info.type.tensor_type.shape.dim
    )


def _convert(net: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool, exporter: str):
    """The ONNX proto from the first exporter of `exporter`'s order that succeeds, which one, and why
    the ones before it failed."""
    order = _EXPORTER_ORDER[exporter]
    fallback_reason = None
    for used in order:
        try:
            export = _export_dynamo if used == "dynamo" else _export_legacy
            return export(net, x, opset, dynamic_batch), used, fallback_reason
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            if used != order[-1]:
                fallback_reason = reason
                continue
            if len(order) == 1 and used == "dynamo":
                raise ExportError(
                    f"the dynamo ONNX exporter failed: {reason}; retry with exporter 'legacy' (--exporter legacy)"
                ) from exc
            raise ExportError(
                f"exporting to ONNX opset {opset} failed with the {used} exporter: {reason}"
                + (f" (after {order[0]}: {fallback_reason})" if fallback_reason else "")
                + "; try another --opset"
            ) from exc
    raise AssertionError("unreachable: the exporter order is never empty")


def _save(proto, path: str | Path | None) -> Path:
    """Write the proto atomically (to a temporary folder when `path` is None)."""
    import onnx

    if path is None:
        path = Path(tempfile.mkdtemp(prefix="hwnas-onnx-")) / "model.onnx"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    onnx.save_model(proto, str(tmp), save_as_external_data=False)
    os.replace(tmp, path)
    return path


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    exporter: Exporter = "auto",
    simplify: bool = True,
    prepare: bool = True,
) -> OnnxExport:
    """Export `model` to a checked, shape-inferred, simplified single-file ONNX model.

    `input_shape` is (C, H, W) or (N, C, H, W). Static shapes unless `dynamic_batch`.
    `exporter="auto"` tries the dynamo exporter and falls back to the legacy TorchScript one,
    recording why in `fallback_reason`; `"fast"` tries them the other way round.
    With `path=None` the file goes to a temporary folder.
    Parity is not checked here: see `hwnas.export.parity.check_parity`.
    """
    import onnx

    if exporter not in _EXPORTER_ORDER:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(_EXPORTER_ORDER)}")
    if not 7 <= int(opset) <= onnx.defs.onnx_opset_version():
        raise ExportError(f"opset {opset} is outside 7..{onnx.defs.onnx_opset_version()} (onnx {onnx.__version__})")
    shape = _input_shape(input_shape)
    net = prepare_for_export(model) if prepare else model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    proto, used, fallback_reason = _convert(net, x, opset, dynamic_batch, exporter)
    proto = _check(proto, used)
    simplified, simplify_note = False, "disabled"
    if simplify:
        proto, simplified, simplify_note = _simplify(proto)
        if simplified:
            proto = _check(proto, "simplified")
    path = _save(proto, path)
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    return OnnxExport(
        path=path, opset=int(opset_used), exporter=used, fallback_reason=fallback_reason,
        input_name=proto.graph.input[0].name, output_name=proto.graph.output[0].name,
        input_shape=shape, output_shape=_dims(proto.graph.output[0]), dynamic_batch=dynamic_batch,
        simplified=simplified, simplify_note=simplify_note, num_nodes=len(proto.graph.node),
        op_types=tuple(sorted({n.op_type for n in proto.graph.node})), sha256=sha256_file(path),
    )


def export_onnx_bytes(model: nn.Module, input_shape: Sequence[int], exporter: Exporter = "fast") -> bytes:
    """Checked, unsimplified ONNX bytes of `model` in eval mode, for profilers that time it."""
    was_training = model.training
    try:
        with tempfile.TemporaryDirectory(prefix="hwnas-onnx-") as tmp:
            exp = export_onnx(model, input_shape, Path(tmp) / "model.onnx", exporter=exporter, simplify=False,
                              prepare=False)
            return exp.path.read_bytes()
    finally:
        model.train(was_training)
