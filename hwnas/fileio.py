"""Reading the project's JSON/YAML files and finding named data files, with errors that say what to do."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, HwnasError


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_csv_rows(
    path: str | os.PathLike[str], required: Iterable[str], what: str
) -> tuple[list[dict[str, str]], list[str]]:
    """Rows (as dicts) and column names of a CSV file, after checking it exists and has `required` columns."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        missing = [c for c in required if c not in columns]
        if missing:
            raise ConfigError(f"{what} {path} has no column {missing[0]!r}; columns: {', '.join(columns)}")
        return list(reader), columns


def read_json(path: str | os.PathLike[str], error: type[HwnasError], what: str, fix: str) -> Any:
    """Parsed JSON of `path`; a missing or malformed file raises `error` naming `what` and the `fix`."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist; {fix}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON ({exc}); {fix}") from None


def read_yaml(path: str | os.PathLike[str], what: str, error: type[HwnasError] = ConfigError) -> Any:
    """Parsed YAML (safe loader) of `path`; a missing or malformed file raises `error`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None


def find_named_file(path_or_name: str | os.PathLike[str], folders: Iterable[Path], what: str) -> Path:
    """`path_or_name` itself if it is a file, else `<folder>/<name>.yaml` from the first folder holding it."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    folders = list(dict.fromkeys(Path(d).resolve() for d in folders))
    for folder in folders:
        candidate = folder / f"{path_or_name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in folders if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(
        f"no {what} {str(path_or_name)!r}: not a file and not a name under "
        f"{', '.join(str(d) for d in folders)}; known {what}s: {', '.join(known) or '(none)'}"
    )
