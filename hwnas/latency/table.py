"""LatencyTable: versioned JSON of per-block latency (median/p10/p90/n) and memory, keyed on block signatures."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, HwnasError
from hwnas.fileio import read_json, typed
from hwnas.spaces import Arch, Block, get_space

SCHEMA = "hwnas.latency_table"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class LatencyTableError(HwnasError):
    """A latency table file is malformed, of an unsupported schema, or for another device/space."""


class MissingEntryError(LatencyTableError):
    """An arch needs a block the table has no measurement for (never treated as zero)."""


@dataclass(frozen=True)
class TableEntry:
    """Measured latency of one block signature, plus memory."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    cv: float = 0.0
    activation_bytes: int | None = None
    measured_peak_bytes: int | None = None
    rounds: int = 1  # measurement rounds done; the statistics are those of the round with the lowest median

    @classmethod
    def from_measurement(cls, m: Any, rounds: int = 1) -> TableEntry:
        return cls(m.median_ms, m.p10_ms, m.p90_ms, m.n, m.cv, m.activation_bytes, m.measured_peak_bytes, rounds)

    @classmethod
    def from_dict(cls, data: Any, where: str = "table entry") -> TableEntry:
        """An entry; `where` names the file and entry in errors (types checked, latencies finite and > 0)."""
        if not isinstance(data, dict):
            raise LatencyTableError(f"{where} must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown or not {"median_ms", "p10_ms", "p90_ms", "n"} <= set(data):
            raise LatencyTableError(f"{where} must have median_ms, p10_ms, p90_ms, n (unknown: {sorted(unknown)})")
        kinds = {"median_ms": float, "p10_ms": float, "p90_ms": float, "cv": float, "n": int, "rounds": int,
                 "activation_bytes": int, "measured_peak_bytes": int}
        try:
            values = {k: v if v is None and k.endswith("bytes") else typed(v, kinds[k], k, where)
                      for k, v in data.items()}
        except ConfigError as exc:
            raise LatencyTableError(str(exc)) from None
        for key in ("median_ms", "p10_ms", "p90_ms"):
            if not (math.isfinite(values[key]) and values[key] > 0):
                raise LatencyTableError(f"{where}: {key} must be > 0 and finite, got {values[key]!r}; "
                                        "re-measure the block with `hwnas profile`")
        return cls(**values)


@dataclass(frozen=True)
class Calibration:
    """End-to-end correction: latency_ms = scale * sum(block medians) + per_block_ms * blocks + offset_ms."""

    scale: float = 1.0
    per_block_ms: float = 0.0
    offset_ms: float = 0.0
    n: int = 0  # end-to-end measurements it was fitted on (0: identity)
    fitted_on: list[str] = field(default_factory=list)

    def apply(self, sum_ms: float, n_blocks: int) -> float:
        return self.scale * sum_ms + self.per_block_ms * n_blocks + self.offset_ms

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        if not isinstance(data, dict):
            raise LatencyTableError(f"{where} must be a mapping, got {data!r} ({type(data).__name__})")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise LatencyTableError(f"{where} has unknown keys {sorted(unknown)}")
        kinds = {"scale": float, "per_block_ms": float, "offset_ms": float, "n": int, "fitted_on": list}
        try:
            values = {k: typed(v, kinds[k], k, where) for k, v in data.items()}
        except ConfigError as exc:
            raise LatencyTableError(str(exc)) from None
        bad = [k for k in ("scale", "per_block_ms", "offset_ms") if k in values and not math.isfinite(values[k])]
        if bad:
            raise LatencyTableError(f"{where}: {bad[0]} must be finite, got {values[bad[0]]!r}")
        return cls(**values)


class LatencyTable:
    """Per-block latency of one space on one device; `predict_ms(arch)` = calibrated sum over its blocks."""

    def __init__(self, space: str, device: dict[str, Any], entries: dict[str, TableEntry] | None = None,
                 calibration: Calibration | None = None, provenance: dict[str, Any] | None = None,
                 protocol: dict[str, Any] | None = None) -> None:
        self.space = get_space(space).spec
        self.device = dict(device)
        self.entries: dict[str, TableEntry] = dict(entries or {})
        self.calibration = calibration or Calibration()
        self.provenance = dict(provenance or {})
        self.protocol = dict(protocol or {})

    # -- identity --------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        return str(self.device.get("name", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "space": self.space,
            "device": self.device,
            "protocol": self.protocol,
            "calibration": asdict(self.calibration),
            "provenance": self.provenance,
            "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
        }

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        """Content hash of the table (canonical JSON), recorded by trials and manifests."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    # -- io --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise LatencyTableError(f"{source} is not an hwnas latency table (expected \"schema\": \"{SCHEMA}\")")
        version = data.get("schema_version")
        if version not in SUPPORTED_VERSIONS:
            raise LatencyTableError(
                f"{source} has schema_version {version!r}; this hwnas reads {SUPPORTED_VERSIONS}: "
                "rebuild it with `hwnas profile` or upgrade hwnas"
            )
        known = {"schema", "schema_version", "space", "device", "protocol", "calibration", "provenance", "entries"}
        unknown = set(data) - known
        if unknown:
            raise LatencyTableError(f"{source} has unknown keys {sorted(unknown)}")
        missing = [k for k in ("space", "device", "entries") if k not in data]
        if missing:
            raise LatencyTableError(f"{source} has no {missing[0]!r}; rebuild it with `hwnas profile`")
        try:
            typed(data["space"], str, "space", source)
            for key in ("device", "entries", "calibration", "provenance", "protocol"):
                typed(data.get(key, {}), dict, key, source)
        except ConfigError as exc:
            raise LatencyTableError(str(exc)) from None
        entries = {k: TableEntry.from_dict(v, f"{source} entry {k}") for k, v in data["entries"].items()}
        return cls(data["space"], data["device"], entries,
                   Calibration.from_dict(data.get("calibration", {}), f"{source} calibration"),
                   data.get("provenance", {}), data.get("protocol", {}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        data = read_json(path, LatencyTableError, "latency table", "build it with `hwnas profile`")
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename), so an interrupted write never leaves a broken table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; tables are shared artefacts
        os.replace(tmp, path)
        return path

    # -- compatibility ---------------------------------------------------------------------
    def check_compatible(self, device_identity: dict[str, Any] | None = None, space: str | None = None) -> None:
        """Refuse a table made for another device (identity settings) or another space."""
        if space is not None and get_space(space).spec != self.space:
            raise LatencyTableError(
                f"latency table is for space {self.space}, not {get_space(space).spec}; use a table built "
                f"with `hwnas profile --space {get_space(space).spec}` or pass --out to a new file"
            )
        if device_identity is not None:
            diffs = [f"{k}: table {self.device.get(k)!r} vs {v!r}" for k, v in device_identity.items()
                     if k != "host" and self.device.get(k) != v]
            if diffs:
                raise LatencyTableError(
                    f"latency table is for device {self.device_name!r}, not this device spec ({'; '.join(diffs)}); "
                    "use a table built for this device or write to a new file"
                )

    # -- prediction ------------------------------------------------------------------------
    def entry(self, block: Block) -> TableEntry:
        try:
            return self.entries[block.key]
        except KeyError:
            raise MissingEntryError(
                f"latency table for {self.space} on {self.device_name!r} has no entry for block {block.key}; "
                "re-run `hwnas profile` on it to add the missing blocks"
            ) from None

    def blocks(self, arch: Arch) -> list[Block]:
        if arch.space != self.space:
            raise LatencyTableError(f"arch {arch} is from space {arch.space}, but this table is for {self.space}")
        return get_space(self.space).blocks(arch)

    def sum_ms(self, arch: Arch) -> float:
        """Uncalibrated sum of the block medians."""
        return float(sum(self.entry(b).median_ms for b in self.blocks(arch)))

    def predict_ms(self, arch: Arch) -> float:
        """Predicted end-to-end latency: calibrated sum of block medians (MissingEntryError on a gap)."""
        blocks = self.blocks(arch)
        total = sum(self.entry(b).median_ms for b in blocks)
        return float(self.calibration.apply(total, len(blocks)))

    def peak_activation_bytes(self, arch: Arch) -> int | None:
        """Largest analytic peak activation of any block of the arch (None when not recorded)."""
        values = [self.entry(b).activation_bytes for b in self.blocks(arch)]
        return None if any(v is None for v in values) else int(max(values))

    def missing(self, blocks: list[Block]) -> list[Block]:
        seen: dict[str, Block] = {}
        for b in blocks:
            if b.key not in self.entries:
                seen.setdefault(b.key, b)
        return list(seen.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"LatencyTable(space={self.space!r}, device={self.device_name!r}, entries={len(self)})"
