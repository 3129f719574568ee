"""Executors for expensive evaluations: `inline`, `local` (process pool, default) and `ray` (lazy import)."""

from __future__ import annotations

from typing import Any

from hwnas.errors import ConfigError
from hwnas.execution.base import Executor, Outcome
from hwnas.execution.local import InlineExecutor, ProcessExecutor

EXECUTORS = ("inline", "local", "ray")


def make_executor(name: str = "local", workers: int | None = None, **kwargs: Any) -> Executor:
    """`inline`, `local` (process pool; default 1 worker) or `ray` (kwargs: address, cpus_per_task, num_cpus)."""
    if name == "inline":
        return InlineExecutor()
    if name == "local":
        return ProcessExecutor(workers or 1, kwargs.get("threads_per_worker"))
    if name == "ray":
        from hwnas.execution.ray_executor import RayExecutor

        return RayExecutor(workers=workers, **kwargs)
    raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "Outcome", "ProcessExecutor", "make_executor"]
