"""Objectives: name, unit, direction (min/max) and cost class (cheap vs expensive), plus their registry.

Everything is minimized internally: `Objective.to_min` turns a natural value (e.g. accuracy 0.93)
into the minimized one (-0.93); `from_min` undoes it. Cheap objectives are computed in the driver
before constraints; expensive ones (training, measurement) only run for candidates that pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hwnas.errors import ConfigError
from hwnas.registry import Registry

Direction = Literal["min", "max"]
Kind = Literal["cheap", "expensive"]


@dataclass(frozen=True)
class Objective:
    """One objective; `direction` says which way is better in natural units."""

    name: str
    direction: Direction = "min"
    kind: Kind = "cheap"
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ConfigError(f"objective {self.name!r}: direction must be 'min' or 'max'")
        if self.kind not in ("cheap", "expensive"):
            raise ConfigError(f"objective {self.name!r}: kind must be 'cheap' or 'expensive'")

    def to_min(self, value: float) -> float:
        return float(value) if self.direction == "min" else -float(value)

    def from_min(self, value: float) -> float:
        return float(value) if self.direction == "min" else -float(value)

    def to_dict(self) -> dict:
        return {"name": self.name, "direction": self.direction, "kind": self.kind, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: Mapping) -> Objective:
        return cls(
            name=str(data["name"]), direction=data.get("direction", "min"),
            kind=data.get("kind", "cheap"), unit=str(data.get("unit", "")),
        )


# Built-in objectives the search recipes can name. `latency_ms` is the latency-table prediction.
OBJECTIVES: Registry[Objective] = Registry("objective")
for _obj in (
    Objective("params", "min", "cheap", "count", "trainable parameters"),
    Objective("macs", "min", "cheap", "count", "multiply-accumulates at batch 1"),
    Objective("flops", "min", "cheap", "count", "2 x MACs"),
    Objective("activation_bytes", "min", "cheap", "bytes", "peak activation memory at batch 1, fp32"),
    Objective("latency_ms", "min", "cheap", "ms", "latency predicted by a per-block latency table"),
    Objective("accuracy", "max", "expensive", "fraction", "validation accuracy after training"),
    Objective("measured_latency_ms", "min", "expensive", "ms", "median latency measured on the recipe's device"),
):
    OBJECTIVES.add(_obj.name, _obj)


def get_objectives(names: Iterable[str]) -> tuple[Objective, ...]:
    """Registered objectives by name, in order; duplicates and unknown names are errors."""
    names = list(names)
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives listed twice in {names}; list each objective once")
    if len(names) < 1:
        raise ConfigError("a search needs at least one objective")
    return tuple(OBJECTIVES.get(n) for n in names)


def minimized(objectives: Sequence[Objective], values: Mapping[str, float]) -> tuple[float, ...]:
    """The minimized vector of natural `values` in objective order."""
    return tuple(o.to_min(values[o.name]) for o in objectives)
