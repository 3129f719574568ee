"""Run locks: one process drives a run at a time (pid, host and a heartbeat in the journal).

The lock is a row of the `run_locks` table in the run's SQLite journal (added on first use; older
hwnas versions ignore it). The driver refreshes its heartbeat every `heartbeat_s` from a background
thread. A lock is stale, and is taken over, when its heartbeat is older than `stale_after_s`, or at
once when it was taken on this host by a process that no longer exists. In-memory storage lives in
one process and needs no lock.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from hwnas.storage.base import Storage, StorageError

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0

_TABLE = """CREATE TABLE IF NOT EXISTS run_locks (
    run_id TEXT PRIMARY KEY, token TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    acquired REAL NOT NULL, heartbeat REAL NOT NULL
)"""


class RunLockedError(StorageError):
    """Another live process drives the run."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run's lock."""

    pid: int
    host: str
    acquired: float
    heartbeat: float

    def stale(self, now: float, stale_after_s: float) -> bool:
        """Heartbeat too old, or the holder was on this host and its process is gone."""
        if now - self.heartbeat > stale_after_s:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _connect(storage: Storage) -> sqlite3.Connection | None:
    path = getattr(storage, "path", None)
    if path is None:
        return None
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
    db.execute(_TABLE)
    return db


def lock_holder(storage: Storage, run_id: str) -> LockHolder | None:
    """The current holder of a run's lock (stale or not), or None."""
    db = _connect(storage)
    if db is None:
        return None
    try:
        row = db.execute("SELECT pid, host, acquired, heartbeat FROM run_locks WHERE run_id=?", (run_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else LockHolder(*row)


class RunLock:
    """`with RunLock(storage, run_id):` holds the run for this process (RunLockedError when a live one has it)."""

    def __init__(self, storage: Storage, run_id: str, run_name: str = "", heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.storage, self.run_id, self.run_name = storage, run_id, run_name or run_id
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self._db: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLock:
        self._db = _connect(self.storage)
        if self._db is None:
            return self
        now = time.time()
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            row = cur.execute("SELECT pid, host, acquired, heartbeat FROM run_locks WHERE run_id=?",
                              (self.run_id,)).fetchone()
            if row is not None and not LockHolder(*row).stale(now, self.stale_after_s):
                h = LockHolder(*row)
                raise RunLockedError(
                    f"run {self.run_name} is being driven by process {h.pid} on {h.host} (heartbeat "
                    f"{now - h.heartbeat:.0f} s ago); wait for it to finish or stop it. A lock is taken over "
                    f"when its heartbeat is older than {self.stale_after_s:g} s, or at once when its process is "
                    "gone on this host"
                )
            cur.execute("INSERT OR REPLACE INTO run_locks VALUES (?,?,?,?,?,?)",
                        (self.run_id, self.token, os.getpid(), socket.gethostname(), now, now))
        except BaseException:
            cur.execute("ROLLBACK")
            self._db.close()
            self._db = None
            raise
        cur.execute("COMMIT")
        self._thread = threading.Thread(target=self._beat, name=f"hwnas-lock-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if self._db is None:
                return
            try:
                self._db.execute("UPDATE run_locks SET heartbeat=? WHERE run_id=? AND token=?",
                                 (time.time(), self.run_id, self.token))
            except sqlite3.Error:  # a busy journal: try again at the next beat
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._db is not None:
            self._db.execute("DELETE FROM run_locks WHERE run_id=? AND token=?", (self.run_id, self.token))
            self._db.close()
            self._db = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
