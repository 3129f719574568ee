"""Export error types: every one says what to change."""

from __future__ import annotations

from hwnas.errors import HwnasError


class ExportError(HwnasError):
    """Exporting a network to ONNX or an engine failed; the message says why and what to try."""


class ParityError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


class PickError(HwnasError):
    """A `--pick` expression is malformed or selects nothing from the run's Pareto front."""


class ManifestError(HwnasError):
    """An export manifest is malformed or of an unknown schema version."""
