"""In-memory run journal (`memory://`): same interface as SQLite, nothing persisted; used by the bench."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from hwnas.objectives import Objective
from hwnas.storage.base import Event, Run, RunInfo, Storage, StorageError, Trial


class MemoryStorage(Storage):
    """Keeps runs, trials and events in dicts and lists."""

    url = "memory://"

    def __init__(self) -> None:
        self._runs: dict[str, RunInfo] = {}
        self._trials: dict[str, dict[int, Trial]] = {}
        self._events: dict[str, list[Event]] = {}

    def create_run(
        self, name: str, objectives: Sequence[Objective], config: dict[str, Any], info: dict[str, Any]
    ) -> Run:
        if any(r.name == name for r in self._runs.values()):
            raise StorageError(f"a run named {name!r} already exists in memory storage")
        rid = uuid.uuid4().hex[:12]
        self._runs[rid] = RunInfo(rid, name, "RUNNING", time.time(), tuple(objectives), dict(config), dict(info))
        self._trials[rid] = {}
        self._events[rid] = []
        return Run(self, self._runs[rid])

    def run_info(self, run_id: str) -> RunInfo:
        try:
            return self._runs[run_id]
        except KeyError:
            raise StorageError(f"no run with id {run_id!r} in memory storage") from None

    def list_runs(self) -> list[RunInfo]:
        return sorted(self._runs.values(), key=lambda r: r.created)

    def update_run(self, run_id: str, status: str | None = None, info: dict[str, Any] | None = None) -> None:
        r = self.run_info(run_id)
        self._runs[run_id] = RunInfo(
            r.id, r.name, status or r.status, r.created, r.objectives, r.config, {**r.info, **(info or {})}
        )

    def trials(self, run_id: str) -> list[Trial]:
        return [self._trials[run_id][k] for k in sorted(self._trials[run_id])]

    def events(self, run_id: str) -> list[Event]:
        return list(self._events[run_id])

    def record_ask(self, run_id: str, event: Event, new_trial: Trial | None) -> None:
        self._events[run_id].append(event)
        if new_trial is not None:
            self._trials[run_id][new_trial.number] = new_trial

    def record_update(self, trial: Trial, tell: Event | None = None) -> None:
        self._trials[trial.run_id][trial.number] = trial
        if tell is not None:
            self._events[trial.run_id].append(tell)
