"""Printing results: JSON for machines, aligned text for people."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser, help_text: str = "print machine-readable JSON") -> None:
    """The `--json` flag every command has."""
    parser.add_argument("--json", action="store_true", help=help_text)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print `data` as JSON when asked, else `text` (or a key: value listing of a dict)."""
    if as_json:
        json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")
        return
    if text is None and isinstance(data, dict):
        width = max((len(str(k)) for k in data), default=0)
        text = "\n".join(f"{k:<{width}}  {v}" for k, v in data.items())
    print(text if text is not None else data)


def check_counts(args: argparse.Namespace, **minimums: int) -> None:
    """Refuse a count flag below its minimum (e.g. `check_counts(args, rounds=1, calibrate=0)`)
    before any work starts, so nothing (not even an empty run) is left behind."""
    from hwnas.errors import ConfigError

    for dest, low in minimums.items():
        value = getattr(args, dest, None)
        if value is not None and value < low:
            raise ConfigError(f"--{dest.replace('_', '-')} must be >= {low}, got {value}")
