"""Executor interface: run picklable zero-argument jobs, report outcomes as they finish (steady state)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwnas.errors import ConfigError


@dataclass(frozen=True)
class Outcome:
    """The result of one job, or the error (type: message) it raised."""

    key: str
    result: Any = None
    error: str | None = None


def check_workers(workers: Any, what: str = "executor") -> int:
    """`workers` as a whole number >= 1 (a bool, float or lower count is refused, not clipped)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{what} workers must be a whole number >= 1, got {workers!r}")
    return workers


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Executor(ABC):
    """Submit jobs under a key; `wait()` blocks until at least one finishes and returns those done."""

    name: str = ""
    workers: int = 1

    @abstractmethod
    def submit(self, key: str, job: Callable[[], Any]) -> None: ...

    @abstractmethod
    def wait(self) -> list[Outcome]:
        """Outcomes of finished jobs (at least one when any is pending)."""

    @property
    @abstractmethod
    def pending(self) -> int: ...

    def has_capacity(self) -> bool:
        return self.pending < self.workers

    def shutdown(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
