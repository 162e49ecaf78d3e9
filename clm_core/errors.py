"""Errors a user can cause, each with a sentence a marketer understands.

Pages catch :class:`ClmError` (and only it) to show ``st.error``; the CLI turns it
into one line on stderr and a non-zero exit. Anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "ClmError",
    "InputFileError",
    "MappingError",
    "SchemaError",
    "DataRangeError",
    "ConvergenceError",
    "NoDatasetError",
    "ResourceLimitError",
    "EngineUnavailableError",
]


class ClmError(Exception):
    """Base class for problems with the user's input, never with the code."""


class InputFileError(ClmError):
    """The file cannot be read as a table (empty, binary, unknown format...)."""


class MappingError(ClmError):
    """The column mapping is incomplete or inconsistent."""


class SchemaError(ClmError):
    """A table lacks a column that a computation needs."""


class DataRangeError(ClmError):
    """The data do not cover what the analysis needs (too short, no repeats...)."""


class ConvergenceError(ClmError):
    """A model could not be fitted to the data."""


class NoDatasetError(ClmError):
    """No dataset has been loaded into the workspace yet."""


class ResourceLimitError(ClmError):
    """The data or the computation needs more memory or disk than this server may give it."""


class EngineUnavailableError(ClmError):
    """The chosen compute engine cannot run here (Spark without pyspark or Java, a cluster that cannot be reached)."""
