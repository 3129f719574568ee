"""Constraints on objective values, e.g. `latency_ms <= 5`; checked on cheap objectives before training."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hwnas.errors import ConfigError

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`name op bound` on a natural-unit objective value."""

    name: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"constraint operator {self.op!r} is not one of {', '.join(_OPS)}")

    def satisfied(self, values: Mapping[str, float]) -> bool:
        return bool(_OPS[self.op](float(values[self.name]), self.bound))

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


def parse_constraint(text: str) -> Constraint:
    """Parse `latency_ms <= 5` (operators <=, <, >=, >)."""
    m = _RE.match(str(text))
    if not m:
        raise ConfigError(
            f"cannot parse constraint {text!r}; write it as `NAME OP NUMBER`, e.g. `latency_ms <= 5`"
        )
    try:
        bound = float(m.group(3).replace("_", ""))
    except ValueError:
        raise ConfigError(f"constraint {text!r}: {m.group(3)!r} is not a number") from None
    return Constraint(m.group(1), m.group(2), bound)


def violations(constraints: tuple[Constraint, ...], values: Mapping[str, float]) -> list[str]:
    """The constraints `values` violate, as strings (empty when feasible)."""
    return [str(c) for c in constraints if not c.satisfied(values)]
