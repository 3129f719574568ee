"""Export recipes (export/*.yaml): frozen dataclasses, unknown keys are errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas.config import check, parse, setting
from hwnas.export.parity import DEFAULT_ATOL, ORT_LEVELS
from hwnas.fileio import data_dir, find_named_file, read_yaml
from hwnas.onnx_export import DEFAULT_OPSET

RECIPE_DIR = data_dir("export")


@dataclass(frozen=True)
class ParityConfig:
    atol: float = setting(DEFAULT_ATOL, gt=0)
    n_inputs: int = setting(3, ge=1)
    seed: int = 0
    graph_optimization: str = setting("all", choices=ORT_LEVELS)

    def __post_init__(self) -> None:
        check(self, "export parity")


@dataclass(frozen=True)
class MeasureConfig:
    batch_size: int = setting(1, ge=1)

    def __post_init__(self) -> None:
        check(self, "export measure")


@dataclass(frozen=True)
class TensorRTConfig:
    fp16: bool = False
    workspace_mib: int = setting(1024, ge=1)
    atol_fp32: float = setting(1e-3, gt=0)
    atol_fp16: float = setting(5e-2, gt=0)

    def __post_init__(self) -> None:
        check(self, "export tensorrt")


@dataclass(frozen=True)
class ExportConfig:
    """How `hwnas export` builds, checks and measures an ONNX model (see export/default.yaml); the fields
    are the keys of an export recipe, checked by `hwnas.config`."""

    opset: int = setting(DEFAULT_OPSET, ge=1)
    exporter: str = setting("auto", choices=("auto", "dynamo", "legacy"))
    dynamic_batch: bool = False
    simplify: bool = True
    parity: ParityConfig = field(default_factory=ParityConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    tensorrt: TensorRTConfig = field(default_factory=TensorRTConfig)

    def __post_init__(self) -> None:
        check(self, "export recipe")

    def with_overrides(self, **kw: Any) -> ExportConfig:
        """A copy with top-level fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def export_config_from_dict(data: Mapping[str, Any], where: str = "export recipe") -> ExportConfig:
    return parse(ExportConfig, data, where)


def load_export_config(path_or_name: str | Path | None = None) -> ExportConfig:
    """A recipe from a YAML path or a name in export/ (`default`, `fast`); None gives the default."""

    if path_or_name is None:
        path_or_name = "default"
    path = find_named_file(path_or_name, [RECIPE_DIR], "export recipe")
    return export_config_from_dict(read_yaml(path, "export recipe") or {}, str(path))
