"""Local executors: inline (in the driver, deterministic) and a process pool (default for training).

Pool workers die with their driver, even after `kill -9` of it: on Linux the kernel sends them SIGKILL
when the driver exits (prctl PR_SET_PDEATHSIG), and a watchdog thread in each worker exits when its
parent process changes (every platform; within WATCHDOG_S seconds).
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hwnas.errors import HwnasError
from hwnas.execution.base import Executor, Outcome, check_workers, describe


class MainGuardError(HwnasError):
    """Worker processes would re-run the user's script: it starts work at import time."""


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"` (either order)."""
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def unguarded_main_script() -> str | None:
    """The running script's path when spawned workers would re-run it (no top-level
    `if __name__ == "__main__":`), else None. Mirrors multiprocessing's spawn: a package's `__main__`
    (`python -m pkg`), an interactive session and `python -c` are never re-run."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py") or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    if any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body):
        return None
    return str(path)


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
            script = unguarded_main_script()
            if script is not None:
                raise MainGuardError(
                    f"{script} starts worker processes at import time, and each worker re-imports it (spawn): "
                    'put the code that runs the search under `if __name__ == "__main__":`, or use workers=1')
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
