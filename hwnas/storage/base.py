"""Run journal types: `Trial`, `Run` (read API) and the `Storage` interface both backends implement."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hwnas.errors import HwnasError
from hwnas.objectives import Objective, minimized

TrialStatus = Literal["PENDING", "RUNNING", "COMPLETE", "FAILED", "INFEASIBLE"]
STATUSES: tuple[str, ...] = ("PENDING", "RUNNING", "COMPLETE", "FAILED", "INFEASIBLE")
# A trial in one of these states used up budget (an evaluation was attempted to the end).
EVALUATED: tuple[str, ...] = ("COMPLETE", "FAILED")


class StorageError(HwnasError):
    """A storage URL, run name or journal is invalid."""


@dataclass(frozen=True)
class Lineage:
    """Where a child trial came from: its parent trial's arch id, the morphism operators applied
    to the parent (in order) and whether all of them preserve the parent's function (`exact`)."""

    parent: str
    operators: tuple[str, ...] = ()
    exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"arch_id": self.parent, "operators": list(self.operators), "exact": self.exact}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Lineage | None:
        if not data:
            return None
        return cls(str(data["arch_id"]), tuple(data.get("operators") or ()), bool(data.get("exact", True)))


@dataclass(frozen=True)
class Trial:
    """One unique arch of a run.

    `values` holds every objective computed so far in natural units (e.g. accuracy 0.97,
    latency_ms 3.1): cheap ones for INFEASIBLE trials, all of them for COMPLETE ones. `extras` holds
    reporting-only numbers (test_accuracy, train_wall_s, ...). `weights_path` is absolute or None.
    `lineage` is set for a child made from a parent trial; `budget` holds this trial's training
    overrides (e.g. `{"epochs": 1}`), empty when the recipe's training settings apply.
    """

    run_id: str
    number: int
    arch_id: str
    space: str
    arch_str: str
    status: str
    values: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    weights_path: str | None = None
    attempts: int = 0
    created: float = 0.0
    finished: float | None = None
    lineage: Lineage | None = None
    budget: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self):  # -> hwnas.spaces.Arch
        """The parsed Arch of this trial."""
        from hwnas.spaces import get_space

        return get_space(self.space).parse(self.arch_str)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "arch_id": self.arch_id, "space": self.space, "arch": self.arch_str,
            "status": self.status, "values": self.values, "extras": self.extras, "error": self.error,
            "weights_path": self.weights_path, "attempts": self.attempts,
            "created": self.created, "finished": self.finished,
            "parent": self.lineage.to_dict() if self.lineage else None, "budget": self.budget,
        }


@dataclass(frozen=True)
class Event:
    """One strategy interaction, kept as the run's history: `ask` (arch proposed) or `tell` (result given).
    Resume does not replay them: it tells a fresh strategy the finished trials."""

    seq: int
    kind: Literal["ask", "tell"]
    arch_id: str
    arch_str: str
    values: tuple[float, ...] | None = None  # minimized; None = failed or infeasible
    parent: str | None = None  # ask of a child: the parent's arch id


@dataclass(frozen=True)
class RunInfo:
    """Header of one run."""

    id: str
    name: str
    status: str  # RUNNING, FINISHED
    created: float
    objectives: tuple[Objective, ...]
    config: dict[str, Any]
    info: dict[str, Any]

    @property
    def table_sha256(self) -> str | None:
        """SHA-256 of the latency table the run's `latency_ms` objective used (None without one)."""
        return (self.info.get("latency_table") or {}).get("sha256")

    @property
    def device(self) -> dict[str, Any] | None:
        """Device fingerprint recorded from the latency table (None without one)."""
        return (self.info.get("latency_table") or {}).get("device")


class Run:
    """Read (and, for the runner, write) access to one run of a storage."""

    def __init__(self, storage: Storage, header: RunInfo) -> None:
        self.storage = storage
        self._header = header

    # -- header ------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._header.id

    @property
    def name(self) -> str:
        return self._header.name

    @property
    def header(self) -> RunInfo:
        return self.storage.run_info(self.id)

    @property
    def status(self) -> str:
        return self.header.status

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self._header.objectives

    @property
    def config(self) -> dict[str, Any]:
        """The recipe the run was started with, as a plain dict."""
        return self._header.config

    @property
    def info(self) -> dict[str, Any]:
        """Provenance: latency table (path, sha256, device), library versions, host, wall times."""
        return self.header.info

    @property
    def table_sha256(self) -> str | None:
        return self.header.table_sha256

    @property
    def device(self) -> dict[str, Any] | None:
        return self.header.device

    @property
    def artifact_dir(self) -> Path | None:
        """Folder for this run's files (weights/, plots); None for in-memory storage."""
        return self.storage.artifact_dir(self.id)

    # -- trials ------------------------------------------------------------------------------
    def trials(self, status: str | Iterable[str] | None = None) -> list[Trial]:
        """Trials in creation order, optionally only those with the given status(es)."""
        wanted = None if status is None else ({status} if isinstance(status, str) else set(status))
        return [t for t in self.storage.trials(self.id) if wanted is None or t.status in wanted]

    def trial(self, number_or_arch_id: int | str) -> Trial:
        for t in self.storage.trials(self.id):
            if t.number == number_or_arch_id or t.arch_id == number_or_arch_id:
                return t
        raise StorageError(f"run {self.name} has no trial {number_or_arch_id!r}; see `hwnas show {self.name}`")

    def minimized(self, trial: Trial) -> tuple[float, ...]:
        """The minimized objective vector of a COMPLETE trial."""
        return minimized(self.objectives, trial.values)

    def pareto_front(self) -> list[Trial]:
        """Non-dominated COMPLETE trials, sorted by the first objective (best first)."""
        from hwnas.pareto import non_dominated

        done = self.trials("COMPLETE")
        if not done:
            return []
        F = [self.minimized(t) for t in done]
        front = [done[i] for i in non_dominated(F)]
        return sorted(front, key=lambda t: self.minimized(t))

    def knee(self) -> Trial | None:
        """The knee trial of the Pareto front (see `hwnas.pareto.knee_point`)."""
        from hwnas.pareto import knee_point

        front = self.pareto_front()
        if not front:
            return None
        return front[knee_point([self.minimized(t) for t in front])]

    def events(self) -> list[Event]:
        return self.storage.events(self.id)

    def to_dict(self, with_trials: bool = True) -> dict[str, Any]:
        """JSON-ready description: header, Pareto front, and (optionally) all trials."""
        h = self.header
        counts: dict[str, int] = {}
        trials = self.trials()
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        knee = self.knee()
        out: dict[str, Any] = {
            "id": h.id, "name": h.name, "status": h.status, "created": h.created,
            "objectives": [o.to_dict() for o in h.objectives],
            "config": h.config, "info": h.info, "table_sha256": h.table_sha256,
            "counts": counts,
            "pareto_front": [t.to_dict() for t in self.pareto_front()],
            "knee": knee.to_dict() if knee else None,
        }
        if with_trials:
            out["trials"] = [t.to_dict() for t in trials]
        return out


class Storage(ABC):
    """A run journal; SQLite (`sqlite:///path.db`) or in-memory (`memory://`)."""

    url: str = ""

    # -- runs --------------------------------------------------------------------------------
    @abstractmethod
    def create_run(
        self, name: str, objectives: Sequence[Objective], config: dict[str, Any], info: dict[str, Any]
    ) -> Run: ...

    @abstractmethod
    def run_info(self, run_id: str) -> RunInfo: ...

    @abstractmethod
    def list_runs(self) -> list[RunInfo]: ...

    @abstractmethod
    def update_run(self, run_id: str, status: str | None = None, info: dict[str, Any] | None = None) -> None:
        """Set the status and/or merge keys into the run's info."""

    def get_run(self, run_id_or_name: str) -> Run:
        """A run by id or name (a unique id prefix works too); `latest` is the newest run."""
        runs = self.list_runs()
        if not runs:
            raise StorageError(f"{self.url} holds no runs; start one with `hwnas search RECIPE`")
        if run_id_or_name == "latest":
            return Run(self, max(runs, key=lambda r: r.created))
        exact = [r for r in runs if run_id_or_name in (r.id, r.name)]
        if not exact:
            exact = [r for r in runs if r.id.startswith(run_id_or_name)]
        if len(exact) != 1:
            names = ", ".join(f"{r.name} ({r.id})" for r in runs[-10:])
            what = "is ambiguous" if exact else "not found"
            raise StorageError(f"run {run_id_or_name!r} {what} in {self.url}; runs: {names}")
        return Run(self, exact[0])

    def artifact_dir(self, run_id: str) -> Path | None:
        return None

    # -- trials and events -------------------------------------------------------------------
    @abstractmethod
    def trials(self, run_id: str) -> list[Trial]: ...

    @abstractmethod
    def events(self, run_id: str) -> list[Event]: ...

    @abstractmethod
    def record_ask(self, run_id: str, event: Event, new_trial: Trial | None) -> None:
        """Atomically append an ask event and, for a new arch, its PENDING trial."""

    @abstractmethod
    def record_update(self, trial: Trial, tell: Event | None = None) -> None:
        """Atomically replace a trial's row (by run and number) and append an optional tell event."""

    def close(self) -> None:
        return None


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)
