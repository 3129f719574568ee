"""Run journal: SQLite schema version 2 (and reading schema 1), lineage, read API, errors."""

from __future__ import annotations

import sqlite3
import time

import pytest

from hwnas.objectives import get_objectives
from hwnas.spaces import get_space
from hwnas.storage import Event, Lineage, StorageError, Trial, open_storage


def _trial(run_id, number, arch, status, values):
    return Trial(run_id, number, arch.id, arch.space, str(arch), status, values, created=time.time())


def test_sqlite_schema_v2_round_trip(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    storage = open_storage(url)
    objs = get_objectives(["accuracy", "latency_ms"])
    run = storage.create_run("r1", objs, {"recipe": {"seed": 1}},
                             {"latency_table": {"sha256": "ab" * 32, "device": {"name": "cpu"}}})
    space = get_space("mobile")
    a, b, c = (space.sample(i) for i in range(3))
    for n, (arch, acc, lat) in enumerate([(a, 0.9, 2.0), (b, 0.8, 1.0), (c, 0.7, 3.0)]):
        t = _trial(run.id, n, arch, "PENDING", {})
        storage.record_ask(run.id, Event(2 * n, "ask", arch.id, str(arch)), t)
        storage.record_update(_trial(run.id, n, arch, "COMPLETE", {"accuracy": acc, "latency_ms": lat}),
                              Event(2 * n + 1, "tell", arch.id, str(arch), (-acc, lat)))
    again = open_storage(url).get_run("r1")
    assert again.table_sha256 == "ab" * 32 and again.device == {"name": "cpu"}
    assert again.config == {"recipe": {"seed": 1}}
    assert [t.arch_id for t in again.trials()] == [a.id, b.id, c.id]
    assert [t.arch_id for t in again.pareto_front()] == [a.id, b.id]  # c is dominated by b
    assert again.knee().arch_id in {a.id, b.id}
    assert again.trials()[0].arch == a
    assert [e.kind for e in again.events()] == ["ask", "tell"] * 3
    assert again.events()[1].values == (-0.9, 2.0)
    assert open_storage(url).get_run(run.id[:6]).id == run.id
    assert open_storage(url).get_run("latest").id == run.id
    d = again.to_dict()
    assert set(d) >= {"id", "name", "objectives", "pareto_front", "trials", "knee", "table_sha256", "counts"}
    with sqlite3.connect(tmp_path / "run.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_lineage_and_budget_survive_a_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    storage = open_storage(url)
    run = storage.create_run("r", get_objectives(["params"]), {}, {})
    space = get_space("mobile")
    parent, child = space.sample(0), space.sample(1)
    storage.record_ask(run.id, Event(0, "ask", parent.id, str(parent)), _trial(run.id, 0, parent, "PENDING", {}))
    t = Trial(run.id, 1, child.id, child.space, str(child), "PENDING", lineage=Lineage(parent.id, ("expand@l2",), True),
              budget={"epochs": 1})
    storage.record_ask(run.id, Event(1, "ask", child.id, str(child), parent=parent.id), t)
    again = open_storage(url).get_run("r")
    got = again.trial(1)
    assert got.lineage == Lineage(parent.id, ("expand@l2",), True) and got.budget == {"epochs": 1}
    assert again.trial(0).lineage is None and again.trial(0).budget == {}
    assert [e.parent for e in again.events()] == [None, parent.id]
    assert got.to_dict()["parent"] == {"arch_id": parent.id, "operators": ["expand@l2"], "exact": True}


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, status TEXT NOT NULL, created REAL NOT NULL,
    objectives TEXT NOT NULL, config TEXT NOT NULL, info TEXT NOT NULL);
CREATE TABLE trials (run_id TEXT NOT NULL, number INTEGER NOT NULL, arch_id TEXT NOT NULL, space TEXT NOT NULL,
    arch TEXT NOT NULL, status TEXT NOT NULL, "values" TEXT NOT NULL, extras TEXT NOT NULL, error TEXT,
    weights_path TEXT, attempts INTEGER NOT NULL, created REAL NOT NULL, finished REAL,
    PRIMARY KEY (run_id, number), UNIQUE (run_id, arch_id));
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, arch_id TEXT NOT NULL,
    arch TEXT NOT NULL, "values" TEXT, PRIMARY KEY (run_id, seq));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_schema_1_journal_is_read_and_upgraded(tmp_path):
    path = tmp_path / "v1.db"
    arch = get_space("mobile").sample(3)
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_1)
        db.execute("INSERT INTO runs VALUES ('abc', 'old', 'FINISHED', 1.0, ?, '{}', '{}')",
                   ('[{"name": "params", "direction": "min", "kind": "cheap", "unit": "count"}]',))
        db.execute("INSERT INTO trials VALUES ('abc', 0, ?, ?, ?, 'COMPLETE', '{\"params\": 5.0}', '{}', NULL, NULL, 1, 1.0, 2.0)",
                   (arch.id, arch.space, str(arch)))
        db.execute("INSERT INTO events VALUES ('abc', 0, 'ask', ?, ?, NULL)", (arch.id, str(arch)))
    run = open_storage(f"sqlite:///{path}").get_run("old")
    (t,) = run.trials()
    assert t.arch == arch and t.values == {"params": 5.0} and t.lineage is None
    assert run.events()[0].parent is None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"


def test_wrong_schema_and_unknown_run_are_clear_errors(tmp_path):
    path = tmp_path / "old.db"
    open_storage(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StorageError, match="schema 99"):
        open_storage(f"sqlite:///{path}")
    storage = open_storage(f"sqlite:///{tmp_path / 'new.db'}")
    with pytest.raises(StorageError, match="holds no runs"):
        storage.get_run("x")
    storage.create_run("a", get_objectives(["params"]), {}, {})
    with pytest.raises(StorageError, match="not found"):
        storage.get_run("nope")
    with pytest.raises(StorageError, match="already exists"):
        storage.create_run("a", get_objectives(["params"]), {}, {})
    with pytest.raises(StorageError, match="unsupported storage URL"):
        open_storage("postgres://x")
