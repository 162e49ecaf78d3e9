"""Fuzzing file ingestion: any upload either loads with every row accounted for, or is refused with one
plain sentence; an ordinary export always loads; and no upload reads or writes anything outside its own folder.

Each example writes one plausible but messy transaction file into a folder of its own (separators, quoting,
encodings, compression, Excel and Parquet, date and number styles, hostile column names and cell values,
ragged rows, bytes cut off at a random point), points ``tempfile`` at that folder, loads the file through
:meth:`Workspace.stage_file` and :meth:`Workspace.build` (what :meth:`Workspace.ingest` does, with the staged
columns in view) and checks what a user would see. Counts and names are only held to where a file says them
unambiguously (whole, every cell quoted where it needs to be, no line break inside a cell for counts).

Hypothesis profiles are registered in ``conftest.py``: "ci" runs by default; ``--hypothesis-profile=long`` digs
deeper. On a shared machine, set TMPDIR to a private folder: other people's programs add entries to /tmp, which
the check on the system temp folder would report.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from clm_core import schema
from clm_core.errors import ClmError
from clm_core.ingest import IngestOptions, IngestReport
from clm_core.mapping import ColumnMapping
from clm_core.workspace import Workspace

NOW = datetime(2025, 1, 1)
FIRST_ORDER = datetime(2000, 1, 1)
ORDER_SPAN_SECONDS = int((datetime(2024, 12, 31) - FIRST_ORDER).total_seconds())

# -- what the files are made of ----------------------------------------------------------------------------

ROLES = ("customer", "date", "amount", "product", "segment")
ORDINARY_NAMES = {
    "customer": ("customer_id", "CustomerID", "Customer"),
    "date": ("order_date", "InvoiceDate", "date"),
    "amount": ("amount", "Revenue", "Sales"),
    "product": ("product", "Description", "sku"),
    "segment": ("segment", "Country", "channel"),
}
# A header cell that reads a server file into a column if a name is pasted into SQL between double quotes.
LEAK_NAME = "x\",(SELECT/**/string_agg(content,'')/**/FROM/**/read_text('/etc/hostname'))/**/AS/**/\"leak"
HOSTILE_NAMES = (
    '"', 'say "hi"', '""', '"quoted"', "--", "amount -- comment", "/* */", "/* note */ amount", ";", "a;b",
    "o'brien", "'", "a'}, 'b': 'VARCHAR", LEAK_NAME,
    "COPY (SELECT 1) TO '/tmp/pwn'",
    "pwn\"; COPY (SELECT 1) TO '/tmp/pwn.csv'; --",
    "x'); COPY (SELECT 1) TO 'pwn.csv'; --",
    "line\nbreak", "cr\r\nlf", "tab\there", "  padded  ", "", "   ", "source_row", "Zoë €", "客户",
    "customer_" * 1140,  # a name of 10 KB
    "\x1f\x1e", "DROP TABLE raw_upload",
)
# Files the hostile names above try to write: none may appear or change.
HOSTILE_TARGETS = (Path("/tmp/pwn"), Path("/tmp/pwn.csv"), Path("pwn.csv").absolute())
HOSTILE_VALUES = (
    "=1+1", "\r=1+1", "+1+1", "-1+1", "@SUM(A1)", '=HYPERLINK("http://example.com")',
    "\x00", "\x07\x1b[31m", "\x0b\x0c", "\x1c\x1d\x1e", "\x85", "\u2028", "\x7f",
    "NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "9" * 400,
    "", " ", "NULL", "\\N", '"', "'", '""', 'a "quoted" word', "\n", "\r\n", "two\nlines", "two\r\nlines",
    "x" * 5_000, "y" * 70_000, "z" * 2_100_000,
)
TEXT_ALPHABET = "abcxyzABCXYZ 019-_./éüÖß€£,;|\"'()客"
CUSTOMER_STYLES = ("C{:04d}", "{}", "user{}@example.com", "Zoë-{}", "客户{}")
SEGMENT_LEVELS = ("gold", "silver", "bronze")

# Date styles: the mapping's date format, and whether the text holds a blank.
DATE_STYLES = {
    "iso": ("iso", True),
    "iso_date": ("iso", False),
    "iso_t_zone": ("iso", False),
    "mdy": ("mdy", True),
    "dmy": ("dmy", False),
    "compact": ("ymd_compact", False),
    "epoch": ("epoch_s", False),
}
NUMBER_STYLES = {"plain": "dot", "pound": "dot", "paren": "dot", "comma": "comma"}
# The layout is drawn from this list, so most files are delimited text and shrinking heads for CSV.
LAYOUTS = ("csv",) * 7 + ("whitespace", "xlsx", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16")
ZIP_MEMBERS = ("transactions.csv", "export/orders.txt", "../../escape.csv")
LINE_BREAKS = ("\r", "\n")


def format_date(moment: datetime, style: str, zone: str) -> str:
    """The order date as an export in ``style`` writes it."""
    if style == "iso":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == "iso_date":
        return moment.strftime("%Y-%m-%d")
    if style == "iso_t_zone":
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone
    if style == "mdy":
        return f"{moment.month}/{moment.day}/{moment.year} {moment.hour:02d}:{moment.minute:02d}"
    if style == "dmy":
        return f"{moment.day:02d}/{moment.month:02d}/{moment.year}"
    if style == "compact":
        return moment.strftime("%Y%m%d")
    return str(int(moment.replace(tzinfo=timezone.utc).timestamp()))


def format_amount(cents: int, style: str) -> str:
    """An amount as an export in ``style`` writes it: '1234.5', '£1,234.50', '(12.00)', '1.234,50'."""
    value = abs(cents) / 100
    if style == "plain":
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    elif style == "pound":
        text = f"£{value:,.2f}"
    elif style == "comma":
        text = f"{value:,.2f}".translate(str.maketrans(",.", ".,"))
    else:
        text = f"{value:.2f}"
    if cents >= 0:
        return text
    return f"({text})" if style == "paren" else f"-{text}"


def expected_column_names(names: list[str]) -> list[str]:
    """Header cells as the reader documents it names columns: NUL and byte-order marks dropped, surrounding
    blanks and quotes stripped, an empty name becomes ``column_N``, repeats (in any case) get ``_2``, ``_3``."""
    cleaned: list[str] = []
    for position, name in enumerate(names, start=1):
        name = name.replace("\ufeff", "").replace("\x00", "").strip().strip('"').strip() or f"column_{position}"
        base, suffix = name, 2
        while name.lower() in {existing.lower() for existing in cleaned} or name == "source_row":
            name, suffix = f"{base}_{suffix}", suffix + 1
        cleaned.append(name)
    return cleaned


# -- one generated upload ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """A generated transaction file: the table a user's spreadsheet held, and how it was written out."""

    layout: str  # "csv", "whitespace", "xlsx" or "parquet"
    roles: tuple[str, ...]
    names: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # cell text; text layouts may hold ragged rows
    has_header: bool
    date_style: str
    number_style: str
    delimiter: str = ","  # for whitespace: the run of blanks between columns
    quoting: str = "minimal"  # "none", "minimal" or "all"
    line_end: str = "\n"
    ending: str = "newline"  # "none", "newline" or "blank_lines"
    encoding: str = "utf-8"
    compression: str = "none"  # "none", "gzip" or "zip"
    zip_member: str = "transactions.csv"
    typed: bool = False  # Excel and Parquet: dates and amounts as native values
    truncate_at: float | None = None  # fraction of the bytes kept
    explicit_mapping: bool = False
    options: tuple[bool, bool, bool] = (False, False, False)  # drop returns, drop zero price, keep duplicates

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.summary())

    def summary(self) -> str:
        """One line for a failure report (cells can be megabytes long)."""
        shape = f"{len(self.rows)} rows x {len(self.names)} columns"
        names = ", ".join(repr(name[:40]) for name in self.names)
        return (f"Upload({self.layout}, {shape}, header={self.has_header} [{names}], dates={self.date_style}, "
                f"numbers={self.number_style}, delimiter={self.delimiter!r}, quoting={self.quoting}, "
                f"encoding={self.encoding}, compression={self.compression}, typed={self.typed}, "
                f"truncate_at={self.truncate_at}, explicit_mapping={self.explicit_mapping}, "
                f"options={self.options})")

    # What a correct reader can be held to.
    @property
    def is_regular(self) -> bool:
        """Whole, and every line splits back into the cells it was written from (ragged rows aside)."""
        if self.truncate_at is not None:
            return False
        if self.layout == "csv" and self.quoting == "none":
            return not any(self._needs_quotes(cell) for cell in self._all_cells())
        return True

    @property
    def rows_are_countable(self) -> bool:
        """The file's data rows can be counted without guessing: regular, no line break inside a cell."""
        return self.is_regular and not any(
            brk in cell for cell in self._all_cells() for brk in LINE_BREAKS
        )

    @property
    def expected_columns(self) -> list[str]:
        """The leading column names a correct reader gives this file."""
        if not self.has_header:
            return [f"column_{position}" for position in range(1, len(self.names) + 1)]
        return expected_column_names(list(self.names))

    def mentions(self, text: str) -> bool:
        return any(text in cell for cell in self._all_cells())

    def _all_cells(self):
        yield from self.names if self.has_header else ()
        for row in self.rows:
            yield from row

    def _needs_quotes(self, cell: str) -> bool:
        return any(char in cell for char in (self.delimiter, '"', "\r", "\n"))

    # The file itself.
    @property
    def file_name(self) -> str:
        if self.layout in ("xlsx", "parquet"):
            return f"upload.{self.layout}"
        return {"none": "upload.csv", "gzip": "upload.csv.gz", "zip": "upload.zip"}[self.compression]

    def to_bytes(self) -> bytes:
        data = {"xlsx": self._xlsx_bytes, "parquet": self._parquet_bytes}.get(self.layout, self._text_bytes)()
        if self.truncate_at is not None:
            data = data[: int(len(data) * self.truncate_at)]
        return data

    def _text_bytes(self) -> bytes:
        lines = [self._line(self.names)] if self.has_header else []
        lines += [self._line(row) for row in self.rows]
        text = self.line_end.join(lines)
        text += {"none": "", "newline": self.line_end, "blank_lines": self.line_end * 3}[self.ending]
        data = text.encode(self.encoding)
        if self.compression == "gzip":
            return gzip.compress(data, mtime=0)
        if self.compression == "zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(self.zip_member, data)
            return buffer.getvalue()
        return data

    def _line(self, cells: tuple[str, ...]) -> str:
        if self.layout == "whitespace":
            return self.delimiter.join(cells)
        return self.delimiter.join(self._field(cell) for cell in cells)

    def _field(self, cell: str) -> str:
        if self.quoting == "all" or (self.quoting == "minimal" and self._needs_quotes(cell)):
            return '"' + cell.replace('"', '""') + '"'
        return cell

    def _typed_cells(self, row: tuple[str, ...]) -> list[object]:
        if not self.typed:
            return list(row)
        return [_native(cell, role, self.layout) for cell, role in zip(row, self.roles)]

    def _xlsx_bytes(self) -> bytes:
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("Orders")
        sheet.append(list(self.names))
        for row in self.rows:
            sheet.append(self._typed_cells(row))
        buffer = io.BytesIO()
        workbook.save(buffer)
        return buffer.getvalue()

    def _parquet_bytes(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*(self._typed_cells(row) for row in self.rows)))
        arrays = []
        for role, values in zip(self.roles, columns):
            kind = pa.string()
            if self.typed and role == "date":
                kind = pa.timestamp("us")
            elif self.typed and role == "amount":
                kind = pa.float64()
            arrays.append(pa.array(values, type=kind))
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(arrays, names=list(self.names)), buffer)
        return buffer.getvalue()

    # How the file is loaded.
    def build_arguments(self, columns: list[str]) -> tuple[ColumnMapping | None, IngestOptions]:
        """The mapping (None: the workspace's guess) and cleaning options to build the staged file with."""
        drop_returns, drop_zero_price, keep_duplicates = self.options
        options = IngestOptions(drop_returns=drop_returns, drop_zero_price=drop_zero_price,
                                keep_duplicates=keep_duplicates, now=NOW)
        if not self.explicit_mapping or len(columns) < len(self.roles):
            return None, options
        column = dict(zip(self.roles, columns))
        fields = {schema.CUSTOMER_ID: column["customer"], schema.ORDER_TS: column["date"],
                  schema.AMOUNT: column["amount"]}
        if "product" in column:
            fields[schema.PRODUCT_NAME] = column["product"]
        mapping = ColumnMapping(fields=fields, segments=[column["segment"]] if "segment" in column else [],
                                date_format=DATE_STYLES[self.date_style][0],
                                number_style=NUMBER_STYLES[self.number_style])
        return mapping, options


def _native(cell: str, role: str, layout: str) -> object:
    """A cell as a typed sheet or Parquet file holds it: dates as timestamps and amounts as floats. A value
    that is not one stays text in Excel (which also cannot hold NaN or infinity) and is missing in Parquet."""
    if role not in ("date", "amount"):
        return cell
    try:
        value = datetime.fromisoformat(cell) if role == "date" else float(cell)
    except ValueError:
        return None if layout == "parquet" else cell
    if isinstance(value, float) and not math.isfinite(value) and layout == "xlsx":
        return cell
    return value


# -- strategies --------------------------------------------------------------------------------------------

def column_roles() -> st.SearchStrategy[tuple[str, ...]]:
    """Customer, date and amount, maybe product and segment, in any order."""
    extras = st.lists(st.sampled_from(ROLES[3:]), unique=True, max_size=2)
    return extras.flatmap(lambda extra: st.permutations(list(ROLES[:3]) + extra)).map(tuple)


def invented_names() -> st.SearchStrategy[str]:
    return st.builds(lambda first, rest: first + rest,
                     st.sampled_from("abcxyzABCXYZéÖ客"), st.text(alphabet=TEXT_ALPHABET, max_size=12))


def ordinary_names(roles: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.tuples(*(st.sampled_from(ORDINARY_NAMES[role]) for role in roles))


@st.composite
def hostile_names(draw, roles: tuple[str, ...]) -> tuple[str, ...]:
    """Headers mixing SQL, quotes, line breaks, 10 KB names, empty and repeated names with ordinary ones."""
    names = [draw(st.one_of(st.sampled_from(HOSTILE_NAMES), st.sampled_from(ORDINARY_NAMES[role]),
                            invented_names())) for role in roles]
    if draw(st.booleans()):
        source, target = draw(st.permutations(range(len(names))))[:2]
        names[target] = draw(st.sampled_from((names[source], names[source].upper())))
    return tuple(names)


@st.composite
def table_rows(draw, roles: tuple[str, ...], date_style: str, number_style: str) -> list[list[str]]:
    """1 to 60 orders by a handful of customers, every cell as text in the file's styles."""
    customer_style = draw(st.sampled_from(CUSTOMER_STYLES))
    zone = draw(st.sampled_from(("Z", "+01:00", "-0530")))
    products = draw(st.lists(st.text(alphabet=TEXT_ALPHABET, min_size=1, max_size=15), min_size=1, max_size=5))
    orders = draw(st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, ORDER_SPAN_SECONDS), st.integers(-50_000, 500_000),
                  st.integers(0, 4), st.integers(0, 2)),
        min_size=1, max_size=60,
    ))
    rows = []
    for customer, seconds, cents, product, segment in orders:
        cell = {
            "customer": customer_style.format(customer),
            "date": format_date(FIRST_ORDER + timedelta(seconds=seconds), date_style, zone),
            "amount": format_amount(cents, number_style),
            "product": products[product % len(products)],
            "segment": SEGMENT_LEVELS[segment],
        }
        rows.append([cell[role] for role in roles])
    return rows


@st.composite
def hostile_cells(draw, rows: list[list[str]], first_row: int) -> list[list[str]]:
    """The rows with a few cells (from ``first_row`` on) overwritten by formulas, control characters, NaN,
    huge text..."""
    rows = [list(row) for row in rows]
    if len(rows) > first_row:
        for row, column, value in draw(st.lists(
            st.tuples(st.integers(first_row, len(rows) - 1), st.integers(0, 4), st.sampled_from(HOSTILE_VALUES)),
            max_size=4,
        )):
            rows[row][column % len(rows[row])] = value
    return rows


@st.composite
def ragged_rows(draw, rows: list[list[str]], first_row: int) -> list[list[str]]:
    """The rows with at most one in ten cut short (never below two cells) or extended, as broken exports do."""
    rows = [list(row) for row in rows]
    if len(rows) >= 10:
        for row, change in draw(st.lists(
            st.tuples(st.integers(first_row, len(rows) - 1), st.sampled_from((-2, -1, 1, 2))),
            max_size=len(rows) // 10,
        )):
            cells = rows[row]
            rows[row] = cells[:max(2, len(cells) + change)] if change < 0 else cells + ["extra"] * change
    return rows


def _without_blanks(text: str, filler: str) -> str:
    return re.sub(r"\s+", filler, text) or "-"


def _plain_word(text: str) -> str:
    """A cell of a space-separated file: no blanks, and none of the characters that would make it read as
    comma-, semicolon- or pipe-separated, or quoted."""
    return re.sub(r"[\s,;|\"']+", "_", text) or "-"


def _excel_safe(text: str) -> str:
    """What a cell can hold in .xlsx: no control characters, line ends as XML reads them back."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _encodable(text: str, encoding: str) -> bool:
    """Whether a file holding ``text`` can be written in ``encoding`` and read back without guessing."""
    # C1 controls (0x80-0x9F) in a Latin-1 file read as Windows-1252 by design: keep them out of Latin-1.
    if encoding == "latin-1" and re.search("[\x80-\x9f]", text):
        return False
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        return False
    if encoding in ("latin-1", "cp1252") and not text.isascii():
        # Bytes that also read as UTF-8 ('ß£' is DF A3) are UTF-8 to any reader.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    return True


@st.composite
def uploads(draw, *, hostile: bool = True) -> Upload:
    """Any upload (``hostile``): hostile names and cells, cut-off bytes, unquoted fields, every cleaning option.
    Otherwise an ordinary export: ordinary values, whole, quoted where needed, maybe a few ragged rows, and
    any header names (mapped by hand when they are hostile, as a user would)."""
    layout = draw(st.sampled_from(LAYOUTS))
    roles = draw(column_roles())
    date_styles = [style for style, (_, blank) in DATE_STYLES.items() if layout != "whitespace" or not blank]
    number_styles = ["plain", "paren"] if layout == "whitespace" else list(NUMBER_STYLES)
    typed = layout in ("xlsx", "parquet") and draw(st.booleans())
    date_style = "iso" if typed else draw(st.sampled_from(date_styles))
    number_style = "plain" if typed else draw(st.sampled_from(number_styles))
    plain_header = draw(st.booleans())
    names = list(draw(ordinary_names(roles) if plain_header else hostile_names(roles)))
    rows = draw(table_rows(roles, date_style, number_style))
    # Only a text file can lack a header, and only a second row (with an ordinary first one) tells the reader so.
    has_header = layout not in ("csv", "whitespace") or len(rows) < 2 or draw(st.integers(0, 4)) > 0
    first_row = 0 if has_header else 1
    if hostile:
        rows = draw(hostile_cells(rows, first_row))
    if layout in ("csv", "whitespace"):
        rows = draw(ragged_rows(rows, first_row))

    upload = dict(layout=layout, roles=roles, has_header=has_header, date_style=date_style,
                  number_style=number_style, typed=typed,
                  explicit_mapping=not has_header or not (hostile or plain_header) or draw(st.booleans()))
    if hostile:
        upload["options"] = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
        upload["truncate_at"] = draw(st.one_of(st.none(), st.none(), st.floats(0, 1, exclude_max=True)))
    if layout == "whitespace":
        # A space-separated file cannot carry a double quote in a name: unquoted, a stray quote opens a quoted
        # field that runs on (found by this suite: a header `" " " a,"`, which no exporter writes).
        names = [_without_blanks(name, "/**/").replace('"', "'") for name in names]
        rows = [[_plain_word(cell) for cell in row] for row in rows]
        upload["delimiter"] = draw(st.sampled_from((" ", "  ", "    ")))
    elif layout == "xlsx":
        names = [_excel_safe(name) for name in names]
        rows = [[_excel_safe(cell) for cell in row] for row in rows]
    if layout == "csv":
        upload["delimiter"] = draw(st.sampled_from((",", ";", "\t", "|")))
        upload["quoting"] = draw(st.sampled_from(("minimal", "all", "none") if hostile else ("minimal", "all")))
    if layout in ("csv", "whitespace"):
        content = "\n".join([*names, *(cell for row in rows for cell in row)])
        upload["encoding"] = draw(st.sampled_from([enc for enc in ENCODINGS if _encodable(content, enc)]))
        upload["compression"] = draw(st.sampled_from(("none", "none", "gzip", "zip")))
        upload["zip_member"] = draw(st.sampled_from(ZIP_MEMBERS))
        upload["line_end"] = draw(st.sampled_from(("\n", "\r\n")))
        upload["ending"] = draw(st.sampled_from(("newline", "none", "blank_lines")))
    return Upload(names=tuple(names), rows=tuple(tuple(row) for row in rows), **upload)


# -- keeping every example in its own folder ---------------------------------------------------------------

SYSTEM_TEMP = Path(tempfile.gettempdir())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events (PEP 578) that change the file system: for each path they change, its position among the
# event's arguments and the position of the folder descriptor it is relative to (shutil.rmtree uses them).
_CHANGING_EVENTS = {
    "os.mkdir": ((0, 2),), "os.remove": ((0, 1),), "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)), "os.replace": ((0, 2), (1, 3)), "os.symlink": ((1, 2),),
    "os.link": ((1, 3),), "os.chmod": ((0, 2),), "os.utime": ((0, 3),), "os.truncate": ((0, None),),
    "shutil.rmtree": ((0, 1),), "shutil.copyfile": ((1, None),), "shutil.move": ((0, None), (1, None)),
    "shutil.unpack_archive": ((1, None),), "tempfile.mkstemp": ((0, None),), "tempfile.mkdtemp": ((0, None),),
}


class WriteWatch:
    """Every file-system change this Python process asks for while watching, outside one allowed folder.

    DuckDB writes from C++ and is not seen here: the folder checks in :func:`confined` cover it. The
    interpreter's bytecode cache (``__pycache__``) is not the upload's doing and is left out.
    """

    allowed: Path | None = None
    outside: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.allowed is None:
            return
        if event == "open":
            path, mode, flags = args
            if not (any(char in (mode or "") for char in "wax+") or (flags or 0) & _WRITE_FLAGS):
                return
            changed = [(path, None)]
        elif event in _CHANGING_EVENTS:
            changed = [(args[path], None if folder is None else args[folder])
                       for path, folder in _CHANGING_EVENTS[event]]
        else:
            return
        for path, folder in changed:
            if not isinstance(path, (str, bytes, os.PathLike)):
                continue  # an open file descriptor: its opening was seen
            # A negative descriptor (AT_FDCWD, or -1 for none) means the working folder.
            base = os.readlink(f"/proc/self/fd/{folder}") if isinstance(folder, int) and folder >= 0 else os.getcwd()
            resolved = os.path.normpath(os.path.join(base, os.fsdecode(path)))
            # The folder itself counts: tempfile.TemporaryFile opens it to make an unnamed file (O_TMPFILE).
            inside = resolved == str(cls.allowed) or resolved.startswith(str(cls.allowed) + os.sep)
            if not inside and "__pycache__" not in resolved:
                cls.outside.append(f"{event} {resolved}")

    @classmethod
    @contextmanager
    def watching(cls, allowed: Path):
        cls.allowed, cls.outside = allowed, []
        try:
            yield cls.outside
        finally:
            cls.allowed = None


sys.addaudithook(WriteWatch.hook)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else b""
            for path in sorted(folder.rglob("*"))}


def _target_state(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


@contextmanager
def confined(example_folder: Path):
    """Yield a sandbox inside ``example_folder`` that every temporary file goes to; afterwards check that
    nothing outside it changed: no write asked for by this process, a canary folder beside it byte for byte,
    the files hostile names aim at, no new entry in the system temp folder or the working folder.

    On a shared machine, other people's programs add entries to /tmp: run with TMPDIR set to a private
    folder there (the write watch and the hostile targets still cover /tmp).
    """
    sandbox, canary = example_folder / "sandbox", example_folder / "canary"
    sandbox.mkdir()
    canary.mkdir()
    (canary / "keep.txt").write_text("canary\n")
    (canary / "nested").mkdir()
    (canary / "nested" / "data.csv").write_bytes(b"customer_id,order_date,amount\n1,2021-01-01,1\n")
    canary_before = _snapshot(canary)
    temp_before = set(SYSTEM_TEMP.iterdir())
    cwd_before = set(Path.cwd().iterdir())
    targets_before = {target: _target_state(target) for target in HOSTILE_TARGETS}

    with pytest.MonkeyPatch.context() as patch, WriteWatch.watching(sandbox.resolve()) as writes_outside:
        for variable in ("TMPDIR", "TEMP", "TMP"):
            patch.setenv(variable, str(sandbox))
        patch.setattr(tempfile, "tempdir", str(sandbox))
        yield sandbox

    assert not writes_outside, f"files outside the upload's folder were written: {writes_outside[:5]}"
    assert _snapshot(canary) == canary_before, "a file beside the upload's folder was changed"
    assert sorted(path.name for path in example_folder.iterdir()) == ["canary", "sandbox"], (
        "a file was written beside the upload's folder"
    )
    assert {target: _target_state(target) for target in HOSTILE_TARGETS} == targets_before, (
        "a file named in a hostile header was written"
    )
    new_in_temp = sorted(str(path) for path in set(SYSTEM_TEMP.iterdir()) - temp_before)
    assert not new_in_temp, f"new entries in the system temp folder: {new_in_temp}"
    new_in_cwd = sorted(str(path) for path in set(Path.cwd().iterdir()) - cwd_before)
    assert not new_in_cwd, f"new entries in the working folder: {new_in_cwd}"


# -- what the user sees ------------------------------------------------------------------------------------

HOSTNAME = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""


def assert_plain_sentence(message: str, upload: Upload, sandbox: Path) -> None:
    """A refusal is one non-empty line, with no traceback and no server path."""
    assert message.strip(), "the error message is empty"
    assert "\n" not in message and "\r" not in message, f"the error message spans lines: {message!r}"
    assert "Traceback" not in message, message
    for path in {str(sandbox), str(sandbox.resolve()), str(SYSTEM_TEMP) + "/", "/root"}:
        assert path not in message, f"the error message shows a server path: {message!r}"
    if not upload.mentions("/tmp/"):
        assert "/tmp/" not in message, f"the error message shows a server path: {message!r}"


def assert_names_kept(upload: Upload, columns: list[str]) -> None:
    """Header names reach the table verbatim, after the reader's documented cleaning."""
    expected = upload.expected_columns
    assert columns[: len(expected)] == expected, "column names were not kept as written"


def assert_no_server_text(upload: Upload, names: list[str], values) -> None:
    """No column holds the text of /etc/hostname unless the file itself did."""
    if not HOSTNAME or upload.mentions(HOSTNAME):
        return
    leaked = [text for text in [*names, *(str(value) for value in values)] if HOSTNAME in text]
    assert not leaked, f"the text of /etc/hostname reached the table: {leaked[:3]!r}"


def assert_every_row_accounted_for(upload: Upload, report: IngestReport) -> None:
    # build_transactions asserts this too, but an assert vanishes under python -O: the report is what users see.
    assert report.rows_in == report.rows_kept + sum(report.rows_rejected.values()), report
    if upload.rows_are_countable:
        assert report.rows_in == len(upload.rows), (
            f"the file has {len(upload.rows)} data rows but the report counts {report.rows_in}"
        )


def assert_kept_amounts_finite(workspace: Workspace) -> None:
    amounts = workspace.query("preview", limit=100)[schema.AMOUNT].dropna()
    assert all(math.isfinite(amount) for amount in amounts), "a kept row has a NaN or infinite amount"


# -- the properties ----------------------------------------------------------------------------------------

# Examples run (shrinking included), and how they ended; reported when the module's tests finish.
FUZZ_STATS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory, request):
    """The folder every example's own folder goes in; reports how many examples ran, and how they ended."""
    started = time.perf_counter()
    yield tmp_path_factory.mktemp("fuzz_ingest")
    # Written past pytest's output capture, so the count shows on passing runs too.
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_line(
                f"\ntest_fuzz_ingest: {FUZZ_STATS['examples']} examples in {time.perf_counter() - started:.1f} s "
                f"({FUZZ_STATS['loaded']} loaded, {FUZZ_STATS['refused']} refused with ClmError)"
            )


def check_upload(upload: Upload, fuzz_folder: Path, *, must_load: bool) -> None:
    """Load ``upload`` in a folder of its own through stage + build, and check what the user sees."""
    FUZZ_STATS["examples"] += 1
    example_folder = Path(tempfile.mkdtemp(dir=fuzz_folder))
    try:
        with confined(example_folder) as sandbox:
            data = upload.to_bytes()  # openpyxl writes temporary files too: inside the sandbox
            if currently_in_test_context():
                note(f"{upload.file_name}: " + (repr(data) if len(data) < 20_000 else f"{len(data)} bytes"))
            path = sandbox / upload.file_name
            path.write_bytes(data)
            with Workspace(sandbox / "ws.duckdb") as workspace:
                try:
                    staged = workspace.stage_file(path)
                    if upload.is_regular:
                        assert_names_kept(upload, staged.columns)
                    assert_no_server_text(upload, staged.columns, staged.sample.to_numpy().ravel())
                    report = workspace.build(staged, *upload.build_arguments(staged.columns))
                except ClmError as error:
                    FUZZ_STATS["refused"] += 1
                    assert_plain_sentence(str(error), upload, sandbox)
                    assert not must_load, f"an ordinary export was refused: {error}"
                else:
                    FUZZ_STATS["loaded"] += 1
                    assert_every_row_accounted_for(upload, report)
                    assert_no_server_text(upload, [], workspace.rejected_rows().to_numpy().ravel())
                    assert_kept_amounts_finite(workspace)
    finally:
        shutil.rmtree(example_folder, ignore_errors=True)


FUZZ_SETTINGS = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
)


@FUZZ_SETTINGS
@given(upload=uploads())
def test_any_upload_loads_or_is_refused_in_one_sentence(upload: Upload, fuzz_folder: Path) -> None:
    check_upload(upload, fuzz_folder, must_load=False)


@FUZZ_SETTINGS
@given(upload=uploads(hostile=False))
def test_an_ordinary_export_loads_with_every_row_counted(upload: Upload, fuzz_folder: Path) -> None:
    check_upload(upload, fuzz_folder, must_load=True)


# -- what fuzzing found, kept as plain cases -----------------------------------------------------------------

def _found(layout: str, roles: str, names: tuple[str, ...], rows: list[tuple[str, ...]], **how) -> Upload:
    return Upload(layout=layout, roles=tuple(roles.split()), names=names, rows=tuple(rows),
                  has_header=how.pop("has_header", True), date_style=how.pop("date_style", "iso_date"),
                  number_style="plain", **how)


TRIO = ("customer_id", "order_date", "amount")
FOUND = {
    # build: make_timestamp(CAST(... AS BIGINT)) raises on a unix time that is NaN, infinite or out of range.
    "epoch_date_nan": _found("csv", "customer date amount", TRIO,
                             [("C1", "946684800", "1")] * 9 + [("C2", "NaN", "1")], date_style="epoch"),
    # reader._records: two stray quotes join two lines, and csv.reader raises on the newline between them.
    "two_stray_quotes": _found("csv", "customer date amount", TRIO,
                               [("C0", "2000-01-01", "1"), ("C0", "2000-01-01", '1",0'), ("C0", "2000-01-02", '1",0')],
                               quoting="none"),
    # A line over DuckDB's 2 MB limit sends the file to the tolerant reader, which splits a quoted CR as a line.
    "quoted_cr_after_a_long_line": _found("csv", "customer date amount", TRIO,
                                          [("z" * 2_100_000, "2000-01-01", "0"), ("C0", "\r=1+1", "0")],
                                          delimiter=";"),
    # A line break inside a quoted header name that is not the file's own line end: "no data rows".
    "cr_in_quoted_header_name": _found("csv", "customer date amount", ("customer_id", "order\rdate", "amount"),
                                       [("C1", "2021-01-01", "1"), ("C2", "2021-01-02", "2")], explicit_mapping=True),
    # The same name in a CRLF file loads, as 'order\ndate'.
    "crlf_in_quoted_header_name": _found("csv", "customer date amount", ("customer_id", "order\r\ndate", "amount"),
                                         [("C1", "2021-01-01", "1"), ("C2", "2021-01-02", "2")],
                                         line_end="\r\n", explicit_mapping=True),
    # Repeated Parquet column names: renaming to the cleaned names collides ('x_2 already exists').
    "repeated_parquet_names": _found("parquet", "customer date amount", ("x", "x", "x"),
                                     [("C1", "2021-01-01", "1.5")], explicit_mapping=True),
    # Two control characters in the header of a three-line file make it 'binary data'.
    "control_characters_in_a_short_header": _found("csv", "customer date amount",
                                                   ("customer_id", "order_date", "amount\x1f\x1e"),
                                                   [("C1", "2021-01-01", "1"), ("C2", "2021-01-02", "2")],
                                                   explicit_mapping=True),
}


@pytest.mark.parametrize("upload", FOUND.values(), ids=FOUND.keys())
def test_files_fuzzing_found_load_or_are_refused_in_one_sentence(upload: Upload, fuzz_folder: Path) -> None:
    """Minimal files for problems the properties above found: none is hostile enough to deserve a refusal, so
    each must load, with its names and rows kept."""
    check_upload(upload, fuzz_folder, must_load=True)
