"""Exceptions a user can meet when loading models: each names the file, the value and the fix."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError"]


class ConfigError(ValueError):
    """An mmdetection config could not be read, or asks for something cendetect does not support.

    Attributes:
        source: where the config text came from (a path, or ``<path>:meta['cfg']``).
        lineno: 1-based line of the offending construct, or None when not tied to a line.
    """

    def __init__(self, message: str, *, source: str | None = None, lineno: int | None = None):
        super().__init__(message)
        self.source = source
        self.lineno = lineno


class CheckpointError(ValueError):
    """A checkpoint file could not be loaded as data, or does not fit the model.

    Attributes:
        path: the checkpoint file the error is about.
    """

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path
