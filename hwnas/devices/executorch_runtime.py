"""ExecuTorch with the XNNPACK delegate (FP32): lower a module to a .pte program, run it, time it and its memory."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.devices.compiled_run import measure_loaded
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
    tensors inside the delegate is allocated at load time and is not part of it.
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
    """Time a .pte program (inputs bound once, seeded); memory: peak growth over load + first run."""
    x = torch.randn(*batch_shape, generator=torch.Generator().manual_seed(0))
    return measure_loaded(lambda: _loaded_and_run(data, threads, x), lambda runner: runner.execute(x),
                          warmup=warmup, repeats=repeats, measure_memory=measure_memory, runtime="ExecuTorch")


def _loaded_and_run(data: bytes, threads: int, x: torch.Tensor) -> PteRunner:
    runner = PteRunner(data, threads)
    runner.execute(x)
    return runner
