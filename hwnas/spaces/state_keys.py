"""Versioned state-dict key layouts of built networks, and the one migration from older layouts to today's.

Layout v1 (hwnas up to 9292ddd, checkpoint schema 1): an MBConv was one `nn.Sequential` named `body`,
so its keys were positions (`l3.body.4.weight`). Layout v2 (checkpoint schema 2): its parts by name
(`l3.dw.bn.weight`, see `mobile_ops.MBConv`). Every other module kept its keys. Whatever loads saved
weights (checkpoints, `.pt` state dicts, supernet epoch checkpoints) passes them through
`upgrade_state_dict` first.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from hwnas.spaces.mobile_ops import MBConv, Op


def _v1_body(op: Op) -> dict[str, int]:
    """Where layout v1 kept each part's conv in `body` (its BN right after it): conv, BN, ReLU per part,
    and a channel shuffle after a grouped expand."""
    if op.expansion == 1:
        return {"dw": 0, "project": 3}
    dw = 4 if op.groups > 1 else 3
    return {"expand": 0, "dw": dw, "project": dw + 3}


def upgrade_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with keys of older layouts renamed to those of `model` (a network, a block or a supernet).

    Keys already in today's layout pass through unchanged, so it is safe on any state dict.
    """
    renames: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, MBConv):
            at = f"{name}." if name else ""
            for part, i in _v1_body(module.op).items():
                renames[f"{at}body.{i}"] = f"{at}{part}.conv"
                renames[f"{at}body.{i + 1}"] = f"{at}{part}.bn"
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        owner, dot, param = key.rpartition(".")
        out[renames.get(owner, owner) + dot + param] = value
    return out
