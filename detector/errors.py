"""Exceptions that carry a message meant for the person running detector.

The CLI prints a :class:`DetectorError` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""

__all__ = ["DetectorError", "DataError", "CheckpointError", "ConfigError"]


class DetectorError(Exception):
    """Base class: the message alone tells the user what is wrong and, where possible, the fix."""


class DataError(DetectorError, ValueError):
    """An input file or directory cannot be read as the format it claims to be."""


class CheckpointError(DetectorError, ValueError):
    """A model checkpoint is missing, truncated, foreign or incompatible."""


class ConfigError(DetectorError, ValueError):
    """A setting has a value detector cannot use."""
