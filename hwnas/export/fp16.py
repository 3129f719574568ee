"""FP32 -> FP16 ONNX with FP32 inputs/outputs (for strongly-typed TensorRT engines), through the maintained
converter of onnxconverter-common, and the parity check of the FP16 model against the FP32 one."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.errors import MissingBackendError
from hwnas.export.errors import ParityError

# Largest |FP16 - FP32| allowed on any output (ONNX Runtime CPU, random standard-normal inputs); the same
# bound as the TensorRT FP16 engine's parity (`tensorrt.atol_fp16` of export recipes).
FP16_ATOL = 5e-2


def to_float16(proto: Any) -> Any:
    """A checked FP16 copy of an ONNX model whose inputs and outputs stay FP32.

    TensorRT 11 dropped the FP16 builder flag: a strongly-typed network runs in the precision the ONNX
    model declares. onnxconverter-common's `convert_float_to_float16` converts initializers, Constant
    values, ConstantOfShape, Cast targets, value_info and subgraphs, keeps FP32 the ops that need it (its
    block list: Resize, Range, TopK, ...) and inserts the Casts at the FP32 inputs and outputs.
    """
    import warnings

    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise MissingBackendError("onnxconverter-common (FP16 ONNX conversion)", "tensorrt", str(exc)) from None
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):  # the converter names its Casts after nodes: unnamed ones collide
        if not node.name:
            node.name = next(f"{node.op_type}_{i}_{k}" for k in range(len(taken) + 1)
                             if f"{node.op_type}_{i}_{k}" not in taken)
            taken.add(node.name)
    with warnings.catch_warnings():  # it warns per weight it clamps into FP16's range; parity checks the result
        warnings.filterwarnings("ignore", category=UserWarning, module="onnxconverter_common")
        model = float16.convert_float_to_float16(model, keep_io_types=True)
    _restore_fp32_outputs(model, proto)
    onnx.checker.check_model(model, full_check=True)
    return model


def _restore_fp32_outputs(model: Any, original: Any) -> None:
    """Cast back to FP32 the graph outputs the converter left FP16 (it does so where a blocked op such as
    TopK produces a graph output, despite keep_io_types)."""
    from onnx import TensorProto, helper

    was = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    g = model.graph
    for out in g.output:
        if was.get(out.name) != TensorProto.FLOAT or out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        half = f"{out.name}_fp16_out"
        for node in g.node:
            node.output[:] = [half if o == out.name else o for o in node.output]
            node.input[:] = [half if i == out.name else i for i in node.input]
        g.node.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT, name=f"{half}_cast"))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
        for vi in g.value_info:
            if vi.name == out.name:
                vi.name = half


def check_fp16_parity(model32: Any, model16: Any, feeds: list[dict[str, np.ndarray]],
                      atol: float = FP16_ATOL) -> float:
    """The largest |FP16 - FP32| over every output and feed in ONNX Runtime CPU; ParityError above `atol`."""
    from hwnas.export.parity import ort_session

    s32, s16 = ort_session(model32.SerializeToString()), ort_session(model16.SerializeToString())
    names = [o.name for o in s32.get_outputs()]
    worst, where = 0.0, names[0]
    for feed in feeds:
        for name, y32, y16 in zip(names, s32.run(None, feed), s16.run(None, feed)):
            if np.asarray(y16).dtype != np.asarray(y32).dtype:
                raise ParityError(f"the FP16 model's output {name!r} is {np.asarray(y16).dtype}, not "
                                  f"{np.asarray(y32).dtype}; its outputs must keep their FP32 types")
            diff = float(np.max(np.abs(np.asarray(y16, np.float64) - y32))) if np.size(y32) else 0.0
            worst, where = (diff, name) if diff > worst else (worst, where)
    if worst > atol:
        raise ParityError(f"the FP16 model's output {where!r} differs from FP32 by {worst:.3g} > {atol:g} in "
                          "ONNX Runtime; build an FP32 engine (drop --fp16) for this model")
    return worst
