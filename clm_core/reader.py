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
import os
import re
import sys
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from isal import igzip, isal_zlib

from clm_core.errors import InputFileError
from clm_core.sql import quote_identifier

__all__ = [
    "RAW_TABLE",
    "MALFORMED_TABLE",
    "LINE_COLUMN",
    "RAW_LINE",
    "Limits",
    "SourceInfo",
    "sniff",
    "excel_sheet_names",
    "load_raw",
]

RAW_TABLE = "raw_upload"
# Records of the file that could not be split into its columns (a row with more fields than the header, a
# quote never closed): one row each, ``source_row`` and the ``problem``. Their place in ``raw_upload`` holds
# the record's text in the first column, so counts and row numbers stay those of the file.
MALFORMED_TABLE = "raw_malformed"
# 1-based position of the row among the file's data rows, so every rejected row can be traced back to the
# file. ``raw_upload`` is written once, in file order, so its rowid + 1 is that position (RAW_LINE).
LINE_COLUMN = "source_row"
RAW_LINE = "(rowid + 1)"

_SAMPLE_BYTES = 1 << 20
# A quoted field may run over several lines (addresses, notes); one still open after this many lines is a
# quote that was never closed, and its line is rejected on its own.
_MAX_QUOTED_LINES = 100
_BATCH_ROWS = 100_000
# A sniffed sample may hold one huge field; the sample itself is bounded (_SAMPLE_BYTES).
csv.field_size_limit(sys.maxsize)


def _size(count: int) -> str:
    return f"{count / 1024 ** 3:,.1f} GB" if count >= 1024 ** 3 else f"{count / 1024 ** 2:,.0f} MB"


@dataclass(frozen=True)
class Limits:
    """How much one upload may unpack to and hold, so one file cannot fill the disk or the memory.

    Defaults fit a 2-core, 24 GB machine shared by several sessions; set ``CLM_MAX_UNPACKED_MB`` and
    ``CLM_MAX_ROWS`` to change them.
    """

    unpacked_bytes: int = 2 * 1024 ** 3
    rows: int = 30_000_000

    @classmethod
    def from_environment(cls) -> "Limits":
        defaults = cls()
        try:
            unpacked = int(os.environ.get("CLM_MAX_UNPACKED_MB", defaults.unpacked_bytes // 1024 ** 2)) * 1024 ** 2
            rows = int(os.environ.get("CLM_MAX_ROWS", defaults.rows))
        except ValueError as error:
            raise InputFileError(f"CLM_MAX_UNPACKED_MB and CLM_MAX_ROWS take whole numbers ({error}).") from None
        return cls(unpacked_bytes=unpacked, rows=rows)

    def too_large(self) -> InputFileError:
        return InputFileError(
            f"The file unpacks to more than {_size(self.unpacked_bytes)}, the most one upload may "
            "hold here. Upload a smaller extract (for example one year), or ask your administrator to raise "
            "CLM_MAX_UNPACKED_MB."
        )

    def too_many_rows(self) -> InputFileError:
        return InputFileError(
            f"The file has more than {self.rows:,} rows, the most one upload may hold here. Upload a smaller "
            "extract, or ask your administrator to raise CLM_MAX_ROWS."
        )
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
    encoding: str = "utf-8"  # "utf-8", "utf-16", "latin-1" or "cp1252"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    # Excel: the 1-based sheet row the column names were read from (detected, or chosen by the user).
    header_row: int | None = None
    line_ending: str = "\n"  # text files: "\n", "\r\n" or "\r"
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
            parts.append({"utf-8": "UTF-8", "utf-16": "UTF-16", "latin-1": "Latin-1",
                          "cp1252": "Windows-1252"}[self.encoding])
            parts.append("with header" if self.header else "no header row")
        if self.kind == "excel" and self.header_row:
            parts.append(f"column names in row {self.header_row}")
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


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise InputFileError("The file looks like a .zip (or .xlsx) archive but is damaged and cannot be opened. "
                             "Export it again and upload the new file.") from error


def _copy_capped(source, target: Path, limits: Limits) -> None:
    """Stream ``source`` into ``target``, stopping (and deleting it) once it passes the unpacked-size cap."""
    written = 0
    try:
        with open(target, "wb") as sink:
            while chunk := source.read(1 << 22):
                written += len(chunk)
                if written > limits.unpacked_bytes:
                    raise limits.too_large()
                sink.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _extract_zip(path: Path, workdir: Path, limits: Limits) -> Path:
    with _open_zip(path) as archive:
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
        # The declared size is checked first (a zip bomb says how large it is) and the copy stops at the cap
        # anyway (a declared size can lie). The member's own name never becomes a path.
        if member.file_size > limits.unpacked_bytes:
            raise limits.too_large()
        target = workdir / ("zip-member" + Path(member.filename).suffix.lower())
        try:
            with archive.open(member) as source:
                _copy_capped(source, target, limits)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
            raise InputFileError("The file inside the .zip is damaged or packed in a way that cannot be read. "
                                 "Zip it again, or upload it unzipped.") from error
    return target


def _check_xlsx_size(path: Path, limits: Limits) -> None:
    """An .xlsx is a zip of XML: refuse one whose parts unpack beyond the cap before opening it."""
    with _open_zip(path) as archive:
        if sum(info.file_size for info in archive.infolist()) > limits.unpacked_bytes:
            raise limits.too_large()


def _detect_encoding(head: bytes) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
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
    # A share alone would call a two-line file with two stray control characters binary.
    return controls > max(len(sample) * 0.01, 32)


def _line_ending(text: str) -> str:
    """The file's own line ending, the most frequent one: a CR or LF inside a quoted value is data."""
    crlf = text.count("\r\n")
    counts = {"\r\n": crlf, "\n": text.count("\n") - crlf, "\r": text.count("\r") - crlf}
    return max(counts, key=counts.get)


def _sample_lines(text: str, ending: str, limit: int = 200) -> list[str]:
    lines = [line for line in text.split(ending)[:limit + 1] if line.strip()]
    # The last line of a sample may be cut off.
    return lines[:limit] if len(lines) > limit else lines


def _detect_delimiter(lines: list[str], ending: str) -> str | None:
    """The delimiter whose count is the same on most lines; None for whitespace or one column."""
    best, best_score = None, 0.0
    for delimiter in _DELIMITERS:
        counts = []
        for row in csv.reader(io.StringIO(ending.join(lines[:100]), newline=""), delimiter=delimiter):
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


def _split(lines: list[str], delimiter: str | None, ending: str) -> list[list[str]]:
    if delimiter is None:
        return [line.split() for line in lines]
    return list(csv.reader(io.StringIO(ending.join(lines), newline=""), delimiter=delimiter))


def _has_header(rows: list[list[str]]) -> bool:
    """A first row with no cell that looks like a number or a date is a header."""
    if len(rows) < 2:
        return True
    first = rows[0]
    if any(_NUMBER_OR_DATE.match(cell) for cell in first if cell.strip()):
        return False
    return True


def _clean_names(names: list[str]) -> list[str]:
    """Header cells as column names: kept as written (any character but NUL and a byte-order mark),
    surrounding blanks and quotes removed, an empty one named ``column_N``, repeats made unique with ``_2``."""
    cleaned: list[str] = []
    for position, name in enumerate(names, start=1):
        name = name.replace("\ufeff", "").replace("\x00", "").strip().strip('"').strip() or f"column_{position}"
        base, suffix = name, 2
        while name.lower() in (existing.lower() for existing in cleaned) or name == LINE_COLUMN:
            name, suffix = f"{base}_{suffix}", suffix + 1
        cleaned.append(name)
    return cleaned


def sniff(path: str | Path, *, original_name: str | None = None, workdir: str | Path | None = None,
          limits: Limits | None = None) -> SourceInfo:
    """Find out the format, encoding, delimiter, header and column names of a file.

    ``original_name`` is the name the user's browser gave (uploads are stored
    under generated names). A .zip is extracted into ``workdir``, within ``limits``.
    """
    path = Path(path)
    limits = limits or Limits.from_environment()
    if not path.exists():
        raise InputFileError(f"File not found: {original_name or path.name}")
    if path.stat().st_size == 0:
        raise InputFileError("The file is empty (0 bytes). Export the data again and upload the new file.")

    with open(path, "rb") as handle:
        magic = handle.read(4)
    compression = "none"
    if magic[:2] == b"\x1f\x8b":
        compression = "gzip"
    elif magic == b"PK\x03\x04":
        with _open_zip(path) as archive:
            is_xlsx = "[Content_Types].xml" in archive.namelist()
        if not is_xlsx:
            inner = _extract_zip(path, Path(workdir or tempfile.mkdtemp(prefix="clm-zip-")), limits)
            info = sniff(inner, original_name=original_name, workdir=workdir, limits=limits)
            info.compression = "zip"
            return info
        _check_xlsx_size(path, limits)
        return _sniff_excel(path)
    elif magic == b"PAR1":
        return _sniff_parquet(path)

    head = _read_head(path, compression)
    if not head.strip():
        raise InputFileError("The file holds no text, only blank space. Export the data again and upload the new file.")
    if head[:4] == b"PAR1" or head[:4] == b"PK\x03\x04":
        raise InputFileError("Compressed Excel or Parquet files are not supported; upload them uncompressed.")
    encoding = _detect_encoding(head)
    if encoding != "utf-16" and _looks_binary(head):
        raise InputFileError(
            f"'{original_name or path.name}' is not a text table: it contains binary data. "
            "Upload a CSV, Excel (.xlsx) or Parquet file."
        )
    sample = head[:len(head) // 2 * 2] if encoding == "utf-16" else head
    text = sample.decode(encoding, errors="replace").lstrip("\ufeff")
    ending = _line_ending(text)
    lines = _sample_lines(text, ending)
    if len(head) >= _SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the sample ends inside the last line
    if not lines:
        raise InputFileError("The file holds no rows.")
    delimiter = _detect_delimiter(lines, ending)
    kind = "csv"
    if delimiter is None:
        widths = [len(line.split()) for line in lines]
        if max(widths) > 1 and widths.count(max(set(widths), key=widths.count)) / len(widths) >= 0.8:
            kind = "whitespace"
        else:
            delimiter = ","  # a one-column file; load_raw explains why that is not enough
    rows = _split(lines, delimiter, ending)
    header = _has_header(rows)
    # The table is as wide as its header or its usual row, whichever is wider; a rare longer row is malformed
    # (an unquoted comma in a value), not a reason to add columns.
    widths = [len(row) for row in rows]
    width = max(len(rows[0]) if header else 0, max(set(widths), key=widths.count))
    names = _clean_names(rows[0] + [""] * (width - len(rows[0]))) if header else [
        f"column_{position}" for position in range(1, width + 1)
    ]
    info = SourceInfo(path=path, kind=kind, compression=compression, encoding=encoding,
                      delimiter=delimiter, header=header, columns=names, line_ending=ending)
    if encoding != "utf-8":
        info.notes.append(f"The file is not UTF-8; it was read as {info.describe().split(', ')[2]}.")
    return info


def _sniff_excel(path: Path) -> SourceInfo:
    return SourceInfo(path=path, kind="excel", sheets=excel_sheet_names(path))


def _sniff_parquet(path: Path) -> SourceInfo:
    try:
        with duckdb.connect() as con:
            columns = con.execute("SELECT name FROM parquet_schema(?) WHERE num_children IS NULL",
                                  [str(path)]).fetchall()
    except duckdb.Error as error:
        raise InputFileError(f"The Parquet file cannot be read: {_duckdb_message(error, path)}.") from error
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


def _transcode_to_utf8(path: Path, encoding: str, workdir: Path, limits: Limits) -> Path:
    """Rewrite a Windows-1252 or UTF-16 file as UTF-8 in chunks (DuckDB reads UTF-8 and Latin-1 itself)."""
    target = workdir / "transcoded.csv"
    written = 0
    try:
        with open(path, "rb") as source, open(target, "w", encoding="utf-8", newline="") as sink:
            reader = io.TextIOWrapper(source, encoding=encoding, errors="replace", newline="")
            while chunk := reader.read(1 << 22):
                written += len(chunk)
                if written > limits.unpacked_bytes:
                    raise limits.too_large()
                sink.write(chunk.lstrip("\ufeff") if written == len(chunk) else chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _duckdb_message(error: Exception, *paths: Path) -> str:
    """The first line of a DuckDB error, in words a user can act on, with no server path in it."""
    text = str(error)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    first = text.splitlines()[0] if text else type(error).__name__
    for path in paths:
        first = first.replace(str(path), "the file")
    first = re.sub(r"(/[^/\s\"']+)+/?", "the file", first)
    if line:
        return f"line {line.group(1)} of the file does not fit the table ({first.split(':', 1)[-1].strip()})"
    return first


def load_raw(
    con: duckdb.DuckDBPyConnection,
    info: SourceInfo,
    *,
    sheets: list[str] | None = None,
    workdir: str | Path | None = None,
    header_row: int | None = None,
    limits: Limits | None = None,
) -> int:
    """Load the file into ``raw_upload`` (all text, in file order) and return its row count.

    Records that cannot be split into the file's columns are listed in ``raw_malformed`` (and hold their
    place in ``raw_upload``), so every record of the file is counted. For Excel, ``sheets`` chooses the
    sheets to stack (default: the first), stacked by column name, and ``header_row`` the 1-based row that
    holds the column names (default: detected, skipping title rows above the table).
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="clm-read-"))
    limits = limits or Limits.from_environment()
    con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {MALFORMED_TABLE}")
    con.execute(f"CREATE TEMP TABLE {MALFORMED_TABLE} (source_row BIGINT, problem VARCHAR)")
    try:
        if info.kind == "excel":
            _load_excel(con, info, sheets or info.sheets[:1], header_row)
        elif info.kind == "parquet":
            _load_parquet(con, info, limits)
        else:
            _load_text(con, info, workdir, limits)
        rows = con.execute(f"SELECT count(*) FROM {RAW_TABLE}").fetchone()[0]
    except duckdb.OutOfMemoryException as error:
        con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        raise InputFileError("The file is too large to read with the memory this server has free. Upload a "
                             "smaller extract, or try again when fewer people are loading files.") from error
    except duckdb.Error as error:
        con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        raise InputFileError(f"The file could not be read: {_duckdb_message(error, info.path, workdir)}.") from error

    if rows > limits.rows:
        con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        raise limits.too_many_rows()
    if rows == 0:
        raise InputFileError("The file has a header row but no data rows. Export the data again with its rows.")
    if info.kind != "excel" and len(info.columns) < 2:
        raise InputFileError(
            f"The file has only one column ('{info.columns[0]}'). A transaction file needs at least a customer "
            "column and a date column, separated by commas, semicolons, tabs or pipes."
        )
    return rows


def _load_parquet(con: duckdb.DuckDBPyConnection, info: SourceInfo, limits: Limits) -> None:
    declared = con.execute("SELECT count(*) FROM parquet_schema(?)", [str(info.path)]).fetchone()[0]
    if declared == 0:
        raise InputFileError("The Parquet file has no columns.")
    rows = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(info.path)]).fetchone()[0]
    if rows and rows > limits.rows:
        raise limits.too_many_rows()
    # Columns by position (#1, #2...), named once: renaming one at a time can meet a name another still holds.
    columns = ", ".join(f"CAST(#{position} AS VARCHAR) AS {quote_identifier(name)}"
                        for position, name in enumerate(info.columns, start=1))
    con.execute(f"CREATE TEMP TABLE {RAW_TABLE} AS SELECT {columns} FROM read_parquet(?)", [str(info.path)])


def _decompress(info: SourceInfo, workdir: Path, limits: Limits) -> Path:
    """A plain copy of a .gz upload: DuckDB parses a plain file on every core but a gzip stream on one,
    so decompressing first (ISA-L's inflate: about 0.05 s per 50 MB) makes the whole read faster.
    The copy stops at the unpacked-size cap, so a gzip bomb cannot fill the disk."""
    target = workdir / "decompressed.csv"
    try:
        with igzip.open(info.path, "rb") as source:
            _copy_capped(source, target, limits)
    except (OSError, EOFError, isal_zlib.error) as error:
        raise InputFileError(
            "The .gz file is damaged and could not be decompressed. Upload the original file."
        ) from error
    return target


def _load_text(con: duckdb.DuckDBPyConnection, info: SourceInfo, workdir: Path, limits: Limits) -> None:
    path, encoding = info.path, info.encoding
    if info.compression == "gzip":
        path = _decompress(info, workdir, limits)
    if encoding in ("cp1252", "utf-16"):
        unpacked = path
        path, encoding = _transcode_to_utf8(unpacked, encoding, workdir, limits), "utf-8"
        if unpacked != info.path:
            unpacked.unlink()
    try:
        if info.kind == "whitespace":
            _read_whitespace(con, info, path, encoding, limits)
        else:
            _read_delimited(con, info, path, encoding, limits)
    finally:
        if path != info.path:
            path.unlink(missing_ok=True)


def _read_whitespace(con: duckdb.DuckDBPyConnection, info: SourceInfo, path: Path, encoding: str,
                     limits: Limits) -> None:
    """DuckDB has no regex delimiter: read whole lines, then split on runs of blanks. A line with more
    fields than the header is malformed: its text stays in the first column and it is listed."""
    width = len(info.columns)
    select = ", ".join(
        f"CASE WHEN len(fields) <= {width} THEN fields[{position}] ELSE "
        f"{'line' if position == 1 else 'NULL'} END AS {quote_identifier(name)}"
        for position, name in enumerate(info.columns, start=1)
    )
    con.execute(
        f"""
        CREATE TEMP TABLE {RAW_TABLE} AS
        WITH lines AS (
            SELECT trim(line, $blank) AS line, regexp_split_to_array(trim(line, $blank), '\\s+') AS fields
            FROM read_csv($path, columns={{'line': 'VARCHAR'}}, delim=$never, quote='', escape='',
                          header=false, encoding=$encoding, compression='none', auto_detect=false)
            WHERE trim(line, $blank) <> ''
            LIMIT $limit
        )
        SELECT {select} FROM lines {"OFFSET 1" if info.header else ""}
        """,
        {"blank": " \t\r", "path": str(path), "never": "\x01", "encoding": encoding,
         "limit": limits.rows + 1 + info.header},
    )
    con.execute(
        f"INSERT INTO {MALFORMED_TABLE} SELECT rowid + 1, 'more fields than the header has' FROM {RAW_TABLE} "
        f"WHERE {quote_identifier(info.columns[0])} LIKE '% %' OR {quote_identifier(info.columns[0])} LIKE '%\t%'"
    )


def _read_delimited(con: duckdb.DuckDBPyConnection, info: SourceInfo, path: Path, encoding: str,
                    limits: Limits) -> None:
    """Read a delimited file, fastest way first.

    1. DuckDB's parallel reader, short rows padded: most files.
    2. The same without padding: quoted fields that run over several lines, which the parallel reader cannot
       combine with padding. (DuckDB's serial reader is never used: it silently drops every row after a quote
       that is never closed.)
    3. A tolerant reader that splits the file record by record and sets aside the records that do not fit
       (more fields than the header, a quote never closed), so one bad row never refuses the whole file.
    """
    # Column names reach DuckDB only as quoted identifiers: the file is read with positional names.
    positional = [f"c{position}" for position in range(len(info.columns))]
    struct = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in positional) + "}"
    renamed = ", ".join(f"{name} AS {quote_identifier(column)}" for name, column in zip(positional, info.columns))
    for padding in (True, False):
        try:
            con.execute(
                f"""
                CREATE TEMP TABLE {RAW_TABLE} AS
                SELECT {renamed} FROM read_csv($path, delim=$delim, header=$header, columns={struct},
                    encoding=$encoding, compression='none', null_padding=$padding, quote='"', escape='"',
                    skip=0, auto_detect=false, parallel=true, new_line=$new_line)
                LIMIT $limit
                """,
                {"path": str(path), "delim": info.delimiter, "header": info.header, "encoding": encoding,
                 "padding": padding, "limit": limits.rows + 1,
                 # Told, not guessed: DuckDB would take a line break inside a quoted header for the file's own.
                 "new_line": info.line_ending.encode("unicode_escape").decode()},
            )
            return
        except (duckdb.OutOfMemoryException, duckdb.InterruptException):
            raise
        except duckdb.Error as error:
            if "CSV Error" not in str(error) and "sniff" not in str(error):
                raise
            con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    _read_tolerant(con, info, path, encoding, limits)


def _records(handle, delimiter: str, width: int):
    """Yield ``(fields, None)`` for every record of a delimited text, or ``(text, problem)`` for a record
    that does not fit: a quote still open after _MAX_QUOTED_LINES lines (the line is set aside and reading
    goes on with the next one) or more fields than ``width``. Blank lines are skipped."""
    lines = iter(handle)
    pending: deque[str] = deque()

    def next_line() -> str | None:
        return pending.popleft() if pending else next(lines, None)

    while (line := next_line()) is not None:
        if not line.strip("\r\n"):
            continue
        text, extra = line, []
        # An odd number of quote characters leaves a quoted field open (a quote inside one is doubled).
        while text.count('"') % 2 and len(extra) < _MAX_QUOTED_LINES:
            following = next_line()
            if following is None:
                break
            extra.append(following)
            text += following
        fields = None
        if not text.count('"') % 2:
            try:
                fields = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
            except csv.Error:  # stray quotes that happen to pair up across lines
                fields = None
            if fields is not None and len(fields) > width and extra:
                fields = None  # joining lines made it worse: the quote was a stray one
        if fields is None:
            pending.extendleft(reversed(extra))
            yield line.rstrip("\r\n"), "a quote (\") that is never closed"
        elif len(fields) > width:
            yield text.rstrip("\r\n"), f"{len(fields)} fields where the header has {width}"
        else:
            yield fields + [None] * (width - len(fields)), None


def _read_tolerant(con: duckdb.DuckDBPyConnection, info: SourceInfo, path: Path, encoding: str,
                   limits: Limits) -> None:
    width = len(info.columns)
    columns = ", ".join(f"{quote_identifier(name)} VARCHAR" for name in info.columns)
    con.execute(f"CREATE TEMP TABLE {RAW_TABLE} ({columns})")
    schema = pa.schema([(f"c{position}", pa.string()) for position in range(width)])
    batch: list[list[str | None]] = []
    malformed: list[tuple[int, str]] = []
    rows = 0

    def flush() -> None:
        if batch:
            rows_batch = pa.Table.from_arrays([pa.array(column, pa.string()) for column in zip(*batch)],
                                              schema=schema)
            con.register("tolerant_batch", rows_batch)
            con.execute(f"INSERT INTO {RAW_TABLE} SELECT * FROM tolerant_batch")
            con.unregister("tolerant_batch")
            batch.clear()

    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        records = _records(handle, info.delimiter, width)
        if info.header:
            next(records, None)
        for fields, problem in records:
            rows += 1
            if rows > limits.rows:
                raise limits.too_many_rows()
            if problem is not None:
                malformed.append((rows, problem))
                fields = [fields] + [None] * (width - 1)
            batch.append(fields)
            if len(batch) >= _BATCH_ROWS:
                flush()
    flush()
    if malformed:
        con.executemany(f"INSERT INTO {MALFORMED_TABLE} VALUES (?, ?)", malformed)


def _detect_header_row(path: Path, sheet: str, *, scan_rows: int = 30) -> int:
    """The 1-based row of a sheet that holds the column names: the first row whose cells are mostly filled
    and all text, followed by a row with a number or a date (a title or notes above the table are skipped);
    the first mostly filled text row if no row below is typed; else row 1."""
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = [list(row) for row in workbook[sheet].iter_rows(max_row=scan_rows, values_only=True)]
    finally:
        workbook.close()
    filled = [[cell for cell in row if cell is not None and str(cell).strip()] for row in rows]
    width = max((len(cells) for cells in filled), default=0)
    candidates = [index for index, cells in enumerate(filled)
                  if len(cells) >= max(2, width / 2) and all(isinstance(cell, str) for cell in cells)]
    for index in candidates:
        if any(not isinstance(cell, str) for cells in filled[index + 1:index + 4] for cell in cells):
            return index + 1
    return candidates[0] + 1 if candidates else 1


def _load_excel(con: duckdb.DuckDBPyConnection, info: SourceInfo, sheets: list[str],
                header_row: int | None) -> None:
    unknown = [sheet for sheet in sheets if sheet not in info.sheets]
    if unknown:
        raise InputFileError(f"The workbook has no sheet named {unknown[0]!r}; it has {', '.join(info.sheets)}.")
    if header_row is not None and header_row < 1:
        raise InputFileError("The header row is a row number of the sheet, 1 or more.")
    frames = []
    try:
        for sheet in sheets:
            row = header_row or _detect_header_row(info.path, sheet)
            info.header_row = row
            # The header row is read as data and named here, so names follow the one rule of every reader path
            # (pandas would rename repeats 'dup.1' and blanks 'Unnamed: 3').
            frame = pd.read_excel(info.path, sheet_name=sheet, dtype=str, engine="openpyxl", header=None,
                                  skiprows=row - 1)
            if frame.empty:
                continue
            header = ["" if pd.isna(name) else str(name) for name in frame.iloc[0]]
            frame = frame.iloc[1:].reset_index(drop=True)
            frame.columns = _clean_names(header)
            frames.append(frame)
    except InputFileError:
        raise
    except Exception as error:  # openpyxl and pandas raise many unrelated types for damaged workbooks
        raise InputFileError(f"The Excel file cannot be read ({type(error).__name__}). Open it in Excel, save it "
                             "again as .xlsx and upload the new file.") from error
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
