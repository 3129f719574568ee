"""Search recipes: YAML -> frozen `SearchRecipe` (unknown keys rejected), and `execute_recipe` to run one."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.config import check, parse, parse_kwargs, setting, typed
from hwnas.errors import ConfigError, UnknownNameError
from hwnas.execution import EXECUTORS
from hwnas.fileio import data_dir, find_named_file, read_yaml
from hwnas.objectives import get_objectives
from hwnas.search.constraints import Constraint, parse_constraint
from hwnas.search.registry import DEFAULT_STRATEGY, STRATEGIES

# Keys that must match when resuming (budget and executor may change).
# What a resumed run must share with the run it continues. Not the strategy: resume rebuilds any strategy
# from the journal's finished trials, so a run resumes with another strategy, its parameters, or the
# `default` that recipes without `strategy:` now get (runs started before it recorded `local`).
_SEARCH_KEYS = (
    "space", "objectives", "constraints", "latency_table", "method", "seed", "dataset", "train", "distill", "device",
)


@dataclass(frozen=True)
class RecipeFile:
    """The keys of a recipe file and their types (checked by `hwnas.config`); `parse_recipe` turns it
    into a `SearchRecipe`. A new plain key is one line here and one in `SearchRecipe`."""

    space: str
    objectives: tuple[str, ...]
    name: str | None = None
    constraints: tuple[str, ...] | None = None
    latency_table: str | None = None
    strategy: str | Mapping[str, Any] | None = None  # a name or {name: ..., params: {...}}
    method: str | Mapping[str, Any] | None = None  # a name or {name: ..., params: {...}}
    seed: int = 0
    budget: int = 50
    dataset: Any = "mnist5k"
    train: Mapping[str, Any] | None = None
    distill: Mapping[str, Any] | None = None
    executor: str | Mapping[str, Any] | None = None
    description: str | None = None
    device: str | None = None
    strict_drift: bool = False


@dataclass(frozen=True)
class ExecutorSettings:
    """A recipe's `executor` mapping (see `hwnas.execution.make_executor`)."""

    name: str = setting("local", choices=EXECUTORS)
    workers: int | None = setting(None, ge=1)
    threads_per_worker: int | None = setting(None, ge=1)
    address: str | None = None
    cpus_per_task: float | None = setting(None, gt=0)
    num_cpus: int | None = setting(None, ge=1)


@dataclass(frozen=True)
class DistillSettings:
    """Knowledge distillation of approximate morphism children (`distill:` of a recipe)."""

    weight: float | None = setting(None, ge=0)
    temperature: float | None = setting(None, gt=0)


@dataclass(frozen=True)
class SearchRecipe:
    """Everything a search needs; `latency_table` is resolved relative to the recipe file's folder."""

    name: str
    space: str
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()
    latency_table: str | None = None
    strategy: str = "default"
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    method: str | None = None  # a non-ask/tell searcher (e.g. fbnet); then `strategy` is unused
    method_params: Mapping[str, Any] = field(default_factory=dict)
    distill: Mapping[str, float] = field(default_factory=dict)  # KD for approximate morphism children
    seed: int = setting(0, ge=0)
    budget: int = setting(50, ge=1)
    dataset: Any = "mnist5k"  # a name, {npz: path}, {image_folder: path}; Python API: `Splits`, or None with evaluate
    train: Mapping[str, Any] = field(default_factory=dict)
    executor: Mapping[str, Any] = field(default_factory=lambda: {"name": "local", "workers": 1})
    description: str = ""
    device: str | None = None  # device spec for the measured_latency_ms objective
    strict_drift: bool = False  # refuse a measured search when the machine drifted from the table (no rescale)
    source: str = field(default="recipe", compare=False)  # the file (or caller) it came from, for errors

    def __post_init__(self) -> None:
        check(self, self.source)  # also after `with_overrides`

    def to_dict(self) -> dict[str, Any]:
        from hwnas.train.datasets import dataset_record

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("strategy_params", "method_params", "source")}
        return {
            **out, "objectives": list(self.objectives), "constraints": [str(c) for c in self.constraints],
            "strategy": None if self.method else {"name": self.strategy, "params": dict(self.strategy_params)},
            "method": {"name": self.method, "params": dict(self.method_params)} if self.method else None,
            "dataset": dataset_record(self.dataset), "train": dict(self.train), "distill": dict(self.distill),
            "executor": dict(self.executor),
        }

    def with_overrides(self, **kw: Any) -> SearchRecipe:
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


def parse_recipe(data: Any, source: str = "recipe", base_dir: Path | None = None) -> SearchRecipe:
    """Validate a recipe mapping; every error names the key and what is valid."""
    raw = parse(RecipeFile, data, source)
    if raw.strategy is not None and raw.method is not None:
        raise ConfigError(f"{source}: name either a `strategy` (ask/tell) or a `method` (e.g. fbnet), not both")
    get_objectives(list(raw.objectives))
    strategy, strategy_params = _strategy(raw.strategy or DEFAULT_STRATEGY, source)
    method, method_params = _method(raw.method, source)
    plain = {f.name: getattr(raw, f.name) for f in dataclasses.fields(RecipeFile)}
    return SearchRecipe(**{
        **plain, "name": raw.name or Path(source).stem, "space": _space(raw.space),
        "constraints": tuple(parse_constraint(c) for c in raw.constraints or ()),
        "latency_table": _table_path(raw.latency_table, base_dir), "strategy": strategy,
        "strategy_params": strategy_params, "method": method, "method_params": method_params,
        "distill": _given(DistillSettings, raw.distill or {}, source, "distill "),
        "dataset": _dataset(raw.dataset, base_dir, source), "train": _train(raw.train or {}, source),
        "executor": _executor(raw.executor, source), "description": raw.description or "", "source": source,
    })


def _space(spec: str) -> str:
    from hwnas.spaces import get_space

    return get_space(spec).spec


def _given(cls: type, data: Mapping[str, Any], source: str, label: str) -> dict[str, Any]:
    """The keys given in `data`, checked (and converted) by the schema `cls`."""
    parsed = parse(cls, data, source, label)
    return {k: getattr(parsed, k) for k in data}


def _train(train: Mapping[str, Any], source: str) -> dict[str, Any]:
    from hwnas.train import TrainConfig

    return _given(TrainConfig, train, source, "train ")  # TrainConfig checks the values


def _executor(executor: str | Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    executor = {"name": executor} if isinstance(executor, str) else executor or {"name": "local", "workers": 1}
    return _given(ExecutorSettings, executor, source, "executor ")


def _dataset(value: Any, base_dir: Path | None, source: str) -> Any:
    from hwnas.train.datasets import dataset_spec

    try:
        return dataset_spec(value, base_dir, source)
    except UnknownNameError as exc:  # the other dataset errors already name the recipe
        raise ConfigError(f"{source}: {exc}") from None


def _table_path(table: str | None, base_dir: Path | None) -> str | None:
    """A relative table path is relative to the recipe's folder (else to the working directory)."""
    if table is None or base_dir is None or Path(table).is_absolute():
        return table
    candidate = (base_dir / table).resolve()
    return str(candidate if candidate.exists() or not Path(table).exists() else Path(table).resolve())


def _strategy(value: str | Mapping[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    name, params = _named(value, "strategy", source)
    cls = STRATEGIES.get(name)
    return name, parse_kwargs(cls.__init__, params, source, f"strategy {name!r}")


def _method(value: str | Mapping[str, Any] | None, source: str) -> tuple[str | None, dict[str, Any]]:
    if value is None:
        return None, {}
    from hwnas.search.searchers import searcher_class

    name, params = _named(value, "method", source)
    searcher_class(name).parse_params(params, source)
    return name, params


def _fresh_name(storage, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... when runs started in the same second already took it."""
    taken = {r.name for r in storage.list_runs()}
    n, out = 1, name
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    return out


def _named(value: Any, key: str, source: str) -> tuple[str, dict[str, Any]]:
    """(name, params) of `name` or `{name: ..., params: {...}}`."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or set(value) - {"name", "params"} or "name" not in value:
        raise ConfigError(f"{source}: {key} is a name or a mapping {{name: ..., params: {{...}}}}")
    name = typed(value["name"], str, f"{key} name", source)
    return name, dict(typed(value.get("params") or {}, dict, f"{key} params", source))


def load_recipe(path: str | Path) -> SearchRecipe:
    """Read and validate a YAML recipe file, or a built-in recipe by name (e.g. `mobile-cost`)."""
    path = find_named_file(path, [data_dir("search")], "recipe")
    return parse_recipe(read_yaml(path, "recipe"), str(path), path.parent)


def build(recipe: SearchRecipe, evaluate: Callable | None = None):
    """The Problem and Searcher of a recipe; its data is loaded and checked here, before any training.
    With `evaluate` (a picklable `evaluate(model) -> {metric: value}`), it scores the expensive objectives."""
    from hwnas.search.problem import ArchProblem, EvaluateProblem
    from hwnas.search.searchers import make_searcher
    from hwnas.train import resolve_dataset

    args = (recipe.space, list(recipe.objectives), recipe.constraints, recipe.latency_table)
    trained = [o.name for o in get_objectives(recipe.objectives) if o.kind == "expensive" and "training" in o.needs]
    if evaluate is not None:
        problem: ArchProblem = EvaluateProblem(*args, evaluate=evaluate, device=recipe.device,
                                               strict_drift=recipe.strict_drift)
    elif recipe.dataset is None and trained:
        raise ConfigError(f"objective {trained[0]} needs a dataset: a name, {{npz: PATH}} or {{image_folder: PATH}}")
    else:
        problem = ArchProblem(*args, resolve_dataset(recipe.dataset), recipe.train, recipe.device, recipe.distill,
                              strict_drift=recipe.strict_drift)
    params = recipe.method_params if recipe.method else recipe.strategy_params
    return problem, make_searcher(problem, recipe.budget, recipe.seed, params, method=recipe.method,
                                  strategy=recipe.strategy)


def provenance() -> dict[str, Any]:
    """Library versions, host and git commit, for the run report."""
    import platform
    import subprocess

    versions = {}
    for mod in ("torch", "numpy", "pymoo", "scipy", "onnxruntime", "ray"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # optional libraries may be missing
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except Exception:
        commit = ""
    import os

    import hwnas

    return {
        "versions": {"python": platform.python_version(), "hwnas": getattr(hwnas, "__version__", ""), **versions},
        "host": {"machine": platform.machine(), "processor": platform.processor(), "system": platform.platform(),
                 "cpus": os.cpu_count()},
        "git_commit": commit,
    }


def _resume_target(storage, resume: str):
    """The run `--resume` names; `latest` is the newest run that got as far as searching."""
    from hwnas.storage import StorageError

    if resume != "latest":
        return storage.get_run(resume)
    started = [r for r in storage.list_runs() if storage.events(r.id)]
    if not started:
        raise StorageError(f"{storage.url} holds no run to resume; start one with `hwnas search RECIPE`")
    return storage.get_run(max(started, key=lambda r: r.created).id)
def check_exclusive_measurement(recipe: SearchRecipe) -> None:
    """Refuse objectives measured on a device (e.g. `measured_latency_ms`) with parallel workers: the
    measurement would time the other workers' training load, not the model."""
    measured = [o.name for o in get_objectives(recipe.objectives) if "device" in o.needs]
    if not measured:
        return
    ex = dict(recipe.executor)
    workers = ex.get("workers")
    if ex.get("name", "local") == "inline":  # evaluates in the driver, one at a time
        return
    if (ex.get("name", "local") == "ray" and workers is None) or (workers is not None and int(workers) > 1):
        raise ConfigError(
            f"objective {measured[0]} needs measurements that run alone, but executor "
            f"{ex.get('name', 'local')!r} runs {workers or 'several'} workers in parallel (the timing would include "
            "their training); use `--workers 1` (executor: {name: local, workers: 1}), or search on the "
            "table's latency_ms and re-measure the front with `hwnas export`"
        )


def execute_recipe(
    recipe: SearchRecipe, storage_url: str, run_name: str | None = None, resume: str | None = None,
    progress: bool = False, on_trial: Callable | None = None, evaluate: Callable | None = None,
):
    """Create (or resume) the run of a recipe in `storage_url` and search; returns SearchResult.

    The run is locked (`hwnas.storage.lock.RunLock`) while this process drives it.
    `evaluate(model) -> {metric: value}` replaces the built-in trainer (Python API).
    """
    from hwnas.execution import make_executor
    from hwnas.storage import open_storage
    from hwnas.storage.lock import RunLock

    storage = open_storage(storage_url)
    with contextlib.ExitStack() as stack:
        if resume:
            run = _resume_target(storage, resume)
            stack.enter_context(RunLock(storage, run.id, run.name))  # a live driver: a clear refusal
            old, new = run.config.get("recipe") or {}, recipe.to_dict()
            diff = [k for k in _SEARCH_KEYS if k in old and old[k] != new[k]]
            if diff:
                raise ConfigError(
                    f"run {run.name} was started with a different recipe ({', '.join(diff)} differ); resume it "
                    "with the same recipe (only budget and executor may change) or start a new run"
                )
        check_exclusive_measurement(recipe)
        problem, searcher = build(recipe, evaluate)
        if not resume:
            name = run_name or _fresh_name(storage, f"{recipe.name}-s{recipe.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
            info = {**problem.info(), **provenance(), "strategy": searcher.info()}
            run = storage.create_run(name, problem.objectives, {"recipe": recipe.to_dict()}, info)
            stack.enter_context(RunLock(storage, run.id, run.name))
        ex = dict(recipe.executor)
        kind = ex.pop("name", "local")
        executor = make_executor(kind, **ex)
        stack.callback(executor.shutdown)
        storage.update_run(run.id, info={"executor": executor.describe()})
        bar = None
        if progress:
            from tqdm import tqdm

            done = sum(1 for t in run.trials() if t.status in ("COMPLETE", "FAILED"))
            bar = tqdm(total=recipe.budget, initial=done, desc=f"search {run.name}", unit="arch")
            stack.callback(bar.close)

        def _tick(trial):
            if bar is not None and trial.status in ("COMPLETE", "FAILED"):
                bar.update(1)
                bar.set_postfix(front=len(run.pareto_front()) if trial.status == "COMPLETE" else None)
            if on_trial:
                on_trial(trial)

        return searcher.search(run, executor, bool(resume), on_trial=_tick)
