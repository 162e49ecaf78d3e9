"""Read an uploaded file into a DuckDB table of text columns, without Python row loops.

The reader sniffs what the file is (CSV with any delimiter, whitespace-separated
text, Excel, Parquet; plain, .gz or .zip; UTF-8, UTF-8 with BOM, Latin-1 or
cp1252), decides whether the first line is a header, and loads every cell as
text into ``raw_upload`` in file order. Typing happens later, in validation,
so that a bad cell becomes a counted, reportable row instead of a crash.

This module is part of the DuckDB engine layer: a Spark port replaces it.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
from isal import igzip, isal_zlib

from clm_core.errors import InputFileError

__all__ = ["RAW_TABLE", "LINE_COLUMN", "RAW_LINE", "SourceInfo", "sniff", "excel_sheet_names", "load_raw"]

RAW_TABLE = "raw_upload"
# 1-based position of the row among the file's data rows, so every rejected row can be traced back to the
# file. ``raw_upload`` is written once, in file order, so its rowid + 1 is that position (RAW_LINE).
LINE_COLUMN = "source_row"
RAW_LINE = "(rowid + 1)"

_SAMPLE_BYTES = 1 << 20
_DELIMITERS = (",", ";", "\t", "|")
_NUMBER_OR_DATE = re.compile(
    r"^\s*[-+(]?\s*[£$€¥]?\s*\d[\d.,:/\- T]*\s*[)]?\s*$"
)


@dataclass
class SourceInfo:
    """What :func:`sniff` found out about a file."""

    path: Path
    kind: str  # "csv", "whitespace", "excel" or "parquet"
    compression: str = "none"  # "none", "gzip" or "zip"
    encoding: str = "utf-8"  # "utf-8", "latin-1" or "cp1252"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for people: 'CSV, semicolon-separated, Latin-1, gzip'."""
        names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
        parts = [{"csv": "CSV", "whitespace": "text", "excel": "Excel", "parquet": "Parquet"}[self.kind]]
        if self.kind == "csv":
            parts.append(f"{names[self.delimiter]}-separated")
        if self.kind == "whitespace":
            parts.append("space-separated")
        if self.kind in ("csv", "whitespace"):
            parts.append({"utf-8": "UTF-8", "latin-1": "Latin-1", "cp1252": "Windows-1252"}[self.encoding])
            parts.append("with header" if self.header else "no header row")
        if self.compression != "none":
            parts.append(self.compression)
        return ", ".join(parts)


def _read_head(path: Path, compression: str) -> bytes:
    if compression == "gzip":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(_SAMPLE_BYTES)
        except (OSError, EOFError) as error:
            raise InputFileError(
                f"The file ends in .gz but could not be decompressed ({error}). Upload the original file."
            ) from error
    with open(path, "rb") as handle:
        return handle.read(_SAMPLE_BYTES)


def _extract_zip(path: Path, workdir: Path) -> Path:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise InputFileError("The .zip file is damaged and cannot be opened.") from error
    with archive:
        members = [
            info for info in archive.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX")
            and Path(info.filename).suffix.lower() in (".csv", ".txt", ".tsv", ".xlsx", ".parquet", ".gz")
        ]
        if not members:
            raise InputFileError("The .zip file holds no .csv, .txt, .tsv, .xlsx or .parquet file.")
        if len(members) > 1:
            names = ", ".join(info.filename for info in members[:5])
            raise InputFileError(f"The .zip file holds several tables ({names}); zip just one, or upload it unzipped.")
        member = members[0]
        target = workdir / Path(member.filename).name
        with archive.open(member) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 22)
    return target


def _detect_encoding(head: bytes) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        # A sample cut through a multi-byte character is still UTF-8.
        if error.start >= len(head) - 3 and error.reason == "unexpected end of data":
            return "utf-8"
    # Bytes 0x80-0x9F are control characters in Latin-1 but letters and the euro
    # sign in Windows-1252, which is what spreadsheet exports use.
    return "cp1252" if re.search(rb"[\x80-\x9f]", head) else "latin-1"


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head[:65536]:
        return True
    sample = head[:65536]
    controls = sum(1 for byte in sample if byte < 32 and byte not in (9, 10, 13))
    return controls > len(sample) * 0.01


def _sample_lines(text: str, limit: int = 200) -> list[str]:
    lines = [line for line in text.splitlines()[:limit + 1] if line.strip()]
    # The last line of a sample may be cut off.
    return lines[:limit] if len(lines) > limit else lines


def _detect_delimiter(lines: list[str]) -> str | None:
    """The delimiter whose count is the same on most lines; None for whitespace or one column."""
    best, best_score = None, 0.0
    for delimiter in _DELIMITERS:
        counts = []
        for row in csv.reader(io.StringIO("\n".join(lines[:100])), delimiter=delimiter):
            counts.append(len(row) - 1)
        if not counts or max(counts) == 0:
            continue
        mode = max(set(counts), key=counts.count)
        if mode == 0:
            continue
        score = counts.count(mode) / len(counts) + mode * 1e-3
        if score > best_score:
            best, best_score = delimiter, score
    return best if best_score >= 0.8 else None


def _split(lines: list[str], delimiter: str | None) -> list[list[str]]:
    if delimiter is None:
        return [line.split() for line in lines]
    return list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))


def _has_header(rows: list[list[str]]) -> bool:
    """A first row with no cell that looks like a number or a date is a header."""
    if len(rows) < 2:
        return True
    first = rows[0]
    if any(_NUMBER_OR_DATE.match(cell) for cell in first if cell.strip()):
        return False
    return True


def _clean_names(names: list[str]) -> list[str]:
    cleaned: list[str] = []
    for position, name in enumerate(names, start=1):
        name = name.replace("\ufeff", "").strip().strip('"').strip() or f"column_{position}"
        base, suffix = name, 2
        while name.lower() in (existing.lower() for existing in cleaned) or name == LINE_COLUMN:
            name, suffix = f"{base}_{suffix}", suffix + 1
        cleaned.append(name)
    return cleaned


def sniff(path: str | Path, *, original_name: str | None = None, workdir: str | Path | None = None) -> SourceInfo:
    """Find out the format, encoding, delimiter, header and column names of a file.

    ``original_name`` is the name the user's browser gave (uploads are stored
    under temporary names). A .zip is extracted into ``workdir``.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"File not found: {path}")
    if path.stat().st_size == 0:
        raise InputFileError("The file is empty (0 bytes). Export the data again and upload the new file.")

    with open(path, "rb") as handle:
        magic = handle.read(4)
    compression = "none"
    if magic[:2] == b"\x1f\x8b":
        compression = "gzip"
    elif magic == b"PK\x03\x04":
        with zipfile.ZipFile(path) as archive:
            is_xlsx = "[Content_Types].xml" in archive.namelist()
        if not is_xlsx:
            inner = _extract_zip(path, Path(workdir or tempfile.mkdtemp(prefix="clm-zip-")))
            info = sniff(inner, workdir=workdir)
            info.compression = "zip"
            return info
        return _sniff_excel(path)
    elif magic == b"PAR1":
        return _sniff_parquet(path)

    head = _read_head(path, compression)
    if not head.strip():
        raise InputFileError("The file holds no text, only blank space. Export the data again and upload the new file.")
    if head[:4] == b"PAR1" or head[:4] == b"PK\x03\x04":
        raise InputFileError("Compressed Excel or Parquet files are not supported; upload them uncompressed.")
    if _looks_binary(head):
        raise InputFileError(
            f"'{original_name or path.name}' is not a text table: it contains binary data. "
            "Upload a CSV, Excel (.xlsx) or Parquet file."
        )
    encoding = _detect_encoding(head)
    text = head.decode("cp1252" if encoding == "cp1252" else encoding, errors="replace").lstrip("\ufeff")
    lines = _sample_lines(text)
    if not lines:
        raise InputFileError("The file holds no rows.")
    delimiter = _detect_delimiter(lines)
    kind = "csv"
    if delimiter is None:
        widths = [len(line.split()) for line in lines]
        if max(widths) > 1 and widths.count(max(set(widths), key=widths.count)) / len(widths) >= 0.8:
            kind = "whitespace"
        else:
            delimiter = ","  # a one-column file; load_raw explains why that is not enough
    rows = _split(lines, delimiter)
    header = _has_header(rows)
    width = max(len(row) for row in rows)
    names = _clean_names(rows[0] + [""] * (width - len(rows[0]))) if header else [
        f"column_{position}" for position in range(1, width + 1)
    ]
    info = SourceInfo(path=path, kind=kind, compression=compression, encoding=encoding,
                      delimiter=delimiter, header=header, columns=names)
    if encoding != "utf-8":
        info.notes.append(f"The file is not UTF-8; it was read as {info.describe().split(', ')[2]}.")
    return info


def _sniff_excel(path: Path) -> SourceInfo:
    return SourceInfo(path=path, kind="excel", sheets=excel_sheet_names(path))


def _sniff_parquet(path: Path) -> SourceInfo:
    try:
        columns = duckdb.connect().execute("SELECT name FROM parquet_schema(?) WHERE num_children IS NULL", [str(path)]).fetchall()
    except duckdb.Error as error:
        raise InputFileError(f"The Parquet file cannot be read: {str(error).splitlines()[0]}") from error
    return SourceInfo(path=path, kind="parquet", columns=_clean_names([name for (name,) in columns]))


def excel_sheet_names(path: str | Path) -> list[str]:
    """The sheet names of an .xlsx workbook, in workbook order."""
    try:
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True)
        names = list(workbook.sheetnames)
        workbook.close()
        return names
    except Exception as error:  # openpyxl raises many unrelated types for damaged files
        raise InputFileError(f"The Excel file cannot be opened ({type(error).__name__}). Save it again as .xlsx.") from error


def _transcode_to_utf8(path: Path, workdir: Path) -> Path:
    """Rewrite a plain Windows-1252 file as UTF-8 in chunks (DuckDB reads Latin-1 itself)."""
    target = workdir / "transcoded.csv"
    with open(path, "rb") as source, open(target, "w", encoding="utf-8", newline="") as sink:
        reader = io.TextIOWrapper(source, encoding="cp1252", errors="replace", newline="")
        shutil.copyfileobj(reader, sink, 1 << 22)
    return target


def _duckdb_message(error: Exception) -> str:
    text = str(error)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    first = text.splitlines()[0] if text else type(error).__name__
    if line:
        return f"line {line.group(1)} of the file does not fit the table ({first.split(':', 1)[-1].strip()})"
    return first


def load_raw(
    con: duckdb.DuckDBPyConnection,
    info: SourceInfo,
    *,
    sheets: list[str] | None = None,
    workdir: str | Path | None = None,
) -> int:
    """Load the file into ``raw_upload`` (all text, in file order) and return its row count.

    For Excel, ``sheets`` chooses the sheets to stack (default: the first);
    they are stacked by column name.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="clm-read-"))
    con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    try:
        if info.kind == "excel":
            _load_excel(con, info, sheets or info.sheets[:1])
        elif info.kind == "parquet":
            con.execute(
                f"CREATE TEMP TABLE {RAW_TABLE} AS SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet(?)",
                [str(info.path)],
            )
            current = [row[0] for row in con.execute(f"DESCRIBE {RAW_TABLE}").fetchall()]
            for old, new in zip(current, info.columns):
                if old != new:
                    con.execute(f'ALTER TABLE {RAW_TABLE} RENAME COLUMN "{old}" TO "{new}"')
        else:
            _load_text(con, info, workdir)
    except duckdb.Error as error:
        con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        raise InputFileError(f"The file could not be read: {_duckdb_message(error)}.") from error

    rows = con.execute(f"SELECT count(*) FROM {RAW_TABLE}").fetchone()[0]
    if rows == 0:
        raise InputFileError("The file has a header row but no data rows. Export the data again with its rows.")
    if info.kind != "excel" and len(info.columns) < 2:
        raise InputFileError(
            f"The file has only one column ('{info.columns[0]}'). A transaction file needs at least a customer "
            "column and a date column, separated by commas, semicolons, tabs or pipes."
        )
    return rows


def _decompress(info: SourceInfo, workdir: Path) -> Path:
    """A plain copy of a .gz upload: DuckDB parses a plain file on every core but a gzip stream on one,
    so decompressing first (ISA-L's inflate: about 0.05 s per 50 MB) makes the whole read faster."""
    target = workdir / "decompressed.csv"
    try:
        with igzip.open(info.path, "rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 22)
    except (OSError, EOFError, isal_zlib.error) as error:
        target.unlink(missing_ok=True)
        raise InputFileError(
            f"The .gz file is damaged and could not be decompressed ({error}). Upload the original file."
        ) from error
    return target


def _load_text(con: duckdb.DuckDBPyConnection, info: SourceInfo, workdir: Path) -> None:
    path, encoding = info.path, info.encoding
    if info.compression == "gzip":
        path = _decompress(info, workdir)
    if encoding == "cp1252":
        unpacked = path
        path, encoding = _transcode_to_utf8(unpacked, workdir), "utf-8"
        if unpacked != info.path:
            unpacked.unlink()
    try:
        _read_text(con, info, path, encoding)
    finally:
        if path != info.path:
            path.unlink(missing_ok=True)


def _read_text(con: duckdb.DuckDBPyConnection, info: SourceInfo, path: Path, encoding: str) -> None:
    if info.kind == "whitespace":
        # DuckDB has no regex delimiter: read whole lines, then split on runs of blanks.
        select = ", ".join(
            f'fields[{position}] AS "{name}"' for position, name in enumerate(info.columns, start=1)
        )
        con.execute(
            f"""
            CREATE TEMP TABLE {RAW_TABLE} AS
            WITH lines AS (
                SELECT regexp_split_to_array(trim(line, ?), '\\s+') AS fields
                FROM read_csv(?, columns={{'line': 'VARCHAR'}}, delim=?, quote='', escape='',
                              header=false, encoding=?, compression='none')
                WHERE trim(line, ?) <> ''
            )
            SELECT {select} FROM lines {"OFFSET 1" if info.header else ""}
            """,
            [" \t\r", str(path), "\x01", encoding, " \t\r"],
        )
        return
    columns = "{" + ", ".join(f"'{name.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for name in info.columns) + "}"
    con.execute(
        f"""
        CREATE TEMP TABLE {RAW_TABLE} AS
        SELECT * FROM read_csv(?, delim=?, header=?, columns={columns}, encoding=?, compression='none',
                               null_padding=true, quote='"', escape='"', skip=0)
        """,
        [str(path), info.delimiter, info.header, encoding],
    )


def _load_excel(con: duckdb.DuckDBPyConnection, info: SourceInfo, sheets: list[str]) -> None:
    unknown = [sheet for sheet in sheets if sheet not in info.sheets]
    if unknown:
        raise InputFileError(f"The workbook has no sheet named {unknown[0]!r}; it has {', '.join(info.sheets)}.")
    frames = []
    for sheet in sheets:
        frame = pd.read_excel(info.path, sheet_name=sheet, dtype=str, engine="openpyxl")
        frame.columns = _clean_names([str(name) if not str(name).startswith("Unnamed:") else "" for name in frame.columns])
        frames.append(frame)
    stacked = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if stacked.shape[1] == 0:
        raise InputFileError("The chosen sheet is empty.")
    if stacked.shape[1] < 2:
        raise InputFileError(
            f"The sheet has only one column ('{stacked.columns[0]}'). A transaction file needs at least a customer "
            "column and a date column."
        )
    info.columns = list(stacked.columns)
    con.register("excel_upload", stacked.astype("string").astype(object))
    con.execute(f"CREATE TEMP TABLE {RAW_TABLE} AS SELECT * FROM excel_upload")
    con.unregister("excel_upload")
