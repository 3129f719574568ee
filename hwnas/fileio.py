"""Reading the project's JSON/YAML files and finding named data files, with errors that say what to do."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hwnas.config import typed  # noqa: F401 - re-exported: the schema layer owns type checks
from hwnas.errors import ConfigError, HwnasError

# Built-in data folders: top-level folders of the source tree, shipped in the wheel as hwnas/_data/<kind>.
DATA_KINDS = ("devices", "latency_tables", "search", "export", "benchmarks/tables")
_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """The built-in data folder `kind` (one of DATA_KINDS): inside the installed wheel
    (hwnas/_data/<kind>), else the source tree's top-level folder (checkout or editable install)."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"no built-in data folder {kind!r}; valid: {', '.join(DATA_KINDS)}")
    for folder in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if folder.is_dir():
            return folder
    raise ConfigError(
        f"built-in data folder {kind!r} is missing from this hwnas install ({_PACKAGE}); reinstall hwnas "
        "from a wheel or a full source checkout"
    )


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
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            missing = [c for c in required if c not in columns]
            if missing:
                raise ConfigError(f"{what} {path} has no column {missing[0]!r}; columns: {', '.join(columns)[:300]}")
            return list(reader), columns
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{what} {path} is not a text CSV (UTF-8, comma-separated): {exc}") from None


def csv_number(row: dict[str, str], column: str, where: str, positive: bool = False) -> float:
    """The finite number in `row[column]` (> 0 with `positive`); `where` names the file and line."""
    raw = row.get(column)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {column}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {column} is {raw!r}; every value must be a finite number")
    if positive and value <= 0:
        raise ConfigError(f"{where}: {column}={raw!r} must be > 0 (a latency or cost)")
    return value


def check_output_path(path: str | os.PathLike[str], what: str, folder: bool = False) -> Path:
    """Fail before any work when `path` cannot be written: a file (or, with `folder`, a folder) whose
    nearest existing ancestor must be a writable directory, and which is not of the other kind."""
    path = Path(path)
    if path.exists() and folder and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a folder; pass a new or existing folder")
    if path.exists() and not folder and path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; pass a file path such as {path / 'out'}")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {path} cannot be written: {parent} is not a directory")
    import tempfile

    try:  # a probe file (removed at once): permission bits alone do not tell, e.g. for root or in /proc
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be written: {exc.strerror or exc} in {parent}") from None
    return path


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
        return yaml.load(path.read_text(), Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None


@functools.cache
def _unique_key_loader() -> type:
    """The YAML safe loader, refusing a repeated mapping key (a silent overwrite hides a typo)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) and seen.setdefault(key, line) != line:
                    raise yaml.YAMLError(f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one")
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def find_named_file(
    path_or_name: str | os.PathLike[str], folders: Iterable[Path], what: str, suffix: str = ".yaml"
) -> Path:
    """`path_or_name` itself if it is a file, else `<folder>/<name><suffix>` from the first folder holding it."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    folders = list(dict.fromkeys(Path(d).resolve() for d in folders))
    for folder in folders:
        candidate = folder / f"{path_or_name}{suffix}"
        if candidate.is_file():
            return candidate
    known = sorted({p.name[: -len(suffix)] for d in folders if d.is_dir() for p in d.glob(f"*{suffix}")})
    raise ConfigError(
        f"no {what} {str(path_or_name)!r}: not a file and not a name under "
        f"{', '.join(str(d) for d in folders)}; known {what}s: {', '.join(known) or '(none)'}"
    )
