"""Executors for expensive evaluations: `inline`, `local` (process pool, default) and `ray` (lazy import)."""

from __future__ import annotations

from typing import Any

from hwnas.errors import ConfigError
from hwnas.execution.base import Executor, Outcome, check_workers
from hwnas.execution.local import InlineExecutor, ProcessExecutor

EXECUTORS = ("inline", "local", "ray")


OPTIONS = {"inline": (), "local": ("threads_per_worker",), "ray": ("address", "cpus_per_task", "num_cpus")}


def make_executor(name: str = "local", workers: int | None = None, **options: Any) -> Executor:
    """`inline`, `local` (process pool; default 1 worker; threads_per_worker) or `ray` (address of a
    running cluster, cpus_per_task, num_cpus of a local one; default workers: cluster CPUs / cpus_per_task)."""
    if name not in OPTIONS:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    given = {k: v for k, v in options.items() if v is not None}
    bad = sorted(set(given) - set(OPTIONS[name]))
    if bad:
        valid = ", ".join(("workers",) + OPTIONS[name]) if name != "inline" else "none"
        raise ConfigError(f"executor {name} has no option(s) {', '.join(bad)}; valid: {valid}")
    if workers is not None:
        check_workers(workers, f"executor {name}")
    if name == "inline":
        return InlineExecutor()
    if name == "local":
        return ProcessExecutor(1 if workers is None else workers, given.get("threads_per_worker"))
    from hwnas.execution.ray_executor import RayExecutor

    return RayExecutor(workers=workers, **given)


__all__ = ["EXECUTORS", "OPTIONS", "Executor", "InlineExecutor", "Outcome", "ProcessExecutor", "make_executor"]
