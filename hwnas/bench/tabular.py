"""Tabular benchmark: objectives looked up in a CSV of NB201 archs (accuracy + a latency column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwnas.errors import ConfigError, HwnasError
from hwnas.fileio import csv_number, read_csv_rows, sha256_file
from hwnas.objectives import Objective
from hwnas.pareto import non_dominated_mask
from hwnas.search.problem import Problem
from hwnas.spaces import Arch, get_space


class TabularBenchmark(Problem):
    """Every arch of `space` with its accuracy (maximized) and latency (minimized) from a CSV.

    Rows are keyed by the arch string column (`arch_str`), parsed with the space so any string
    form the space accepts works; the lookups are "cheap" objectives, so a search over the table
    runs entirely in the driver.
    """

    def __init__(
        self, path: str | Path, accuracy_column: str = "accuracy", latency_column: str = "pi5_onnx_latency_ms",
        arch_column: str = "arch_str", space: str = "nb201:cifar100",
    ) -> None:
        self.path = Path(path)
        rows, _ = read_csv_rows(self.path, (arch_column, accuracy_column, latency_column), "benchmark table")
        self.space = get_space(space)
        self.accuracy_column, self.latency_column = accuracy_column, latency_column
        self.objectives = (
            Objective(accuracy_column, "max", "cheap", "", "accuracy from the table"),
            Objective(latency_column, "min", "cheap", "ms", "latency from the table"),
        )
        self.constraints = ()
        self.sha256 = sha256_file(self.path)
        if not rows:
            raise ConfigError(f"benchmark table {self.path} has no rows")
        self.values: dict[str, tuple[float, float]] = {}
        lines: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            where = f"benchmark table {self.path} line {line}"
            try:
                arch = self.space.parse(row[arch_column] or "")
            except HwnasError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            acc = csv_number(row, accuracy_column, where)
            if acc > 100:  # a task score may be negative (NAS-Bench-360's Darcy Flow has one at -0.80)
                raise ConfigError(f"{where}: {accuracy_column}={acc:g} is not an accuracy (a fraction 0..1, a "
                                  "percentage 0..100, or a task score of at most 100)")
            lat = csv_number(row, latency_column, where, positive=True)
            if arch.id in lines:
                raise ConfigError(f"{where}: arch {arch} is already on line {lines[arch.id]}; keep one row per arch")
            lines[arch.id] = line
            self.values[arch.id] = (acc, lat)
        F = self.minimized_matrix()
        self.true_front = F[non_dominated_mask(F)]

    def minimized_matrix(self) -> np.ndarray:
        return np.array([(-a, lat) for a, lat in self.values.values()], dtype=float)

    def cheap(self, arch: Arch) -> dict[str, float]:
        try:
            acc, lat = self.values[arch.id]
        except KeyError:
            raise HwnasError(f"arch {arch} is not in benchmark table {self.path}") from None
        return {self.accuracy_column: acc, self.latency_column: lat}

    def info(self) -> dict:
        return {"benchmark": {"path": str(self.path), "sha256": self.sha256, "rows": len(self.values)}}
