"""Error types: every error hwnas raises on bad input subclasses HwnasError and says how to fix it."""

from __future__ import annotations


class HwnasError(Exception):
    """Base class of all hwnas errors; the message tells the user what to change."""


class ConfigError(HwnasError):
    """A config file or option is malformed or has unknown keys."""


class UnknownNameError(HwnasError):
    """A name was looked up in a registry that does not hold it."""


class DuplicateNameError(HwnasError):
    """A name was registered twice in one registry."""


class ArchError(HwnasError):
    """An architecture string or genotype is not valid for its search space."""


class DatasetError(HwnasError):
    """A dataset name is unknown or its data cannot be loaded."""


class MissingBackendError(HwnasError):
    """An optional backend is not installed; the message names the pip extra to install."""

    def __init__(self, backend: str, extra: str, detail: str = "") -> None:
        msg = f"{backend} is not available; install it with `pip install 'hwnas[{extra}]'`"
        super().__init__(f"{msg} ({detail})" if detail else msg)
        self.backend = backend
        self.extra = extra


class ExportError(HwnasError):
    """Exporting a network to ONNX or an engine failed; the message says why and what to try."""
