"""Test fixtures: the NB201 x HW-NAS-Bench-360 table shipped in the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH_CSV = REPO / "benchmarks" / "tables" / "nb201-hw360-cifar100.csv"


@pytest.fixture(scope="session")
def bench_csv() -> Path:
    """The shipped benchmark table (a missing file is a failure, never a skip)."""
    assert BENCH_CSV.is_file(), f"the benchmark table {BENCH_CSV} is part of the repository"
    return BENCH_CSV
