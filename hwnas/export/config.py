"""Export recipes (export/*.yaml): frozen dataclasses, unknown keys are errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.export.parity import DEFAULT_ATOL, ORT_LEVELS
from hwnas.fileio import data_dir, find_named_file, read_yaml, typed
from hwnas.onnx_export import DEFAULT_OPSET

RECIPE_DIR = data_dir("export")


@dataclass(frozen=True)
class ParityConfig:
    atol: float = DEFAULT_ATOL
    n_inputs: int = 3
    seed: int = 0
    graph_optimization: str = "all"


@dataclass(frozen=True)
class MeasureConfig:
    batch_size: int = 1


@dataclass(frozen=True)
class TensorRTConfig:
    fp16: bool = False
    workspace_mib: int = 1024
    atol_fp32: float = 1e-3
    atol_fp16: float = 5e-2


@dataclass(frozen=True)
class ExportConfig:
    """How `hwnas export` builds, checks and measures an ONNX model (see export/default.yaml)."""

    opset: int = DEFAULT_OPSET
    exporter: str = "auto"
    dynamic_batch: bool = False
    simplify: bool = True
    parity: ParityConfig = field(default_factory=ParityConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tensorrt: TensorRTConfig = field(default_factory=TensorRTConfig)

    def __post_init__(self) -> None:
        if self.exporter not in ("auto", "dynamo", "legacy"):
            raise ConfigError(f"export exporter {self.exporter!r} is not one of auto, dynamo, legacy")
        if self.parity.atol <= 0 or self.parity.n_inputs < 1:
            raise ConfigError("export parity needs atol > 0 and n_inputs >= 1")
        if self.parity.graph_optimization not in ORT_LEVELS:
            raise ConfigError(
                f"parity graph_optimization {self.parity.graph_optimization!r}; valid: {', '.join(ORT_LEVELS)}"
            )
        if self.measure.batch_size < 1:
            raise ConfigError("export measure batch_size must be >= 1")

    def with_overrides(self, **kw: Any) -> ExportConfig:
        """A copy with top-level fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def _build(cls, data: Mapping[str, Any], where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in {where}; valid: {', '.join(known)}")
    kw = {}
    nested = {"parity": ParityConfig, "measure": MeasureConfig, "tensorrt": TensorRTConfig}
    for key, value in data.items():
        if key in nested and cls is ExportConfig:
            kw[key] = _build(nested[key], value or {}, f"{where}.{key}")
        else:
            default = known[key].default
            kw[key] = typed(value, type(default), key, where) if isinstance(default, (bool, int, float, str)) else value
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"bad values in {where}: {exc}") from exc


def export_config_from_dict(data: Mapping[str, Any], where: str = "export recipe") -> ExportConfig:
    return _build(ExportConfig, data, where)


def load_export_config(path_or_name: str | Path | None = None) -> ExportConfig:
    """A recipe from a YAML path or a name in export/ (`default`, `fast`); None gives the default."""

    if path_or_name is None:
        path_or_name = "default"
    path = find_named_file(path_or_name, [RECIPE_DIR], "export recipe")
    return export_config_from_dict(read_yaml(path, "export recipe") or {}, str(path))
