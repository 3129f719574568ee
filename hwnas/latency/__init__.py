"""Latency tables: the versioned schema, builder, predictor + calibration, validation, few-shot fitting."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hwnas.latency.model import Calibration
from hwnas.latency.source import LatencySource
from hwnas.latency.table import (
    SCHEMA_VERSION,
    LatencyTable,
    LatencyTableError,
    MissingEntryError,
    TableEntry,
)


def load_predictor(path: str | os.PathLike[str]) -> LatencySource:
    """A measured `LatencyTable` or a few-shot `FittedTable`, by the file's schema (both `LatencySource`s)."""
    try:
        schema = json.loads(Path(path).read_text()).get("schema")
    except (OSError, json.JSONDecodeError, AttributeError):
        schema = None
    if schema == "hwnas.fitted_table":
        from hwnas.latency.fit import FittedTable

        return FittedTable.load(path)
    return LatencyTable.load(path)


__all__ = [
    "SCHEMA_VERSION", "Calibration", "LatencySource", "LatencyTable", "LatencyTableError", "MissingEntryError",
    "TableEntry", "load_predictor",
]
