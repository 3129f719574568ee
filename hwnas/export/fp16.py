"""FP32 -> FP16 ONNX conversion with FP32 inputs/outputs (for strongly-typed TensorRT 11 engines)."""

from __future__ import annotations

import numpy as np

from hwnas.export.errors import ExportError


def to_float16(proto):
    """A copy of an ONNX model whose float tensors are float16, with Casts at the FP32 inputs and outputs.

    TensorRT 11 dropped the FP16 builder flag: a strongly-typed network runs in the precision the
    ONNX model declares, so an FP16 engine needs an FP16 model. Handles initializers, Constant
    nodes and Cast-to-float nodes; integer (shape) tensors are left alone.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
        if any(a.g.node for a in node.attribute):
            raise ExportError(f"cannot convert {node.op_type} with subgraphs to FP16; export without --fp16")
    casts = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{inp.name}_fp16"
        for node in g.node:
            node.input[:] = [half if i == inp.name else i for i in node.input]
        casts.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16, name=f"cast_{half}"))
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{out.name}_fp16"
        for node in g.node:
            node.output[:] = [half if o == out.name else o for o in node.output]
            node.input[:] = [half if i == out.name else i for i in node.input]
        tail.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT, name=f"cast_{out.name}"))
    nodes = casts + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model
