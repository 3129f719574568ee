"""The export manifest (manifest.json, schema 1): what was exported, from where, checked and measured how.

Schema 1 keys (all present; unknown values are null):
    schema (1), kind ("hwnas-export-manifest"), created_utc, versions {hwnas, torch, onnx, onnxruntime, ...},
    arch {space, arch, id}, source {run, run_id, trial, pick, weights, weights_sha256, trained},
    format ("onnx" | "tensorrt" | "executorch" | "litert"), onnx {exporter, fallback_reason, opset, dynamic_batch, simplified, ...},
    parity {max_abs_diff, max_rel_diff, atol, n_inputs, passed, runtime, ...},
    files [{path (relative to the manifest), sha256, bytes, role}],
    latency {device, device_fingerprint, table_sha256, table_device, predicted_ms, measured_ms,
             p10_ms, p90_ms, cv, n, ratio} (ratio = measured_ms / predicted_ms),
    tensorrt (null, or the engine build and its parity/timing);
    executorch / litert (only with that format: file, version, delegation, parity in that runtime).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hwnas.export.errors import ManifestError
from hwnas.fileio import read_json

MANIFEST_SCHEMA = 1
MANIFEST_KIND = "hwnas-export-manifest"
MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "tensorrt", "executorch", "litert")
REQUIRED_V1 = (
    "schema", "kind", "created_utc", "versions", "arch", "source", "format", "onnx", "parity",
    "files", "latency", "tensorrt",
)
_SECTIONS_V1 = {
    "arch": ("space", "arch", "id"),
    "source": ("run", "run_id", "trial", "pick", "weights", "weights_sha256", "trained"),
    "parity": ("max_abs_diff", "atol", "passed"),
    "latency": (
        "device", "device_fingerprint", "table_sha256", "table_device", "predicted_ms", "measured_ms",
        "ratio",
    ),
}


def validate_manifest(data: Any, where: str = "manifest") -> dict[str, Any]:
    """Check a manifest dict against its schema version; returns it unchanged."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where} must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != MANIFEST_SCHEMA:
        raise ManifestError(
            f"{where} has schema {schema!r}; this hwnas reads schema {MANIFEST_SCHEMA}: re-export with "
            "`hwnas export` or upgrade hwnas"
        )
    if data.get("kind") != MANIFEST_KIND:
        raise ManifestError(f"{where} is not an hwnas export manifest (kind {data.get('kind')!r})")
    missing = [k for k in REQUIRED_V1 if k not in data]
    if missing:
        raise ManifestError(f"{where} lacks keys {missing} required by schema {MANIFEST_SCHEMA}")
    for section, keys in _SECTIONS_V1.items():
        value = data[section]
        if not isinstance(value, dict) or any(k not in value for k in keys):
            raise ManifestError(f"{where}: section {section!r} must be an object with keys {list(keys)}")
    if data["format"] not in FORMATS:
        raise ManifestError(f"{where}: format {data['format']!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(data["files"], list) or not all(
        isinstance(f, dict) and {"path", "sha256", "bytes"} <= set(f) for f in data["files"]
    ):
        raise ManifestError(f"{where}: files must be a list of {{path, sha256, bytes}} objects")
    return data


def write_manifest(path: str | Path, data: dict[str, Any]) -> Path:
    """Validate and write atomically (a crash never leaves half a manifest)."""
    validate_manifest(data)
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load and validate a manifest (a folder means its manifest.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = read_json(path, ManifestError, "export manifest", "run `hwnas export ... --out DIR` first")
    return validate_manifest(data, str(path))


def verify_files(manifest_path: str | Path) -> list[str]:
    """Files of a manifest whose hash no longer matches (empty when all are intact)."""
    from hwnas.fileio import sha256_file

    path = Path(manifest_path)
    root = path if path.is_dir() else path.parent
    bad = []
    for f in read_manifest(path)["files"]:
        target = root / f["path"]
        if not target.is_file() or sha256_file(target) != f["sha256"]:
            bad.append(f["path"])
    return bad
