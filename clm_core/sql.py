"""The one way a name from a user's file reaches SQL text.

Column names come from uploaded files and may hold anything: quotes, ``--``, ``/* */``, semicolons,
newlines, whole SQL statements. They reach SQL only through :func:`quote_identifier`; values never
reach SQL text at all (they go as bound parameters). This module imports nothing of the package, so
the lowest layer (the reader) can use it.
"""

from __future__ import annotations

__all__ = ["quote_identifier"]


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier in the standard form DuckDB reads: wrapped in double quotes,
    with every double quote inside doubled. Refuses a NUL character, which would end the name early in
    some engines (the reader removes them from file headers). A Spark engine quotes with backticks: its
    own version of this function goes beside this one."""
    if not isinstance(name, str):
        raise TypeError(f"an identifier is text, got {type(name).__name__}")
    if "\x00" in name:
        raise ValueError("an identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'
