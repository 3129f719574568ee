"""The `hwnas` command: argument parsing, output and error reporting; each group lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hwnas.cli import core, exporting, profiling, search
from hwnas.errors import HwnasError

# Each module exposes `register(subparsers)`; its subcommands set `func(args) -> int`.
COMMAND_MODULES = [core, profiling, exporting, search]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Hardware-aware multi-objective neural architecture search.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hwnas` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HwnasError as exc:
        print("hwnas: error: " + " ".join(str(exc).split()), file=sys.stderr)  # always one line
        return 2
    except OSError as exc:  # a file or folder the checks up front could not foresee
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"hwnas: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
