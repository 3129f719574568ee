"""Run locks (issue 13): one process drives a run; a second `--resume` is refused in one line; stale locks."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hwnas.cli import main
from hwnas.storage import open_storage
from hwnas.storage.lock import RunLock, RunLockedError, lock_holder

TABLE = Path(__file__).resolve().parents[1] / "latency_tables" / "ort-cpu-1t" / "nb201-cifar100.json"


@pytest.fixture
def journal(tmp_path):
    recipe = tmp_path / "cost.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "cost", "space": "nb201:cifar100", "objectives": ["params", "latency_ms"],
        "latency_table": str(TABLE), "strategy": "random", "seed": 0, "budget": 3, "executor": "inline"}))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert main(["search", str(recipe), "--storage", url, "--quiet", "--name", "first"]) == 0
    return recipe, url


def _set_lock(url: str, run_id: str, pid: int, host: str, age_s: float) -> None:
    db = sqlite3.connect(url[len("sqlite:///"):])
    t = time.time() - age_s
    db.execute("INSERT OR REPLACE INTO run_locks VALUES (?,?,?,?,?,?)", (run_id, "other", pid, host, t, t))
    db.commit()
    db.close()


def test_a_second_driver_is_refused_and_the_lock_is_released(journal, capsys):
    _, url = journal
    storage = open_storage(url)
    run = storage.get_run("first")
    assert lock_holder(storage, run.id) is None  # the finished search released its lock
    with RunLock(storage, run.id, run.name):
        holder = lock_holder(storage, run.id)
        assert holder.pid == os.getpid() and holder.host == socket.gethostname()
        with pytest.raises(RunLockedError, match=f"process {os.getpid()} on {socket.gethostname()}"):
            RunLock(open_storage(url), run.id, run.name).acquire()
        assert main(["runs", "--storage", url, "--json"]) == 0
        assert f'"driver": "pid {os.getpid()} on {socket.gethostname()}"' in capsys.readouterr().out
    with RunLock(storage, run.id):
        pass


def test_concurrent_resume_is_one_clear_line(journal, capsys):
    recipe, url = journal
    storage = open_storage(url)
    run = storage.get_run("first")
    with RunLock(storage, run.id, run.name):
        capsys.readouterr()
        assert main(["search", str(recipe), "--storage", url, "--quiet", "--resume", "--budget", "5"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwnas: error: run first is being driven by process")
    assert len(run.trials()) == 3  # nothing ran
    assert main(["search", str(recipe), "--storage", url, "--quiet", "--resume", "--budget", "5"]) == 0
    assert len(run.trials("COMPLETE")) == 5


def test_stale_locks_are_taken_over(journal):
    _, url = journal
    storage = open_storage(url)
    run = storage.get_run("first")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _set_lock(url, run.id, dead.pid, socket.gethostname(), age_s=0)  # fresh heartbeat, but its process is gone
    with RunLock(storage, run.id):
        assert lock_holder(storage, run.id).pid == os.getpid()
    _set_lock(url, run.id, 1, "another-host", age_s=120)  # another host, heartbeat too old
    with RunLock(storage, run.id, stale_after_s=60):
        pass
    _set_lock(url, run.id, 1, "another-host", age_s=5)  # another host, alive by its heartbeat
    with pytest.raises(RunLockedError, match="another-host"):
        RunLock(storage, run.id, stale_after_s=60).acquire()


def test_the_heartbeat_advances(journal):
    _, url = journal
    storage = open_storage(url)
    run = storage.get_run("first")
    with RunLock(storage, run.id, heartbeat_s=0.05):
        first = lock_holder(storage, run.id).heartbeat
        time.sleep(0.3)
        assert lock_holder(storage, run.id).heartbeat > first


def test_plain_resume_skips_runs_that_never_searched(journal, capsys):
    recipe, url = journal
    storage = open_storage(url)
    first = storage.get_run("first")
    empty = storage.create_run("never-started", first.objectives, first.config, {})  # e.g. an old hwnas's leftovers
    assert main(["search", str(recipe), "--storage", url, "--quiet", "--resume", "--budget", "4", "--json"]) == 0
    assert '"name": "first"' in capsys.readouterr().out
    assert not storage.events(empty.id) and len(first.trials("COMPLETE")) == 4
