"""The Python API: search a space on your own data (or with your own `evaluate`), report and export.

Runs go through the same recipe, journal, weights, provenance and resume checks as `hwnas search`,
so `hwnas show / report / export` work on them too::

    from hwnas import api
    run = api.search("mobile:mnist", ["accuracy", "latency_ms"], data="digits.npz",
                     latency_table="ort-cpu-1t/mobile-mnist", budget=8)
    api.export(run, "out/")            # the knee of the Pareto front -> ONNX + manifest.json
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.objectives import OBJECTIVES, Objective
from hwnas.storage import DEFAULT_URL, Run
from hwnas.train.datasets import Splits, splits_from_datasets

Data = str | os.PathLike | Splits | tuple  # a name, an .npz file, an image folder, (train, val[, test]) Datasets

__all__ = ["Objective", "Splits", "export", "report", "search", "search_recipe"]


def _dataset(data: Data) -> Any:
    """A recipe's dataset value for `data` (a name, {npz: path}, {image_folder: path}) or loaded Splits."""
    if isinstance(data, Splits):
        return data
    if isinstance(data, tuple):
        return splits_from_datasets(*data)
    path = Path(data)
    if path.is_dir():
        return {"image_folder": str(path.resolve())}
    if path.suffix == ".npz":
        return {"npz": str(path.resolve())}
    return str(data)  # a registered dataset name (unknown names list the valid ones)


def _objective_names(objectives: Sequence[str | Objective]) -> list[str]:
    """Names of `objectives`; an `Objective` not yet registered (a metric of your `evaluate`) is registered."""
    names = []
    for o in objectives:
        if isinstance(o, Objective):
            if o.name not in OBJECTIVES:
                OBJECTIVES.add(o.name, o)
            elif OBJECTIVES.get(o.name) != o:
                raise ConfigError(f"objective {o.name!r} is already defined as {OBJECTIVES.get(o.name)}; rename yours")
            o = o.name
        names.append(o)
    return names


def _table(latency_table: str | os.PathLike | None) -> str | None:
    """A latency table path, or a shipped table's name such as `ort-cpu-1t/mobile-mnist`."""
    if latency_table is None:
        return None
    from hwnas.fileio import data_dir, find_named_file

    return str(find_named_file(latency_table, [data_dir("latency_tables")], "latency table", ".json").resolve())


def search(
    space: str,
    objectives: Sequence[str | Objective],
    *,
    data: Data = "mnist5k",
    evaluate: Callable[[Any], Mapping[str, float]] | None = None,
    constraints: Sequence[str] = (),
    latency_table: str | os.PathLike | None = None,
    strategy: str | Mapping[str, Any] = "local",
    budget: int = 20,
    seed: int = 0,
    train: Mapping[str, Any] | None = None,
    workers: int = 1,
    storage: str = DEFAULT_URL,
    name: str | None = None,
    resume: str | None = None,
    progress: bool = False,
) -> Run:
    """Search `space` (a registered space spec) for the Pareto front of `objectives`; returns the run.

    Accuracy comes from the built-in trainer (`train` = TrainConfig keys) on `data`: a dataset name,
    an `.npz` with x/y, an image folder with one sub-folder per class, or `(train, val[, test])` torch
    Datasets. Or pass `evaluate(model) -> {metric: value}` for every expensive objective (declare your
    own metrics as `Objective(name, "max", "expensive")`); it may train the model, whose weights are kept.
    Data is checked before any training. `workers > 1` evaluates in processes (then `evaluate` must be
    importable). `resume` (a run name or "latest") continues a run with the same arguments.
    """
    from hwnas.search.recipe import execute_recipe, parse_recipe

    recipe = parse_recipe({
        "name": name or "api", "space": space, "objectives": _objective_names(objectives),
        "constraints": list(constraints), "latency_table": _table(latency_table), "strategy": strategy,
        "budget": budget, "seed": seed, "dataset": _dataset(data) if evaluate is None else None,
        "train": dict(train or {}),
        "executor": {"name": "inline" if workers == 1 else "local", "workers": workers},
    }, "python api")
    return execute_recipe(recipe, storage, run_name=name, resume=resume, progress=progress,
                          evaluate=evaluate).run


def search_recipe(
    recipe: str | os.PathLike, storage: str = DEFAULT_URL, name: str | None = None, resume: str | None = None,
    progress: bool = False, **overrides: Any,
) -> Run:
    """Run a YAML recipe (a path or a built-in name such as `mobile-cost`) as `hwnas search` does;
    `overrides` replace recipe keys (budget=, seed=, dataset=...)."""
    from hwnas.search.recipe import execute_recipe, load_recipe

    loaded = load_recipe(recipe)
    if "dataset" in overrides:
        overrides["dataset"] = _dataset(overrides["dataset"])
    return execute_recipe(loaded.with_overrides(**overrides), storage, run_name=name, resume=resume,
                          progress=progress).run


def export(
    run: Run, out_dir: str | os.PathLike, pick: str = "knee", fmt: str = "onnx",
    recipe: str | os.PathLike | None = None, device: str | None = None, measure: bool = True,
) -> dict[str, Any]:
    """Export a trial of a run (`pick` as in `hwnas export --pick`: knee, best-accuracy, latency<=X, index=N) with its trained
    weights: ONNX, parity check, re-measurement on `device`, manifest.json. Returns the manifest."""
    from hwnas.export import load_export_config, run_export, source_from_run
    from hwnas.storage import sqlite_path

    if sqlite_path(run.storage.url) is None:
        raise ConfigError("export needs a run saved in a SQLite journal (its weights live beside it); "
                          "search with storage='sqlite:///runs/hwnas.db'")
    source = source_from_run(run.storage.url, run.id, pick)
    return run_export(source, out_dir, fmt, load_export_config(recipe), device=device, measure=measure)


def report(run: Run, out: str | os.PathLike | None = None, baseline: Run | None = None) -> Path:
    """Write the run's markdown report (with the reproducibility checklist and a Pareto plot); returns its path."""
    from hwnas.report import plot_pareto, run_report

    path = Path(out or ((run.artifact_dir or Path(".")) / "report.md"))
    path.parent.mkdir(parents=True, exist_ok=True)
    plot = plot_pareto(run, path.parent / "pareto.png").name if run.pareto_front() else None
    path.write_text(run_report(run, baseline, plot))
    return path
