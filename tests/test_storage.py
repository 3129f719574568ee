"""Run journal: SQLite schema version 1, read API, errors."""

from __future__ import annotations

import sqlite3
import time

import pytest

from hwnas.search.objectives import get_objectives
from hwnas.spaces import get_space
from hwnas.storage import SCHEMA_VERSION, Event, StorageError, Trial, open_storage


def _trial(run_id, number, arch, status, values):
    return Trial(run_id, number, arch.id, arch.space, str(arch), status, values, created=time.time())


def test_sqlite_schema_v1_round_trip(tmp_path):
    assert SCHEMA_VERSION == 1
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
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
