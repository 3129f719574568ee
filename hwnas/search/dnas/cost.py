"""Differentiable cost terms: expected latency (from a real LatencyTable), FLOPs or params of theta."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hwnas.errors import ConfigError
from hwnas.spaces import Block, SearchSpace

COSTS = ("latency_ms", "flops", "params")


@dataclass(frozen=True)
class CostTable:
    """cost(arch) = fixed + sum_l cost[l][choice_l], in natural units (`latency_ms`: calibrated ms).

    `expected(probs)` = fixed + sum_l sum_i p(l,i) cost[l][i]: the exact expectation of the arch
    cost under independent per-layer choice probabilities, differentiable in `probs`.
    """

    name: str
    fixed: float
    per_layer: tuple[tuple[float, ...], ...]

    def expected(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        total = probs[0].new_tensor(self.fixed)
        for p, c in zip(probs, self.per_layer):
            total = total + (p * p.new_tensor(c)).sum()
        return total

    def of(self, indices: Sequence[int]) -> float:
        """The cost of the arch choosing candidate `indices[l]` in each layer."""
        return float(self.fixed + sum(c[i] for c, i in zip(self.per_layer, indices)))

    def fastest(self) -> list[int]:
        """Per layer the index of the cheapest candidate."""
        return [min(range(len(c)), key=c.__getitem__) for c in self.per_layer]


def check_table(table: Any, space: SearchSpace, device_identity: dict[str, Any] | None = None) -> None:
    """Refuse a latency table of another space or (when `device_identity` is given) another device."""
    from hwnas.latency import LatencyTableError

    if table.space != space.spec:
        raise LatencyTableError(
            f"latency table is for space {table.space}, but the fbnet supernet searches {space.spec}; "
            f"use a table built with `hwnas profile --space {space.spec}`"
        )
    if device_identity is not None:
        table.check_compatible(device_identity)


def latency_cost(space: SearchSpace, table: Any, device_identity: dict[str, Any] | None = None) -> CostTable:
    """Per-candidate latency from `table` (a `LatencyTable`), with its end-to-end calibration.

    The calibration `scale * sum + per_block_ms * blocks + offset` is linear in the blocks, so each
    candidate costs `scale * value + per_block_ms` (the table's statistic, e.g. median or p10; skip: 0),
    stem, head and offset are fixed, and all of it is times the table's drift factor:
    `of(arch)` equals `table.predict_ms(arch)`. A table of another space or device (when
    `device_identity` is given) is refused; a missing entry raises `MissingEntryError`.
    """
    from hwnas.spaces.supernet import layer_candidates

    check_table(table, space, device_identity)
    cal, drift = table.calibration, float(getattr(table, "drift_factor", 1.0))
    stem, layers, head = layer_candidates(space)

    def ms(block: Block | None) -> float:
        if block is None:
            return 0.0
        return drift * (cal.scale * table.entry(block).value(table.statistic) + cal.per_block_ms)

    fixed = ms(stem) + ms(head) + drift * cal.offset_ms
    return CostTable("latency_ms", fixed, tuple(tuple(ms(b) for b in row) for row in layers))


def static_cost(space: SearchSpace, name: str) -> CostTable:
    """Per-candidate `params` or `flops` (FLOPs = 2 x MACs, see `hwnas.metrics`)."""
    from torch import nn

    from hwnas.metrics import count_macs, count_params
    from hwnas.spaces.supernet import layer_candidates

    if name not in ("params", "flops"):
        raise ConfigError(f"static cost must be params or flops, got {name!r}")
    stem, layers, head = layer_candidates(space)

    def value(block: Block | None) -> float:
        if block is None:
            return 0.0
        module: nn.Module = space.build_block(block)
        if name == "params":
            return float(count_params(module))
        return float(count_macs(module, block.input_shape).flops)

    return CostTable(name, value(stem) + value(head), tuple(tuple(value(b) for b in row) for row in layers))


def make_cost(name: str, space: SearchSpace, table: Any = None,
              device_identity: dict[str, Any] | None = None) -> CostTable:
    """The cost term `name` (one of COSTS) of a space; latency needs a table."""
    if name not in COSTS:
        raise ConfigError(f"fbnet cost must be one of {', '.join(COSTS)}, got {name!r}")
    if name == "latency_ms":
        if table is None:
            raise ConfigError("fbnet cost latency_ms needs `latency_table: PATH` in the recipe")
        return latency_cost(space, table, device_identity)
    return static_cost(space, name)
