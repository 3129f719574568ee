"""ExecuTorch with the XNNPACK delegate (FP32): lower a module to a .pte program, run it, time it and its memory."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.devices.compiled_run import measure_loaded
from hwnas.devices.layout import LAYOUT_PERMS
from hwnas.devices.memory import ProgramMemory, liveness_peak_bytes
from hwnas.devices.ort_runtime import DeviceUnavailableError, ProfilerError
from hwnas.devices.timing import Measurement

EXTRA = "pip install 'hwnas[executorch]'"


def require_executorch() -> str:
    """The installed ExecuTorch version, or a DeviceUnavailableError naming the extra."""
    try:
        import executorch.runtime  # noqa: F401
    except ImportError as exc:
        raise DeviceUnavailableError(f"ExecuTorch is not installed ({exc}); {EXTRA}") from None
    return metadata.version("executorch")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the Python-level warnings and prints of torch.export and the lowering passes."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class PteProgram:
    """A lowered ExecuTorch program and what XNNPACK took of it.

    `planned_bytes` is the program's memory plan (the buffers ExecuTorch allocates for the tensors
    outside the delegate and the delegate's inputs and outputs); XNNPACK's own workspace for the
    tensors inside the delegate is allocated at load time and is not part of it (`pte_memory` estimates it).
    """

    data: bytes
    delegated_nodes: int
    non_delegated_nodes: int
    undelegated_ops: tuple[str, ...]
    planned_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "XnnpackBackend", "delegated_nodes": self.delegated_nodes,
                "non_delegated_nodes": self.non_delegated_nodes, "undelegated_ops": list(self.undelegated_ops),
                "planned_bytes": self.planned_bytes, "program_bytes": len(self.data)}


def lower_to_pte(module: nn.Module, batch_shape: tuple[int, ...]) -> PteProgram:
    """`torch.export` -> `to_edge_transform_and_lower(XnnpackPartitioner)` -> .pte bytes (FP32, eval mode)."""
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    was_training = module.training
    x = torch.randn(*batch_shape, generator=torch.Generator().manual_seed(0))
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(module.eval(), (x,))
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            info = get_delegation_info(edge.exported_program().graph_module)
            pte = edge.to_executorch()
    except Exception as exc:  # noqa: BLE001 - export and lowering raise many types
        raise ProfilerError(f"ExecuTorch could not lower the module: {type(exc).__name__}: "
                            f"{str(exc).strip()[:400]}; check that torch.export can trace it") from None
    finally:
        module.train(was_training)
    undelegated = sorted(op for op, b in info.delegation_by_operator.items() if b.non_delegated)
    planned = sum(int(s) for s in pte.executorch_program.execution_plan[0].non_const_buffer_sizes)
    return PteProgram(bytes(pte.buffer), int(info.num_delegated_nodes), int(info.num_non_delegated_nodes),
                      tuple(undelegated), planned)


def set_threads(threads: int) -> None:
    """Size ExecuTorch's CPU thread pool (XNNPACK runs on it)."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(int(threads))


class PteRunner:
    """A loaded `forward` method of a .pte program; call it with a batch, get the first output."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        require_executorch()
        from executorch.runtime import Runtime

        set_threads(threads)
        try:
            self._program = Runtime.get().load_program(data)
            self._method = self._program.load_method("forward")
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"ExecuTorch could not load the program: {str(exc).strip()[:400]}") from None

    def execute(self, x: torch.Tensor) -> Any:
        return self._method.execute([x])

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        out = self.execute(torch.as_tensor(x, dtype=torch.float32))
        return out[0].detach().numpy()


def executorch_measure(data: bytes, batch_shape: tuple[int, ...], *, threads: int, warmup: int, repeats: int,
                       measure_memory: bool = True) -> Measurement:
    """Time a .pte program (inputs bound once, seeded); memory: `pte_memory` of the program."""
    x = torch.randn(*batch_shape, generator=torch.Generator().manual_seed(0))
    return measure_loaded(lambda: _loaded_and_run(data, threads, x), lambda runner: runner.execute(x),
                          warmup=warmup, repeats=repeats, runtime="ExecuTorch",
                          memory=(lambda _runner: pte_memory(data)) if measure_memory else None)


PTE_MEMORY_SOURCE = "pte_plan+xnnpack_liveness"  # see hwnas.devices.memory.PROGRAM_SOURCES
XNN_EXTERNAL_INPUT, XNN_EXTERNAL_OUTPUT = 0x1, 0x2  # XNN_VALUE_FLAG_EXTERNAL_INPUT / _OUTPUT
XNN_EXTERNAL = XNN_EXTERNAL_INPUT | XNN_EXTERNAL_OUTPUT
LAYOUT_COPIES = ("XNNStaticTranspose", "XNNCopy")  # nodes that only move a tensor (NCHW <-> NHWC at the boundary)


def pte_memory(data: bytes) -> ProgramMemory:
    """What a .pte program holds (bytes), read from the program: the same on every load.

    weights: its constant data (named data segments, constant buffer, constants inside delegate blobs);
    plan: ExecuTorch's memory plan (`non_const_buffer_sizes` of the first execution plan); workspace:
    the sum over XNNPACK delegates of the liveness peak of their internal values (XNNPACK plans this
    workspace at load and exposes no figure of it; its planner reuses memory by the same lifetimes).
    """
    program = _read_pte(data)
    weights = program.constant_bytes
    workspace, graph = 0, 0
    for delegate in program.xnnpack:
        inline, inner, whole = _xnnpack_memory(delegate)
        weights += inline
        workspace += inner
        graph = max(graph, whole)
    planned = program.planned_bytes
    return ProgramMemory(int(weights), planned, int(workspace), PTE_MEMORY_SOURCE, int(graph) or planned + workspace)


def pte_boundary_copy_elems(data: bytes) -> int:
    """Elements a .pte program transposes between NCHW and XNNPACK's NHWC at its boundary (4-D transposes
    with a layout permutation that read a delegate input or write a delegate output; transposes inside a
    block, e.g. around a grouped conv, are paid in a network too): what a block timed alone pays and a
    network of XNNPACK blocks pays only at its ends."""
    total = 0
    for delegate in _read_pte(data).xnnpack:
        values = {v.id: v for v in delegate.values}
        for node in delegate.graph.get("xnodes", []):
            fields = node.get("xnode_union", {})
            if node.get("xnode_union_type") != "XNNStaticTranspose" or list(fields.get("perm", [])) not in LAYOUT_PERMS:
                continue
            x, y = values.get(int(fields.get("input_id", -1))), values.get(int(fields.get("output_id", -1)))
            if (x and x.flags & XNN_EXTERNAL_INPUT) or (y and y.flags & XNN_EXTERNAL_OUTPUT):  # block input / output
                total += x.elems if x else 0
    return total


@dataclass(frozen=True)
class _XnnValue:
    """One value of an XNNPACK delegate graph."""

    id: int
    elems: int
    nbytes: int
    flags: int
    constant: bool


@dataclass(frozen=True)
class _XnnDelegate:
    """One XNNPACK delegate of a program: its graph (flatc JSON), its values, its inline constant bytes."""

    graph: dict[str, Any]
    values: list[_XnnValue]
    constant_bytes: int


@dataclass(frozen=True)
class _PteContents:
    """What the memory and layout figures read from a .pte: constant and planned bytes, XNNPACK delegates."""

    constant_bytes: int
    planned_bytes: int
    xnnpack: list[_XnnDelegate]


@functools.lru_cache(maxsize=4)
def _read_pte(data: bytes) -> _PteContents:
    """Deserialize a .pte and read its XNNPACK delegate graphs once (memory and layout both need them)."""
    require_executorch()
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        pte = deserialize_pte_binary(data)
    except Exception as exc:  # noqa: BLE001
        raise ProfilerError(f"ExecuTorch could not read the program: {str(exc).strip()[:300]}") from None
    program = pte.program
    plan = program.execution_plan[0]
    constant = sum(len(b.storage) for b in program.constant_buffer)
    if pte.named_data is not None:
        constant += sum(len(b) for b in pte.named_data.buffers)
    delegates = []
    for delegate in plan.delegates:
        if "xnnpack" in delegate.id.lower():
            graph, inline = _xnnpack_graph(program.backend_delegate_data[delegate.processed.index].data)
            delegates.append(_XnnDelegate(graph, _xnn_values(graph), inline))
    return _PteContents(int(constant), int(sum(int(s) for s in plan.non_const_buffer_sizes)), delegates)


def _xnn_values(graph: dict[str, Any]) -> list[_XnnValue]:
    out = []
    for value in graph.get("xvalues", []):
        tensor = value.get("xvalue_union", {})
        tensor = tensor.get("tensor_value", tensor)  # quantized values wrap a tensor value
        elems = int(np.prod([int(d) for d in tensor.get("dims", [])], dtype=np.int64))
        out.append(_XnnValue(int(tensor.get("id_out", 0)), elems,
                             int(np.ceil(elems * _xnn_elem_bytes(tensor.get("datatype", "")))),
                             int(tensor.get("flags", 0)), bool(tensor.get("constant_buffer_idx", 0))))
    return out


def _xnn_elem_bytes(datatype: Any) -> float:
    name = str(datatype).lower()
    if "fp32" in name or "int32" in name:
        return 4.0
    if "fp16" in name or "bf16" in name:
        return 2.0
    return 0.5 if "int4" in name else 1.0


def _xnnpack_memory(delegate: _XnnDelegate) -> tuple[int, int, int]:
    """(constant bytes inside an XNNPACK delegate blob, liveness peak bytes of its internal values, the peak
    as a part of a larger graph: its external inputs counted from the start to their last use, its outputs
    to the end, and a layout copy (transpose) right at its boundary left out, as a network has none between
    its blocks: the copy stands for the external tensor)."""
    inner: dict[int, int] = {}
    external: dict[int, int] = {}
    inputs, outputs = set(), set()
    for value in delegate.values:
        if value.constant:
            continue
        (external if value.flags & XNN_EXTERNAL else inner)[value.id] = value.nbytes
        (inputs if value.flags & XNN_EXTERNAL_INPUT else outputs if value.flags & XNN_EXTERNAL_OUTPUT else set()).add(value.id)
    steps, part_steps, dropped, kept_to_end = [], [], set(), set()
    for node in delegate.graph.get("xnodes", []):
        fields = node.get("xnode_union", {})
        ids = {k: int(v) for k, v in fields.items() if k.endswith("_id") and isinstance(v, int)}
        step = ([v for k, v in ids.items() if not k.startswith("output")],
                [v for k, v in ids.items() if k.startswith("output")])
        steps.append(step)
        if node.get("xnode_union_type") in LAYOUT_COPIES and len(step[0]) == len(step[1]) == 1:
            if step[0][0] in inputs:  # the copy of an input stands for it
                dropped.add(step[0][0])
                continue
            if step[1][0] in outputs:  # the tensor copied out stands for the output
                dropped.add(step[1][0])
                kept_to_end.add(step[0][0])
                continue
        part_steps.append(step)
    part = {t: b for t, b in {**inner, **external}.items() if t not in dropped}
    return (delegate.constant_bytes, liveness_peak_bytes(steps, inner),
            liveness_peak_bytes(part_steps, part, live_to_end=(outputs - dropped) | kept_to_end))


def _xnnpack_graph(blob: bytes) -> tuple[dict[str, Any], int]:
    """An XNNPACK delegate blob's graph as JSON (flatc with the delegate's schema) and its inline constant bytes."""
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
    if not header.is_valid():
        raise ProfilerError("ExecuTorch program: an XNNPACK delegate blob has no valid header; "
                            "lower it again with this executorch version")
    flatbuffer = blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    schema = os.path.join(os.path.dirname(xnnpack_graph_serialize.__file__), "schema.fbs")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.bin")
        with open(path, "wb") as fh:
            fh.write(flatbuffer)
        run = subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--defaults-json", "--raw-binary",
                              "-o", tmp, schema, "--", path], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise ProfilerError(f"flatc could not read an XNNPACK delegate graph: {run.stderr.strip()[:300]}")
        with open(os.path.join(tmp, "graph.json")) as fh:  # flatc writes +-inf and nan bare (clamp bounds)
            text = re.sub(r"(?<=[:\[,\s])[-+]?(inf|nan)\b", "null", fh.read())
            return json.loads(text), int(header.constant_data_size)


def _loaded_and_run(data: bytes, threads: int, x: torch.Tensor) -> PteRunner:
    runner = PteRunner(data, threads)
    runner.execute(x)
    return runner
