"""Ray executor: each job is a Ray task on an existing cluster (`address`) or a local one; steady state.

Nothing travels through the driver's disk: a job and its result are pickled through Ray, and a job's
large inputs (a parent checkpoint, the user's own dataset) go through the object store. A job that
has such inputs implements two methods (duck-typed, see `hwnas.search.problem.TrainJob`):

    job.payloads() -> {name: value}       # the large values, to ship by reference
    job.with_payloads({name: value}) -> job  # the same job with those values put back

The driver puts each distinct payload (by content hash) once and passes its object reference; each
worker process fetches it once and keeps it in a small cache keyed by that hash (Ray copies an object
to a node once). Each result's `extras` record the Ray node that ran it (`ray_node`) and the payload
megabytes that task had to fetch (`ray_fetched_mb`, 0 when its worker had them cached).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from hwnas.errors import ConfigError, MissingBackendError
from hwnas.execution.base import Executor, Outcome, check_workers, describe

IDLE_KEPT = 8  # payloads no job in flight uses that stay in the object store (the dataset between jobs)
WORKER_CACHE = 8  # payloads each worker process keeps after fetching them

_received: OrderedDict[str, Any] = OrderedDict()  # per worker process: digest -> payload


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingBackendError("Ray", "ray", str(exc)) from exc
    return ray


def _fingerprint(value: Any) -> tuple[str, int]:
    """(sha256 of the content, its size in bytes)."""
    data = value if isinstance(value, bytes | bytearray) else pickle.dumps(value, protocol=5)
    return hashlib.sha256(data).hexdigest(), len(data)


def _fetch(shipped: dict[str, tuple[str, list]]) -> tuple[dict[str, Any], list[str]]:
    """In a worker: payload values by name, from this process's cache or the object store."""
    import ray

    values, fetched = {}, []
    for name, (digest, boxed_ref) in shipped.items():
        if digest in _received:
            _received.move_to_end(digest)
        else:
            _received[digest] = ray.get(boxed_ref[0])
            fetched.append(digest)
            while len(_received) > WORKER_CACHE:
                _received.popitem(last=False)
        values[name] = _received[digest]
    return values, fetched


def _run_job(job: Callable[[], Any], threads: int, shipped: dict[str, tuple[str, list]]) -> tuple[Any, dict]:
    import ray
    import torch

    torch.set_num_threads(threads)
    fetched: list[str] = []
    if shipped:
        values, fetched = _fetch(shipped)
        job = job.with_payloads(values)  # type: ignore[attr-defined]
    node = ray.get_runtime_context().get_node_id()
    return job(), {"node": node, "fetched": fetched}


class RayExecutor(Executor):
    """Keeps up to `workers` tasks in flight (default: the cluster's CPUs / cpus_per_task).

    `address` connects to a running cluster (`ray start`, `ray up`, KubeRay); without it a local
    cluster of `num_cpus` CPUs is started for the run and stopped at `shutdown()`.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, cpus_per_task: float = 1.0,
        num_cpus: int | None = None,
    ) -> None:
        if workers is not None:
            check_workers(workers, "executor ray")
        if cpus_per_task <= 0:
            raise ConfigError(f"executor cpus_per_task must be > 0, got {cpus_per_task}")
        ray = _import_ray()
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self._ray = ray
        self._own = False
        self.address = address
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif num_cpus:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot connect to the Ray cluster at {address}: {exc}; start it with `ray start --head` "
                    "(or `ray up`, KubeRay) and pass its address, e.g. --ray-address HEAD_IP:6379"
                ) from exc
            self._own = True
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.cpus_per_task = cpus_per_task
        self.workers = int(workers or max(1, cpus // cpus_per_task))
        self._remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_run_job)
        self._refs: dict[Any, tuple[str, list[str]]] = {}  # task ref -> (key, payload digests)
        self._store: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # digest -> (object ref, bytes)
        self._users: Counter[str] = Counter()  # digest -> jobs in flight that use it
        self._prints: dict[int, tuple[Any, tuple[str, int]]] = {}  # id(non-bytes payload) -> (it, print)
        self.shipped_bytes = 0  # payload bytes put into the object store

    # -- payloads ----------------------------------------------------------------------------------
    def _put(self, value: Any) -> str:
        """Put `value` into the object store unless it is there already; returns its digest."""
        if isinstance(value, bytes | bytearray):
            digest, size = _fingerprint(value)
        else:  # the same loaded dataset object comes with every job: hash it once
            known = self._prints.get(id(value))
            if known is None or known[0] is not value:
                known = self._prints[id(value)] = (value, _fingerprint(value))
            digest, size = known[1]
        if digest not in self._store:
            self._store[digest] = (self._ray.put(value), size)
            self.shipped_bytes += size
        self._store.move_to_end(digest)
        self._users[digest] += 1
        return digest

    def _release(self, digests: list[str]) -> None:
        for d in digests:
            self._users[d] -= 1
            if self._users[d] <= 0:
                del self._users[d]
        idle = [d for d in self._store if d not in self._users]
        for d in idle[: max(0, len(idle) - IDLE_KEPT)]:  # oldest idle ones first
            del self._store[d]

    # -- executor ----------------------------------------------------------------------------------
    def submit(self, key: str, job: Callable[[], Any]) -> None:
        payloads = job.payloads() if hasattr(job, "payloads") else {}
        shipped, digests = {}, []
        if payloads:
            job = job.with_payloads({name: None for name in payloads})  # type: ignore[attr-defined]
            for name, value in payloads.items():
                d = self._put(value)
                shipped[name] = (d, [self._store[d][0]])  # boxed: Ray resolves only top-level refs
                digests.append(d)
        ref = self._remote.remote(job, max(1, int(self.cpus_per_task)), shipped)
        self._refs[ref] = (key, digests)

    @property
    def pending(self) -> int:
        return len(self._refs)

    def _annotate(self, result: Any, meta: dict) -> Any:
        if isinstance(result, dict) and isinstance(result.get("extras"), dict):
            sizes = {d: size for d, (_, size) in self._store.items()}
            mb = sum(sizes.get(d, 0) for d in meta["fetched"]) / 1e6
            result["extras"].update({"ray_node": meta["node"][:12], "ray_fetched_mb": round(mb, 3)})
        return result

    def wait(self) -> list[Outcome]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            key, digests = self._refs.pop(ref)
            try:
                result, meta = self._ray.get(ref)
                out.append(Outcome(key, result=self._annotate(result, meta)))
            except Exception as exc:  # RayTaskError wraps the job's exception
                cause = getattr(exc, "cause", None) or exc
                out.append(Outcome(key, error=describe(cause)))
            self._release(digests)
        return out

    def shutdown(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        self._store.clear()
        self._users.clear()
        self._prints.clear()
        if self._own:
            self._ray.shutdown()

    def describe(self) -> dict[str, Any]:
        return {
            "executor": self.name, "workers": self.workers, "cpus_per_task": self.cpus_per_task,
            "address": self.address, "nodes": self.nodes, "ray": self._ray.__version__,
        }
