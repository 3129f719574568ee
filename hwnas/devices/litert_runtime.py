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
from hwnas.devices.ort_runtime import DeviceUnavailableError, ProfilerError
from hwnas.devices.timing import Measurement

EXTRA = "pip install 'hwnas[litert]'"
DELEGATE_NODE = "DELEGATE"  # the node a delegate (XNNPACK here) puts in place of the ops it runs


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


def litert_measure(data: bytes, batch_shape: tuple[int, ...], *, threads: int, warmup: int, repeats: int,
                   measure_memory: bool = True) -> Measurement:
    """Time a .tflite model (input set once, seeded); memory: peak growth over load + allocate + first run."""
    x = np.random.default_rng(0).standard_normal(batch_shape).astype(np.float32)
    return measure_loaded(lambda: _loaded_and_run(data, threads, x), lambda runner: runner.invoke(),
                          warmup=warmup, repeats=repeats, measure_memory=measure_memory, runtime="LiteRT")


def _loaded_and_run(data: bytes, threads: int, x: np.ndarray) -> TfliteRunner:
    runner = TfliteRunner(data, threads)
    runner(x)
    return runner
