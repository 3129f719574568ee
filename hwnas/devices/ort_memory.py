"""ONNX Runtime's memory figure of a model from its own node profile: weights as held + the largest node's tensors."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from hwnas.devices.memory import ProgramMemory
from hwnas.devices.ort_runtime import ORT_OPT_LEVELS, ProfilerError, _ort

ORT_MEMORY_SOURCE = "ort_profile_nodes"  # see hwnas.devices.memory.PROGRAM_SOURCES


def ort_memory(model_bytes: bytes, feed: dict[str, Any], threads: int = 1,
               graph_optimization: str = "all") -> ProgramMemory:
    """Run the model once in a profiling CPU session and read ONNX Runtime's per-node sizes (the same on every run).

    weights: the sum over nodes of `parameter_size` (the constant inputs as the optimized graph holds
    them: BatchNorm folded, NCHWc-reordered); plan: 0 (ORT exposes no figure of its memory pattern);
    workspace: the largest `activation_size + output_size` of any node (its non-constant inputs and its
    outputs, alive together while it runs).
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPT_LEVELS[graph_optimization])
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        try:
            session = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
            session.run(None, feed)
            path = session.end_profiling()
            with open(path) as fh:
                events = json.load(fh)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types
            raise ProfilerError(f"ONNX Runtime could not profile the model: {str(exc).strip()[:400]}") from None
    nodes = [e.get("args", {}) for e in events if e.get("cat") == "Node" and "parameter_size" in e.get("args", {})]
    if not nodes:
        raise ProfilerError("ONNX Runtime's profile has no node sizes (an onnxruntime without them); "
                            "measure memory with another onnxruntime version")
    weights = sum(int(n["parameter_size"]) for n in nodes)
    working = max(int(n.get("activation_size", 0)) + int(n.get("output_size", 0)) for n in nodes)
    return ProgramMemory(weights, 0, working, ORT_MEMORY_SOURCE, working)
