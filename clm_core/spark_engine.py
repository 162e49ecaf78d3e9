"""The named queries on Spark: the :class:`clm_core.engine.Engine` for data past one machine.

A :class:`SparkEngine` reads the canonical transactions (the columns and types of the DuckDB ``transactions``
view, :mod:`clm_core.schema`) from Parquet files and the dataset's description from ``dataset.json`` beside them,
as :meth:`clm_core.workspace.Workspace.write_parquet` writes them, and runs every named query of
:mod:`clm_core.queries` in Spark's spelling with the same parameters. :meth:`SparkEngine.query` returns a pandas
frame (the :class:`~clm_core.engine.Engine` contract, for period- and customer-level results that fit the driver);
:meth:`SparkEngine.frame` returns the Spark DataFrame and :meth:`SparkEngine.write_parquet` writes it out, for
per-customer results that should stay on the cluster.

pyspark is imported here only, and only when a session is made, so the package runs without it. A missing pyspark
or Java, or a source Spark cannot read, is one sentence (:class:`EngineUnavailableError`, :class:`InputFileError`),
never a Java stack trace.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clm_core import schema
from clm_core.errors import EngineUnavailableError, InputFileError
from clm_core.queries import query_text
from clm_core.reader import LINE_COLUMN
from clm_core.workspace import DATASET_FILE, LABELS_FILE, LABELS_TABLE, PARQUET_FILE, DatasetInfo, labels_long_form

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkEngine", "spark_session", "running_session", "CANONICAL_TYPES", "PYSPARK_REQUIREMENT"]

PYSPARK_REQUIREMENT = "pyspark==4.3.0"
# The canonical columns and their Spark types: those of the DuckDB view (VARCHAR, TIMESTAMP, DOUBLE, BOOLEAN,
# BIGINT). A TIMESTAMP without time zone, as DuckDB's, so a day is the same day on any cluster.
CANONICAL_TYPES: dict[str, str] = {
    schema.CUSTOMER_ID: "string",
    schema.ORDER_ID: "string",
    schema.ORDER_TS: "timestamp_ntz",
    schema.AMOUNT: "double",
    schema.QUANTITY: "double",
    schema.UNIT_PRICE: "double",
    schema.PRODUCT_ID: "string",
    schema.PRODUCT_NAME: "string",
    schema.IS_RETURN: "boolean",
    LINE_COLUMN: "bigint",
}
# A local session sized for a laptop or a CI runner: few shuffle partitions (the default 200 costs seconds per
# query on small data), no web UI, a modest driver. A cluster's own settings are left alone.
_LOCAL_SETTINGS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
}
_SETTINGS = {
    # The queries work in days of the data's own clock: no time zone may move a row to another day.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
_LABELS_SCHEMA = "customer_id string, kind string, label string"
_NO_JAVA = ("The Spark engine needs Java 17 or later, which is not installed: install it (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME.")
_NO_PYSPARK = f"The Spark engine needs pyspark, which is not installed: pip install {PYSPARK_REQUIREMENT}."


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, without Spark's stack trace (JVM frames follow on later lines). For
    a Java exception PySpark does not translate (py4j's says only "An error occurred while calling o39.load"),
    the Java exception's own message."""
    text = ""
    java = getattr(error, "java_exception", None)
    if java is not None:
        try:
            text = str(java.getMessage() or "")
        except Exception:  # the JVM is gone
            text = ""
    text = (text or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def spark_session(master: str = "local[*]", settings: dict[str, str] | None = None, *,
                  log_level: str = "FATAL") -> "SparkSession":
    """A Spark session on ``master`` (``local[*]``: this machine's cores; ``spark://host:7077``,
    ``yarn``, ``sc://host`` for Spark Connect), with ``settings`` (``spark.executor.memory`` ...) over the
    engine's own (UTC session time zone; on a local master also few shuffle partitions and no UI).
    :class:`EngineUnavailableError` when pyspark or Java is missing or Spark does not start. ``log_level``: what
    Spark itself logs (its task failures are ERROR lines with a Java stack trace, on the console; the error
    reaches the caller as an exception all the same)."""
    # Executors start the interpreter this variable names; without it they may find another Python, or none.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineUnavailableError(_NO_PYSPARK) from None
    remote = master.startswith("sc://")
    if not remote and not _java_found():
        raise EngineUnavailableError(_NO_JAVA)
    builder = SparkSession.builder.appName("clm")
    builder = builder.remote(master) if remote else builder.master(master)
    local = master.startswith("local")
    for key, value in {**(_LOCAL_SETTINGS if local else {}), **_SETTINGS, **(settings or {})}.items():
        builder = builder.config(key, value)
    try:
        with _quiet_pyspark():
            session = builder.getOrCreate()
    except Exception as error:  # py4j or a JVM failure: its first line says what
        raise EngineUnavailableError(f"Spark did not start on {master}: {_first_line(error)}") from None
    if not remote:
        session.sparkContext.setLogLevel(log_level)
    return session


def running_session() -> "SparkSession | None":
    """The Spark session already active in this process (a notebook's, a test's), or None (also without pyspark):
    a command run inside such a process uses it, and leaves it running."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


class SparkEngine:
    """The named queries over a canonical transactions table in a Spark session.

    Build one with :meth:`from_parquet` (a folder :meth:`clm_core.workspace.Workspace.write_parquet` wrote, or
    Parquet files anywhere Spark reads: a lake path, ``s3a://...``), or from any Spark DataFrame with the canonical
    columns and a :class:`DatasetInfo`.
    """

    def __init__(self, session: "SparkSession", transactions: "DataFrame", dataset: DatasetInfo, *,
                 labels: "DataFrame | None" = None, labels_info: tuple[str, str] | None = None) -> None:
        """``labels``: stored customer labels (``customer_id``, ``kind``, ``label``), with ``labels_info``
        (their note and version)."""
        self.session = session
        # Spark resolves ``transactions`` by name at each query; every query registers this engine's table under
        # it first, so two engines can share a session.
        session.conf.set("spark.sql.session.timeZone", "UTC")
        self._transactions = _canonical(transactions, dataset)
        self._dataset = dataset
        self._labels = labels if labels is not None else session.createDataFrame([], _LABELS_SCHEMA)
        self._labels_info = labels_info if labels is not None else None

    @classmethod
    def from_parquet(cls, source: str | Path, *, session: "SparkSession | None" = None,
                     master: str = "local[*]", settings: dict[str, str] | None = None) -> "SparkEngine":
        """The dataset in the folder ``source``: ``transactions.parquet`` (a file or a folder of part files) and
        ``dataset.json`` beside it. A new session on ``master`` unless ``session`` is given.
        :class:`InputFileError` when Spark cannot read them, :class:`SchemaError` when a column is missing."""
        folder = str(source).rstrip("/")
        description = Path(folder) / DATASET_FILE
        if "://" not in folder and not description.is_file():
            raise InputFileError(f"{folder} holds no {DATASET_FILE}: write the dataset with "
                                 "Workspace.write_parquet (python -m clm_core ingest --parquet DIR) first.")
        session = session or spark_session(master, settings)
        try:
            if "://" in folder:  # a lake path: its description is read through Spark as well
                text = "\n".join(row.value for row in session.read.text(f"{folder}/{DATASET_FILE}").collect())
            else:
                text = description.read_text()
            data = json.loads(text)
            dataset = DatasetInfo.from_dict(data)
            labels_info = tuple(data[LABELS_TABLE]) if LABELS_TABLE in data else None
        except (ValueError, KeyError, TypeError) as error:
            raise InputFileError(f"{folder}/{DATASET_FILE} is not a dataset description ({error}).") from None
        except Exception as error:  # Spark's own: path missing, no access
            raise InputFileError(f"Spark cannot read {folder}/{DATASET_FILE}: {_first_line(error)}") from None
        transactions = _read(session, "parquet", f"{folder}/{PARQUET_FILE}")
        labels = _read(session, "parquet", f"{folder}/{LABELS_FILE}") if labels_info else None
        return cls(session, transactions, dataset, labels=labels, labels_info=labels_info)

    # -- the Engine protocol ----------------------------------------------
    @property
    def dataset(self) -> DatasetInfo:
        return self._dataset

    @property
    def has_dataset(self) -> bool:
        return True

    @property
    def read_only(self) -> bool:
        """Labels are kept (in the session, not written back to the source), as a workspace keeps them."""
        return False

    def store_customer_labels(self, labels: pd.DataFrame, note: str) -> str:
        """Keep ``labels`` (``customer_id`` and one column per kind) for the labelled queries of this engine, in
        the session only; returns their version, as the workspace computes it."""
        long, version = labels_long_form(labels, note)
        with _quiet_pyspark():
            self._labels = self.session.createDataFrame(long if len(long) else [], _LABELS_SCHEMA)
        self._labels_info = (note, version)
        return version

    def customer_labels_info(self) -> tuple[str, str] | None:
        return self._labels_info

    def customer_labels(self) -> pd.DataFrame:
        """The kept labels, one row per customer with a label: ``customer_id`` and a column per kind (collected
        to the driver, as the workspace returns them)."""
        long = _to_pandas(self._labels)
        wide = long.pivot(index="customer_id", columns="kind", values="label")
        wide.columns.name = None
        return wide.reset_index()

    def query(self, name: str, *, segment: str | None = None, attributes: list[str] | None = None,
              **params: object) -> pd.DataFrame:
        """The named query's result as a pandas frame, as :meth:`clm_core.workspace.Workspace.query` returns it.
        Collects the result to the driver: for per-customer results of large data use :meth:`frame`."""
        return _to_pandas(self.frame(name, segment=segment, attributes=attributes, **params))

    # -- beyond the protocol ----------------------------------------------
    def frame(self, name: str, *, segment: str | None = None, attributes: list[str] | None = None,
              **params: object) -> "DataFrame":
        """The named query as a (lazy) Spark DataFrame, nothing computed yet."""
        self._dataset.check_columns(segment=segment, attributes=attributes)  # a clear error before a SQL one
        text = query_text(name, dialect="spark", segment=segment, attributes=attributes)
        self._transactions.createOrReplaceTempView(schema.TRANSACTIONS)
        self._labels.createOrReplaceTempView(LABELS_TABLE)
        # The source's columns were checked when the engine was made: a Spark error here is a bug, raised as one.
        return self.session.sql(text, args={key: _literal(value) for key, value in params.items()})

    def write_parquet(self, name: str, path: str | Path, *, segment: str | None = None,
                      attributes: list[str] | None = None, **params: object) -> None:
        """Write the named query's result as Parquet to ``path`` (replaced), computed on the executors."""
        self.frame(name, segment=segment, attributes=attributes, **params).write.mode("overwrite").parquet(str(path))

    def distinct_histories(self, cutoff: dt.date, *, purchases: "DataFrame | None" = None) -> pd.DataFrame:
        """The purchase histories as of ``cutoff`` the CLV models read, aggregated on Spark: one row per distinct
        (``frequency``: repeat purchase days, ``recency_days``: first to last purchase day, ``T_days``: first
        purchase day to the cutoff) with ``customers``, how many share it. Its length is bounded by the number of
        distinct histories (days of data squared at most), not by the customers: a fit with these rows and
        ``weights=customers`` is the fit on every customer (:mod:`clm_core.clv_models`). ``purchases``: the
        ``customer_purchases`` query as of ``cutoff``, when the caller keeps it (persisted) already."""
        from pyspark.sql import functions as F

        if purchases is None:
            purchases = self.frame("customer_purchases", cutoff=cutoff)
        histories = purchases.select(
            (F.col("purchase_days") - 1).alias("frequency"),
            F.datediff("last_day", "first_day").cast("bigint").alias("recency_days"),
            F.datediff(_literal(cutoff), "first_day").cast("bigint").alias("T_days"),
        )
        keys = ["frequency", "recency_days", "T_days"]
        grouped = histories.groupBy(*keys).agg(F.count(F.lit(1)).alias("customers")).orderBy(*keys)
        return _to_pandas(grouped)

    def customer_sample(self, per_mille: int) -> "SparkEngine":
        """This engine over about ``per_mille`` in 1000 of the customers, every row of each, the same customers
        from run to run: those whose bucket (``pmod(hash(customer_id), 1000)``, the Spark spelling of the named
        queries' ``customer_bucket``) is below ``per_mille``. Itself at 1000."""
        from pyspark.sql import functions as F

        if per_mille >= 1000:
            return self
        bucket = F.pmod(F.hash(F.col(schema.CUSTOMER_ID)), F.lit(1000))
        return SparkEngine(self.session, self._transactions.where(bucket < int(per_mille)), self._dataset,
                           labels=self._labels, labels_info=self._labels_info)

    def stop(self) -> None:
        """Stop the Spark session (every engine sharing it stops working)."""
        self.session.stop()


def _read(session: "SparkSession", kind: str, path: str) -> "DataFrame":
    try:
        return session.read.format(kind).load(path)
    except Exception as error:
        raise InputFileError(f"Spark cannot read {path}: {_first_line(error)}") from None


def _canonical(transactions: "DataFrame", dataset: DatasetInfo) -> "DataFrame":
    """``transactions`` reduced to the canonical columns and the dataset's kept ones, cast to their types;
    :class:`SchemaError` naming the first missing one."""
    from pyspark.sql import functions as F

    extra = [*dataset.segment_columns, *dataset.contact_columns]
    schema.require_columns(transactions.columns, [*CANONICAL_TYPES, *extra], what="the Spark source")
    return transactions.select(
        *(F.col(f"`{column}`").cast(kind).alias(column) for column, kind in CANONICAL_TYPES.items()),
        *(F.col(f"`{column}`").cast("string").alias(column) for column in extra),
    )


def _literal(value: object) -> Any:
    """A parameter as Spark binds it. Dates and moments go as typed SQL literals (``DATE'...'``,
    ``TIMESTAMP_NTZ'...'``, the type of ``order_ts``): PySpark's own conversion reads a plain datetime in this
    process's time zone, and fails on years before 1000 (it writes year 1 as '1-01-01')."""
    from pyspark.sql import functions as F

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.datetime):  # pandas Timestamps too
        moment = pd.Timestamp(value)
        if moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        return F.expr(f"TIMESTAMP_NTZ'{moment.isoformat(sep=' ')}'")
    if isinstance(value, dt.date):
        return F.expr(f"DATE'{value.isoformat()}'")
    return value


@contextmanager
def _quiet_pyspark() -> Iterator[None]:
    """PySpark 4.3 warns on every conversion that pandas 3 is not fully supported, and uses a pandas argument
    pandas 3 deprecates; the conversions the engine makes give DuckDB's frames (tests/test_spark_engine.py), so
    those warnings say nothing to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module="pyspark")
        yield


def _to_pandas(frame: "DataFrame") -> pd.DataFrame:
    """A Spark result as DuckDB's ``.df()`` gives it: DATE columns as datetime64 (not date objects), whole numbers
    as int64 (Spark's INT from datediff)."""
    from pyspark.sql.types import ByteType, DateType, IntegerType, ShortType

    with _quiet_pyspark():
        result = frame.toPandas()
    for field in frame.schema.fields:
        if isinstance(field.dataType, DateType):
            result[field.name] = pd.to_datetime(result[field.name]).astype("datetime64[us]")
        elif isinstance(field.dataType, (IntegerType, ShortType, ByteType)) and result[field.name].dtype.kind == "i":
            result[field.name] = result[field.name].astype(np.int64)
    return result
