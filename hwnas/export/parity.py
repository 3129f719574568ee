"""Parity of an exported model against its PyTorch source on random inputs: ONNX Runtime, or any runtime's forward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.export.errors import ParityError

DEFAULT_ATOL = 1e-5
ORT_LEVELS = ("disable", "basic", "extended", "all")
# A few float32 ulps: differences this small relative to the output are summation-order rounding.
FP32_ROUNDING_REL = 1e-6


@dataclass(frozen=True)
class ParityResult:
    """Worst absolute and relative output difference over `n_inputs` random inputs.

    `max_rel_diff` is max|ort - torch| / max|torch| (reported, not used for the verdict);
    `passed` is `max_abs_diff <= atol`.
    """

    max_abs_diff: float
    max_rel_diff: float
    max_abs_output: float
    atol: float
    n_inputs: int
    batch_sizes: tuple[int, ...]
    runtime: str
    graph_optimization: str
    passed: bool

    def to_dict(self) -> dict:
        return {
            "max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff,
            "max_abs_output": self.max_abs_output, "atol": self.atol, "n_inputs": self.n_inputs,
            "batch_sizes": list(self.batch_sizes), "runtime": self.runtime,
            "graph_optimization": self.graph_optimization, "passed": self.passed,
        }


def ort_session(model: str | Path | bytes, graph_optimization: str = "all", threads: int = 1):
    """A CPU ONNX Runtime session with the given graph optimization level."""
    import onnxruntime as ort

    if graph_optimization not in ORT_LEVELS:
        raise ParityError(f"unknown ORT graph optimization {graph_optimization!r}; valid: {', '.join(ORT_LEVELS)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def random_inputs(input_shape: Sequence[int], n: int, seed: int, batch_sizes: Sequence[int] = ()) -> list[np.ndarray]:
    """`n` standard-normal float32 inputs per batch size (the shape's own batch when none given)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    rng = np.random.default_rng(seed)
    out = []
    for b in batch_sizes or (shape[0],):
        out += [rng.standard_normal((b, *shape[1:]), dtype=np.float32) for _ in range(n)]
    return out


def _worst_diffs(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], inputs: list[np.ndarray],
                 what: str) -> tuple[float, float, float]:
    """Worst absolute diff, relative diff and |output| of `run` against `model` over `inputs`."""
    model = model.eval()
    worst = worst_rel = worst_out = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).float().numpy()
        got = np.asarray(run(x))
        if got.shape != ref.shape:
            raise ParityError(
                f"{what} output shape {got.shape} differs from PyTorch's {ref.shape} for input {x.shape}; "
                "re-export (with --dynamic-batch for other batch sizes)"
            )
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf")
        mag = float(np.max(np.abs(ref))) if ref.size else 0.0
        worst, worst_out = max(worst, diff), max(worst_out, mag)
        worst_rel = max(worst_rel, diff / mag if mag > 0 else diff)
    return worst, worst_rel, worst_out


def _raise_parity(result: ParityResult, what: str) -> None:
    worst, worst_rel, worst_out = result.max_abs_diff, result.max_rel_diff, result.max_abs_output
    if worst_rel <= FP32_ROUNDING_REL and worst_out > 1.0:
        hint = (
            f"the relative difference {worst_rel:.2g} is float32 rounding at outputs of magnitude "
            f"{worst_out:.3g}: untrained nets whose skip/pool paths grow activations cell after cell "
            "do this; export trained weights (--weights), whose BN statistics keep outputs small"
        )
    else:
        hint = (
            "the export is wrong: check the model for train-mode-only behaviour or unsupported ops, "
            "or try --exporter legacy"
        )
    raise ParityError(
        f"{what} output differs from PyTorch by {worst:.3g} (max |output| {worst_out:.3g}), "
        f"above the FP32 tolerance {result.atol:g}; {hint}"
    )


def check_runtime_parity(
    model: nn.Module,
    run: Callable[[np.ndarray], np.ndarray],
    input_shape: Sequence[int],
    *,
    runtime: str,
    atol: float = DEFAULT_ATOL,
    n_inputs: int = 3,
    seed: int = 0,
    batch_sizes: Sequence[int] = (),
    graph_optimization: str = "",
    raise_on_failure: bool = True,
    name: str = "",
) -> ParityResult:
    """Run `model` (eval mode, FP32) and `run` (a runtime's forward on a numpy batch) on the same random
    inputs; raises ParityError when the max abs diff exceeds `atol` (unless `raise_on_failure=False`).
    `runtime` is recorded (name, version, provider); `name` is the runtime in messages."""
    name = name or runtime.split()[0]
    inputs = random_inputs(input_shape, n_inputs, seed, batch_sizes)
    worst, worst_rel, worst_out = _worst_diffs(model, run, inputs, name)
    result = ParityResult(
        max_abs_diff=worst, max_rel_diff=worst_rel, max_abs_output=worst_out, atol=float(atol),
        n_inputs=len(inputs), batch_sizes=tuple(sorted({x.shape[0] for x in inputs})), runtime=runtime,
        graph_optimization=graph_optimization, passed=worst <= atol,
    )
    if raise_on_failure and not result.passed:
        _raise_parity(result, name)
    return result


def check_parity(
    model: nn.Module,
    onnx_model: str | Path | bytes,
    input_shape: Sequence[int],
    *,
    atol: float = DEFAULT_ATOL,
    n_inputs: int = 3,
    seed: int = 0,
    batch_sizes: Sequence[int] = (),
    graph_optimization: str = "all",
    raise_on_failure: bool = True,
) -> ParityResult:
    """Run `model` (eval mode, FP32) and the ONNX model in ORT CPU on the same random inputs.

    Raises ParityError when the max abs diff exceeds `atol` (unless `raise_on_failure=False`).
    """
    import onnxruntime as ort

    sess = ort_session(onnx_model, graph_optimization)
    name = sess.get_inputs()[0].name
    return check_runtime_parity(
        model, lambda x: sess.run(None, {name: x})[0], input_shape,
        runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider", atol=atol, n_inputs=n_inputs, seed=seed,
        batch_sizes=batch_sizes, graph_optimization=graph_optimization, raise_on_failure=raise_on_failure,
        name="ONNX Runtime",
    )
