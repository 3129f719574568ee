"""Parameter, MAC and FLOP counts with explicit units (fvcore; uncounted ops are reported, never zeroed)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

# fvcore categories that make up `macs`, as NAS papers count them. fvcore also counts BN and pooling;
# those are reported in `other_macs` (BN folds into the conv at inference).
MAC_CATEGORIES = ("conv", "linear", "matmul", "bmm", "einsum", "addmm")


@dataclass(frozen=True)
class OpCounts:
    """MACs of conv/linear/matmul (one fused multiply-add = one MAC); FLOPs = 2 x MACs.

    `other_macs`: work fvcore counted but that is not part of `macs` (e.g. batch_norm).
    `uncounted_ops`: ops fvcore has no formula for (e.g. element-wise add, avg_pool2d), with call counts.
    """

    macs: int
    flops: int
    macs_by_op: dict[str, int] = field(default_factory=dict)
    other_macs: dict[str, int] = field(default_factory=dict)
    uncounted_ops: dict[str, int] = field(default_factory=dict)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> OpCounts:
    """Count multiply-accumulates of one forward pass in eval mode with fvcore."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore decorates with the deprecated torch.jit.script
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # fvcore traces with the deprecated torch.jit
            analysis = FlopCountAnalysis(model, torch.zeros(batch_size, *input_shape))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            by_op = {k: int(v) for k, v in analysis.by_operator().items() if v}
            uncounted = dict(sorted(analysis.unsupported_ops().items()))
    finally:
        model.train(was_training)
    macs_by_op = {k: v for k, v in by_op.items() if k in MAC_CATEGORIES}
    other = {k: v for k, v in by_op.items() if k not in MAC_CATEGORIES}
    macs = sum(macs_by_op.values())
    return OpCounts(macs, 2 * macs, macs_by_op, other, uncounted)
