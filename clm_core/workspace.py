"""A workspace: one DuckDB database holding one dataset, its rejected rows and its metadata.

The app gives every browser session its own workspace file in its own
temporary folder; the CLI writes one to ``--db PATH``. All computations
above this module go through :meth:`Workspace.query` (named queries) or read
the metadata; none of them touch DuckDB directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from clm_core import schema
from clm_core.errors import InputFileError, NoDatasetError, ResourceLimitError, SchemaError
from clm_core.ingest import REJECTED_TABLE, IngestOptions, IngestReport, attribute_column, build_transactions
from clm_core.mapping import ColumnMapping, guess_mapping
from clm_core.queries import query_text
from clm_core.reader import LINE_COLUMN, MALFORMED_TABLE, RAW_TABLE, SourceInfo, load_raw, sniff

__all__ = ["StagedFile", "DatasetInfo", "Workspace", "file_digest", "labels_long_form", "LABELS_TABLE", "PARQUET_FILE",
           "DATASET_FILE", "LABELS_FILE"]

_META_TABLE = "dataset_meta"
# Customer-level labels (RFM segment, lifecycle stage) stored for every page to filter and show: long, one row
# per customer and kind, so the named queries select a kind by a bound value, never by a column name.
LABELS_TABLE = "customer_labels"
_LABELS_INFO_TABLE = "customer_labels_info"
_MEMORY_LIMIT = "2GB"
# A dataset written for a lake (Workspace.write_parquet): the canonical rows, and their description beside them.
PARQUET_FILE = "transactions.parquet"
DATASET_FILE = "dataset.json"
LABELS_FILE = f"{LABELS_TABLE}.parquet"
_SAMPLE_ROWS = 5000


def _out_of_memory() -> ResourceLimitError:
    return ResourceLimitError(
        f"This needs more than the {_MEMORY_LIMIT} of memory one workspace may use. Try a smaller extract of the "
        "data, or ask your administrator for a larger server."
    )


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class StagedFile:
    """An uploaded file loaded as text, waiting for the user's mapping."""

    name: str
    info: SourceInfo
    rows: int
    columns: list[str]
    sample: pd.DataFrame
    guess: ColumnMapping
    digest: str


@dataclass
class DatasetInfo:
    """What is loaded: where it came from, how it was read, and its report."""

    name: str
    fingerprint: str
    mapping: ColumnMapping
    options: dict
    report: IngestReport
    source: str = ""
    segment_columns: dict[str, str] = field(default_factory=dict)  # column -> label
    contact_columns: dict[str, str] = field(default_factory=dict)

    @property
    def has_money(self) -> bool:
        return self.mapping.has_money

    @property
    def has_products(self) -> bool:
        return schema.PRODUCT_ID in self.mapping.fields or schema.PRODUCT_NAME in self.mapping.fields

    def to_dict(self) -> dict:
        """The description as plain JSON-ready values (stored in the workspace, and beside a Parquet export)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "mapping": self.mapping.to_dict(),
            "options": self.options,
            "report": self.report.to_dict(),
            "source": self.source,
            "segment_columns": self.segment_columns,
            "contact_columns": self.contact_columns,
        }

    def check_columns(self, *, segment: str | None = None, attributes: list[str] | None = None) -> None:
        """:class:`SchemaError` unless ``segment`` is a segment column and ``attributes`` are segment or contact
        columns of this dataset: what an engine checks before it fills a query's identifier slots."""
        if segment is not None and segment not in self.segment_columns:
            raise SchemaError(f"Required column {segment} missing: it is not a segment attribute of this dataset.")
        known = {**self.segment_columns, **self.contact_columns}
        for column in attributes or ():
            if column not in known:
                raise SchemaError(f"Required column {column} missing: it is not a kept column of this dataset.")

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetInfo":
        return cls(
            name=data["name"],
            fingerprint=data["fingerprint"],
            mapping=ColumnMapping.from_dict(data["mapping"]),
            options=data["options"],
            report=IngestReport(**data["report"]),
            source=data["source"],
            segment_columns=data["segment_columns"],
            contact_columns=data["contact_columns"],
        )


def labels_long_form(labels: pd.DataFrame, note: str) -> tuple[pd.DataFrame, str]:
    """Customer labels (``customer_id`` and one column per kind) as stored: long, one row per customer and kind
    with a label (``customer_id``, ``kind``, ``label``), and their version, a digest of them and ``note``."""
    kinds = [column for column in labels.columns if column != "customer_id"]
    long = labels.melt(id_vars="customer_id", value_vars=kinds, var_name="kind", value_name="label").dropna()
    long = long.astype({"customer_id": str, "kind": str, "label": str})
    digest = hashlib.sha256(note.encode())
    digest.update(pd.util.hash_pandas_object(long, index=False).to_numpy().tobytes())
    return long, digest.hexdigest()[:16]


class Workspace:
    """One DuckDB database file (or memory) holding at most one dataset."""

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False,
                 folder: str | Path | None = None) -> None:
        """Open (or create) the workspace database at ``path``.

        Its working files (decompressed copies, spilled memory) live in a new folder inside ``folder`` (default:
        the system's temporary folder), removed on :meth:`close`. DuckDB may then touch only that folder and the
        database's own: external access is switched off (for good: DuckDB refuses to switch it back on, to
        attach, load extensions or move its temporary folder), so no SQL text, however it was made, can read or
        write any other file. A file to load from elsewhere is linked (or copied) into the work folder first.
        """
        self.path = str(path)
        self.read_only = read_only
        self._workdir = Path(tempfile.mkdtemp(prefix="clm-work-", dir=folder))
        # Each workspace is its own DuckDB instance: cap its memory so large files spill to this workspace's own
        # temporary folder instead of growing without bound (several sessions share one machine).
        self._con = duckdb.connect(self.path, read_only=read_only,
                                   config={"memory_limit": _MEMORY_LIMIT, "temp_directory": str(self._workdir)})
        self._allowed = [self._workdir.resolve()]
        if self.path != ":memory:":
            self._allowed.append(Path(self.path).resolve().parent)
        self._con.execute("SET allowed_directories = ?", [[f"{folder}/" for folder in self._allowed]])
        self._con.execute("SET enable_external_access = false")
        if read_only:
            # Loading changes settings per statement (insertion order); a workspace that only reads locks them all.
            self._con.execute("SET lock_configuration = true")
        # Loading uses the connection itself (the raw upload is a TEMP table of this connection); everything else
        # runs on a cursor of its own, so a page re-run that starts while the last one still reads never finds
        # the connection busy. Loads are serialised.
        self._load_lock = threading.RLock()
        # Held while a build replaces the dataset, and by readers that must see one dataset throughout
        # (:meth:`dataset_held`).
        self._swap_lock = threading.RLock()
        # The stored description, read once per build: a page run asks for it several times, and each read is a
        # query that waits behind whatever else the database runs (up to 0.13 s while a churn model's examples
        # were read beside it). A build moves the generation on before and after it writes, so a description read
        # meanwhile is never kept.
        self._generation = 0
        self._payload: tuple[int, str] | None = None
        self._staged: StagedFile | None = None  # the file whose rows are in the raw table now
        self._cursors: set[duckdb.DuckDBPyConnection] = set()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self._con.cursor()
        self._cursors.add(cursor)
        try:
            yield cursor
        except duckdb.OutOfMemoryException as error:
            raise _out_of_memory() from error
        finally:
            self._cursors.discard(cursor)
            cursor.close()

    @contextmanager
    def dataset_held(self) -> Iterator[None]:
        """While inside, no load replaces the dataset (a build waits until the reader leaves): for a reader whose
        queries must all see one dataset, such as a computation kept under the dataset's fingerprint that runs
        while the user may load another file."""
        with self._swap_lock:
            yield

    def interrupt(self) -> None:
        """Stop whatever this workspace is computing (server shutdown); the interrupted call raises."""
        for connection in [self._con, *list(self._cursors)]:
            try:
                connection.interrupt()
            except duckdb.Error:
                pass

    # -- loading -----------------------------------------------------------
    def stage_file(self, path: str | Path, *, original_name: str | None = None,
                   sheets: list[str] | None = None, header_row: int | None = None) -> StagedFile:
        """Read a file as text into the workspace and guess its mapping.

        ``header_row`` (Excel: the 1-based sheet row holding the column names) overrides the detected one.
        """
        name = original_name or Path(path).name
        with self._load_lock:
            self._staged = None  # a failed read leaves nothing staged
            with ThreadPoolExecutor(max_workers=1) as pool, self._readable(path) as readable:
                # Hashing releases the GIL, so the file's fingerprint is computed while DuckDB reads it.
                digest_job = pool.submit(file_digest, readable)
                info = sniff(readable, original_name=name, workdir=self._workdir)
                rows = load_raw(self._con, info, sheets=sheets, workdir=self._workdir, header_row=header_row)
                columns = self._raw_columns()
                sample = self._con.execute(
                    f"SELECT * FROM {RAW_TABLE} WHERE rowid < {_SAMPLE_ROWS} ORDER BY rowid"
                ).df()
                digest = digest_job.result()
            if info.kind == "excel":
                choice = json.dumps([sheets or info.sheets[:1], info.header_row])
                digest = hashlib.sha256((digest + choice).encode()).hexdigest()
            self._staged = StagedFile(name=name, info=info, rows=rows, columns=columns, sample=sample,
                                      guess=guess_mapping(sample), digest=digest)
            return self._staged

    @contextmanager
    def _readable(self, path: str | Path) -> Iterator[Path]:
        """``path``, or a link to it inside the work folder when it lies outside the folders DuckDB may read;
        the link is removed afterwards."""
        path = Path(path)
        resolved = path.resolve()
        if not resolved.is_file() or any(resolved.is_relative_to(folder) for folder in self._allowed):
            yield path
            return
        link = self._workdir / ("source" + "".join(resolved.suffixes[-2:]))
        try:
            try:
                os.link(resolved, link)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copyfile(resolved, link)
            yield link
        finally:
            link.unlink(missing_ok=True)

    def build(self, staged: StagedFile, mapping: ColumnMapping | None = None,
              options: IngestOptions = IngestOptions()) -> IngestReport:
        """Validate the staged rows with ``mapping`` (default: the guess) and store the dataset."""
        mapping = mapping or staged.guess
        with self._load_lock:
            if staged is not self._staged:
                raise InputFileError(f"'{staged.name}' is no longer waiting to be loaded (another file was read, or "
                                     "it was loaded already). Read the file again.")
            try:
                with self._swap_lock:
                    self._generation += 1
                    try:
                        return self._build(staged, mapping, options)
                    finally:
                        self._generation += 1
            except duckdb.OutOfMemoryException as error:
                raise _out_of_memory() from error

    def _build(self, staged: StagedFile, mapping: ColumnMapping, options: IngestOptions) -> IngestReport:
        def describe(report: IngestReport) -> None:
            if staged.info.notes:
                report.notes = staged.info.notes + report.notes
            settings = json.dumps({"mapping": mapping.to_dict(), "options": options.to_dict()}, sort_keys=True)
            fingerprint = hashlib.sha256((staged.digest + settings).encode()).hexdigest()[:20]
            self._write_meta(DatasetInfo(
                name=staged.name,
                fingerprint=fingerprint,
                mapping=mapping,
                options=options.to_dict(),
                report=report,
                source=staged.info.describe(),
                segment_columns={attribute_column(schema.SEGMENT_PREFIX, label): label for label in mapping.segments},
                contact_columns={attribute_column(schema.CONTACT_PREFIX, label): label for label in mapping.contacts},
            ))

        report = build_transactions(self._con, mapping, options, before_commit=describe)
        self._staged = None
        self._con.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        self._con.execute(f"DROP TABLE IF EXISTS {MALFORMED_TABLE}")
        try:
            self._con.execute("CHECKPOINT")  # fold the log into the file now; DuckDB does it later otherwise
        except duckdb.TransactionException:
            pass  # a page is reading right now
        return report

    def ingest(self, path: str | Path, mapping: ColumnMapping | None = None,
               options: IngestOptions = IngestOptions(), *, original_name: str | None = None,
               sheets: list[str] | None = None, header_row: int | None = None) -> IngestReport:
        """Stage and build in one step (the CLI's path), with no other load in between."""
        with self._load_lock:
            staged = self.stage_file(path, original_name=original_name, sheets=sheets, header_row=header_row)
            return self.build(staged, mapping, options)

    def _raw_columns(self) -> list[str]:
        return [row[0] for row in self._con.execute(f"DESCRIBE {RAW_TABLE}").fetchall()]

    def _write_meta(self, dataset: DatasetInfo) -> None:
        self._con.execute(f"CREATE OR REPLACE TABLE {_META_TABLE} (payload VARCHAR)")
        self._con.execute(f"INSERT INTO {_META_TABLE} VALUES (?)", [json.dumps(dataset.to_dict())])
        # A new dataset starts without customer labels (those of the last one named other customers).
        self._con.execute(f"CREATE OR REPLACE TABLE {LABELS_TABLE} (customer_id VARCHAR, kind VARCHAR, label VARCHAR)")
        self._con.execute(f"CREATE OR REPLACE TABLE {_LABELS_INFO_TABLE} (note VARCHAR, version VARCHAR)")

    # -- reading -----------------------------------------------------------
    @property
    def dataset(self) -> DatasetInfo:
        """The loaded dataset; :class:`NoDatasetError` when nothing is loaded yet."""
        generation, known = self._generation, self._payload
        if known is not None and known[0] == generation:
            return DatasetInfo.from_dict(json.loads(known[1]))
        try:
            with self._cursor() as cursor:
                (payload,) = cursor.execute(f"SELECT payload FROM {_META_TABLE}").fetchone()
        except (duckdb.CatalogException, TypeError):
            raise NoDatasetError("No dataset is loaded yet. Load the demo data or upload a file on the Data page.")
        self._payload = (generation, payload)
        return DatasetInfo.from_dict(json.loads(payload))

    @property
    def has_dataset(self) -> bool:
        try:
            self.dataset
        except NoDatasetError:
            return False
        return True

    def query(self, name: str, *, segment: str | None = None, attributes: list[str] | None = None,
              **params: object) -> pd.DataFrame:
        """Run a named query from :mod:`clm_core.queries` with bound parameters.

        ``segment`` names a segment attribute column of the dataset (``seg_country``);
        ``attributes`` names segment or contact columns (``contact_email``).
        """
        self.dataset.check_columns(segment=segment, attributes=attributes)  # a clear error before a SQL one
        text = query_text(name, segment=segment, attributes=attributes)
        with self._cursor() as cursor:
            return cursor.execute(text, params or None).df()

    def store_customer_labels(self, labels: pd.DataFrame, note: str) -> str:
        """Replace the stored customer labels with ``labels`` (``customer_id`` and one column per kind, e.g.
        ``rfm_segment``, ``lifecycle_stage``) and ``note`` (what they are, in words); returns their version, a
        digest that changes whenever they do. Customers without a label of a kind get no row for it."""
        self.dataset  # a clear error before a SQL one
        long, version = labels_long_form(labels, note)
        # Serialised with the builds (which replace the labels too) by the lock a build takes last, so that a
        # reader holding the dataset (dataset_held) may store labels without the two locks taken in two orders.
        with self._swap_lock, self._cursor() as cursor:
            cursor.register("labels_frame", long)
            cursor.execute("BEGIN TRANSACTION")
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {LABELS_TABLE} (customer_id VARCHAR, kind VARCHAR, label VARCHAR)")
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {_LABELS_INFO_TABLE} (note VARCHAR, version VARCHAR)")
            cursor.execute(f"DELETE FROM {LABELS_TABLE}")
            cursor.execute(f"INSERT INTO {LABELS_TABLE} SELECT customer_id, kind, label FROM labels_frame")
            cursor.execute(f"DELETE FROM {_LABELS_INFO_TABLE}")
            cursor.execute(f"INSERT INTO {_LABELS_INFO_TABLE} VALUES (?, ?)", [note, version])
            cursor.execute("COMMIT")
            cursor.unregister("labels_frame")
        return version

    def customer_labels_info(self) -> tuple[str, str] | None:
        """(note, version) of the stored customer labels; None when none are stored."""
        try:
            with self._cursor() as cursor:
                row = cursor.execute(f"SELECT note, version FROM {_LABELS_INFO_TABLE}").fetchone()
        except duckdb.CatalogException:  # a workspace written before labels existed
            return None
        return None if row is None else (row[0], row[1])

    def customer_labels(self) -> pd.DataFrame:
        """The stored labels, one row per customer with a label: ``customer_id`` and a column per kind."""
        with self._cursor() as cursor:
            long = cursor.execute(f"SELECT customer_id, kind, label FROM {LABELS_TABLE}").df()
        wide = long.pivot(index="customer_id", columns="kind", values="label")
        wide.columns.name = None
        return wide.reset_index()

    def write_parquet(self, folder: str | Path) -> Path:
        """Write the dataset for a lake (and :class:`clm_core.spark_engine.SparkEngine`) into ``folder``:
        ``transactions.parquet`` (the canonical ``transactions`` table, its columns and types as here),
        ``customer_labels.parquet`` (the stored customer labels, if any) and ``dataset.json`` (the
        :class:`DatasetInfo`). Returns the folder.

        DuckDB may write only inside the work folder (see ``__init__``), so it writes there and the files are moved.
        """
        dataset = self.dataset  # a clear error before a SQL one
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tables = {schema.TRANSACTIONS: PARQUET_FILE}
        description = dataset.to_dict()
        labels_info = self.customer_labels_info()
        if labels_info is not None:
            tables[LABELS_TABLE] = LABELS_FILE
            description[LABELS_TABLE] = list(labels_info)
        else:  # labels of an earlier dataset written here would name other customers
            (folder / LABELS_FILE).unlink(missing_ok=True)
        for table, file_name in tables.items():
            staged = self._workdir / file_name
            # Our own folder's path, not user text; quoted as a SQL string all the same.
            path = str(staged).replace("'", "''")
            with self._cursor() as cursor:
                cursor.execute(f"COPY (SELECT * FROM {table}) TO '{path}' (FORMAT PARQUET)")
            shutil.move(staged, folder / file_name)
        (folder / DATASET_FILE).write_text(json.dumps(description, indent=1))
        return folder

    def rejected_rows(self, reason: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """The rejected rows as they were in the file, with their reason and row number."""
        sql = f"SELECT * FROM {REJECTED_TABLE}"
        params: list[object] = []
        if reason:
            sql += " WHERE reason = ?"
            params.append(reason)
        sql += f" ORDER BY {LINE_COLUMN}"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._cursor() as cursor:
            return cursor.execute(sql, params).df()

    def close(self, *, timeout: float = 30.0) -> None:
        """Close the database and remove the work folder. A call still running is interrupted first, waiting up
        to ``timeout`` seconds for it to give up (DuckDB refuses to close a connection while a call runs)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._con.close()
                break
            except duckdb.ResourceInUseException:
                if time.monotonic() > deadline:
                    raise
                self.interrupt()
                time.sleep(0.05)  # lets the interrupted call's thread unwind
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
