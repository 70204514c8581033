"""Errors a user can act on.

Every error raised for bad input names what is wrong (file, row, column, id) in one line.
The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class MetarecError(Exception):
    """Base class of the errors metarec raises for bad input or configuration."""


class DataError(MetarecError):
    """A data file or frame cannot be read as asked (missing column, bad value, empty file)."""


class ConfigError(MetarecError):
    """An unknown model, protocol, format or parameter, or an inconsistent option."""
