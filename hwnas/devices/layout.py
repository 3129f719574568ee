"""Which tensor layout ONNX Runtime's CPU optimizer gives a block's input and output (NCHW or blocked NCHWc).

Timed alone, a block whose convolutions ONNX Runtime runs in the blocked NCHWc layout pays a
`ReorderInput` on its input, a `ReorderOutput` on its output and an unfused residual `Add`; inside a
network of NCHWc blocks it pays none of these, and between an NCHWc block and an NCHW one (e.g. a
grouped 1x1 conv with too few channels per group) the network pays one reorder. The latency table
records each block's layouts and boundary elements so that its calibration can model both.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

NCHW, NCHWC, NHWC = "nchw", "nchwc", "nhwc"  # NHWC: inside XNNPACK (ExecuTorch, LiteRT)
LAYOUT_PERMS = ([0, 2, 3, 1], [0, 3, 1, 2])  # 4-D transposes NCHW -> NHWC and back (XNNPACK boundaries)


@dataclass(frozen=True)
class BlockLayout:
    """Layouts at a block's input and output when ONNX Runtime runs it, and the tensor elements it converts
    (reorders and an unfused residual add) at its boundary when timed alone."""

    input: str
    output: str
    boundary_elems: int

    def text(self) -> str:
        """`input>output`, e.g. `nchwc>nchw` (the form stored in latency tables)."""
        return f"{self.input}>{self.output}"


def _elems(value_info) -> int | None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    n = 1
    for d in dims:
        n *= int(d.dim_value)
    return n


def optimized_graph(model_bytes: bytes, graph_optimization: str = "all"):
    """The ONNX graph ONNX Runtime (CPU provider, 1 thread) runs after its optimizations."""
    import onnx
    import onnxruntime as ort

    from hwnas.devices.ort_runtime import ORT_OPT_LEVELS

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPT_LEVELS[graph_optimization])
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="hwnas-layout-") as tmp:
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath).graph


def block_layout(model_bytes: bytes, graph_optimization: str = "all") -> BlockLayout:
    """Read a one-input, one-output block's boundary layouts from its optimized graph.

    Input NCHWc: the input feeds a `ReorderInput`. Output NCHWc: the output is made by a
    `ReorderOutput`, directly or through a residual `Add` (which stays unfused when timed alone).
    """
    graph = optimized_graph(model_bytes, graph_optimization)
    producer = {out: node for node in graph.node for out in node.output}
    shapes = {v.name: v for v in [*graph.input, *graph.output, *graph.value_info]}
    x, y = graph.input[0].name, graph.output[0].name
    in_nchwc = any(node.op_type == "ReorderInput" and x in node.input for node in graph.node)
    last = producer.get(y)
    added = last is not None and last.op_type == "Add"
    sources = [producer.get(i) for i in last.input] if added else [last]
    out_nchwc = any(s is not None and s.op_type == "ReorderOutput" for s in sources)
    n_in, n_out = _elems(shapes[x]) or 0, _elems(shapes[y]) or 0
    boundary = n_in * in_nchwc + n_out * out_nchwc * (2 if added else 1)
    return BlockLayout(NCHWC if in_nchwc else NCHW, NCHWC if out_nchwc else NCHW, int(boundary))
