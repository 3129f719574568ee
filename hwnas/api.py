"""The Python API, everything the `hwnas` command does: profile and validate latency tables, search a
space on your own data (or with your own `evaluate`, or FBNet with `method=`), inspect, report, export.

Runs go through the same recipe, journal, weights, provenance and resume checks as `hwnas search`
(the CLI calls these functions), so `hwnas show / report / export` work on them too::

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
from hwnas.export.picks import PICK_FORMS
from hwnas.objectives import OBJECTIVES, Objective
from hwnas.storage import DEFAULT_URL, Run
from hwnas.train.datasets import Splits, splits_from_datasets

Data = str | os.PathLike | Splits | tuple  # a name, an .npz file, an image folder, (train, val[, test]) Datasets

__all__ = [
    "DEFAULT_URL", "PICK_FORMS", "Objective", "Splits", "bench", "cost", "export", "fit_table", "lineage", "open_run",
    "plot_front", "profile", "report", "runs", "sample", "search", "search_recipe", "spaces", "train", "validate",
]


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
    strategy: str | Mapping[str, Any] | None = None,
    method: str | Mapping[str, Any] | None = None,
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
    `strategy` (a name or {name, params}; None: `default`) is an ask/tell strategy; `method` instead names
    a searcher such as FBNet: `method={"name": "fbnet", "params": {"targets": [0.05, 0.1]}}`.
    """
    from hwnas.search.recipe import execute_recipe, parse_recipe

    recipe = parse_recipe({
        "name": name or "api", "space": space, "objectives": _objective_names(objectives),
        "constraints": list(constraints), "latency_table": _table(latency_table),
        "strategy": strategy, "method": method,
        "budget": budget, "seed": seed, "dataset": _dataset(data) if evaluate is None else None,
        "train": dict(train or {}),
        "executor": {"name": "inline" if workers == 1 else "local", "workers": workers},
    }, "python api")
    return execute_recipe(recipe, storage, run_name=name, resume=resume, progress=progress,
                          evaluate=evaluate).run


def search_recipe(
    recipe: str | os.PathLike, storage: str = DEFAULT_URL, name: str | None = None, resume: str | None = None,
    progress: bool = False, *, executor: str | None = None, workers: int | None = None,
    ray_address: str | None = None, **overrides: Any,
) -> Run:
    """Run a YAML recipe (a path or a built-in name such as `mobile-cost`) as `hwnas search` does;
    `executor` (inline, local, ray), `workers` and `ray_address` (implies ray) replace the recipe's executor
    settings; `overrides` replace recipe keys (budget=, seed=, dataset=, strategy=, latency_table=...)."""
    from hwnas.fileio import check_output_path
    from hwnas.search.recipe import execute_recipe, load_recipe
    from hwnas.storage import sqlite_path

    journal = sqlite_path(storage)
    if journal is not None:
        check_output_path(journal, "storage journal")
    loaded = load_recipe(recipe)
    if "dataset" in overrides:
        overrides["dataset"] = _dataset(overrides["dataset"])
    ex = {"name": executor} if executor else dict(loaded.executor)
    if workers:
        ex["workers"] = workers
    if ray_address:  # keep the recipe's Ray options (cpus_per_task), not a local pool's
        base = {k: v for k, v in ex.items() if k in ("cpus_per_task", "workers")} if ex.get("name") == "ray" else {}
        ex = {**base, **({"workers": workers} if workers else {}), "name": "ray", "address": ray_address}
    return execute_recipe(loaded.with_overrides(executor=ex, **overrides), storage, run_name=name, resume=resume,
                          progress=progress).run


def plot_front(run: Run, path: str | os.PathLike | None = None) -> Path | None:
    """The run's Pareto plot PNG (default `<run dir>/pareto.png`); None when it has no front or folder."""
    from hwnas.report import plot_pareto

    if not run.pareto_front() or (path is None and run.artifact_dir is None):
        return None
    return Path(plot_pareto(run, path or (run.artifact_dir / "pareto.png")))


def _journal(storage: str):
    """An existing journal; a missing SQLite file is an error (nothing is created)."""
    from hwnas.storage import open_storage, sqlite_path

    path = sqlite_path(storage)
    if path is not None and not path.is_file():
        raise ConfigError(f"no run journal at {path}; check the storage URL, --storage (runs are written by `hwnas search`)")
    return open_storage(storage)


def open_run(run: str, storage: str = DEFAULT_URL) -> Run:
    """An existing run of a journal by id, id prefix, name or `latest`."""
    return _journal(storage).get_run(run)


def runs(storage: str = DEFAULT_URL) -> list[dict[str, Any]]:
    """One summary per run of a journal: id, name, status, strategy, counts, and the live driver if any."""
    import time

    from hwnas.storage.lock import STALE_AFTER_S, lock_holder

    journal = _journal(storage)
    rows = []
    for info in journal.list_runs():
        trials = journal.trials(info.id)
        holder = lock_holder(journal, info.id)
        live = holder is not None and not holder.stale(time.time(), STALE_AFTER_S)
        rows.append({
            "id": info.id, "name": info.name, "status": info.status, "created": info.created,
            "strategy": (info.info.get("strategy") or {}).get("name"),
            "objectives": [o.name for o in info.objectives],
            "trials": len(trials), "complete": sum(t.status == "COMPLETE" for t in trials),
            "driver": f"pid {holder.pid} on {holder.host}" if live else None,
        })
    return rows


def lineage(run: Run) -> list[str]:
    """One line per child trial of a morphism strategy: `#child <- #parent operators (exact|approximate)`."""
    from hwnas.report.markdown import lineage_lines

    return lineage_lines(run.trials())


def export(
    run: Run | None, out_dir: str | os.PathLike, pick: str | None = "knee", fmt: str = "onnx",
    recipe: str | os.PathLike | None = None, device: str | None = None, measure: bool = True, *,
    space: str | None = None, arch: str | None = None, weights: str | os.PathLike | None = None, seed: int = 0,
    fp16: bool = False, table: str | None = None, strict: bool = False, **config: Any,
) -> dict[str, Any]:
    """Export a trial of a run (`pick` as in `hwnas export --pick`: knee, best-accuracy, latency<=X, index=N, or
    the trial of `arch`) with its trained weights, or with `run=None` one `arch` of `space` (`weights` or a
    seeded init): ONNX, parity check, re-measurement on `device`, manifest.json. `config` overrides the export
    recipe's keys (opset=, exporter=, dynamic_batch=, simplify=). Returns the manifest."""
    from hwnas.export import EXPORTERS, load_export_config, run_export, source_from_arch, source_from_run
    from hwnas.export.picks import parse_pick
    from hwnas.storage import sqlite_path

    EXPORTERS.get(fmt)  # unknown formats fail first
    if run is not None:
        if space:
            raise ConfigError("--space is for single archs; with --run the space comes from the run")
        if sqlite_path(run.storage.url) is None:
            raise ConfigError("export needs a run saved in a SQLite journal (its weights live beside it); "
                              "search with storage='sqlite:///runs/hwnas.db'")
        source = source_from_run(run.storage.url, run.id, pick, weights, arch)
    else:
        if pick:
            parse_pick(pick)
            raise ConfigError("--pick needs --run RUN; for a single arch give --space and --arch")
        source = source_from_arch(space, arch, weights, seed=seed)
    return run_export(source, out_dir, fmt, load_export_config(recipe).with_overrides(**config), fp16=fp16,
                      device=device, table=table, measure=measure, strict=strict)


def report(run: Run, out: str | os.PathLike | None = None, baseline: Run | None = None) -> Path:
    """Write the run's markdown report (with the reproducibility checklist, and a Pareto plot `pareto.png`
    beside it when the run has a front); returns its path. `baseline` is a run of the same objectives."""
    from hwnas.fileio import check_output_path
    from hwnas.report import run_report

    if baseline is not None and [o.name for o in baseline.objectives] != [o.name for o in run.objectives]:
        raise ConfigError(
            f"baseline {baseline.name} has objectives {', '.join(o.name for o in baseline.objectives)}, run "
            f"{run.name} has {', '.join(o.name for o in run.objectives)}; compare runs of the same objectives")
    path = check_output_path(out or ((run.artifact_dir or Path(".")) / "report.md"), "report")
    path.parent.mkdir(parents=True, exist_ok=True)
    plot = plot_front(run, path.parent / "pareto.png")
    path.write_text(run_report(run, baseline, plot and plot.name, out_dir=path.parent))
    return path


def profile(
    device: str, space: str, out: str | os.PathLike, *, calibrate: int = 20, recalibrate: bool = False,
    rounds: int = 3, seed: int = 0, progress: bool = False, strict: bool = False,
) -> dict[str, Any]:
    """Measure every block of `space` on `device` (a spec YAML or name) into the latency table `out` (resumes
    an existing one), then fit its calibration on `calibrate` end-to-end archs; returns the table's summary.
    A machine too busy to trust is reported in one line on stderr (`strict`: refused before calibrating)."""
    import time

    from hwnas.devices import get_profiler, load_device
    from hwnas.latency import LatencyTable
    from hwnas.latency.builder import build_table
    from hwnas.latency.builder import calibrate as fit_calibration
    from hwnas.latency.contention import recorded_contention, report_contention
    from hwnas.spaces import get_space

    spec = load_device(device)
    profiler = get_profiler(spec)
    start = time.perf_counter()
    before = len(LatencyTable.load(out)) if Path(out).exists() else 0
    table = build_table(spec, get_space(space), out, progress=progress, profiler=profiler, rounds=rounds)
    blocks_s = time.perf_counter() - start
    report_contention(recorded_contention(table), "profiling", strict=strict)
    if calibrate > 0 and (table.calibration.n == 0 or recalibrate):
        fit_calibration(table, spec, calibrate, seed, profiler=profiler, progress=progress, rounds=rounds)
        table.save(out)
    cal = table.calibration
    return {
        "table": str(out), "space": table.space, "device": spec.name, "entries": len(table),
        "measured_now": len(table) - before, "sha256": table.sha256, "profile_s": round(blocks_s, 2),
        "total_s": round(time.perf_counter() - start, 2),
        "calibration": {"form": cal.form, "scale": cal.scale, "per_block_ms": cal.per_block_ms,
                        "offset_ms": cal.offset_ms, "overhead_ms": cal.overhead_ms, "n": cal.n, "cv_mape": cal.cv_mape},
        "cpus": table.protocol.get("cpus"), "reference": table.reference,
        "noisy_blocks": len((table.provenance.get("noise") or {}).get("noisy_blocks", {})),
        "contention": table.provenance.get("contention"),
    }


def validate(
    table: str | os.PathLike, device: str, *, samples: int = 50, seed: int = 1, rounds: int = 3,
    plot: str | os.PathLike | None = None, strict: bool = False, progress: bool = False,
) -> dict[str, Any]:
    """Predicted vs end-to-end measured latency of `samples` sampled archs on `device`: kendall_tau,
    spearman, mape, within_10pct, calibration, drift (`strict`: refuse a drifted machine), scatter `plot`."""
    from hwnas.latency import load_predictor
    from hwnas.latency.contention import Contention, report_contention
    from hwnas.latency.validation import validate_table

    result = validate_table(load_predictor(table), device, samples, seed=seed, progress=progress,
                            plot=None if plot is None else str(plot), rounds=rounds, strict=strict)
    report_contention(Contention.from_dict(result["table_contention"]), "this table's profiling")
    report_contention(Contention.from_dict(result["contention"]), "validation")
    if result.get("contention"):
        result["contention_text"] = Contention.from_dict(result["contention"]).message("validation")
    return result


def fit_table(
    space: str, *, measurements: str | os.PathLike | None = None, device: str | None = None, **options: Any,
) -> dict[str, Any]:
    """A few-shot latency table fitted from end-to-end measurements: a CSV (`measurements`, with
    `target_column`, `arch_column`, ...) or archs measured on `device` (`holdout`, `rounds`, ...); the
    options are those of `hwnas fit-table` (train, seed, prior, out, plot, ...)."""
    from hwnas.latency.fit import fit_table_from_csv, fit_table_from_device

    if (device is None) == (measurements is None):
        raise ConfigError("fit-table needs exactly one of --measurements CSV (with --target-column) or --device SPEC")
    if device is not None:
        return fit_table_from_device(device, space=space, **options)
    if not options.get("target_column"):
        raise ConfigError("fit-table --measurements needs --target-column (the latency column of the CSV)")
    return fit_table_from_csv(measurements, space=space, **options)


def spaces() -> list[dict[str, Any]]:
    """Every registered space preset: spec, positions, number of archs, input shape, classes."""
    from hwnas.spaces import SPACES, get_space

    rows = []
    for name in SPACES.names():
        cls = SPACES.get(name)
        for preset in cls.presets:
            space = get_space(f"{name}:{preset}")
            rows.append({"spec": space.spec, "default": preset == cls.default_preset, "positions": len(space.choices),
                         "size": space.size(), "input_shape": list(space.input_shape),
                         "num_classes": space.num_classes})
    return rows


def sample(space: str, n: int = 5, seed: int = 0) -> list[Any]:
    """`n` random archs of `space` (the same seed gives the same archs)."""
    from hwnas.spaces import get_space

    if n > 100_000:  # the list is built before it is returned: refuse a count that would not fit in memory
        raise ConfigError(f"n must be <= 100,000, got {n}; sample in batches with different seeds")
    s = get_space(space)
    return [s.sample(seed * 1_000_003 + i) for i in range(n)]


def cost(space: str, arch: str) -> dict[str, Any]:
    """Params, MACs, FLOPs and peak activation bytes of an arch string of `space`."""
    from hwnas.metrics import arch_cost

    a = _parse(space, arch)
    return {"space": a.space, "arch": str(a), "id": a.id, **arch_cost(a).to_dict()}


def train(space: str, arch: str, dataset: str = "mnist5k", progress: bool = False, **config: Any) -> dict[str, Any]:
    """Train an arch string of `space` on a dataset (`config`: TrainConfig keys) and report its accuracy."""
    from hwnas.train import DATASETS, TrainConfig, train_arch

    a = _parse(space, arch)
    DATASETS.get(dataset)  # fail fast on an unknown dataset name
    _, result = train_arch(a, dataset, TrainConfig(**config), progress=progress)
    return {
        "space": a.space, "arch": str(a), "id": a.id, "dataset": dataset,
        "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
        "train_loss": result.train_loss, "epochs": result.epochs, "wall_s": round(result.wall_s, 2),
    }


def _parse(space: str, arch: str) -> Any:
    from hwnas.spaces import get_space

    return get_space(space).parse(arch)


def bench(
    table: str | os.PathLike, strategies: Sequence[str], *, budget: int = 300, seeds: int = 20,
    accuracy_column: str = "accuracy", latency_column: str = "pi5_onnx_latency_ms", arch_column: str = "arch_str",
    space: str = "nb201:cifar100", plot: str | None = None,
) -> dict[str, Any]:
    """Compare strategies on a tabular benchmark (a CSV or a shipped table's name) over `seeds` seeds:
    normalized HV after 25/50/100/300 queries, quartiles, unique archs, Mann-Whitney p vs random."""
    from hwnas.bench import DEFAULT_CHECKPOINTS, TabularBenchmark, compare, plot_curves, summarize
    from hwnas.fileio import data_dir, find_named_file
    from hwnas.search.strategies import make_strategy

    path = str(find_named_file(table, [data_dir("benchmarks/tables")], "benchmark table", ".csv"))
    tab = TabularBenchmark(path, accuracy_column, latency_column, arch_column, space)
    if budget > len(tab.values):
        raise ConfigError(f"--budget {budget} is more than the {len(tab.values)} archs in {path}; "
                          f"use --budget <= {len(tab.values)}")
    for s in strategies:  # fail before any run, e.g. optuna-* without the `peers` extra
        make_strategy(s, tab.space, len(tab.objectives), 0)
    checkpoints = sorted({b for b in DEFAULT_CHECKPOINTS if b <= budget} | {budget})
    curves = compare(tab, list(strategies), budget, list(range(seeds)))
    return {
        "table": path, "table_sha256": tab.sha256, "objectives": [o.to_dict() for o in tab.objectives],
        "true_front_size": len(tab.true_front), "budget": budget, "seeds": seeds, "checkpoints": checkpoints,
        "normalization": "HV(found)/HV(true front); objectives scaled by the true front's ideal/nadir to [0,1]; "
                         "reference point 1.1 (pymoo HV)",
        "protocol": "a query is one proposal (ask / Optuna trial); duplicates are answered from the cache and "
                    "count as queries, for every strategy; unique_archs_median counts the distinct archs",
        "strategies": summarize(curves, checkpoints),
        "plot": plot_curves(curves, plot, f"{Path(path).name}: {accuracy_column} vs {latency_column}") if plot else None,
    }
