"""Problems: what `run_search` evaluates: cheap objective values in the driver, expensive jobs in workers."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.objectives import OBJECTIVES, Candidate, Objective, get_objectives
from hwnas.search.constraints import Constraint
from hwnas.spaces import Arch, SearchSpace, get_space


@dataclass(frozen=True)
class Parent:
    """A trained parent handed to a child's job: its checkpoint bytes, the morphism operators that
    turn it into the child, and whether they are exact (function-preserving)."""

    checkpoint: bytes
    operators: tuple[str, ...]
    exact: bool


class Problem(ABC):
    """Objectives + constraints over a space. `cheap(arch)` returns natural values of every cheap
    objective (and every constrained metric); `expensive_job(arch, parent, budget)` returns a picklable
    job (`job()` -> {"values": {...}, "extras": {...}, "weights": safetensors bytes | None}) or None.
    `preview(arch)` is what strategies may see before proposing: exact values computed without
    training (never predictions, never measurements)."""

    space: SearchSpace
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()

    @property
    def has_expensive(self) -> bool:
        return any(o.kind == "expensive" for o in self.objectives)

    @abstractmethod
    def cheap(self, arch: Arch) -> dict[str, float]: ...

    def expensive_job(
        self, arch: Arch, parent: Parent | None = None, budget: Mapping[str, Any] | None = None
    ) -> Any | None:
        return None

    def preview(self, arch: Arch) -> dict[str, float]:
        return {}

    def info(self) -> dict[str, Any]:
        """Provenance recorded with the run (latency table hash and device, ...)."""
        return {}


@dataclass(frozen=True)
class TrainJob:
    """Evaluate one arch's expensive objectives `want` (registered names) in a worker: train it first
    when one of them needs training (its checkpoint comes back as bytes when `keep_weights`), then
    compute each (e.g. measure it on `device`: a loaded `DeviceSpec`, so that a worker never reads the
    spec's file; a spec name or path works too).

    With a `parent`, the network starts from the parent's weights morphed by its operators
    (`SearchSpace.morphisms()`); approximate children learn from the parent's outputs too
    (knowledge distillation, `distill` = {"weight": w, "temperature": T}, w = 0 turns it off).
    """

    space: str
    arch: str
    dataset: Any  # a registered dataset name, or loaded `Splits`
    train: Mapping[str, Any]
    keep_weights: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)
    want: tuple[str, ...] = ("accuracy",)
    device: Any = None
    parent: Parent | None = None
    distill: Mapping[str, float] = field(default_factory=dict)

    def payloads(self) -> dict[str, Any]:
        """The large inputs a distributed executor ships by reference: loaded data, parent weights."""
        out: dict[str, Any] = {}
        if not isinstance(self.dataset, str):
            out["dataset"] = self.dataset
        if self.parent is not None:
            out["parent"] = self.parent.checkpoint
        return out

    def with_payloads(self, values: Mapping[str, Any]) -> TrainJob:
        """This job with `payloads()` values replaced (None while they travel separately)."""
        job = self
        if "dataset" in values:
            job = replace(job, dataset=values["dataset"])
        if "parent" in values and job.parent is not None:
            job = replace(job, parent=replace(job.parent, checkpoint=values["parent"]))
        return job

    def _start_model(self, arch: Arch):
        """(model to train, teacher or None): the parent's morphed weights, or None for a fresh net."""
        if self.parent is None:
            return None, None
        from hwnas.errors import ArchError
        from hwnas.train.checkpoint import load_checkpoint_bytes

        space = get_space(self.space)
        morphisms = space.morphisms()
        if morphisms is None:
            raise ArchError(f"space {space.spec} has no network morphisms; a child cannot inherit weights")
        parent_arch, parent_model, _ = load_checkpoint_bytes(self.parent.checkpoint, "parent checkpoint")
        child_arch, state = morphisms.apply(parent_arch, parent_model.state_dict(), self.parent.operators)
        if child_arch.id != arch.id:
            raise ArchError(
                f"operators {list(self.parent.operators)} turn {parent_arch} into {child_arch}, not {arch}"
            )
        model = space.build(arch)
        model.load_state_dict(state, strict=True)
        teacher = None
        if not self.parent.exact and float(self.distill.get("weight", 0.0)) > 0:
            teacher = parent_model.eval()
        return model, teacher

    def __call__(self) -> dict[str, Any]:
        space = get_space(self.space)
        arch = space.parse(self.arch)
        start = time.perf_counter()
        objectives = get_objectives(self.want)
        model = training = weights = None
        extras: dict[str, Any] = {}
        if any("training" in o.needs for o in objectives):
            model, training, extras, weights = self._train(arch)
        candidate = Candidate(space, arch, device=self.device, model=model, training=training)
        values = {o.name: float(o.compute(candidate)) for o in objectives}  # type: ignore[misc]
        extras.update(candidate.extras)
        extras["eval_wall_s"] = round(time.perf_counter() - start, 3)
        return {"values": values, "extras": extras, "weights": weights}

    def _train(self, arch: Arch) -> tuple[Any, Any, dict[str, Any], bytes | None]:
        """(trained model, TrainResult, its extras, checkpoint bytes when `keep_weights`): fresh or from the
        parent's morphed weights, with distillation from an approximate parent."""
        from hwnas.train import TrainConfig, train_arch
        from hwnas.train.checkpoint import checkpoint_bytes

        model, teacher = self._start_model(arch)
        hooks = []
        if teacher is not None:
            from hwnas.train.distill import DistillHook

            hooks.append(DistillHook(teacher, **{k: float(v) for k, v in self.distill.items()}))
        train = dict(self.train)
        front, own = train.pop("halving_front", ()), train.pop("halving_own", ())  # from the runner
        config = TrainConfig(**train)
        halving = None
        if 0 < config.halving_rung < config.epochs:
            from hwnas.train.halving import HalvingHook
            from hwnas.train.trainer import splits_for

            halving = HalvingHook(splits_for(arch, self.dataset), config.halving_rung, config.halving_margin, front, own)
            hooks.append(halving)
        model, result = train_arch(arch, self.dataset, config, model=model, hooks=hooks)
        extras = {
            "test_accuracy": result.test_accuracy, "train_loss": result.train_loss,
            "train_wall_s": round(result.wall_s, 3), "epochs": result.epochs,
        }
        if halving is not None:
            extras.update(rung_accuracy=halving.rung_accuracy, halved=halving.stop)
        weights = None
        if self.keep_weights:
            name = self.dataset if isinstance(self.dataset, str) else getattr(self.dataset, "name", "custom")
            meta = {**self.meta, "val_accuracy": result.val_accuracy, **extras, "dataset": name}
            model.cpu()
            weights = checkpoint_bytes(arch, model, meta)
        return model, result, extras, weights


@dataclass(frozen=True)
class EvaluateJob(TrainJob):
    """Score one arch with the user's `evaluate(model) -> {metric: value}` in a worker. The network starts
    fresh (seeded by train.seed) or from its parent's morphed weights; `evaluate` may train it, and the
    weights it leaves come back as the trial's checkpoint."""

    evaluate: Callable[[Any], Mapping[str, float]] | None = None

    def __call__(self) -> dict[str, Any]:
        import math

        import torch

        from hwnas.errors import HwnasError
        from hwnas.train.checkpoint import checkpoint_bytes

        space = get_space(self.space)
        arch = space.parse(self.arch)
        start = time.perf_counter()
        model, _ = self._start_model(arch)
        if model is None:
            torch.manual_seed(int(self.train.get("seed", 0)))
            model = space.build(arch)
        scores = self.evaluate(model)  # type: ignore[misc]
        if not isinstance(scores, Mapping):
            raise HwnasError(f"evaluate(model) must return a dict {{metric: value}}, got {type(scores).__name__}")
        missing = [n for n in self.want if n not in scores]
        if missing:
            raise HwnasError(f"evaluate(model) returned {sorted(scores)} but no {missing[0]!r}; return a value "
                             f"for every expensive objective: {', '.join(self.want)}")
        values = {n: float(scores[n]) for n in self.want}
        bad = [n for n, v in values.items() if not math.isfinite(v)]
        if bad:
            raise HwnasError(f"evaluate(model) returned {bad[0]}={values[bad[0]]}; values must be finite")
        extras = {k: v for k, v in scores.items() if k not in values and isinstance(v, (int, float, str))}
        extras["eval_wall_s"] = round(time.perf_counter() - start, 3)
        model.cpu()
        weights = checkpoint_bytes(arch, model, {**self.meta, **values, **extras}) if self.keep_weights else None
        return {"values": values, "extras": extras, "weights": weights}


class ArchProblem(Problem):
    """The real search problem: each objective computes itself (hwnas.objectives): cheap ones in the
    driver from the arch and the latency table, expensive ones in a worker (training, measurement)."""

    evaluates_expensive = False  # True: the user's evaluate(model) gives every expensive value

    def __init__(
        self, space: str | SearchSpace, objectives: Sequence[str | Objective],
        constraints: tuple[Constraint, ...] = (), latency_table: str | Path | None = None,
        dataset: Any = "mnist5k", train: Mapping[str, Any] | None = None, device: str | None = None,
        distill: Mapping[str, float] | None = None, strict_drift: bool = False,
    ) -> None:
        self.space = get_space(space) if isinstance(space, str) else space
        self.objectives = get_objectives(objectives)
        self.constraints = tuple(constraints)
        self.dataset = dataset
        self.train = dict(train or {})
        self.distill = dict(distill or {})
        self.table = None
        self.table_path = None
        self.device = device
        self._device_spec = None
        self.expensive = tuple(o.name for o in self.objectives if o.kind == "expensive")
        self._cheap = self._cheap_objectives()
        needs: dict[str, str] = {}  # need -> the first objective or constrained metric that has it
        for o in (*self.objectives, *self._cheap):
            for need in o.needs:
                needs.setdefault(need, o.name)
        self._trains = any("training" in o.needs for o in self.objectives if o.kind == "expensive")
        self._load_needs(needs, latency_table)
        self.drift = None
        if self.table is not None and self._device_spec is not None:
            self._check_drift(strict_drift)

    def _cheap_objectives(self) -> tuple[Objective, ...]:
        """The cheap objectives and every constrained metric (cheap objectives with a computation)."""
        computable = {n: o for n in OBJECTIVES if (o := OBJECTIVES.get(n)).kind == "cheap" and o.compute}
        for c in self.constraints:
            if c.name not in computable:
                raise ConfigError(
                    f"constraint {c} is on {c.name!r}; constraints apply to cheap metrics only: "
                    f"{', '.join(sorted(computable))}"
                )
        out = {o.name: o for o in self.objectives if o.kind == "cheap"}
        out.update({c.name: computable[c.name] for c in self.constraints if c.name not in out})
        given = [o for o in self.objectives if o.kind == "expensive" and self.evaluates_expensive]
        missing = [o.name for o in (*out.values(), *self.objectives) if o.compute is None and o not in given]
        if missing:
            raise ConfigError(f"objective {missing[0]!r} has no computation; define it with one "
                              "(Objective(..., compute=fn)) or return it from your evaluate(model)")
        return tuple(out.values())

    def _load_needs(self, needs: dict[str, str], latency_table: str | Path | None) -> None:
        """Load what the objectives need (`needs`: need -> an objective needing it): the device spec to
        measure on, the latency table (a measured or a fitted one, for this space)."""
        if "device" in needs:
            if not self.device:
                raise ConfigError(f"objective {needs['device']} needs `device: SPEC` (e.g. ort-cpu-1t) in the recipe")
            from hwnas.devices import load_device

            self._device_spec = load_device(self.device)  # fails fast on an unknown device; jobs carry it
        if "latency_table" in needs:
            if latency_table is None:
                raise ConfigError(f"objective or constraint {needs['latency_table']} needs `latency_table: PATH` "
                                  "in the recipe")
            from hwnas.latency import load_predictor

            self.table_path = str(latency_table)
            self.table = load_predictor(latency_table)
            if self.table.space != self.space.spec:
                raise ConfigError(
                    f"latency table {latency_table} is for space {self.table.space}, the recipe searches "
                    f"{self.space.spec}; use a table built for {self.space.spec}"
                )

    def _check_drift(self, strict: bool = False) -> None:
        """With a table and a measured objective on the table's device: the drift reference decides whether
        table and measurements still agree; beyond 5% the table's predictions are rescaled (recorded in info),
        or with `strict` the search is refused (LatencyDriftError)."""
        from hwnas.devices import get_profiler, load_device
        from hwnas.latency.drift import check_drift

        spec = load_device(self.device)
        if all(self.table.device.get(k) == v for k, v in spec.identity().items()):
            self.drift = check_drift(self.table, get_profiler(spec), strict=strict).to_dict()

    def cheap(self, arch: Arch) -> dict[str, float]:
        candidate = Candidate(self.space, arch, latency=self.table)
        return {o.name: float(o.compute(candidate)) for o in self._cheap}  # type: ignore[misc]

    def preview(self, arch: Arch) -> dict[str, float]:
        return self.cheap(arch)

    def expensive_job(
        self, arch: Arch, parent: Parent | None = None, budget: Mapping[str, Any] | None = None
    ) -> TrainJob | None:
        if not self.has_expensive:
            return None
        return TrainJob(
            space=arch.space, arch=str(arch), dataset=self.dataset, train={**self.train, **dict(budget or {})},
            keep_weights=self._trains, meta={"arch_id": arch.id}, want=self.expensive,
            device=self._device_spec, parent=parent, distill=self.distill,
        )

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        describe = getattr(self.dataset, "describe", None)  # the user's own data: its fingerprint
        if describe is not None and self._trains:
            out["dataset"] = describe()
        if self.device:
            from hwnas.devices import load_device

            spec = load_device(self.device)
            out["measure_device"] = {"spec": self.device, "name": getattr(spec, "name", str(self.device))}
        if self.table is not None:
            out["latency_table"] = {"path": self.table_path, **self.table.fingerprint()}
            if self.drift is not None:
                out["latency_table"]["drift"] = self.drift
        return out


class EvaluateProblem(ArchProblem):
    """An `ArchProblem` whose expensive objectives come from the user's `evaluate(model) -> {metric: value}`
    (picklable for process workers); cheap objectives, constraints and the latency table work as usual."""

    evaluates_expensive = True

    def __init__(
        self, space: str | SearchSpace, objectives: Sequence[str | Objective],
        constraints: tuple[Constraint, ...] = (), latency_table: str | Path | None = None, *,
        evaluate: Callable[[Any], Mapping[str, float]], train: Mapping[str, Any] | None = None,
        device: str | None = None, strict_drift: bool = False,
    ) -> None:
        if not callable(evaluate):
            raise ConfigError(f"evaluate must be a callable evaluate(model) -> {{metric: value}}, got {evaluate!r}")
        super().__init__(space, objectives, constraints, latency_table, None, train, device, strict_drift=strict_drift)
        self.evaluate = evaluate

    def expensive_job(
        self, arch: Arch, parent: Parent | None = None, budget: Mapping[str, Any] | None = None
    ) -> EvaluateJob | None:
        if not self.has_expensive:
            return None
        return EvaluateJob(
            space=arch.space, arch=str(arch), dataset=None, train={**self.train, **dict(budget or {})},
            keep_weights=True, meta={"arch_id": arch.id}, want=self.expensive, parent=parent,
            evaluate=self.evaluate,
        )

    def info(self) -> dict[str, Any]:
        fn = self.evaluate
        name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
        return {**super().info(), "evaluate": name}
