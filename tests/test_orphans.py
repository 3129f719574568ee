"""No orphans (issue 13): pool workers die with their driver, even after `kill -9` of the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import functools, sys, time
from hwnas.execution.local import ProcessExecutor

ex = ProcessExecutor(workers=2, threads_per_worker=1)
for i in range(2):  # start both workers and let them finish their initializer
    ex.submit(f"warm{i}", functools.partial(time.sleep, 0.5))
while ex.pending:
    ex.wait()
for i in range(2):
    ex.submit(f"long{i}", functools.partial(time.sleep, 300))
print(" ".join(str(p) for p in ex._pool._processes), flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_after_kill_9_of_their_driver():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        workers = [int(p) for p in driver.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        time.sleep(0.5)
        assert all(_alive(p) for p in workers)  # busy with their 300 s jobs
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in workers if _alive(p)] == []
    finally:
        driver.kill()
        for p in workers if "workers" in locals() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_watchdog_alone_ends_an_orphaned_worker():
    """Without the parent-death signal (e.g. off Linux), the watchdog thread ends the worker."""
    code = (
        "import os, sys, time, subprocess\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import os, time; from hwnas.execution import local; "
        "local.WATCHDOG_S = 0.2; local.sys.platform = \"other\"; local._die_with(os.getppid()); "
        "print(os.getpid(), flush=True); time.sleep(60)'], stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker = int(driver.stdout.readline())
        assert _alive(worker)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        driver.kill()
