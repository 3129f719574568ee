"""Search recipes: YAML -> frozen `SearchRecipe` (unknown keys rejected), and `execute_recipe` to run one."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, UnknownNameError
from hwnas.fileio import data_dir, find_named_file, read_yaml, typed
from hwnas.objectives import get_objectives
from hwnas.search.constraints import Constraint, parse_constraint

_KEYS = {
    "name", "space", "objectives", "constraints", "latency_table", "strategy", "method", "seed", "budget",
    "dataset", "train", "distill", "executor", "description", "device", "strict_drift",
}
# Keys that must match when resuming (budget and executor may change).
_SEARCH_KEYS = (
    "space", "objectives", "constraints", "latency_table", "strategy", "method", "seed", "dataset", "train",
    "distill", "device",
)
_DISTILL_KEYS = {"weight", "temperature"}
_EXECUTOR_KEYS = {"name", "workers", "threads_per_worker", "address", "cpus_per_task", "num_cpus"}
_EXECUTOR_TYPES = {"name": str, "workers": int, "threads_per_worker": int, "address": str, "cpus_per_task": float,
                   "num_cpus": int}


def _typed_defaults(values: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`values` with each one checked against the type of its default (bool, int, float or str)."""
    out = dict(values)
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(default, (bool, int, float, str)):
            out[key] = typed(value, type(default), key, where)
    return out


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
    seed: int = 0
    budget: int = 50
    dataset: Any = "mnist5k"  # a name, {npz: path}, {image_folder: path}; Python API: `Splits`, or None with evaluate
    train: Mapping[str, Any] = field(default_factory=dict)
    executor: Mapping[str, Any] = field(default_factory=lambda: {"name": "local", "workers": 1})
    description: str = ""
    device: str | None = None  # device spec for the measured_latency_ms objective
    strict_drift: bool = False  # refuse a measured search when the machine drifted from the table (no rescale)

    def to_dict(self) -> dict[str, Any]:
        from hwnas.train.datasets import dataset_record

        return {
            "name": self.name, "space": self.space, "objectives": list(self.objectives),
            "constraints": [str(c) for c in self.constraints], "latency_table": self.latency_table,
            "strategy": None if self.method else {"name": self.strategy, "params": dict(self.strategy_params)},
            "method": {"name": self.method, "params": dict(self.method_params)} if self.method else None,
            "seed": self.seed, "budget": self.budget, "dataset": dataset_record(self.dataset), "train": dict(self.train),
            "distill": dict(self.distill),
            "executor": dict(self.executor), "description": self.description, "device": self.device,
            "strict_drift": self.strict_drift,
        }

    def with_overrides(self, **kw: Any) -> SearchRecipe:
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


def parse_recipe(data: Any, source: str = "recipe", base_dir: Path | None = None) -> SearchRecipe:
    """Validate a recipe mapping; every error names the key and what is valid."""
    from hwnas.search.strategies import STRATEGIES, strategy_params
    from hwnas.spaces import get_space
    from hwnas.train import TrainConfig
    from hwnas.train.datasets import dataset_spec

    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a recipe is a YAML mapping of keys: {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KEYS))}")
    for key in ("space", "objectives"):
        if key not in data:
            raise ConfigError(f"{source}: missing required key {key!r}")
    for key, kind in (("name", str), ("space", str), ("latency_table", str), ("seed", int), ("budget", int),
                      ("description", str), ("device", str), ("strict_drift", bool)):
        if data.get(key) is not None:
            typed(data[key], kind, key, source)
    space = get_space(str(data["space"])).spec
    objectives = data["objectives"]
    if isinstance(objectives, str) or not isinstance(objectives, list):
        raise ConfigError(f"{source}: objectives must be a list, e.g. [accuracy, latency_ms]")
    for i, name in enumerate(objectives):
        typed(name, str, f"objectives[{i}]", source)
    get_objectives(objectives)
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list):
        raise ConfigError(f"{source}: constraints must be a list like ['latency_ms <= 5']")
    for i, c in enumerate(constraints):
        typed(c, str, f"constraints[{i}]", source)
    if data.get("strategy") is not None and data.get("method") is not None:
        raise ConfigError(f"{source}: name either a `strategy` (ask/tell) or a `method` (e.g. fbnet), not both")
    strat = _named(data.get("strategy") or "default", "strategy", source)
    STRATEGIES.get(typed(strat["name"], str, "strategy name", source))
    params = dict(typed(strat.get("params") or {}, dict, "strategy params", source))
    bad = sorted(set(params) - set(strategy_params(strat["name"])))
    if bad:
        raise ConfigError(
            f"{source}: strategy {strat['name']!r} has no parameter(s) {', '.join(bad)}; "
            f"valid: {', '.join(sorted(strategy_params(strat['name']))) or '(none)'}"
        )
    params = _typed_defaults(params, strategy_params(strat["name"]), f"{source} strategy params")
    method, method_params = None, {}
    if data.get("method") is not None:
        from hwnas.search.searchers import searcher_class

        meth = _named(data["method"], "method", source)
        method = typed(meth["name"], str, "method name", source)
        method_params = dict(typed(meth.get("params") or {}, dict, "method params", source))
        searcher_class(method).parse_params(method_params, source)
    distill = data.get("distill") or {}
    if not isinstance(distill, Mapping) or set(distill) - _DISTILL_KEYS:
        raise ConfigError(f"{source}: distill is a mapping with keys {', '.join(sorted(_DISTILL_KEYS))}")
    distill = {k: typed(v, float, f"distill.{k}", source) for k, v in distill.items()}
    train = dict(typed(data.get("train") or {}, dict, "train", source))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train) - fields)
    if bad:
        raise ConfigError(f"{source}: unknown train key(s) {', '.join(bad)}; valid: {', '.join(sorted(fields))}")
    train = _typed_defaults(train, {f.name: f.default for f in dataclasses.fields(TrainConfig)}, f"{source} train")
    TrainConfig(**train)  # validates values
    from hwnas.execution import EXECUTORS
    try:
        dataset = dataset_spec(data.get("dataset", "mnist5k"), base_dir, source)
    except UnknownNameError as exc:  # the other dataset errors already name the recipe
        raise ConfigError(f"{source}: {exc}") from None
    executor = data.get("executor") or {"name": "local", "workers": 1}
    if isinstance(executor, str):
        executor = {"name": executor}
    executor = typed(executor, dict, "executor", source)
    bad = sorted(set(executor) - _EXECUTOR_KEYS)
    if bad:
        raise ConfigError(f"{source}: unknown executor key(s) {', '.join(bad)}; valid: {', '.join(sorted(_EXECUTOR_KEYS))}")
    executor = _typed_defaults(executor, {k: t() for k, t in _EXECUTOR_TYPES.items()}, f"{source} executor")
    if executor.get("name", "local") not in EXECUTORS:
        raise ConfigError(f"{source}: executor {executor['name']!r} is not one of {', '.join(EXECUTORS)}")
    low = [k for k in ("workers", "threads_per_worker", "cpus_per_task", "num_cpus") if k in executor and executor[k] <= 0]
    if low:
        raise ConfigError(f"{source}: executor {low[0]} must be >= 1, got {executor[low[0]]}")
    table = data.get("latency_table")
    if table is not None and base_dir is not None and not Path(table).is_absolute():
        candidate = (base_dir / table).resolve()
        table = str(candidate if candidate.exists() or not Path(table).exists() else Path(table).resolve())
    try:
        budget, seed = int(data.get("budget", 50)), int(data.get("seed", 0))
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: budget and seed must be integers") from None
    if budget < 1:
        raise ConfigError(f"{source}: budget must be >= 1")
    return SearchRecipe(
        name=str(data.get("name") or Path(source).stem), space=space, objectives=tuple(objectives),
        constraints=tuple(parse_constraint(c) for c in constraints), latency_table=table,
        strategy=str(strat["name"]), strategy_params=params, method=method, method_params=method_params,
        distill=distill, seed=seed, budget=budget,
        dataset=dataset, train=train, executor=dict(executor),
        description=str(data.get("description", "")),
        device=None if data.get("device") is None else str(data["device"]),
        strict_drift=bool(data.get("strict_drift", False)),
    )


def _fresh_name(storage, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... when runs started in the same second already took it."""
    taken = {r.name for r in storage.list_runs()}
    n, out = 1, name
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    return out


def _named(value: Any, key: str, source: str) -> Mapping[str, Any]:
    """`name` or `{name: ..., params: {...}}` as a mapping."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or set(value) - {"name", "params"} or "name" not in value:
        raise ConfigError(f"{source}: {key} is a name or a mapping {{name: ..., params: {{...}}}}")
    return value


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
    if evaluate is not None:
        problem: ArchProblem = EvaluateProblem(*args, evaluate=evaluate, device=recipe.device,
                                               strict_drift=recipe.strict_drift)
    elif recipe.dataset is None and "accuracy" in recipe.objectives:
        raise ConfigError("objective accuracy needs a dataset: a name, {npz: PATH} or {image_folder: PATH}")
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
    """Refuse `measured_latency_ms` with parallel workers: the measurement would time the other workers'
    training load, not the model."""
    if "measured_latency_ms" not in recipe.objectives:
        return
    ex = dict(recipe.executor)
    workers = ex.get("workers")
    if ex.get("name", "local") == "inline":  # evaluates in the driver, one at a time
        return
    if (ex.get("name", "local") == "ray" and workers is None) or (workers is not None and int(workers) > 1):
        raise ConfigError(
            f"objective measured_latency_ms needs measurements that run alone, but executor "
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
