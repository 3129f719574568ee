"""Latency tables: the versioned schema, builder, predictor + calibration, validation, few-shot fitting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hwnas.latency.table import (
    SCHEMA_VERSION,
    Calibration,
    LatencyTable,
    LatencyTableError,
    MissingEntryError,
    TableEntry,
)


def load_predictor(path: str | os.PathLike[str]) -> Any:
    """A measured `LatencyTable` or a few-shot `FittedTable`, by the file's schema; both have
    `predict_ms(arch)` and `sha256`."""
    try:
        schema = json.loads(Path(path).read_text()).get("schema")
    except (OSError, json.JSONDecodeError, AttributeError):
        schema = None
    if schema == "hwnas.fitted_table":
        from hwnas.latency.fit import FittedTable

        return FittedTable.load(path)
    return LatencyTable.load(path)


__all__ = [
    "SCHEMA_VERSION", "Calibration", "LatencyTable", "LatencyTableError", "MissingEntryError", "TableEntry",
    "load_predictor",
]
