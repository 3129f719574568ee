"""Run storage: `open_storage(url)` -> Storage; `storage.get_run(id_or_name)` -> Run (trials, Pareto front).

Read API used by export and reports::

    run = open_storage("sqlite:///runs/run.db").get_run("my-run")   # id, id prefix, name or "latest"
    run.config, run.objectives, run.table_sha256, run.device, run.info, run.artifact_dir
    run.trials("COMPLETE")  # Trial: .arch (Arch), .arch_str, .values (natural units), .weights_path
    run.pareto_front()      # non-dominated COMPLETE trials; run.knee() -> Trial
"""

from __future__ import annotations

from pathlib import Path

from hwnas.storage.base import EVALUATED, STATUSES, Event, Run, RunInfo, Storage, StorageError, Trial
from hwnas.storage.memory import MemoryStorage
from hwnas.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

DEFAULT_URL = "sqlite:///runs/hwnas.db"


def open_storage(url: str = DEFAULT_URL) -> Storage:
    """`sqlite:///relative/or/absolute.db`, `sqlite:////abs.db`, a bare `*.db` path, or `memory://`."""
    if url in ("memory", "memory://", ":memory:"):
        return MemoryStorage()
    if url.startswith("sqlite:///"):
        return SQLiteStorage(Path(url[len("sqlite:///"):]))
    if url.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in url:
        return SQLiteStorage(Path(url))
    raise StorageError(
        f"unsupported storage URL {url!r}; use sqlite:///path/run.db (default {DEFAULT_URL}) or memory://"
    )


__all__ = [
    "DEFAULT_URL", "EVALUATED", "Event", "MemoryStorage", "Run", "RunInfo", "SCHEMA_VERSION", "STATUSES",
    "SQLiteStorage", "Storage", "StorageError", "Trial", "open_storage",
]
