"""Shared test fixtures: paths to the shared benchmark and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "benchmarks" / "nb201_hw360_cifar100.csv"


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared benchmark CSV not found at {SHARED_CSV}")
    return SHARED_CSV
