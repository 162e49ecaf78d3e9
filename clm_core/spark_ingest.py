"""Build the canonical transactions on Spark, for sources past one machine, with the rules of the DuckDB ingest.

:func:`ingest_on_spark` reads the raw rows where Spark reads them (CSV or whitespace-separated text files, with
their header, delimiter and encoding; Parquet; a catalog table) as text columns named as the DuckDB reader names
them, numbers them in file order, and runs the validation SQL of :mod:`clm_core.ingest` in Spark's spelling: the
same mapping (guessed from the first rows when none is given), the same reasons, flags, notes and report. It
returns a :class:`SparkIngest`: a :class:`~clm_core.spark_engine.SparkEngine` over the kept rows, the report, and
the rejected rows with their reason as a Spark DataFrame. Only counts and a bounded sample (the first rows, to
guess the mapping and the date shapes) reach the driver. :func:`stage_on_spark` and :func:`build_on_spark` are
the two halves, for a caller that edits the guessed mapping first (the CLI), as
:meth:`clm_core.workspace.Workspace.stage_file` and :meth:`~clm_core.workspace.Workspace.build` are for DuckDB.

A source Spark cannot read, a mapping naming a column the source lacks, a file with no rows: one sentence
(:class:`InputFileError`, :class:`MappingError`), never a Java stack trace.

Where the engines still differ (``tests/test_spark_ingest.py`` holds them to the same result everywhere else):

- A quote never closed: DuckDB sets that one line aside as malformed and reads on; Spark, reading quoted cells
  over several lines (``multi_line``), reads the rest of the file into that cell (one malformed row).
- An empty cell of a rejected row is NULL on Spark; DuckDB shows '' when its tolerant reader read the file.
- Rare spellings of dates: a compact date of seven digits ('2011129'), and among ISO dates years of fewer than
  four digits, '/' between the parts, 24:00 or an AM/PM after the time, which DuckDB reads and Spark does not;
  a one-digit year ('3/4/1') and a three-digit one in month- or day-first dates.
- Several files: rows are numbered file after file in path order (DuckDB reads one file); a table without
  files behind it in Spark's order. Each CSV file's first line is its header.
- Spark reads no Excel workbooks or .zip archives, and the row and size limits of the DuckDB reader
  (``CLM_MAX_ROWS``) do not apply. The fingerprint comes from the files' paths, sizes and times, not their bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from clm_core import schema
from clm_core.errors import ClmError, InputFileError
from clm_core.ingest import (FATE_COUNTS, REJECTED_TABLE, IngestOptions, IngestReport, _likely_formats,
                             _slashed_formats, _text, decide_duplicates, ingest_report, ingested_rows_sql,
                             kept_attribute_columns, refuse_unusable)
from clm_core.mapping import ColumnMapping, guess_mapping
from clm_core.queries import _quote_spark_identifier
from clm_core.reader import (LINE_COLUMN, SourceInfo, _clean_names, _detect_delimiter, _has_header, _sample_lines,
                             _split)
from clm_core.spark_engine import SparkEngine, _canonical, _first_line, _literal
from clm_core.workspace import DATASET_FILE, PARQUET_FILE, DatasetInfo

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SOURCE_KINDS", "ENCODINGS", "REJECTED_FILE", "SparkSource", "SparkIngest", "stage_on_spark",
           "build_on_spark", "ingest_on_spark"]

# csv: delimited text (the delimiter detected unless given); whitespace: columns separated by runs of blanks
# (CDNOW's layout); parquet: Parquet files; table: a table or view of the session's catalog.
SOURCE_KINDS = ("csv", "whitespace", "parquet", "table")
# The encodings the DuckDB reader reads, by the names it uses, and Java's names for them.
ENCODINGS = {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "cp1252": "windows-1252", "utf-16": "UTF-16"}
REJECTED_FILE = f"{REJECTED_TABLE}.parquet"
# As the workspace: the mapping is guessed from the first 5,000 rows, the date shapes from the first 2,000.
_SAMPLE_ROWS = 5000
_SNIFF_LINES = 200
# Reads each line whole: a separator and a quote no text file uses (as the DuckDB reader reads whitespace files).
_WHOLE_LINE = {"sep": "\x01", "quote": ""}
_BLANK_RUN = r"[\t\n\f\r ]+"


@dataclass
class SparkSource:
    """A source read by Spark, waiting for its mapping: what :func:`stage_on_spark` found out.

    ``rows`` is a lazy DataFrame of every data row, the file's columns as text (named as the DuckDB reader names
    them: ``columns``) and helper columns (``helpers``: the row's place in the file, whether it did not fit the
    columns); ``sample`` holds its first rows, ``guess`` the mapping guessed from them.
    """

    session: "SparkSession"
    name: str
    rows: "DataFrame"
    row_count: int
    columns: list[str]
    helpers: dict[str, str]
    sample: pd.DataFrame
    guess: ColumnMapping
    description: str
    notes: list[str] = field(default_factory=list)
    # What identifies the source's content (its files, their sizes and times), for the dataset's fingerprint.
    identity: str = ""


@dataclass
class SparkIngest:
    """The result of a build on Spark: the engine over the kept rows, the report, and the rejected rows (``reason``,
    ``source_row`` and the file's columns as text, a lazy Spark DataFrame, as DuckDB's ``rejected_rows``)."""

    engine: SparkEngine
    report: IngestReport
    rejected_rows: "DataFrame"
    # The kept rows in the canonical columns and types (what the engine reads), and the cached rows, if any.
    transactions: "DataFrame"
    _stored: "DataFrame | None" = None

    @property
    def dataset(self) -> DatasetInfo:
        return self.engine.dataset

    def write_parquet(self, folder: str | Path) -> str:
        """Write the dataset where :meth:`SparkEngine.from_parquet` reads it: ``transactions.parquet`` (the kept
        rows), ``rejected_rows.parquet`` and ``dataset.json`` in ``folder`` (a path or a lake URL, replaced),
        written by the executors. Returns the folder."""
        folder = str(folder).rstrip("/")
        self.transactions.write.mode("overwrite").parquet(f"{folder}/{PARQUET_FILE}")
        self.rejected_rows.write.mode("overwrite").parquet(f"{folder}/{REJECTED_FILE}")
        description = json.dumps(self.dataset.to_dict(), indent=1)
        if "://" in folder:  # a lake: the description goes through Spark as well (a folder holding one text file)
            session = self.engine.session
            session.createDataFrame([(description,)], "value string").coalesce(1).write.mode("overwrite").text(
                f"{folder}/{DATASET_FILE}")
        else:
            (Path(folder) / DATASET_FILE).write_text(description)
        return folder

    def unpersist(self) -> None:
        """Free the cluster memory that holds the validated rows (the engine reads the source again afterwards)."""
        if self._stored is not None:
            self._stored.unpersist()


@contextmanager
def _reading(source: str) -> Iterator[None]:
    """Spark's errors while reading the source as one sentence: the first line of the message, no Java trace."""
    try:
        yield
    except ClmError:
        raise
    except Exception as error:  # py4j and Spark raise many types; their first line says what went wrong
        raise InputFileError(f"Spark cannot read {source}: {_first_line(error)}") from None


def _free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``... : a helper column name no column of the file has (Spark ignores case)."""
    name, suffix = base, 2
    while name.lower() in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(name.lower())
    return name


# -- reading -----------------------------------------------------------------------------------------------

@dataclass
class _Layout:
    """How a text source is split into columns: what the DuckDB reader's sniffer decides from its first lines."""

    kind: str  # "csv" or "whitespace"
    delimiter: str | None
    header: bool
    names: list[str]


def _sniff(session: "SparkSession", source: str, kind: str, delimiter: str | None, header: bool | None,
           encoding: str) -> _Layout:
    """Delimiter, header and column names from the first lines of a text source (the first file Spark lists),
    decided by the DuckDB reader's own rules."""
    with _reading(source):
        first = (session.read.schema("line string").options(**_WHOLE_LINE, header=False,
                                                              encoding=ENCODINGS[encoding])
                 .csv(source).limit(_SNIFF_LINES + 1).collect())
    lines = _sample_lines("\n".join(row.line or "" for row in first), "\n", _SNIFF_LINES)
    if lines:
        lines[0] = lines[0].lstrip("\ufeff")
    if not lines:
        raise InputFileError(f"{source} holds no rows.")
    if kind == "csv" and delimiter is None:
        delimiter = _detect_delimiter(lines, "\n")
        if delimiter is None:
            widths = [len(line.split()) for line in lines]
            usual = max(set(widths), key=widths.count)
            if max(widths) > 1 and widths.count(usual) / len(widths) >= 0.8:
                kind = "whitespace"
            else:
                delimiter = ","  # a one-column file; refused below with the reason
    rows = _split(lines, None if kind == "whitespace" else delimiter, "\n")
    if header is None:
        header = _has_header(rows)
    # As wide as the header or the usual row, whichever is wider; a rare longer row is malformed.
    widths = [len(row) for row in rows]
    width = max(len(rows[0]) if header else 0, max(set(widths), key=widths.count))
    names = (_clean_names(rows[0] + [""] * (width - len(rows[0]))) if header
             else [f"column_{position}" for position in range(1, width + 1)])
    if len(names) < 2:
        raise InputFileError(
            f"The file has only one column ('{names[0]}'). A transaction file needs at least a customer "
            "column and a date column, separated by commas, semicolons, tabs or pipes."
        )
    return _Layout(kind=kind, delimiter=delimiter, header=header, names=names)


def _delimited_rows(session: "SparkSession", source: str, layout: _Layout, encoding: str, multi_line: bool,
                    helpers: dict[str, str]) -> "DataFrame":
    """A delimited file's rows, as the DuckDB reader reads them: every cell as text, a short row padded with
    NULLs, and a row with more fields than the header, or a quote never closed, kept as one malformed row whose
    text is in the first column."""
    from pyspark.sql import functions as F

    positional = [f"c{position}" for position in range(len(layout.names))]
    corrupt = "_corrupt_record"
    reader = (session.read.schema(", ".join(f"{name} string" for name in [*positional, corrupt]))
              .options(header=layout.header, sep=layout.delimiter, quote='"', escape='"',
                       encoding=ENCODINGS[encoding], multiLine=multi_line, mode="PERMISSIVE",
                       columnNameOfCorruptRecord=corrupt, ignoreLeadingWhiteSpace=False,
                       ignoreTrailingWhiteSpace=False))
    with _reading(source):
        frame = reader.csv(source)
    # Spark marks a row with too few or too many fields; only too many (or an open quote) is malformed: the
    # fields outside quotes (a doubled quote inside a quoted field closes and reopens it, so it drops out too).
    record = F.col(corrupt)
    outside = F.regexp_replace(record, '"[^"]*"', "")
    separators = (F.length(outside) - F.length(F.replace(outside, F.lit(layout.delimiter), F.lit("")))) / len(
        layout.delimiter)
    quotes = F.length(record) - F.length(F.replace(record, F.lit('"'), F.lit("")))
    malformed = record.isNotNull() & ((separators + 1 > len(positional)) | (quotes % 2 == 1))
    cells = [F.when(malformed, record if position == 0 else F.lit(None)).otherwise(F.col(name))
             for position, name in enumerate(positional)]
    return frame.select(*_split_keys(frame, helpers), *(cell.alias(name) for cell, name in zip(cells, layout.names)),
                        malformed.alias(helpers["malformed"]))


def _whitespace_rows(session: "SparkSession", source: str, layout: _Layout, encoding: str,
                     helpers: dict[str, str]) -> "DataFrame":
    """A file whose columns are separated by runs of blanks, as the DuckDB reader reads it: blank lines skipped,
    a line with more fields than the header kept whole in the first column as a malformed row. The header line
    is still in (the first line of each file)."""
    from pyspark.sql import functions as F

    with _reading(source):
        frame = (session.read.schema("line string").options(**_WHOLE_LINE, header=False,
                                                             encoding=ENCODINGS[encoding]).csv(source))
    line = F.regexp_replace(F.col("line"), r"^[ \t\r]+|[ \t\r]+$", "")
    fields = F.split(line, _BLANK_RUN)
    malformed = F.size(fields) > len(layout.names)
    cells = [F.when(malformed, line if position == 0 else F.lit(None)).otherwise(F.get(fields, position))
             for position in range(len(layout.names))]
    return frame.where(line != "").select(*_split_keys(frame, helpers),
                                          *(cell.alias(name) for cell, name in zip(cells, layout.names)),
                                          malformed.alias(helpers["malformed"]))


def _typed_rows(frame: "DataFrame", names: list[str], helpers: dict[str, str]) -> "DataFrame":
    """A Parquet source's or a table's rows, every column cast to text as the DuckDB reader casts Parquet, named
    ``names``."""
    from pyspark.sql import functions as F

    cells = [frame[_quote_spark_identifier(column)].cast("string").alias(name)
             for column, name in zip(frame.columns, names)]
    return frame.select(*_split_keys(frame, helpers), *cells, F.lit(False).alias(helpers["malformed"]))


def _split_keys(frame: "DataFrame", helpers: dict[str, str]) -> list["Column"]:
    """Where each row comes from, to number rows in file order: the file and the split of it (Spark's hidden
    ``_metadata`` column of file sources), else Spark's partition (a table not backed by files)."""
    from pyspark.sql import functions as F

    try:
        frame.select("_metadata.file_path").schema  # resolved now: a table without files has no such column
    except Exception:
        return [F.lit("").alias(helpers["file"]), F.spark_partition_id().cast("bigint").alias(helpers["start"]),
                F.lit(0).cast("bigint").alias(helpers["size"]), F.lit(0).cast("bigint").alias(helpers["modified"])]
    return [F.col("_metadata.file_path").alias(helpers["file"]),
            F.col("_metadata.file_block_start").alias(helpers["start"]),
            F.col("_metadata.file_size").alias(helpers["size"]),
            F.col("_metadata.file_modification_time").cast("bigint").alias(helpers["modified"])]


def _numbered(session: "SparkSession", source: str, frame: "DataFrame", names: list[str], helpers: dict[str, str],
              *, skip_first_line: bool) -> tuple["DataFrame", int, str]:
    """``frame`` with ``source_row`` (the helper of that name), the row's 1-based place among the data rows:
    files in path order, each in its own order (a split's rows keep their order, and a split's position gives its
    place). One pass counts the rows of every split; those counts (one per split) are all that reaches the
    driver. ``skip_first_line`` drops the first line of each file (a header the reader did not skip). Returns the
    frame, the number of data rows, and the files with their sizes and times (for the fingerprint)."""
    from pyspark.sql import functions as F

    keys = [helpers[name] for name in ("file", "start", "size", "modified")]
    row_id = helpers["row_id"]
    tagged = frame.withColumn(row_id, F.monotonically_increasing_id())
    with _reading(source):
        splits = sorted(tagged.groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"),
                                                  F.min(row_id).alias("first_id")).collect(),
                        key=lambda split: (split[0], split[1]))
    offsets, total = [], 0
    for split in splits:
        header_here = skip_first_line and split[1] == 0 and split[0] != ""
        offsets.append((split[0], split[1], total, split["first_id"], header_here))
        total += split["rows"] - header_here
    identity = json.dumps(sorted({(split[0], split[2], split[3]) for split in splits}))
    offset, first_id, header_here = (F.col(helpers[name]) for name in ("offset", "first_id", "header_here"))
    table = session.createDataFrame(offsets, ", ".join(
        f"{_quote_spark_identifier(helpers[name])} {kind}" for name, kind in (
            ("file", "string"), ("start", "bigint"), ("offset", "bigint"), ("first_id", "bigint"),
            ("header_here", "boolean"))))
    joined = tagged.join(F.broadcast(table), [keys[0], keys[1]])
    position = F.col(row_id) - first_id
    numbered = joined.where(~(header_here & (position == 0))).select(
        *(F.col(_quote_spark_identifier(name)) for name in names),
        (offset + position + 1 - header_here.cast("bigint")).alias(helpers["source_row"]),
        F.col(helpers["malformed"]),
    )
    return numbered, total, identity


def stage_on_spark(session: "SparkSession", source: str | Path, *, kind: str = "csv", delimiter: str | None = None,
                   header: bool | None = None, encoding: str = "utf-8", multi_line: bool = True) -> SparkSource:
    """Read ``source`` in Spark and guess its mapping, as :meth:`Workspace.stage_file` does for DuckDB.

    ``source``: a file, a folder of files or a glob, on any file system Spark reads (``s3a://...``), or with
    ``kind="table"`` a table name of the session's catalog. ``kind``: one of :data:`SOURCE_KINDS`. Text sources:
    ``delimiter`` (None: detected from the first lines, as the DuckDB reader does, which may find a
    whitespace-separated file), ``header`` (None: detected), ``encoding`` (one of :data:`ENCODINGS`);
    ``multi_line`` reads quoted cells that run over several lines, as DuckDB does, but reads each file on one core
    (False splits a large uncompressed file across the cluster, when no cell holds a line break).

    One pass over the source counts its rows; its first 5,000 rows are collected to guess the mapping.
    :class:`InputFileError` when Spark cannot read the source or it holds no data rows.
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")
    if delimiter is not None and len(delimiter) != 1:
        raise InputFileError(f"The delimiter is one character (a comma, a semicolon, a tab...), not {delimiter!r}.")
    if encoding not in ENCODINGS:
        raise InputFileError(f"Spark reads text encoded as {', '.join(ENCODINGS)}; {encoding!r} is not one of them.")
    source = str(source)
    _prepare(session, encoding)
    helpers_base = ("file", "start", "size", "modified", "row_id", "source_row", "malformed", "offset",
                    "first_id", "header_here")
    notes: list[str] = []
    if kind in ("csv", "whitespace"):
        layout = _sniff(session, source, kind, delimiter, header, encoding)
        names = layout.names
        helpers = _helpers(helpers_base, names)
        if layout.kind == "whitespace":
            frame = _whitespace_rows(session, source, layout, encoding, helpers)
        else:
            frame = _delimited_rows(session, source, layout, encoding, multi_line, helpers)
        info = SourceInfo(path=Path(source), kind=layout.kind, encoding=encoding, delimiter=layout.delimiter,
                          header=layout.header, compression="gzip" if source.endswith(".gz") else "none")
        description = info.describe()
        if encoding != "utf-8":
            notes.append(f"The file is not UTF-8; it was read as {description.split(', ')[2]}.")
        skip_first_line = layout.kind == "whitespace" and layout.header
    else:
        with _reading(source):
            typed = session.table(source) if kind == "table" else session.read.parquet(source)
        names = _clean_names(list(typed.columns))
        if len(names) < 2:
            raise InputFileError(f"{source} has {len(names)} column(s); a transaction table needs at least a "
                                 "customer column and a date column.")
        helpers = _helpers(helpers_base, names)
        frame = _typed_rows(typed, names, helpers)
        description = f"Spark table {source}" if kind == "table" else "Parquet"
        skip_first_line = False
    rows, row_count, identity = _numbered(session, source, frame, names, helpers, skip_first_line=skip_first_line)
    if row_count == 0:
        raise InputFileError(f"{source} has no data rows. Export the data again with its rows.")
    with _reading(source):
        first_rows = rows.limit(_SAMPLE_ROWS).collect()
    sample = pd.DataFrame.from_records(
        [tuple(row[:len(names)]) for row in sorted(first_rows, key=lambda row: row[helpers["source_row"]])],
        columns=names)
    name = source if kind == "table" else Path(source.rstrip("/")).name
    return SparkSource(session=session, name=name, rows=rows, row_count=row_count, columns=names, helpers=helpers,
                       sample=sample.astype(object), guess=guess_mapping(sample.astype(object)),
                       description=f"{description}, read by Spark", notes=notes,
                       identity=f"{kind}:{source}:{identity}:{row_count}")


def _helpers(bases: tuple[str, ...], names: list[str]) -> dict[str, str]:
    taken = {name.lower() for name in names}
    return {base: _free_name(base, taken) for base in bases}


def _prepare(session: "SparkSession", encoding: str) -> None:
    """Moments are read in UTC (a day stays that day on any cluster, as in :class:`SparkEngine`), with Spark's own
    datetime parser (the default since Spark 3; a cluster set to the legacy one would read other dates). Spark 4
    reads Windows-1252 only with Java's full list of encodings switched on."""
    session.conf.set("spark.sql.session.timeZone", "UTC")
    session.conf.set("spark.sql.legacy.timeParserPolicy", "CORRECTED")
    if encoding == "cp1252":
        session.conf.set("spark.sql.legacy.javaCharsets", "true")


# -- validating --------------------------------------------------------------------------------------------

def build_on_spark(staged: SparkSource, mapping: ColumnMapping | None = None,
                   options: IngestOptions = IngestOptions(), *, cache: bool = True) -> SparkIngest:
    """Validate the staged rows with ``mapping`` (default: the guess) and ``options``, by the rules of
    :func:`clm_core.ingest.build_transactions`, on the cluster.

    ``cache`` keeps the validated rows in the cluster's memory (spilling to disk), so the queries that follow
    never read and validate the source again; without it every query does. One pass over the source counts
    every row's fate. :class:`MappingError` when the mapping names a column the source lacks or reads no date or
    amount, :class:`InputFileError` when every row is rejected.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    session, helpers = staged.session, staged.helpers
    mapping = mapping or staged.guess
    mapping.validate(staged.columns)
    keep_duplicates, duplicate_evidence = decide_duplicates(mapping, staged.columns, options)
    likely = ()
    if mapping.date_format in ("mdy", "dmy"):
        likely = _sample_likely_formats(staged.sample, mapping)
    every_column = ", ".join(_quote_spark_identifier(column) for column in staged.columns)
    source_row = _quote_spark_identifier(helpers["source_row"])
    rows_sql = ingested_rows_sql(
        mapping, staged.columns, dialect="spark", source="{rows}", source_row=source_row,
        malformed=_quote_spark_identifier(helpers["malformed"]),
        # Exact duplicates: a window over every column numbers the copies in file order.
        is_copy=f"row_number() OVER (PARTITION BY {every_column} ORDER BY {source_row}) > 1",
        likely_formats=likely,
    )
    now = options.now or datetime.now()
    ingested = _sql_over(session, rows_sql, staged.rows, args={
        "future_limit": _literal(now + timedelta(days=1)), "drop_zero": options.drop_zero_price,
        "drop_returns": options.drop_returns, "keep_duplicates": keep_duplicates,
    })
    if cache:
        ingested = ingested.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with _reading(staged.name):
            counts = ingested.agg(*(F.expr(count) for count in FATE_COUNTS)).collect()[0].asDict()

        def example(column: str) -> object:
            found = staged.rows.where(F.expr(f"{_text(column, 'spark')} IS NOT NULL")).select(
                F.col(_quote_spark_identifier(column))).limit(1).collect()
            return found[0][0] if found else None

        refuse_unusable(counts, mapping, example)
    except BaseException:
        ingested.unpersist()
        raise
    report = ingest_report(counts, mapping, options, keep_duplicates=keep_duplicates,
                           duplicate_evidence=duplicate_evidence)
    report.notes = staged.notes + report.notes
    attributes = kept_attribute_columns(mapping)
    settings = json.dumps({"mapping": mapping.to_dict(), "options": options.to_dict()}, sort_keys=True)
    dataset = DatasetInfo(
        name=staged.name,
        fingerprint=hashlib.sha256((staged.identity + settings).encode()).hexdigest()[:20],
        mapping=mapping,
        options=options.to_dict(),
        report=report,
        source=staged.description,
        segment_columns={name: label for label, name in attributes if label in mapping.segments},
        contact_columns={name: label for label, name in attributes if label in mapping.contacts},
    )
    transactions = _canonical(ingested.where("reason IS NULL"), dataset)
    rejected = ingested.where("reason IS NOT NULL").select(
        "reason", LINE_COLUMN, *(ingested[f"raw_{position}"].alias(column)
                                 for position, column in enumerate(staged.columns)))
    return SparkIngest(engine=SparkEngine(session, transactions, dataset), report=report, rejected_rows=rejected,
                       transactions=transactions, _stored=ingested if cache else None)


def _sample_likely_formats(sample: pd.DataFrame, mapping: ColumnMapping) -> tuple[str, ...]:
    """The date shapes read first (the fast paths), chosen from the first rows by the DuckDB ingest's own rule,
    run by DuckDB on the collected sample, so both engines try the same shapes in the same order."""
    column = mapping.fields[schema.ORDER_TS]
    with duckdb.connect() as con:
        con.register("first_rows", sample[[column]].head(2000))
        return _likely_formats(con, column, _slashed_formats(mapping.date_format), table="first_rows")


def _sql_over(session: "SparkSession", text: str, rows: "DataFrame", args: dict) -> "DataFrame":
    """``text`` run over ``rows`` (named ``{rows}`` in it), its values bound from ``args``. The rows are a temporary
    view only while Spark reads the query: dropping a view later would also drop a cached result made from it."""
    view = f"clm_rows_{uuid.uuid4().hex[:12]}"
    rows.createOrReplaceTempView(view)
    try:
        return session.sql(text.replace("{rows}", view), args=args)
    finally:
        session.catalog.dropTempView(view)


def ingest_on_spark(session: "SparkSession", source: str | Path, *, kind: str = "csv",
                    mapping: ColumnMapping | None = None, options: IngestOptions = IngestOptions(),
                    delimiter: str | None = None, header: bool | None = None, encoding: str = "utf-8",
                    multi_line: bool = True, cache: bool = True) -> SparkIngest:
    """Stage and build in one step: :func:`stage_on_spark` then :func:`build_on_spark` (see both for the
    arguments). Returns the engine over the kept rows, the report and the rejected rows."""
    staged = stage_on_spark(session, source, kind=kind, delimiter=delimiter, header=header, encoding=encoding,
                            multi_line=multi_line)
    return build_on_spark(staged, mapping, options, cache=cache)
