"""Exceptions that carry a message meant for the person running detector.

The CLI prints a :class:`DetectorError` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""

from collections.abc import Sequence

__all__ = ["DetectorError", "DataError", "CheckpointError", "ConfigError", "listed"]


def listed(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` of ``names``, comma-separated, and how many more: a one-line message
    stays one line however many streams or columns it is about."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class DetectorError(Exception):
    """Base class: the message alone tells the user what is wrong and, where possible, the fix."""


class DataError(DetectorError, ValueError):
    """An input file or directory cannot be read as the format it claims to be."""


class CheckpointError(DetectorError, ValueError):
    """A model checkpoint is missing, truncated, foreign or incompatible."""


class ConfigError(DetectorError, ValueError):
    """A setting has a value detector cannot use."""
