"""Ray executor: each job is a Ray task on an existing cluster (`address`) or a local one; steady state."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hwnas.errors import MissingBackendError
from hwnas.execution.base import Executor, Outcome, describe


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingBackendError("Ray", "ray", str(exc)) from exc
    return ray


def _run_job(job: Callable[[], Any], threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return job()


class RayExecutor(Executor):
    """Keeps up to `workers` tasks in flight (default: the cluster's CPUs / cpus_per_task)."""

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, cpus_per_task: float = 1.0,
        num_cpus: int | None = None,
    ) -> None:
        ray = _import_ray()
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self._ray = ray
        self._own = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif num_cpus:
                kwargs["num_cpus"] = num_cpus
            ray.init(**kwargs)
            self._own = True
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self.cpus_per_task = cpus_per_task
        self.workers = int(workers or max(1, cpus // cpus_per_task))
        self._remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_run_job)
        self._refs: dict[Any, str] = {}

    def submit(self, key: str, job: Callable[[], Any]) -> None:
        self._refs[self._remote.remote(job, max(1, int(self.cpus_per_task)))] = key

    @property
    def pending(self) -> int:
        return len(self._refs)

    def wait(self) -> list[Outcome]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out.append(Outcome(key, result=self._ray.get(ref)))
            except Exception as exc:  # RayTaskError wraps the job's exception
                cause = getattr(exc, "cause", None) or exc
                out.append(Outcome(key, error=describe(cause)))
        return out

    def shutdown(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._own:
            self._ray.shutdown()

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "cpus_per_task": self.cpus_per_task}
