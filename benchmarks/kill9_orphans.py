"""kill -9 a training search N times: count its workers alive 10 s later, try a concurrent resume, lose nothing.

Usage: python benchmarks/kill9_orphans.py [--cycles 5] [--recipe search/mnist-mobile.yaml] [--out kill9.json]
Each cycle starts `hwnas search RECIPE` (cycle 1) or `--resume` (later cycles) with the local process
pool, waits until its workers train, starts a second `--resume` of the same run (must be refused),
kills the driver with SIGKILL and counts its worker processes still alive 10 s later. A last
`--resume` finishes the run; the journal must hold every trial once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] not in ("Z", "X"):
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) not in ("Z", "X")
    except OSError:
        return False


def _workers(pid: int) -> list[int]:
    """The driver's pool workers (its children running multiprocessing's spawn_main)."""
    return [c for c in _children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--recipe", default=str(ROOT / "search" / "mnist-mobile.yaml"))
    p.add_argument("--train-s", type=float, default=8.0, help="seconds to let the workers train before the kill")
    p.add_argument("--out", default="kill9.json")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hwnas-kill9-"))
    url = f"sqlite:///{tmp / 'runs.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hwnas", "search", args.recipe, "--storage", url, "--quiet", "--name", "k9"]
    cycles = []
    for i in range(args.cycles):
        driver = subprocess.Popen(cmd + (["--resume", "k9"] if i else []), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(_workers(driver.pid)) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        time.sleep(args.train_s)
        workers = _workers(driver.pid)
        second = subprocess.run(cmd[:-2] + ["--resume", "k9"], env=env, capture_output=True, text=True, timeout=120)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(10)
        alive = [w for w in workers if _alive(w)]
        for w in alive:  # leave nothing behind, whatever the result
            os.kill(w, signal.SIGKILL)
        row = {"cycle": i + 1, "workers_before_kill": len(workers), "workers_alive_10s_after": len(alive),
               "concurrent_resume_exit": second.returncode, "concurrent_resume_stderr": second.stderr.strip()[-300:]}
        cycles.append(row)
        print(json.dumps(row), flush=True)
    final = subprocess.run(cmd[:-2] + ["--resume", "k9", "--json"], env=env, capture_output=True, text=True)
    from hwnas.storage import open_storage

    run_ = open_storage(url).get_run("k9")
    trials = run_.trials()
    summary = {"cycles": cycles, "final_exit": final.returncode, "trials": len(trials),
               "unique_archs": len({t.arch_id for t in trials}),
               "statuses": {s: sum(t.status == s for t in trials) for s in {t.status for t in trials}},
               "max_attempts": max((t.attempts for t in trials), default=0),
               "journal": str(tmp / "runs.db")}
    print(json.dumps({k: v for k, v in summary.items() if k != "cycles"}), flush=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run())
