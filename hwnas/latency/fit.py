"""Few-shot latency tables for end-to-end-only devices: structure-aware features + NNLS fit (nb201, mobile).

A `FittedTable` is a latency source like a measured table: `hwnas search --table`, `validate` and
`export` take either. Its prior (a measured table of a device you have) is stored inside the file
(schema v2), so predictions never read a path; the default nb201 prior ships inside the package.

mobile: per-arch MACs of the 1x1 (expand + project) and depthwise convolutions, activation elements
and the number of MBConv blocks, or with a prior table its prediction plus the block count.

Features: counts of live conv3x3 / conv1x1 / avg-pool / skip edges (an edge is live when it lies on an
input->output path; `none` and dead edges cost nothing in networks hwnas builds), extra additions (live
in-degree - 1 per node), an empty-cell flag and, with a prior table of a device you have, that device's
predicted latency (which then replaces the three live op counts). Coefficients are non-negative (NNLS).

Runtimes that execute NAS-Bench-201's reference network, where `none` is `x * 0`, keep dead ops alive:
`dead_edges="cost"` adds counts of dead ops per type; `"auto"` adds them only when they lower the
leave-one-out absolute error on the K training rows by more than one standard error. When the measurements file lists isomorphic duplicates of
a measured representative (HW-NAS-Bench-360's `rep_arch_idx`), features come from the representative,
the network that was actually timed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import ConfigError
from hwnas.fileio import csv_number, read_csv_rows, read_json
from hwnas.latency.source import LatencySource
from hwnas.latency.table import LatencyTable, LatencyTableError
from hwnas.latency.validation import fidelity_metrics, scatter_plot
from hwnas.spaces import Arch, get_space

FIT_SCHEMA = "hwnas.fitted_table"
FIT_SCHEMA_VERSION = 2  # v2: the prior table inline (`prior["table"]`); v1 (a prior path) is still read
FIT_SUPPORTED_VERSIONS = (1, 2)
DEFAULT_PRIORS = {"nb201": "ort-cpu-1t-nb201-cifar100.json"}  # package data in hwnas/latency/priors/
FIT_SPACES = ("nb201", "mobile")


def default_prior(space: str) -> LatencyTable | None:
    """The prior shipped inside the package for a space family (None when there is none)."""
    from importlib import resources

    name = DEFAULT_PRIORS.get(get_space(space).name)
    if name is None:
        return None
    data = json.loads(resources.files("hwnas.latency").joinpath("priors", name).read_text())
    return LatencyTable.from_dict(data, source=f"hwnas/latency/priors/{name}")


def mobile_features(arch: Arch) -> list[float]:
    """MACs (millions) of 1x1 and of depthwise convs, activation elements (millions), MBConv count."""
    from hwnas.metrics import mbconv_work

    work = mbconv_work(arch)
    return [work.pointwise_macs / 1e6, work.depthwise_macs / 1e6, work.activation_elems / 1e6, float(work.blocks)]


MOBILE_FEATURES = ["pointwise_macs_m", "depthwise_macs_m", "activations_m", "mbconv_blocks"]
CELL_OPS = ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")


def dead_features(genes: tuple[str, ...] | list[str]) -> list[float]:
    """Counts of non-`none` ops per type on dead edges (computed only by runtimes that do not prune)."""
    from hwnas.spaces.nb201 import live_edges

    live = set(live_edges(genes))
    return [float(sum(genes[p] == op for p in range(len(genes)) if p not in live)) for op in CELL_OPS]


DEAD_FEATURES = [f"dead_{op}" for op in CELL_OPS]
DEAD_EDGE_MODES = ("free", "cost", "auto")


def cell_features(genes: tuple[str, ...] | list[str]) -> list[float]:
    """Live-op counts, extra additions and the empty-cell flag of an nb201 genotype."""
    from hwnas.spaces.nb201 import EDGES, live_edges

    live = live_edges(genes)
    counts = [float(sum(genes[p] == op for p in live)) for op in CELL_OPS]
    indegree = [sum(1 for p in live if EDGES[p][0] == node) for node in (1, 2, 3)]
    extra_adds = float(sum(max(0, d - 1) for d in indegree))
    return counts + [extra_adds, float(not live)]


STRUCTURE_FEATURES = [f"live_{op}" for op in CELL_OPS] + ["extra_adds", "empty_cell"]


@dataclass(frozen=True)
class FittedTable(LatencySource):
    """A latency model fitted from end-to-end measurements: latency_ms = features . coef + intercept.
    It has no drift reference: it is used as it is."""

    space: str
    target: str
    features: list[str]
    coef: list[float]
    intercept_ms: float
    prior: dict[str, Any] = field(default_factory=dict)  # path, sha256, device of the prior table
    dead_edges: str = "free"  # "free" or "cost": whether dead-op counts are features
    train_archs: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    device_identity: dict[str, Any] = field(default_factory=dict)  # the spec measured on (fit from a device)

    def _prior_table(self, prior_table: LatencyTable | None) -> LatencyTable:
        if prior_table is not None:
            return prior_table
        cached = _PRIOR_TABLES.get(self.prior.get("sha256", ""))
        if cached is None:
            if "table" in self.prior:
                cached = LatencyTable.from_dict(self.prior["table"], source="the fitted table's prior")
            else:  # schema v1: the prior by path
                cached = LatencyTable.load(self.prior["path"])
            _PRIOR_TABLES[self.prior.get("sha256", "")] = cached
        return cached

    def _row(self, arch: Arch, prior_table: LatencyTable | None) -> list[float]:
        if arch.space.partition(":")[0] != self.space.partition(":")[0]:
            raise LatencyTableError(f"fitted table is for {self.space}, not {arch.space}")
        if get_space(self.space).name == "mobile":
            row = mobile_features(arch)
            if self.prior:
                row = [self._prior_table(prior_table).predict_ms(arch)] + row[3:]
            return row
        row = cell_features(arch.genes)
        if self.prior:
            row = [prior_ms(self._prior_table(prior_table), arch.genes)] + row[3:]
        if self.dead_edges == "cost":
            row = row + dead_features(arch.genes)
        return row

    def predict_ms(self, arch: Arch, prior_table: LatencyTable | None = None) -> float:
        return float(np.dot(self._row(arch, prior_table), self.coef) + self.intercept_ms)

    @property
    def device(self) -> dict[str, Any]:
        """What the numbers describe: the device spec measured on, or the measured column of a CSV."""
        if self.device_identity:
            return {**self.device_identity, "fitted": True}
        return {"name": self.target, "fitted": True, "dead_edges": self.dead_edges}

    def check_compatible(self, device_identity: dict[str, Any] | None = None, space: str | None = None) -> None:
        """Refuse another space, or (when fitted from a device spec) another device's settings."""
        if space is not None and get_space(space).spec != get_space(self.space).spec:
            raise LatencyTableError(
                f"fitted table is for space {self.space}, not {get_space(space).spec}; fit one for that space"
            )
        if device_identity is not None and self.device_identity:
            diffs = [f"{k}: table {self.device_identity.get(k)!r} vs {v!r}" for k, v in device_identity.items()
                     if self.device_identity.get(k) != v]
            if diffs:
                raise LatencyTableError(
                    f"fitted table is for device {self.device_name!r}, not this device spec ({'; '.join(diffs)}); "
                    "fit one on this device with `hwnas fit-table --device`"
                )

    def describe(self) -> str:
        """One line: the fitted coefficients."""
        terms = " ".join(f"{n}={c:.4g}" for n, c in zip(self.features, self.coef))
        return f"fitted ({len(self.train_archs)} archs): {terms} intercept_ms={self.intercept_ms:.4g}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": FIT_SCHEMA, "schema_version": FIT_SCHEMA_VERSION, **asdict(self)}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FittedTable:
        data = read_json(path, LatencyTableError, "fitted table", "fit it with `hwnas fit-table`")
        if (not isinstance(data, dict) or data.get("schema") != FIT_SCHEMA
                or data.get("schema_version") not in FIT_SUPPORTED_VERSIONS):
            raise LatencyTableError(
                f"{path} is not a fitted table of schema {FIT_SCHEMA} v{FIT_SUPPORTED_VERSIONS}; refit it with "
                "`hwnas fit-table`"
            )
        data.pop("schema")
        data.pop("schema_version")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise LatencyTableError(f"{path} has unknown keys {sorted(unknown)}; refit it with `hwnas fit-table`")
        return cls(**data)


_PRIOR_CACHE: dict[str, dict[tuple[str, ...], float]] = {}  # table sha256 -> genotype -> prior ms
_PRIOR_TABLES: dict[str, LatencyTable] = {}  # prior sha256 -> table


def prior_ms(table: LatencyTable, genes: tuple[str, ...] | list[str]) -> float:
    """The prior device's calibrated prediction for an nb201 genotype."""
    return table.predict_ms(get_space(table.space).make(genes))


def resolve_prior(prior: str | None, space: str) -> LatencyTable | None:
    """`auto`: the prior shipped in the package for the space (nb201: ort-cpu-1t; mobile: none, the
    structure features are derived from the arch); `none`/None: no prior; else a table path."""
    if prior is None or str(prior).lower() == "none":
        return None
    if str(prior).lower() == "auto":
        return default_prior(space)
    table = LatencyTable.load(prior)
    if table.space.partition(":")[0] != get_space(space).name:
        raise LatencyTableError(f"prior table {prior} is for {table.space}; fit-table needs a {get_space(space).name} table")
    return table


def fit_nnls(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares with a free (non-negative) intercept."""
    from scipy.optimize import nnls

    coef, _ = nnls(np.hstack([X, np.ones((len(X), 1))]), y)
    return coef[:-1], float(coef[-1])


def read_measurements(path: str | os.PathLike[str], arch_column: str, target_column: str,
                      rep_column: str | None = "auto", index_column: str = "arch_idx") -> tuple[list[str], np.ndarray]:
    """Arch strings and target values; with a representative column, each row's arch is its representative's.

    `rep_column="auto"` uses `rep_arch_idx` (indexing `arch_idx`) when both columns exist; None/"none": off.
    """
    rows, columns = read_csv_rows(path, (arch_column, target_column), "measurements file")
    if rep_column == "auto":
        rep_column = "rep_arch_idx" if {"rep_arch_idx", index_column} <= set(columns) else None
    elif rep_column in (None, "none", ""):
        rep_column = None
    elif rep_column not in columns or index_column not in columns:
        raise ConfigError(f"{path} needs columns {rep_column!r} and {index_column!r} for representatives")
    by_index = {row[index_column]: row[arch_column] for row in rows} if rep_column else {}
    archs, ys = [], []
    for i, row in enumerate(rows, start=2):
        y = csv_number(row, target_column, f"measurements file {path} line {i}", positive=True)
        arch = row[arch_column]
        if rep_column:
            rep, own = row[rep_column], row[index_column]
            if not (rep.isdigit() and own.isdigit() and int(rep) <= int(own)):
                raise ConfigError(f"measurements file {path} line {i}: {rep_column}={rep!r} is not the {index_column} "
                                  f"of a representative (an integer <= the row's own {own!r}); fix the row or pass "
                                  "--rep-column none")
            arch = by_index.get(rep, arch)  # a representative outside a slice of the table: the row's own arch
        archs.append(arch)
        ys.append(y)
    return archs, np.asarray(ys)


def _loo_errors(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef, intercept = fit_nnls(X[keep], y[keep])
        errors.append(abs(float(X[i] @ coef + intercept) - y[i]))
    return np.asarray(errors)


def _dead_ops_help(small: np.ndarray, big: np.ndarray, y: np.ndarray) -> bool:
    """One-standard-error rule: the dead-op features must cut leave-one-out absolute error by more
    than one standard error of the paired differences."""
    diff = _loo_errors(small, y) - _loo_errors(big, y)
    return bool(diff.mean() > diff.std(ddof=1) / np.sqrt(len(diff)))


def fit_table(arch_strings: list[str], y: np.ndarray, *, space: str = "nb201", train: int = 20, seed: int = 0,
              prior: LatencyTable | None = None, target: str = "latency_ms", dead_edges: str = "auto") -> tuple[FittedTable, dict[str, Any]]:
    """Fit on `train` rows drawn with `seed`; metrics on all other rows."""
    if dead_edges not in DEAD_EDGE_MODES:
        raise ConfigError(f"dead_edges must be one of {', '.join(DEAD_EDGE_MODES)}, got {dead_edges!r}")
    sp = get_space(space)
    if sp.name not in FIT_SPACES:
        raise ConfigError(f"fit-table supports the spaces {', '.join(FIT_SPACES)} (structure features), not {sp.spec}")
    if not 2 <= train < len(y):
        raise ConfigError(f"--train must be between 2 and {len(y) - 1} (the file has {len(y)} rows)")
    if sp.name == "mobile":
        return _fit_mobile(arch_strings, y, sp, train, seed, prior, target)
    genes = [tuple(sp.split(a)) for a in arch_strings]
    F = np.array([cell_features(g) for g in genes])
    names = list(STRUCTURE_FEATURES)
    if prior is not None:
        cache = _PRIOR_CACHE.setdefault(prior.sha256, {})
        P = np.array([cache[g] if g in cache else cache.setdefault(g, prior_ms(prior, g)) for g in genes])
        # The prior carries the relative op costs; skips, additions and empty cells it does not time.
        F = np.column_stack([P, F[:, 3:]])
        names = ["prior_ms"] + names[3:]
    idx = np.random.default_rng(seed).permutation(len(y))
    tr, te = idx[:train], idx[train:]
    if dead_edges != "free":
        D = np.array([dead_features(g) for g in genes])
        with_dead = np.column_stack([F, D])
        if dead_edges == "cost" or _dead_ops_help(F[tr], with_dead[tr], y[tr]):
            F, names, dead_edges = with_dead, names + DEAD_FEATURES, "cost"
        else:
            dead_edges = "free"
    coef, intercept = fit_nnls(F[tr], y[tr])
    pred = F @ coef + intercept
    metrics = fidelity_metrics(pred[te], y[te])
    fitted = FittedTable(
        space=sp.spec, target=target, features=names, coef=[float(c) for c in coef], intercept_ms=intercept,
        prior=_prior_record(prior), dead_edges=dead_edges, train_archs=[arch_strings[i] for i in tr],
        metrics=metrics,
    )
    return fitted, {"pred": pred[te], "measured": y[te]}


def _prior_record(prior: LatencyTable | None) -> dict[str, Any]:
    """The prior as stored in a fitted table: identity plus the whole table (no path is ever read back)."""
    if prior is None:
        return {}
    return {"sha256": prior.sha256, "device": prior.device_name, "space": prior.space, "table": prior.to_dict()}


def _fit_mobile(arch_strings: list[str], y: np.ndarray, sp: Any, train: int, seed: int,
                prior: LatencyTable | None, target: str) -> tuple[FittedTable, dict[str, Any]]:
    archs = [sp.parse(a) for a in arch_strings]
    F = np.array([mobile_features(a) for a in archs])
    names = list(MOBILE_FEATURES)
    if prior is not None:
        F = np.column_stack([prior.predict_many_ms(archs), F[:, 3:]])
        names = ["prior_ms"] + names[3:]
    idx = np.random.default_rng(seed).permutation(len(y))
    tr, te = idx[:train], idx[train:]
    coef, intercept = fit_nnls(F[tr], y[tr])
    pred = F @ coef + intercept
    fitted = FittedTable(
        space=sp.spec, target=target, features=names, coef=[float(c) for c in coef], intercept_ms=intercept,
        prior=_prior_record(prior), train_archs=[arch_strings[i] for i in tr],
        metrics=fidelity_metrics(pred[te], y[te]) if len(te) else {},
    )
    return fitted, {"pred": pred[te], "measured": y[te]}


def fit_table_from_device(spec: Any, *, space: str, train: int, holdout: int = 10, seed: int = 0,
                          prior: str | None = "auto", rounds: int = 1, out: str | None = None,
                          plot: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Measure `train + holdout` sampled archs end-to-end on a device (e.g. a remote agent) and fit on
    `train` of them; metrics on the hold-out rest. The fitted table records the device's identity."""
    from dataclasses import replace

    from hwnas.devices.profilers import get_profiler
    from hwnas.devices.spec import load_device
    from hwnas.latency.builder import measure_archs, sample_archs

    spec = load_device(spec)
    sp = get_space(space)
    if holdout < 2 or train < 2:
        raise ConfigError("fit-table --device needs --train >= 2 and --holdout >= 2 (the archs that measure the fit)")
    archs = sample_archs(sp, train + holdout, seed, "fit")
    y = np.asarray(measure_archs(get_profiler(spec), archs, rounds, progress, "fit-table (end-to-end)"))
    strings = [str(a) for a in archs]
    prior_table = resolve_prior(prior, space)
    fitted, held = fit_table(strings, y, space=space, train=train, seed=seed, prior=prior_table,
                             target="latency_ms", dead_edges="free" if sp.name == "mobile" else "auto")
    fitted = replace(fitted, device_identity=spec.identity())
    result: dict[str, Any] = {"space": fitted.space, "device": spec.name, "train": train, "holdout": holdout,
                              "seed": seed, **fitted.metrics, "features": fitted.features,
                              "coef": fitted.coef, "intercept_ms": fitted.intercept_ms,
                              "prior": {k: v for k, v in fitted.prior.items() if k != "table"} or None}
    if out:
        result["out"] = str(fitted.save(out))
    if plot:
        result["plot"] = str(scatter_plot(held["pred"], held["measured"], plot, f"{spec.name} K={train}"))
    return result


def fit_table_from_csv(measurements: str | os.PathLike[str], *, space: str, arch_column: str, target_column: str,
                       train: int, seed: int, prior: str | None = "auto", out: str | None = None,
                       plot: str | None = None, dead_edges: str = "auto",
                       rep_column: str | None = "auto") -> dict[str, Any]:
    archs, y = read_measurements(measurements, arch_column, target_column, rep_column)
    prior_table = resolve_prior(prior, space)
    fitted, held = fit_table(archs, y, space=space, train=train, seed=seed, prior=prior_table,
                             target=target_column, dead_edges=dead_edges)
    result: dict[str, Any] = {
        "space": fitted.space, "target": target_column, "train": train, "seed": seed,
        **fitted.metrics,
        "features": fitted.features, "coef": fitted.coef, "intercept_ms": fitted.intercept_ms,
        "prior": {k: v for k, v in fitted.prior.items() if k != "table"} or None, "dead_edges": fitted.dead_edges,
    }
    if out:
        result["out"] = str(fitted.save(out))
    if plot:
        title = f"{target_column} K={train}: spearman={fitted.metrics['spearman']:.3f}"
        result["plot"] = str(scatter_plot(held["pred"], held["measured"], plot, title))
    return result
