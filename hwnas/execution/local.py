"""Local executors: inline (in the driver, deterministic) and a process pool (default for training).

Pool workers die with their driver, even after `kill -9` of it: on Linux the kernel sends them SIGKILL
when the driver exits (prctl PR_SET_PDEATHSIG), and a watchdog thread in each worker exits when its
parent process changes (every platform; within WATCHDOG_S seconds).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hwnas.execution.base import Executor, Outcome, check_workers, describe


class InlineExecutor(Executor):
    """Runs each job in the calling process when `wait()` is called; one job at a time."""

    name = "inline"

    def __init__(self) -> None:
        self.workers = 1
        self._queue: list[tuple[str, Callable[[], Any]]] = []

    def submit(self, key: str, job: Callable[[], Any]) -> None:
        self._queue.append((key, job))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait(self) -> list[Outcome]:
        if not self._queue:
            return []
        key, job = self._queue.pop(0)
        try:
            return [Outcome(key, result=job())]
        except Exception as exc:  # a failing candidate must not stop the search
            return [Outcome(key, error=describe(exc))]


WATCHDOG_S = 1.0
_PR_SET_PDEATHSIG = 1


def _die_with(driver_pid: int) -> None:
    """End this process when the driver `driver_pid` exits, however it exits."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still works
            pass
    if os.getppid() != driver_pid:  # the driver died before the signal was armed
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != driver_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="hwnas-driver-watchdog", daemon=True).start()


def _init_worker(threads: int, driver_pid: int | None = None) -> None:
    if driver_pid is not None:
        _die_with(driver_pid)
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _call(job: Callable[[], Any]) -> Any:
    return job()


class ProcessExecutor(Executor):
    """A spawn-based process pool; a crashed worker (OOM kill, segfault) fails its jobs, the pool restarts."""

    name = "local"

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None) -> None:
        self.workers = check_workers(workers, "executor local")
        cores = os.cpu_count() or 1
        self.threads = threads_per_worker or max(1, cores // self.workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future, str] = {}

    def _ensure(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(self.threads, os.getpid()),
            )
        return self._pool

    def submit(self, key: str, job: Callable[[], Any]) -> None:
        self._futures[self._ensure().submit(_call, job)] = key

    @property
    def pending(self) -> int:
        return len(self._futures)

    def wait(self) -> list[Outcome]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        out, broken = [], False
        for fut in done:
            key = self._futures.pop(fut)
            exc = fut.exception()
            if exc is None:
                out.append(Outcome(key, result=fut.result()))
            else:
                broken |= isinstance(exc, cf.process.BrokenProcessPool)
                out.append(Outcome(key, error=describe(exc)))
        if broken:  # every other job of a broken pool is lost too; report them and start afresh
            for key in list(self._futures.values()):
                out.append(Outcome(key, error="BrokenProcessPool: a worker process died (out of memory?)"))
            self._futures.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads}
