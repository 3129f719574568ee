"""SQLite run journal (WAL mode, one transaction per state change), schema version 2.

Schema 2 adds lineage (parent, operators, exact) and a per-trial training budget to trials and the
parent to ask events. A schema-1 journal is upgraded in place when opened (new nullable columns:
its runs read as before, with no lineage).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.objectives import Objective
from hwnas.storage.base import Event, Lineage, Run, RunInfo, Storage, StorageError, Trial, dumps

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, status TEXT NOT NULL, created REAL NOT NULL,
    objectives TEXT NOT NULL, config TEXT NOT NULL, info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL, number INTEGER NOT NULL, arch_id TEXT NOT NULL, space TEXT NOT NULL,
    arch TEXT NOT NULL, status TEXT NOT NULL, "values" TEXT NOT NULL, extras TEXT NOT NULL,
    error TEXT, weights_path TEXT, attempts INTEGER NOT NULL, created REAL NOT NULL, finished REAL,
    lineage TEXT, budget TEXT,
    PRIMARY KEY (run_id, number), UNIQUE (run_id, arch_id)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, arch_id TEXT NOT NULL,
    arch TEXT NOT NULL, "values" TEXT, parent TEXT, PRIMARY KEY (run_id, seq)
);
"""
# Schema 1 -> 2: columns added (nullable, so schema-1 rows read as trials without lineage).
_UPGRADE_1_TO_2 = (
    "ALTER TABLE trials ADD COLUMN lineage TEXT",
    "ALTER TABLE trials ADD COLUMN budget TEXT",
    "ALTER TABLE events ADD COLUMN parent TEXT",
)


class SQLiteStorage(Storage):
    """Journal in one SQLite file; artifacts (weights, plots) go to `<db dir>/<run id>/`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a path under a file: say which part is not a folder
            blocker = next((p for p in self.path.parents if p.exists()), self.path.parent)
            reason = f"{blocker} is not a directory" if not blocker.is_dir() else exc.strerror or str(exc)
            raise StorageError(f"journal {self.path} cannot be created: {reason}; pick a path under a folder") from None
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives kill -9
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is not a usable SQLite journal: {exc}") from exc
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) not in READABLE_SCHEMAS:
            raise StorageError(
                f"{self.path} has journal schema {row[0]}, this hwnas reads schemas "
                f"{', '.join(map(str, READABLE_SCHEMAS))}; use a new --storage file or a matching hwnas version"
            )
        elif int(row[0]) == 1:
            self._tx([(sql, ()) for sql in _UPGRADE_1_TO_2]
                     + [("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))])

    # -- transactions ------------------------------------------------------------------------
    def _tx(self, statements: list[tuple[str, tuple]]) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                cur.execute(sql, params)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    # -- runs --------------------------------------------------------------------------------
    def create_run(
        self, name: str, objectives: Sequence[Objective], config: dict[str, Any], info: dict[str, Any]
    ) -> Run:
        if self._db.execute("SELECT 1 FROM runs WHERE name=?", (name,)).fetchone():
            raise StorageError(
                f"a run named {name!r} already exists in {self.url}; pick another --name or --resume it"
            )
        run_id = uuid.uuid4().hex[:12]
        self._tx([(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?)",
            (run_id, name, "RUNNING", time.time(), dumps([o.to_dict() for o in objectives]),
             dumps(config), dumps(info)),
        )])
        return Run(self, self.run_info(run_id))

    @staticmethod
    def _info(row: tuple) -> RunInfo:
        rid, name, status, created, objectives, config, info = row
        return RunInfo(
            id=rid, name=name, status=status, created=created,
            objectives=tuple(Objective.from_dict(o) for o in json.loads(objectives)),
            config=json.loads(config), info=json.loads(info),
        )

    def run_info(self, run_id: str) -> RunInfo:
        row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StorageError(f"no run with id {run_id!r} in {self.url}")
        return self._info(row)

    def list_runs(self) -> list[RunInfo]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY created").fetchall()
        return [self._info(r) for r in rows]

    def update_run(self, run_id: str, status: str | None = None, info: dict[str, Any] | None = None) -> None:
        current = self.run_info(run_id)
        merged = {**current.info, **(info or {})}
        self._tx([(
            "UPDATE runs SET status=?, info=? WHERE id=?", (status or current.status, dumps(merged), run_id)
        )])

    def artifact_dir(self, run_id: str) -> Path:
        return self.path.parent / run_id

    # -- trials and events -------------------------------------------------------------------
    def trials(self, run_id: str) -> list[Trial]:
        rows = self._db.execute(
            'SELECT run_id, number, arch_id, space, arch, status, "values", extras, error, weights_path, '
            "attempts, created, finished, lineage, budget FROM trials WHERE run_id=? ORDER BY number",
            (run_id,),
        ).fetchall()
        return [
            Trial(
                run_id=r[0], number=r[1], arch_id=r[2], space=r[3], arch_str=r[4], status=r[5],
                values=json.loads(r[6]), extras=json.loads(r[7]), error=r[8], weights_path=r[9],
                attempts=r[10], created=r[11], finished=r[12],
                lineage=Lineage.from_dict(json.loads(r[13]) if r[13] else None),
                budget=json.loads(r[14]) if r[14] else {},
            )
            for r in rows
        ]

    def events(self, run_id: str) -> list[Event]:
        rows = self._db.execute(
            'SELECT seq, kind, arch_id, arch, "values", parent FROM events WHERE run_id=? ORDER BY seq', (run_id,)
        ).fetchall()
        return [
            Event(seq, kind, aid, arch, None if v is None or json.loads(v) is None else tuple(json.loads(v)), parent)
            for seq, kind, aid, arch, v, parent in rows
        ]

    @staticmethod
    def _event_sql(run_id: str, ev: Event) -> tuple[str, tuple]:
        values = None if ev.values is None else json.dumps(list(ev.values))
        return (
            'INSERT INTO events (run_id, seq, kind, arch_id, arch, "values", parent) VALUES (?,?,?,?,?,?,?)',
            (run_id, ev.seq, ev.kind, ev.arch_id, ev.arch_str, values, ev.parent),
        )

    @staticmethod
    def _trial_sql(t: Trial) -> tuple[str, tuple]:
        return (
            'INSERT OR REPLACE INTO trials (run_id, number, arch_id, space, arch, status, "values", extras, '
            "error, weights_path, attempts, created, finished, lineage, budget) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (t.run_id, t.number, t.arch_id, t.space, t.arch_str, t.status, dumps(t.values),
             dumps(t.extras), t.error, t.weights_path, t.attempts, t.created, t.finished,
             dumps(t.lineage.to_dict()) if t.lineage else None, dumps(t.budget) if t.budget else None),
        )

    def record_ask(self, run_id: str, event: Event, new_trial: Trial | None) -> None:
        stmts = [self._event_sql(run_id, event)]
        if new_trial is not None:
            stmts.append(self._trial_sql(new_trial))
        self._tx(stmts)

    def record_update(self, trial: Trial, tell: Event | None = None) -> None:
        stmts = [self._trial_sql(trial)]
        if tell is not None:
            stmts.append(self._event_sql(trial.run_id, tell))
        self._tx(stmts)

    def close(self) -> None:
        self._db.close()
