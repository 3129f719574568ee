"""Run storage: `open_storage(url)` -> Storage; `storage.get_run(id_or_name)` -> Run (trials, Pareto front).

Read API used by export and reports::

    run = open_storage("sqlite:///runs/run.db").get_run("my-run")   # id, id prefix, name or "latest"
    run.config, run.objectives, run.table_sha256, run.device, run.info, run.artifact_dir
    run.trials("COMPLETE")  # Trial: .arch (Arch), .arch_str, .values (natural units), .weights_path
    run.pareto_front()      # non-dominated COMPLETE trials; run.knee() -> Trial
    trial.lineage           # Lineage(parent arch id, operators, exact) of a morphism child, else None
"""

from __future__ import annotations

from pathlib import Path

from hwnas.storage.base import EVALUATED, STATUSES, Event, Lineage, Run, RunInfo, Storage, StorageError, Trial
from hwnas.storage.memory import MemoryStorage
from hwnas.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

DEFAULT_URL = "sqlite:///runs/hwnas.db"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file a storage URL names (None for in-memory storage); raises on an unsupported URL."""
    if url in ("memory", "memory://", ":memory:"):
        return None
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if url.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in url:
        return Path(url)
    raise StorageError(
        f"unsupported storage URL {url!r}; use sqlite:///path/run.db (default {DEFAULT_URL}) or memory://"
    )


def open_storage(url: str = DEFAULT_URL) -> Storage:
    """`sqlite:///relative/or/absolute.db`, `sqlite:////abs.db`, a bare `*.db` path, or `memory://`."""
    path = sqlite_path(url)
    return MemoryStorage() if path is None else SQLiteStorage(path)


__all__ = [
    "DEFAULT_URL", "EVALUATED", "Event", "Lineage", "MemoryStorage", "Run", "RunInfo", "SCHEMA_VERSION", "STATUSES",
    "SQLiteStorage", "Storage", "StorageError", "Trial", "open_storage", "sqlite_path",
]
