"""`run_search`: ask -> dedupe -> cheap objectives -> constraints -> expensive (executor) -> record -> tell.

A strategy may propose a child of an earlier trial (`Proposal` with a parent and morphism operators):
its job gets the parent's checkpoint bytes, read here in the driver; a parent without weights makes
the child FAILED and the run goes on. Jobs return checkpoint bytes, which the driver writes under
the run's folder, so workers never need the driver's disk.
Every strategy call is journaled as an event (ask / tell, with the told values) in the same
transaction as the trial change it belongs to. `resume=True` builds a fresh strategy's state from the
journal's finished trials, told in trial order with no asks (as Optuna's samplers rebuild from a
study), so a run resumes even where today's strategy would propose other archs (another hwnas
version): no finished trial is evaluated again; a trial that was PENDING or RUNNING at a crash is.
The budget counts evaluated unique archs (COMPLETE + FAILED); duplicates and INFEASIBLE ones don't.
A search fails loudly (SearchFailedError, run status FAILED) when its first few evaluations all fail
with the same error, or when it ends with every evaluation failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from hwnas.errors import HwnasError
from hwnas.execution import Executor, InlineExecutor, Outcome
from hwnas.objectives import minimized
from hwnas.search.constraints import violations
from hwnas.search.problem import Parent, Problem
from hwnas.search.strategies.base import Proposal, Strategy, as_proposal
from hwnas.spaces import Arch
from hwnas.storage import EVALUATED, Event, Lineage, Run, StorageError, Trial

FINISHED = ("COMPLETE", "FAILED", "INFEASIBLE")  # final states: told to the strategy, never evaluated again


class SearchFailedError(HwnasError):
    """Every evaluation of a search failed (or its first few all failed alike): the setup is broken."""


EARLY_FAILURES = 3  # stop when the first this many evaluations all fail with the same error message

@dataclass(frozen=True)
class SearchResult:
    """How a search ended."""

    run: Run
    evaluated: int
    stop_reason: str
    wall_s: float


class _Loop:
    def __init__(
        self, problem: Problem, strategy: Strategy, run: Run, executor: Executor, budget: int,
        max_duplicates: int, max_infeasible: int, on_trial: Callable[[Trial], None] | None,
    ) -> None:
        self.problem, self.strategy, self.run, self.executor = problem, strategy, run, executor
        self.storage = run.storage
        self.budget = budget
        self.max_duplicates, self.max_infeasible = max_duplicates, max_infeasible
        self.on_trial = on_trial
        self.trials: dict[str, Trial] = {}
        self.archs: dict[str, Arch] = {}
        self.inflight: dict[str, Trial] = {}
        self.seq = 0
        self.evaluated = 0
        self.infeasible = 0
        self.dup_streak = 0
        self.artifacts = run.artifact_dir
        self.memory_weights: dict[str, bytes] = {}  # checkpoints of runs without an artifact folder
        self.outcomes: list[Trial] = []  # evaluated trials (COMPLETE/FAILED) in finishing order

    # -- journal -----------------------------------------------------------------------------
    def _event(
        self, kind: str, arch: Arch, values: tuple[float, ...] | None = None, parent: str | None = None
    ) -> Event:
        ev = Event(self.seq, kind, arch.id, str(arch), values, parent)  # type: ignore[arg-type]
        self.seq += 1
        return ev

    def _values_for(self, trial: Trial) -> tuple[float, ...] | None:
        if trial.status != "COMPLETE":
            return None
        return minimized(self.problem.objectives, trial.values)

    def _finish(self, trial: Trial, arch: Arch) -> None:
        """Record a final state and tell the strategy, atomically journaled."""
        trial = replace(trial, finished=time.time())
        values = self._values_for(trial)
        self.storage.record_update(trial, self._event("tell", arch, values))
        self.strategy.tell(arch, values)
        self.trials[arch.id] = trial
        if trial.status in EVALUATED:
            self.evaluated += 1
            self.outcomes.append(trial)
        elif trial.status == "INFEASIBLE":
            self.infeasible += 1
        if self.on_trial:
            self.on_trial(trial)

    def failure(self, finished: bool = False) -> str | None:
        """Why the search must stop as failed: the first EARLY_FAILURES evaluations failed with one error, or (once
        `finished`) every evaluation failed; None while it may go on."""
        first = self.outcomes[:EARLY_FAILURES]
        if (len(first) == EARLY_FAILURES and all(t.status == "FAILED" for t in first)
                and len({t.error for t in first}) == 1):
            return f"its first {EARLY_FAILURES} evaluations all failed, e.g. trial {first[0].number}: {first[0].error}"
        if finished and self.outcomes and all(t.status == "FAILED" for t in self.outcomes):
            t = self.outcomes[0]
            return f"all {len(self.outcomes)} evaluations failed, e.g. trial {t.number}: {t.error}"
        return None

    # -- resume ------------------------------------------------------------------------------
    def rebuild(self) -> list[Trial]:
        """Tell the fresh strategy every finished trial of the journal, in trial order (no asks: it derives
        its state from them); returns the trials that were PENDING or RUNNING at a crash, to evaluate again."""
        redo = []
        for t in self.run.trials():
            self.trials[t.arch_id] = t
            self.archs.setdefault(t.arch_id, t.arch)
            if t.status in FINISHED:
                self.strategy.tell(self.archs[t.arch_id], self._values_for(t))
                self.evaluated += t.status in EVALUATED
                self.infeasible += t.status == "INFEASIBLE"
            else:
                redo.append(t)
        events = self.run.events()
        self.seq = events[-1].seq + 1 if events else 0
        return redo

    # -- evaluation ----------------------------------------------------------------------------
    def _parent(self, trial: Trial) -> Parent | None:
        """The trained parent of a child trial (raises when its checkpoint is not there)."""
        if trial.lineage is None:
            return None
        parent = self.trials.get(trial.lineage.parent)
        data = self.memory_weights.get(trial.lineage.parent)
        if data is None and parent is not None and parent.weights_path:
            from pathlib import Path

            path = Path(parent.weights_path)
            data = path.read_bytes() if path.is_file() else None
        if data is None:
            what = f"trial {parent.number}" if parent is not None else f"arch {trial.lineage.parent}"
            raise StorageError(f"parent checkpoint missing: {what} has no saved weights to inherit")
        return Parent(data, trial.lineage.operators, trial.lineage.exact)

    def _budget(self, trial: Trial, cheap: dict[str, float]) -> dict:
        """The trial's budget; with successive halving (train.halving_rung) also the (rung accuracy, minimized
        cheap values) of the trials trained so far and this arch's own cheap values (hwnas.train.halving)."""
        if not getattr(self.problem, "train", {}).get("halving_rung"):
            return dict(trial.budget)
        objs = [o for o in self.problem.objectives if o.kind == "cheap"]
        front = [(t.extras["rung_accuracy"], minimized(objs, t.values)) for t in self.trials.values()
                 if t.status == "COMPLETE" and t.extras.get("rung_accuracy") is not None]
        return {**trial.budget, "halving_front": front, "halving_own": minimized(objs, cheap)}

    def _start(self, trial: Trial, arch: Arch) -> None:
        """Cheap objectives, constraints, then expensive submission (or completion)."""
        try:
            cheap = self.problem.cheap(arch)
            missing = [o.name for o in self.problem.objectives if o.kind == "cheap" and o.name not in cheap]
            if missing:
                raise StorageError(f"problem returned no value for cheap objective(s) {missing}")
        except Exception as exc:  # a failing candidate must not stop the search
            self._finish(replace(trial, status="FAILED", error=f"{type(exc).__name__}: {exc}"), arch)
            return
        bad = violations(self.problem.constraints, cheap)
        if bad:
            self._finish(
                replace(trial, status="INFEASIBLE", values=cheap, error="violates " + "; ".join(bad)), arch
            )
            return
        try:
            # only training inherits weights: a problem without expensive objectives never needs them
            parent = self._parent(trial) if self.problem.has_expensive else None
            job = self.problem.expensive_job(arch, parent, self._budget(trial, cheap))
        except Exception as exc:  # e.g. a missing parent checkpoint: this child fails, the run goes on
            self._finish(replace(trial, status="FAILED", values=cheap, error=f"{type(exc).__name__}: {exc}"), arch)
            return
        if job is None:
            self._finish(replace(trial, status="COMPLETE", values=cheap), arch)
            return
        trial = replace(trial, status="RUNNING", values=cheap, attempts=trial.attempts + 1)
        self.storage.record_update(trial)
        self.trials[arch.id] = trial
        self.inflight[arch.id] = trial
        self.executor.submit(arch.id, job)

    def _collect(self, outcome: Outcome) -> None:
        trial = self.inflight.pop(outcome.key)
        arch = self.archs[outcome.key]
        if outcome.error is not None:
            self._finish(replace(trial, status="FAILED", error=outcome.error), arch)
            return
        res = outcome.result or {}
        values = {**trial.values, **res.get("values", {})}
        missing = [o.name for o in self.problem.objectives if o.name not in values]
        if missing:
            self._finish(replace(trial, status="FAILED", error=f"evaluation returned no {missing}"), arch)
            return
        weights_path = None
        if res.get("weights") is not None:
            if self.artifacts is None:
                self.memory_weights[arch.id] = res["weights"]
            else:
                from hwnas.train.checkpoint import write_bytes_atomic

                path = self.artifacts / "weights" / f"{arch.id}.safetensors"
                weights_path = str(write_bytes_atomic(path, res["weights"]))
        self._finish(
            replace(trial, status="COMPLETE", values=values, extras={**trial.extras, **res.get("extras", {})},
                    weights_path=weights_path),
            arch,
        )

    def _ask_one(self) -> bool:
        """One ask; False when the strategy must wait."""
        asked = self.strategy.ask()
        if asked is None:
            return False
        prop: Proposal = as_proposal(asked)
        arch = prop.arch
        self.archs.setdefault(arch.id, arch)
        known = self.trials.get(arch.id)
        if known is not None:
            self.storage.record_ask(self.run.id, self._event("ask", arch, parent=prop.parent), None)
            self.dup_streak += 1
            if known.status in FINISHED:
                values = self._values_for(known)
                self.storage.record_update(known, self._event("tell", arch, values))
                self.strategy.tell(arch, values)
            return True
        self.dup_streak = 0
        lineage = None
        if prop.parent is not None:
            exact = prop.exact
            if exact is None:
                morphisms = self.problem.space.morphisms()
                exact = bool(morphisms and morphisms.is_exact(prop.operators))
            lineage = Lineage(prop.parent, tuple(prop.operators), exact)
        trial = Trial(
            run_id=self.run.id, number=len(self.trials), arch_id=arch.id, space=arch.space,
            arch_str=str(arch), status="PENDING", created=time.time(), lineage=lineage, budget=dict(prop.budget),
        )
        self.storage.record_ask(self.run.id, self._event("ask", arch, parent=prop.parent), trial)
        self.trials[arch.id] = trial
        self._start(trial, arch)
        return True

    def loop(self, redo: list[Trial]) -> str:
        for t in redo:
            arch = self.archs[t.arch_id]
            if t.status == "RUNNING":  # killed mid-evaluation: re-run it, once
                self._start(replace(t, status="PENDING"), arch)
            else:
                self._start(t, arch)
        while True:
            reason = ""
            while self.executor.has_capacity():
                if self.failure():
                    break
                if self.evaluated + len(self.inflight) >= self.budget:
                    reason = "budget"
                    break
                if self.dup_streak >= self.max_duplicates:
                    reason = f"{self.max_duplicates} duplicate proposals in a row (space exhausted?)"
                    break
                if self.infeasible >= self.max_infeasible:
                    reason = f"{self.max_infeasible} infeasible candidates (constraints too tight?)"
                    break
                if not self._ask_one():
                    reason = "strategy waiting"
                    break
            if self.failure():
                return "failed"
            if not self.inflight:
                return "budget" if self.evaluated >= self.budget else (reason or "budget")
            for outcome in self.executor.wait():
                self._collect(outcome)


def run_search(
    problem: Problem,
    strategy: Strategy,
    run: Run,
    budget: int,
    executor: Executor | None = None,
    resume: bool = False,
    max_duplicates: int = 1000,
    max_infeasible: int | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Search until `budget` unique archs were evaluated (or the strategy/space is exhausted).

    `run` comes from `storage.create_run(...)` (or `storage.get_run(...)` with `resume=True`);
    `executor` defaults to inline. `on_trial` is called after each trial reaches a final state.
    """
    if budget < 1:
        raise StorageError("budget must be >= 1 evaluation")
    start = time.perf_counter()
    if run.events() and not resume:
        raise StorageError(f"run {run.name} already has trials; pass resume=True (`--resume`) to continue it")
    executor = executor or InlineExecutor()
    strategy.attach(problem.objectives, problem.preview)
    loop = _Loop(
        problem, strategy, run, executor, budget, max_duplicates,
        max_infeasible if max_infeasible is not None else max(1000, 50 * budget), on_trial,
    )
    redo = loop.rebuild() if resume else []
    reason = loop.loop(redo)
    wall = time.perf_counter() - start
    prev = run.info.get("search_wall_s", 0.0) if resume else 0.0
    failure = loop.failure(finished=True)
    if failure:
        run.storage.update_run(
            run.id, status="FAILED", info={"search_wall_s": round(prev + wall, 3), "stop_reason": failure}
        )
        raise SearchFailedError(f"search {run.name} stopped: {failure}; fix the recipe, table or data, then "
                                "start a new run")
    run.storage.update_run(
        run.id, status="FINISHED", info={"search_wall_s": round(prev + wall, 3), "stop_reason": reason}
    )
    return SearchResult(run, loop.evaluated, reason, wall)

