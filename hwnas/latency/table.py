"""LatencyTable: versioned JSON of per-block latency (median/p10/p90/n) and memory, keyed on block signatures."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, HwnasError
from hwnas.fileio import read_json, typed
from hwnas.latency.memory import MemoryCalibration, MemoryModelError, memory_features
from hwnas.latency.model import Calibration, arch_features, arch_ms
from hwnas.latency.source import LatencySource
from hwnas.spaces import Arch, Block, get_space

SCHEMA = "hwnas.latency_table"
SCHEMA_VERSION = 3
# v1: entries + calibration. v2 adds: `reference` (a fixed model measured with the blocks, for drift
# checks), entries' `second_ms` (second-lowest round median, for noise checks), the calibration's
# `form`, `overhead_ms`, `cv_mape` and `candidates`. v3 adds entries' `layout` and `boundary_elems`
# (hwnas.devices.layout) and the calibration's `alone_ms_per_kelem` and `switch_ms_per_kelem`.
# Older files are read with those absent. Any version may carry `memory` (a fitted memory model,
# hwnas.latency.memory), written only once fitted so that the hashes of tables without it stay the same.
SUPPORTED_VERSIONS = (1, 2, 3)


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
    second_ms: float | None = None  # the second-lowest round median (None after one round)
    layout: str | None = None  # runtime tensor layouts at input>output, e.g. `nchwc>nchw` (None: not recorded)
    boundary_elems: int | None = None  # elements converted at the boundary when timed alone (reorders, add)
    # the memory figure's parts (hwnas.devices.memory.ProgramMemory; None: not recorded): its weights, and
    # the block's activation peak with its input and output counted like its other tensors
    weight_bytes: int | None = None
    graph_activation_bytes: int | None = None

    @classmethod
    def from_measurement(cls, m: Any, rounds: int = 1, second_ms: float | None = None) -> TableEntry:
        parts = (getattr(m, "extra", None) or {}).get("memory", {})
        weights, graph = parts.get("weight_bytes"), parts.get("graph_activation_bytes")
        return cls(m.median_ms, m.p10_ms, m.p90_ms, m.n, m.cv, m.activation_bytes, m.measured_peak_bytes, rounds,
                   second_ms, weight_bytes=None if weights is None else int(weights),
                   graph_activation_bytes=None if graph is None else int(graph))

    def to_dict(self) -> dict[str, Any]:
        """The entry as written (the memory parts only when recorded, so older tables keep their hash)."""
        data = asdict(self)
        for key in ("weight_bytes", "graph_activation_bytes"):
            if data[key] is None:
                del data[key]
        return data

    @property
    def layouts(self) -> tuple[str, str] | None:
        """(input, output) layouts, or None when not recorded."""
        if self.layout is None:
            return None
        first, _, last = self.layout.partition(">")
        return first, last

    def value(self, statistic: str = "median") -> float:
        return float(getattr(self, f"{statistic}_ms"))

    def merged(self, m: Any, rounds: int, statistic: str = "median") -> TableEntry:
        """This entry after one more round measured `m`: the statistics of the round with the lowest
        `statistic`, and the second-lowest value of it kept."""
        values = sorted([self.value(statistic), m.value(statistic)]
                        + ([self.second_ms] if self.second_ms is not None else []))
        if m.value(statistic) < self.value(statistic):
            return replace(TableEntry.from_measurement(m, rounds, values[1]), layout=self.layout,
                           boundary_elems=self.boundary_elems)
        return replace(self, rounds=rounds, second_ms=values[1])

    @property
    def spread(self) -> float:
        """Robust within-round spread, (p90 - p10) / median (one outlier does not move it, unlike cv)."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def disagreement(self, statistic: str = "median") -> float:
        """How much the two best rounds disagree: second-lowest / lowest value - 1 (0 after one round)."""
        best = self.value(statistic)
        return self.second_ms / best - 1.0 if self.second_ms is not None and best > 0 else 0.0

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
                 "activation_bytes": int, "measured_peak_bytes": int, "second_ms": float, "layout": str,
                 "boundary_elems": int, "weight_bytes": int, "graph_activation_bytes": int}
        optional = {"activation_bytes", "measured_peak_bytes", "second_ms", "layout", "boundary_elems", "weight_bytes",
                    "graph_activation_bytes"}
        try:
            values = {k: v if v is None and k in optional else typed(v, kinds[k], k, where)
                      for k, v in data.items()}
        except ConfigError as exc:
            raise LatencyTableError(str(exc)) from None
        for key in ("median_ms", "p10_ms", "p90_ms"):
            if not (math.isfinite(values[key]) and values[key] > 0):
                raise LatencyTableError(f"{where}: {key} must be > 0 and finite, got {values[key]!r}; "
                                        "re-measure the block with `hwnas profile`")
        layout = values.get("layout")
        if layout is not None and (layout.count(">") != 1 or (values.get("boundary_elems") or 0) < 0):
            raise LatencyTableError(f"{where}: layout must read `input>output` with boundary_elems >= 0, "
                                    f"got {layout!r}, {values.get('boundary_elems')!r}")
        return cls(**values)


class LatencyTable(LatencySource):
    """Per-block latency of one space on one device; `predict_ms(arch)` = calibrated sum over its blocks
    (hwnas.latency.model)."""

    def __init__(self, space: str, device: dict[str, Any], entries: dict[str, TableEntry] | None = None,
                 calibration: Calibration | None = None, provenance: dict[str, Any] | None = None,
                 protocol: dict[str, Any] | None = None, reference: dict[str, Any] | None = None,
                 schema_version: int = SCHEMA_VERSION) -> None:
        self.space = get_space(space).spec
        self.device = dict(device)
        self.entries: dict[str, TableEntry] = dict(entries or {})
        self.calibration = calibration or Calibration()
        self.provenance = dict(provenance or {})
        self.protocol = dict(protocol or {})
        self.reference = dict(reference) if reference else None  # fixed model measured with the blocks
        self.schema_version = schema_version  # as read; saving writes the current version
        self.drift_factor = 1.0  # set by hwnas.latency.drift.apply_drift at use time; never saved
        self.memory = MemoryCalibration()  # the memory model's fit (hwnas.latency.memory)

    # -- identity --------------------------------------------------------------------------
    @property
    def statistic(self) -> str:
        """Which per-block statistic the table sums: the device spec's (median unless it says p10)."""
        return str(self.device.get("statistic", "median"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "space": self.space,
            "device": self.device,
            "protocol": self.protocol,
            "calibration": asdict(self.calibration),
            "provenance": self.provenance,
            "reference": self.reference,
            "entries": {k: v.to_dict() for k, v in sorted(self.entries.items())},
            **({"memory": self.memory.to_dict()} if self.memory.n else {}),
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
        known = {"schema", "schema_version", "space", "device", "protocol", "calibration", "provenance", "entries",
                 "memory"}
        if version >= 2:
            known.add("reference")
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
            if data.get("reference") is not None:
                typed(data["reference"], dict, "reference", source)
        except ConfigError as exc:
            raise LatencyTableError(str(exc)) from None
        entries = {k: TableEntry.from_dict(v, f"{source} entry {k}") for k, v in data["entries"].items()}
        table = cls(data["space"], data["device"], entries,
                    Calibration.from_dict(data.get("calibration", {}), f"{source} calibration", LatencyTableError),
                    data.get("provenance", {}), data.get("protocol", {}), data.get("reference"), version)
        if "memory" in data:
            table.memory = MemoryCalibration.from_dict(data["memory"], f"{source} memory")
        return table

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

    def features(self, arch: Arch, layouts: bool = True) -> dict[str, float]:
        """The latency model's features of `arch` (hwnas.latency.model.arch_features); MissingEntryError on a
        gap. Switches count only in chain spaces, whose neighbours are consecutive blocks."""
        blocks = self.blocks(arch)
        batch = int(self.device.get("batch_size", 1))
        return arch_features([self.entry(b) for b in blocks], [batch * math.prod(b.input_shape) for b in blocks],
                             self.statistic, bool(getattr(get_space(self.space), "chain", False)), layouts)

    def sum_ms(self, arch: Arch) -> float:
        """Uncalibrated sum of the block medians."""
        return float(sum(self.entry(b).value(self.statistic) for b in self.blocks(arch)))

    def layout_kelems(self, arch: Arch) -> tuple[float, float]:
        """(boundary kilo-elements its blocks converted when timed alone, kilo-elements the network reorders
        between neighbours whose layouts differ); (0, 0) unless every entry recorded its layouts."""
        f = self.features(arch)
        return float(f["alone_ms_per_kelem"]), float(f["switch_ms_per_kelem"])

    def predict_ms(self, arch: Arch) -> float:
        """Predicted end-to-end latency: the calibrated latency model over its blocks (MissingEntryError on a
        gap), times the drift factor when a drift check found this machine faster or slower than at profiling."""
        cal = self.calibration
        features = self.features(arch, layouts=bool(cal.alone_ms_per_kelem or cal.switch_ms_per_kelem))
        return float(arch_ms(cal, features)) * self.drift_factor

    def describe(self) -> str:
        return self.calibration.describe()

    def peak_activation_bytes(self, arch: Arch) -> int | None:
        """Largest analytic peak activation of any block of the arch (None when not recorded)."""
        values = [self.entry(b).activation_bytes for b in self.blocks(arch)]
        return None if any(v is None for v in values) else int(max(values))

    def has_memory(self) -> bool:
        """Whether every entry has a measured peak (tables before measured memory have 0 or none)."""
        return bool(self.entries) and all((e.measured_peak_bytes or 0) > 0 for e in self.entries.values())

    def memory_features(self, arch: Arch) -> dict[str, float]:
        """The memory model's features of `arch` (hwnas.latency.memory); MemoryModelError without measured peaks."""
        entries = [self.entry(b) for b in self.blocks(arch)]
        peaks = [e.measured_peak_bytes or 0 for e in entries]
        if min(peaks) <= 0:
            raise MemoryModelError(
                f"latency table for {self.space} on {self.device_name!r} has no measured memory for some blocks "
                f"(an older table, or a runtime that measures none); re-profile it into a new file with "
                f"`hwnas profile --device <spec with measure_memory: true> --space {self.space} --out NEW.json "
                "--calibrate 20`")
        weights = [e.weight_bytes for e in entries]
        graph = [e.graph_activation_bytes for e in entries]
        return memory_features(peaks, None if None in weights else weights, None if None in graph else graph)

    def predict_peak_bytes(self, arch: Arch) -> float:
        """Predicted peak memory (bytes) of running `arch` end to end: the fitted memory model over its
        blocks' measured peaks (their sum while unfitted); MemoryModelError without measured peaks."""
        return float(self.memory.predict(self.memory_features(arch)))

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
