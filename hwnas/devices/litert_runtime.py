"""LiteRT (TFLite) with the XNNPACK delegate (FP32): convert a module to .tflite, run it, time it and its memory."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
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

EXTRA = "pip install 'hwnas[litert]'"
DELEGATE_NODE = "DELEGATE"  # the node a delegate (XNNPACK here) puts in place of the ops it runs
TFLITE_MEMORY_SOURCE = "tflite_tensors+liveness"  # see hwnas.devices.memory.PROGRAM_SOURCES


def require_litert() -> str:
    """The installed LiteRT interpreter version, or a DeviceUnavailableError naming the extra."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError as exc:
        raise DeviceUnavailableError(f"LiteRT is not installed ({exc}); {EXTRA}") from None
    return metadata.version("ai-edge-litert")


def require_converter() -> str:
    """The installed litert-torch converter version (torch -> .tflite), or an error naming the extra."""
    try:
        import litert_torch  # noqa: F401
    except ImportError as exc:
        raise DeviceUnavailableError(f"the torch -> LiteRT converter litert-torch is not installed ({exc}); "
                                     f"{EXTRA}") from None
    return metadata.version("litert-torch")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converter's Python-level progress prints and warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def convert_to_tflite(module: nn.Module, batch_shape: tuple[int, ...]) -> bytes:
    """litert-torch's `convert` (torch.export based; NCHW input kept, NHWC inside) -> .tflite bytes (FP32)."""
    require_litert()
    require_converter()
    import litert_torch

    was_training = module.training
    x = torch.randn(*batch_shape, generator=torch.Generator().manual_seed(0))
    try:
        with quiet(), torch.no_grad():
            content = litert_torch.convert(module.eval(), (x,)).model_content()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ProfilerError(f"litert-torch could not convert the module: {type(exc).__name__}: "
                            f"{str(exc).strip()[:400]}; check that torch.export can trace it") from None
    finally:
        module.train(was_training)
    return bytes(content)


class TfliteRunner:
    """A LiteRT interpreter with the XNNPACK delegate and `threads` threads, tensors allocated."""

    def __init__(self, data: bytes, threads: int = 1) -> None:
        require_litert()
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        try:
            self._it = Interpreter(model_content=data, num_threads=int(threads),
                                   experimental_op_resolver_type=OpResolverType.AUTO)
            self._it.allocate_tensors()
        except Exception as exc:  # noqa: BLE001
            raise ProfilerError(f"LiteRT could not load the model: {str(exc).strip()[:400]}") from None
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]

    def set_input(self, x: np.ndarray) -> None:
        self._it.set_tensor(self._in, np.ascontiguousarray(x, dtype=np.float32))

    def invoke(self) -> None:
        self._it.invoke()

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        self.set_input(np.asarray(x))
        self.invoke()
        return np.array(self._it.get_tensor(self._out))

    def plan(self) -> dict[str, Any]:
        """XNNPACK delegate nodes and the model's ops (LiteRT's Python API does not say which ops a
        delegate took: its node list keeps the replaced nodes)."""
        inner = self._it._interpreter  # noqa: SLF001 - node names are only exposed there
        names = [inner.NodeName(i) for i in range(inner.NumNodes())]
        return {"backend": "XNNPACK", "delegate_nodes": sum(n == DELEGATE_NODE for n in names),
                "model_ops": sorted({n for n in names if n != DELEGATE_NODE})}


    def boundary_copy_elems(self) -> int:
        """Elements the model transposes between NCHW and NHWC at its boundary (TRANSPOSE ops with a 4-D
        layout permutation that read the model input or make its output, directly or through the op that
        does: litert-torch keeps the model's NCHW interface and runs NHWC inside): what a block timed alone
        pays and a network pays only at its ends."""
        shapes = {int(d["index"]): d["shape"] for d in self._it.get_tensor_details()}
        ops = [op for op in self._it._get_ops_details() if op["op_name"] != DELEGATE_NODE]  # noqa: SLF001
        inputs = {int(d["index"]) for d in self._it.get_input_details()}
        outputs = {int(d["index"]) for d in self._it.get_output_details()}
        # a tensor that is an output, or feeds an op (the residual add) that makes one
        near_output = outputs | {int(t) for op in ops if outputs & {int(o) for o in op["outputs"]} for t in op["inputs"]}
        total = 0
        for op in ops:
            if op["op_name"] != "TRANSPOSE" or len(op["inputs"]) != 2:
                continue
            x, y = int(op["inputs"][0]), int(op["outputs"][0])
            perm = [int(v) for v in self._it.get_tensor(int(op["inputs"][1])).ravel()]
            if perm in LAYOUT_PERMS and (x in inputs or y in near_output):
                total += int(np.prod(shapes[y], dtype=np.int64))
        return total

    def memory(self) -> ProgramMemory:
        """What the model holds (bytes), read from the interpreter's tensors and ops: the same on every load.

        weights: the constant tensors (consumed by an op, produced by none, not a model input); plan: the
        model's input and output tensors; workspace: the liveness peak of the other tensors over the model's
        ops in order (with XNNPACK they live in the delegate's workspace, the rest in LiteRT's arena; neither
        size is exposed to Python, and both planners reuse memory by these lifetimes).
        """
        sizes = {int(d["index"]): int(np.prod(d["shape"], dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
                 for d in self._it.get_tensor_details()}
        ops = [op for op in self._it._get_ops_details() if op["op_name"] != DELEGATE_NODE]  # noqa: SLF001
        io = {int(d["index"]) for d in (*self._it.get_input_details(), *self._it.get_output_details())}
        produced = {int(t) for op in ops for t in op["outputs"]}
        consumed = {int(t) for op in ops for t in op["inputs"] if int(t) >= 0}
        constants = (consumed - produced - io) & set(sizes)
        inner = {t: b for t, b in sizes.items() if t not in constants and t not in io}
        steps = [([int(t) for t in op["inputs"]], [int(t) for t in op["outputs"]]) for op in ops]
        outputs = [int(d["index"]) for d in self._it.get_output_details()]
        graph = liveness_peak_bytes(steps, {t: b for t, b in sizes.items() if t not in constants}, live_to_end=outputs)
        return ProgramMemory(sum(sizes[t] for t in constants), sum(sizes[t] for t in io & set(sizes)),
                             liveness_peak_bytes(steps, inner), TFLITE_MEMORY_SOURCE, graph)


def litert_measure(data: bytes, batch_shape: tuple[int, ...], *, threads: int, warmup: int, repeats: int,
                   measure_memory: bool = True) -> Measurement:
    """Time a .tflite model (input set once, seeded); memory: `TfliteRunner.memory` of the loaded model."""
    x = np.random.default_rng(0).standard_normal(batch_shape).astype(np.float32)
    return measure_loaded(lambda: _loaded_and_run(data, threads, x), lambda runner: runner.invoke(),
                          warmup=warmup, repeats=repeats, runtime="LiteRT",
                          memory=TfliteRunner.memory if measure_memory else None)


def _loaded_and_run(data: bytes, threads: int, x: np.ndarray) -> TfliteRunner:
    runner = TfliteRunner(data, threads)
    runner(x)
    return runner
