"""Latency tables: the versioned schema, builder, predictor + calibration, validation, few-shot fitting."""

from hwnas.latency.table import (
    SCHEMA_VERSION,
    Calibration,
    LatencyTable,
    LatencyTableError,
    MissingEntryError,
    TableEntry,
)

__all__ = [
    "SCHEMA_VERSION", "Calibration", "LatencyTable", "LatencyTableError", "MissingEntryError", "TableEntry",
]
