"""Exports that open cleanly in Excel and Google Sheets and cannot inject formulas.

A cell that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return is
run as a formula by spreadsheets (OWASP "CSV injection"); such text cells are
prefixed with an apostrophe. Numbers stay numbers. CSV is written as UTF-8 with
a BOM so Excel shows accents and currency signs correctly.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

__all__ = ["safe_frame", "to_csv_bytes", "to_excel_bytes", "write_table"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot be run as formulas; numeric columns untouched."""
    safe = frame.copy()
    for column in safe.columns:
        if not (pd.api.types.is_numeric_dtype(safe[column]) or pd.api.types.is_datetime64_any_dtype(safe[column])
                or pd.api.types.is_bool_dtype(safe[column])):
            safe[column] = safe[column].map(_neutralise)
    safe.columns = [_neutralise(str(name)) for name in safe.columns]
    return safe


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 (with BOM) CSV bytes of a formula-safe copy, dates as ISO text."""
    return safe_frame(frame).to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S").encode("utf-8-sig")


def to_excel_bytes(sheets: dict[str, pd.DataFrame] | pd.DataFrame) -> bytes:
    """An .xlsx workbook (one sheet per frame) of formula-safe copies."""
    if isinstance(sheets, pd.DataFrame):
        sheets = {"data": sheets}
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            safe = safe_frame(frame)
            for column in safe.columns:
                if isinstance(safe[column].dtype, pd.DatetimeTZDtype):
                    safe[column] = safe[column].dt.tz_localize(None)
            safe.to_excel(writer, sheet_name=name[:31], index=False)
    return buffer.getvalue()


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a formula-safe table: Excel for a name ending in .xlsx, CSV otherwise."""
    path = Path(path)
    path.write_bytes(to_excel_bytes(frame) if path.suffix.lower() == ".xlsx" else to_csv_bytes(frame))
