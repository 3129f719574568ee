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
class Switches:
    """Layout switches between neighbouring blocks (hwnas.devices.layout): the network pays `at_layer[l]`
    ms when layer l's block takes its input in another layout than the last block before it gives
    (skip layers pass the layout on), and `at_head` ms likewise at the head."""

    stem_out: bool  # True: the stem gives NCHWc
    layouts: tuple[tuple[tuple[bool, bool] | None, ...], ...]  # per layer, per candidate (in, out) NCHWc; None: skip
    at_layer: tuple[float, ...]
    head_in: bool
    at_head: float


@dataclass(frozen=True)
class CostTable:
    """cost(arch) = fixed + sum_l cost[l][choice_l] (+ layout switches), in natural units (`latency_ms`:
    calibrated ms).

    `expected(probs)` = the exact expectation of the arch cost under independent per-layer choice
    probabilities, differentiable in `probs`: fixed + sum_l sum_i p(l,i) cost[l][i], plus with
    `switches` the expected switch costs, carried layer by layer as the probability that the current
    tensor is NCHWc.
    """

    name: str
    fixed: float
    per_layer: tuple[tuple[float, ...], ...]
    switches: Switches | None = None

    def expected(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        total = probs[0].new_tensor(self.fixed)
        for p, c in zip(probs, self.per_layer):
            total = total + (p * p.new_tensor(c)).sum()
        sw = self.switches
        if sw is None:
            return total
        q = probs[0].new_tensor(float(sw.stem_out))  # P(the tensor entering this layer is NCHWc)
        for p, row, cost in zip(probs, sw.layouts, sw.at_layer):
            nxt = probs[0].new_tensor(0.0)
            for i, lay in enumerate(row):
                if lay is None:  # skip: nothing to pay, the layout passes on
                    nxt = nxt + p[i] * q
                    continue
                total = total + p[i] * cost * ((1 - q) if lay[0] else q)
                nxt = nxt + p[i] * float(lay[1])
            q = nxt
        return total + sw.at_head * ((1 - q) if sw.head_in else q)

    def of(self, indices: Sequence[int]) -> float:
        """The cost of the arch choosing candidate `indices[l]` in each layer."""
        total = self.fixed + sum(c[i] for c, i in zip(self.per_layer, indices))
        sw = self.switches
        if sw is not None:
            layout = sw.stem_out
            for row, cost, i in zip(sw.layouts, sw.at_layer, indices):
                if row[i] is not None:
                    total += cost * (row[i][0] != layout)
                    layout = row[i][1]
            total += sw.at_head * (sw.head_in != layout)
        return float(total)

    def fastest(self) -> list[int]:
        """Per layer the index of the candidate on the cheapest arch (exact: dynamic programming over the
        layout the tensor is in, when switches count)."""
        sw = self.switches
        if sw is None:
            return [min(range(len(c)), key=c.__getitem__) for c in self.per_layer]
        best: dict[bool, tuple[float, list[int]]] = {sw.stem_out: (0.0, [])}
        for row, costs, at in zip(sw.layouts, self.per_layer, sw.at_layer):
            nxt: dict[bool, tuple[float, list[int]]] = {}
            for layout, (total, path) in best.items():
                for i, lay in enumerate(row):
                    out = layout if lay is None else lay[1]
                    value = total + costs[i] + (0.0 if lay is None else at * (lay[0] != layout))
                    if out not in nxt or value < nxt[out][0]:
                        nxt[out] = (value, path + [i])
            best = nxt
        _, (_, path) = min(best.items(), key=lambda kv: kv[1][0] + sw.at_head * (sw.head_in != kv[0]))
        return path


def check_table(table: Any, space: SearchSpace, device_identity: dict[str, Any] | None = None) -> None:
    """Refuse a latency source that is not a per-block table, or one of another space or (when
    `device_identity` is given) another device."""
    from hwnas.latency import LatencyTable, LatencyTableError

    if not isinstance(table, LatencyTable):
        raise LatencyTableError(
            f"the fbnet latency cost needs a per-block latency table, not {type(table).__name__}; "
            "use a table built with `hwnas profile`"
        )
    if table.space != space.spec:
        raise LatencyTableError(
            f"latency table is for space {table.space}, but the fbnet supernet searches {space.spec}; "
            f"use a table built with `hwnas profile --space {space.spec}`"
        )
    if device_identity is not None:
        table.check_compatible(device_identity)


def latency_cost(space: SearchSpace, table: Any, device_identity: dict[str, Any] | None = None) -> CostTable:
    """Per-candidate latency from `table` (a `LatencyTable`): the latency model (hwnas.latency.model)
    decomposed over the supernet's candidates.

    The model is linear in the blocks, so each candidate costs its `block_ms` (skip: 0), stem, head and
    the per-arch terms are fixed, the switch term becomes `Switches`, and all of it is times the table's
    drift factor: `of(arch)` equals `table.predict_ms(arch)`. A table of another space or device (when
    `device_identity` is given) is refused; a missing entry raises `MissingEntryError`.
    """
    from hwnas.latency.model import block_ms, fixed_ms
    from hwnas.spaces.supernet import layer_candidates

    check_table(table, space, device_identity)
    cal, drift = table.calibration, float(table.drift_factor)
    stem, layers, head = layer_candidates(space)
    entries = [table.entry(b) for b in [stem, head, *(b for row in layers for b in row if b is not None)]]
    layouts = all(e.layouts is not None for e in entries)

    def ms(block: Block | None) -> float:
        return 0.0 if block is None else drift * block_ms(cal, table.entry(block), table.statistic, layouts)

    fixed = ms(stem) + ms(head) + drift * fixed_ms(cal)
    costs = tuple(tuple(ms(b) for b in row) for row in layers)
    switches = None
    if cal.switch_ms_per_kelem and getattr(space, "chain", False) and layouts:
        switches = _switches(table, stem, layers, head, drift)
    return CostTable("latency_ms", fixed, costs, switches)


def _switches(table: Any, stem: Block, layers: list[list[Block | None]], head: Block, drift: float) -> Switches:
    """The layout switches of a chain supernet: per layer the candidates' (input, output) layouts and the
    latency of a switch at the layer's input (`hwnas.latency.model.switch_ms`, times the drift factor)."""
    import math

    from hwnas.latency.model import switch_ms

    batch = int(table.device.get("batch_size", 1))

    def nchwc(block: Block, side: int) -> bool:
        return table.entry(block).layouts[side] == "nchwc"

    def at(block: Block) -> float:  # a switch at this block's input, in ms
        return switch_ms(table.calibration, batch * math.prod(block.input_shape), drift)

    return Switches(
        stem_out=nchwc(stem, 1),
        layouts=tuple(tuple(None if b is None else (nchwc(b, 0), nchwc(b, 1)) for b in row) for row in layers),
        at_layer=tuple(at(next(b for b in row if b is not None)) for row in layers),
        head_in=nchwc(head, 0), at_head=at(head),
    )


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
            raise ConfigError("fbnet cost latency_ms needs `latency_table: PATH` and latency_ms among the objectives "
                              "or constraints of the recipe")
        return latency_cost(space, table, device_identity)
    return static_cost(space, name)
