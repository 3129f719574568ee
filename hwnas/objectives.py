"""Objectives: each one definition (name, unit, direction, cost class, how it is computed), and their registry.

Everything is minimized internally: `Objective.to_min` turns a natural value (e.g. accuracy 0.93)
into the minimized one (-0.93); `from_min` undoes it. Cheap objectives are computed in the driver
before constraints, from the arch and the latency source; expensive ones (training, measurement, or
the user's `evaluate`) only run for candidates that pass. Adding an objective is one `@objective`
function below (or an `Objective(..., compute=fn)` registered in `OBJECTIVES`); nothing else
dispatches on its name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hwnas.errors import ConfigError
from hwnas.registry import Registry

if TYPE_CHECKING:
    from hwnas.latency.source import LatencySource
    from hwnas.spaces import Arch, SearchSpace

Direction = Literal["min", "max"]
Kind = Literal["cheap", "expensive"]
# What computing an objective needs besides the arch (the problem loads or refuses it up front):
# a latency source (`latency_table:` in a recipe), the candidate trained on the dataset first, or a
# device spec to measure on (`device:`; measurements run alone, never beside parallel workers).
NEEDS = ("latency_table", "training", "device")


class Candidate:
    """One arch being evaluated: what an objective computes from. The network is built (or is the
    trained one) once, the device's profiler is made once; `memo` shares any other intermediate result
    between objectives; `extras` collects the side numbers objectives report (recorded with the trial)."""

    def __init__(self, space: SearchSpace, arch: Arch, latency: LatencySource | None = None, device: Any = None,
                 model: Any = None, training: Any = None) -> None:
        self.space, self.arch, self.latency, self.device = space, arch, latency, device
        self.training = training  # hwnas.train.TrainResult when the candidate was trained
        self.extras: dict[str, Any] = {}
        self._memo: dict[str, Any] = {} if model is None else {"model": model}

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per candidate under `key`."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def model(self) -> Any:
        """The network: the trained one when the candidate was trained, else freshly built."""
        return self.memo("model", lambda: self.space.build(self.arch))

    @property
    def profiler(self) -> Any:
        """The profiler of the candidate's device spec."""
        from hwnas.devices import get_profiler

        return self.memo("profiler", lambda: get_profiler(self.device))


@dataclass(frozen=True)
class Objective:
    """One objective; `direction` says which way is better in natural units. `compute(candidate)` gives
    its natural value; None: the user's `evaluate(model)` returns it. `needs`: see `NEEDS`."""

    name: str
    direction: Direction = "min"
    kind: Kind = "cheap"
    unit: str = ""
    description: str = ""
    compute: Callable[[Candidate], float] | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ConfigError(f"objective {self.name!r}: direction must be 'min' or 'max'")
        if self.kind not in ("cheap", "expensive"):
            raise ConfigError(f"objective {self.name!r}: kind must be 'cheap' or 'expensive'")
        bad = [n for n in self.needs if n not in NEEDS]
        if bad:
            raise ConfigError(f"objective {self.name!r}: needs {bad[0]!r} is not one of {', '.join(NEEDS)}")

    def to_min(self, value: float) -> float:
        return float(value) if self.direction == "min" else -float(value)

    def from_min(self, value: float) -> float:
        return float(value) if self.direction == "min" else -float(value)

    def to_dict(self) -> dict:
        return {"name": self.name, "direction": self.direction, "kind": self.kind, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: Mapping) -> Objective:
        """The objective as a journal records it (name, direction, kind, unit; not how it is computed)."""
        return cls(
            name=str(data["name"]), direction=data.get("direction", "min"),
            kind=data.get("kind", "cheap"), unit=str(data.get("unit", "")),
        )


OBJECTIVES: Registry[Objective] = Registry("objective")


def objective(name: str, direction: Direction, kind: Kind, unit: str, description: str,
              needs: tuple[str, ...] = ()) -> Callable[[Callable[[Candidate], float]], Callable[[Candidate], float]]:
    """Register the decorated `compute(candidate) -> natural value` as the objective `name`."""

    def define(compute: Callable[[Candidate], float]) -> Callable[[Candidate], float]:
        OBJECTIVES.add(name, Objective(name, direction, kind, unit, description, compute, needs))
        return compute

    return define


# -- built-in objectives (the names recipes use) ------------------------------------------------------
@objective("params", "min", "cheap", "count", "trainable parameters")
def _params(c: Candidate) -> float:
    from hwnas.metrics import count_params

    return float(count_params(c.model))


def _mac_counts(c: Candidate) -> Any:
    from hwnas.metrics import count_macs

    return c.memo("mac_counts", lambda: count_macs(c.model, c.space.input_shape))


@objective("macs", "min", "cheap", "count", "multiply-accumulates at batch 1")
def _macs(c: Candidate) -> float:
    return float(_mac_counts(c).macs)


@objective("flops", "min", "cheap", "count", "2 x MACs")
def _flops(c: Candidate) -> float:
    return float(_mac_counts(c).flops)


@objective("activation_bytes", "min", "cheap", "bytes", "peak activation memory at batch 1, fp32")
def _activation_bytes(c: Candidate) -> float:
    from hwnas.metrics import peak_activation_bytes

    return float(peak_activation_bytes(c.model, c.space.input_shape))


@objective("latency_ms", "min", "cheap", "ms", "latency predicted by a per-block latency table",
           needs=("latency_table",))
def _latency_ms(c: Candidate) -> float:
    return float(c.latency.predict_ms(c.arch))  # type: ignore[union-attr]


@objective("memory_bytes", "min", "cheap", "bytes",
           "peak memory (weights, arena, runtime overhead) predicted from a table's measured per-block peaks",
           needs=("latency_table",))
def _memory_bytes(c: Candidate) -> float:
    return float(c.latency.predict_peak_bytes(c.arch))  # type: ignore[union-attr]


@objective("accuracy", "max", "expensive", "fraction", "validation accuracy after training", needs=("training",))
def _accuracy(c: Candidate) -> float:
    return float(c.training.val_accuracy)


@objective("measured_latency_ms", "min", "expensive", "ms", "median latency measured on the recipe's device",
           needs=("device",))
def _measured_latency_ms(c: Candidate) -> float:
    m = c.profiler.measure_module(c.model.eval(), c.space.input_shape)
    c.extras.update({"measured_p10_ms": m.p10_ms, "measured_p90_ms": m.p90_ms, "measured_cv": m.cv})
    return m.value(c.profiler.spec.statistic)


def get_objectives(names: Iterable[str | Objective]) -> tuple[Objective, ...]:
    """Registered objectives by name (an `Objective` is taken as it is), in order; duplicates and unknown
    names are errors."""
    objectives = tuple(n if isinstance(n, Objective) else OBJECTIVES.get(n) for n in names)
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives listed twice in {names}; list each objective once")
    if len(names) < 1:
        raise ConfigError("a search needs at least one objective")
    return objectives


def minimized(objectives: Sequence[Objective], values: Mapping[str, float]) -> tuple[float, ...]:
    """The minimized vector of natural `values` in objective order."""
    return tuple(o.to_min(values[o.name]) for o in objectives)
