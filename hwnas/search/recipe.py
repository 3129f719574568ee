"""Search recipes: YAML -> frozen `SearchRecipe` (unknown keys rejected), and `execute_recipe` to run one."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.fileio import read_yaml
from hwnas.search.constraints import Constraint, parse_constraint
from hwnas.objectives import get_objectives

_KEYS = {
    "name", "space", "objectives", "constraints", "latency_table", "strategy", "seed", "budget", "dataset",
    "train", "executor", "description", "device",
}
# Keys that must match when resuming (budget and executor may change).
_SEARCH_KEYS = (
    "space", "objectives", "constraints", "latency_table", "strategy", "seed", "dataset", "train", "device",
)
_EXECUTOR_KEYS = {"name", "workers", "threads_per_worker", "address", "cpus_per_task", "num_cpus"}


@dataclass(frozen=True)
class SearchRecipe:
    """Everything a search needs; `latency_table` is resolved relative to the recipe file's folder."""

    name: str
    space: str
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()
    latency_table: str | None = None
    strategy: str = "local"
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    budget: int = 50
    dataset: str = "mnist5k"
    train: Mapping[str, Any] = field(default_factory=dict)
    executor: Mapping[str, Any] = field(default_factory=lambda: {"name": "local", "workers": 1})
    description: str = ""
    device: str | None = None  # device spec for the measured_latency_ms objective

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "space": self.space, "objectives": list(self.objectives),
            "constraints": [str(c) for c in self.constraints], "latency_table": self.latency_table,
            "strategy": {"name": self.strategy, "params": dict(self.strategy_params)}, "seed": self.seed,
            "budget": self.budget, "dataset": self.dataset, "train": dict(self.train),
            "executor": dict(self.executor), "description": self.description, "device": self.device,
        }

    def with_overrides(self, **kw: Any) -> SearchRecipe:
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


def parse_recipe(data: Any, source: str = "recipe", base_dir: Path | None = None) -> SearchRecipe:
    """Validate a recipe mapping; every error names the key and what is valid."""
    from hwnas.search.strategies import STRATEGIES, strategy_params
    from hwnas.spaces import get_space
    from hwnas.train import TrainConfig

    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a recipe is a YAML mapping of keys: {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KEYS))}")
    for key in ("space", "objectives"):
        if key not in data:
            raise ConfigError(f"{source}: missing required key {key!r}")
    space = get_space(str(data["space"])).spec
    objectives = data["objectives"]
    if isinstance(objectives, str) or not isinstance(objectives, list):
        raise ConfigError(f"{source}: objectives must be a list, e.g. [accuracy, latency_ms]")
    get_objectives(objectives)
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list):
        raise ConfigError(f"{source}: constraints must be a list like ['latency_ms <= 5']")
    strat = data.get("strategy", "local")
    if isinstance(strat, str):
        strat = {"name": strat}
    if not isinstance(strat, Mapping) or set(strat) - {"name", "params"} or "name" not in strat:
        raise ConfigError(f"{source}: strategy is a name or a mapping {{name: ..., params: {{...}}}}")
    STRATEGIES.get(strat["name"])
    params = dict(strat.get("params") or {})
    bad = sorted(set(params) - set(strategy_params(strat["name"])))
    if bad:
        raise ConfigError(
            f"{source}: strategy {strat['name']!r} has no parameter(s) {', '.join(bad)}; "
            f"valid: {', '.join(sorted(strategy_params(strat['name']))) or '(none)'}"
        )
    train = dict(data.get("train") or {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train) - fields)
    if bad:
        raise ConfigError(f"{source}: unknown train key(s) {', '.join(bad)}; valid: {', '.join(sorted(fields))}")
    TrainConfig(**train)  # validates values
    executor = data.get("executor") or {"name": "local", "workers": 1}
    if isinstance(executor, str):
        executor = {"name": executor}
    bad = sorted(set(executor) - _EXECUTOR_KEYS)
    if bad:
        raise ConfigError(f"{source}: unknown executor key(s) {', '.join(bad)}; valid: {', '.join(sorted(_EXECUTOR_KEYS))}")
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
        strategy=str(strat["name"]), strategy_params=params, seed=seed, budget=budget,
        dataset=str(data.get("dataset", "mnist5k")), train=train, executor=dict(executor),
        description=str(data.get("description", "")),
        device=None if data.get("device") is None else str(data["device"]),
    )


def load_recipe(path: str | Path) -> SearchRecipe:
    """Read and validate a YAML recipe file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; see the examples in search/*.yaml")
    return parse_recipe(read_yaml(path, "recipe"), str(path), path.parent)


def build(recipe: SearchRecipe):
    """The Problem and Strategy of a recipe."""
    from hwnas.search.problem import ArchProblem
    from hwnas.search.strategies import make_strategy

    problem = ArchProblem(
        recipe.space, list(recipe.objectives), recipe.constraints, recipe.latency_table, recipe.dataset,
        recipe.train, recipe.device,
    )
    strategy = make_strategy(recipe.strategy, problem.space, len(problem.objectives), recipe.seed,
                             recipe.strategy_params)
    return problem, strategy


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
    progress: bool = False, on_trial: Callable | None = None,
):
    """Create (or resume) the run of a recipe in `storage_url` and search; returns SearchResult."""
    from hwnas.execution import make_executor
    from hwnas.search.runner import run_search, strategy_info
    from hwnas.storage import open_storage

    storage = open_storage(storage_url)
    if resume:
        run = storage.get_run(resume)
        old, new = run.config.get("recipe") or {}, recipe.to_dict()
        diff = [k for k in _SEARCH_KEYS if k in old and old[k] != new[k]]
        if diff:
            raise ConfigError(
                f"run {run.name} was started with a different recipe ({', '.join(diff)} differ); resume it "
                "with the same recipe (only budget and executor may change) or start a new run"
            )
    check_exclusive_measurement(recipe)
    problem, strategy = build(recipe)
    if not resume:
        name = run_name or f"{recipe.name}-s{recipe.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        info = {**problem.info(), **provenance(), "strategy": strategy_info(strategy)}
        run = storage.create_run(name, problem.objectives, {"recipe": recipe.to_dict()}, info)
    ex = dict(recipe.executor)
    kind = ex.pop("name", "local")
    executor = make_executor(kind, **ex)
    storage.update_run(run.id, info={"executor": executor.describe()})
    bar = None
    if progress:
        from tqdm import tqdm

        done = sum(1 for t in run.trials() if t.status in ("COMPLETE", "FAILED"))
        bar = tqdm(total=recipe.budget, initial=done, desc=f"search {run.name}", unit="arch")

    def _tick(trial):
        if bar is not None and trial.status in ("COMPLETE", "FAILED"):
            bar.update(1)
            bar.set_postfix(front=len(run.pareto_front()) if trial.status == "COMPLETE" else None)
        if on_trial:
            on_trial(trial)

    try:
        return run_search(problem, strategy, run, recipe.budget, executor, resume=bool(resume), on_trial=_tick)
    finally:
        executor.shutdown()
        if bar is not None:
            bar.close()
