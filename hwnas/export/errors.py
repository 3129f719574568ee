"""Export error types: every one says what to change."""

from __future__ import annotations

from hwnas.errors import ExportError, HwnasError

__all__ = ["ExportError", "ManifestError", "ParityError", "PickError"]


class ParityError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


class PickError(HwnasError):
    """A `--pick` expression is malformed or selects nothing from the run's Pareto front."""


class ManifestError(HwnasError):
    """An export manifest is malformed or of an unknown schema version."""
