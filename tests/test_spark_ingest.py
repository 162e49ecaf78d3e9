"""The Spark ingest reads a source as the DuckDB ingest does: the same guessed mapping, every row's fate (reason
or kept, its place in the file), the same report and the same canonical rows, on small messy files, the demo
data, Online Retail and CDNOW, from CSV, whitespace-separated text, Parquet and a catalog table, with Spark in
local mode (the shared ``spark`` fixture). Skipped without pyspark or Java, except in CI (``CLM_REQUIRE_DATA=1``)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from clm_core.errors import InputFileError, MappingError
from clm_core.ingest import IngestOptions, _number, _slashed_formats, _timestamp
from clm_core.mapping import ColumnMapping
from clm_core.spark_engine import SparkEngine, _to_pandas
from clm_core.spark_ingest import build_on_spark, ingest_on_spark, stage_on_spark
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE, ROOT

NOW = datetime(2026, 1, 1)
OPTIONS = IngestOptions(now=NOW)

# Every reason and flag of the DuckDB ingest, in one file: a double export, ids empty or padded with a no-break
# space, dates unreadable, impossible or in the future, money missing, unreadable or infinite, zero prices,
# returns (negative quantities, a 'C' invoice, a price in parentheses), money styles, a cell over two lines, a row
# with a field too many and one with too few. 'Order Date' and 'e-mail' hold characters a name may hold.
MESSY_ROWS = [
    "c01,1001,2021-01-05 10:00:00,2,1.50,UK,c01@example.com",
    "c01,1001,2021-01-05 10:00:00,2,1.50,UK,c01@example.com",
    ",1002,2021-01-06 10:00:00,1,1.00,UK,",
    '"  ",1003,2021-01-06 11:00:00,1,1.00,UK,',
    '" \u00a0c02",1004,2021-01-07 10:00:00,1,2.00,FR,c02@example.com',
    "c03,1005,not a date,1,1.00,FR,c03@example.com",
    "c03,1006,2011-13-01 10:00:00,1,1.00,FR,c03@example.com",
    "c03,1007,2030-01-01 10:00:00,1,1.00,FR,c03@example.com",
    "c04,1008,2021-01-08 10:00:00,x,1.00,DE,c04@example.com",
    "c04,1009,2021-01-08 10:00:00,1,,DE,c04@example.com",
    "c04,1010,2021-01-08 10:00:00,1,NaN,DE,c04@example.com",
    "c04,1011,2021-01-08 10:00:00,inf,1.00,DE,c04@example.com",
    "c05,1012,2021-01-09 10:00:00,1,1e400,DE,c05@example.com",
    "c05,1013,2021-01-09 10:00:00,3,0,DE,c05@example.com",
    "c05,C1014,2021-01-10 10:00:00,-1,1.50,DE,c05@example.com",
    "c06,1015,2021-01-11 10:00:00,-2,2.50,UK,c06@example.com",
    'c06,1016,2021-01-12 10:00:00,1,"£1,234.50",UK,c06@example.com',
    "c06,1017,2021-01-12 11:00:00,1,(3.00),UK,c06@example.com",
    'c07,1018,2021-01-13 10:00:00,1_000,0.01,"United\nKingdom",c07@example.com',
    "c07,1019,2021-01-13T12:50:00+01:00,+-1,2.00,UK,c07@example.com",
    "c07,1020,2021-01-14 10:00:00,2,2.00,UK,c07@example.com,extra",
    "c08,1021,2021-01-15",
    " c08 ,1022,2021-01-15 10:00:00, 4 ,$ 5,FR,c08@example.com",
    *(f"c{number:02d},{1100 + number},2021-02-{number - 8:02d} 09:30:00,{number % 4 + 1},{number}.25,"
      f"{('UK', 'FR', 'DE')[number % 3]},c{number:02d}@example.com" for number in range(9, 29)),
]
MESSY = "customer_id,order_id,Order Date,quantity,unit_price,country,e-mail\n" + "\n".join(MESSY_ROWS) + "\n"

# Spellings of numbers and dates the rules must read alike, per format. Known to differ (not listed): a compact
# date of seven digits ('2011129': DuckDB reads 2011-12-09, Spark nothing), ISO dates with a year of fewer than
# four digits, '/' between its parts, 24:00 or an AM/PM DuckDB ignores, and one-digit years ('3/4/1').
NUMBERS = [
    "1", "1.5", " 1.5 ", "-3", "+3", "(12.00)", "£1,234.50", "$ 7", "1'234.5", "1.234,50", "3,5", "1,5", "NaN", "nan",
    "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "1_000", "1__0", "1.5d", "1.5f", "0x1p3", "+-1",
    "", " ", "abc", "1 000", "€12", "¥5", "(£3.50)", "((1))", "(1", "1)", "-(1)", "(-1)", "\t2\t", "\x0b1", "1\x00",
    "1e5", ".5", "5.", "-.5", "+.5", "1.2.3", "12,345,678.9", "12.345.678,9", "--1", "1-", "1e", "\u00a02", "£", "()",
    "''", "1.0e+00308", "9" * 400, "0", "-0", "(0)", "1 234,5", "$-5", "-$5", "£(5)", "1\n", "\n1", "1\u2028",
]
DATES = {
    "iso": ["2011-12-09", "2011-12-09 12:50", "2011-12-09T12:50:00", "2011-12-09 12:50:00.123456", " 2011-12-09 ",
            "2011-12-09 ", "2011-12-9", "2011-1-9 1:2:3", "2011", "2011-12", "2011-12-09T12:50:00+01:00",
            "2011-12-09 12:50:00-0500", "2011-12-09T12:50:00Z", "2011-12-09 12:50:00 UTC", "20111209",
            "2011-12-09 12", "2011-12-09T", "2011-02-29", "2012-02-29", "2011-13-09", "2011-12-09 12:60",
            "2011-12-09x", "2011-12-09  12:50", "2011-12-09 12:50:00:00", "2011-12-09 12:50:00,5", "", "abc",
            "0011-12-09", "9999-12-31 23:59:59", "2011-12-09 12:50:00 EST"],
    "mdy": ["12/31/2011 08:26", "2/1/2011", "3/4/11 1:05 PM", "12-30-2011 08:26:07", " 5/6/2011   10:00 ", "3/4/11",
            "3/4/95", "3/4/68", "3/4/69", "3/4/2011 1:05 pm", "3/4/2011 1:05PM", "3/4/2011 13:05 PM", "03/04/0011",
            "Dec 31, 2011", "December 31 2011", "dec 31, 11", "DEC 31 2011 08:26", "Sept 3, 2011", "Dec 31,2011",
            "12.31.2011", "12/31/2011 08:26:60", "02/29/2011", "02/29/2012", "2/29/72", "13/01/2011",
            "12/31/2011 24:00", "1/1/2000 12:00 AM", "1/1/2000 12:30 AM", "12/31/2011T08:26", "12/31/2011 08",
            "12/31/2011 8:5", "", "x", "12/31/2011\t08:26", "2011-12-31"],
    "dmy": ["31/12/2011 08:26", "1/2/2011", "4/3/11 1:05 PM", "31-Dec-11", "01-FEB-11 10:05", "31 December 2011",
            "1 Feb 2011", "31.12.2011", "31/12/95", "31-12-2011 23:59:59", "29/02/2011", "31/Dec/2011",
            "31 dec 11 08:26", "31-Dec-2011 1:05 PM", "1/1/00", "12/31/2011", ""],
    "ymd_compact": ["20111209", "201112090", "20110229", "20120229", " 20111209 ", "2011-12-09", "", "00010101"],
    "epoch_s": ["1325320560", "1325320560.5", "1325320560.4999999", "-1", "0", "1e9", "NaN", "inf", "1e30", "abc", "",
                "1_325_320_560", "+-5"],
    "epoch_ms": ["1325320560123", "1325320560123.5", "1325320560122.5", "", "1e15", "-5"],
}


def _duckdb(path, options: IngestOptions = OPTIONS, mapping: ColumnMapping | None = None):
    """The DuckDB ingest of ``path``: (workspace, report); the caller closes the workspace."""
    workspace = Workspace()
    return workspace, workspace.ingest(path, mapping, options)


def _rows(frame: pd.DataFrame, order: str) -> pd.DataFrame:
    """Rows in the order of column ``order``, with one spelling of a missing value and of each type."""
    frame = frame.sort_values(order).reset_index(drop=True)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = values.astype("datetime64[us]")
        elif pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
            frame[column] = values.astype("float64")
        else:
            # An empty cell of a rejected row is NULL on Spark; DuckDB's reader gives NULL or '' (its tolerant
            # reader, which reads files with malformed rows): the same cell to a user.
            frame[column] = values.astype(object).where(values.notna() & (values != ""), None)
    return frame


def assert_same_rows(duck: pd.DataFrame, spark: pd.DataFrame, order: str = "source_row") -> None:
    """The same columns and rows (matched by ``order``), every value exactly (numbers too: the same operations in
    IEEE arithmetic)."""
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck)
    duck, spark = _rows(duck, order), _rows(spark, order)
    for column in duck.columns:
        if duck[column].dtype == "float64":
            np.testing.assert_array_equal(spark[column].to_numpy(), duck[column].to_numpy(), err_msg=column)
        else:
            assert spark[column].tolist() == duck[column].tolist(), column


def assert_same_build(workspace: Workspace, report, result) -> None:
    """Spark's build gives DuckDB's report, mapping, kept attributes, kept rows and rejected rows."""
    assert result.report == report
    assert result.dataset.mapping == workspace.dataset.mapping
    assert result.dataset.segment_columns == workspace.dataset.segment_columns
    assert result.dataset.contact_columns == workspace.dataset.contact_columns
    assert_same_rows(workspace.query("preview", limit=10 ** 7), _to_pandas(result.transactions))
    assert_same_rows(workspace.rejected_rows(), _to_pandas(result.rejected_rows))


# -- the rules, value by value ----------------------------------------------------------------------------

def test_every_spelling_of_a_number_or_a_date_is_read_as_duckdb_reads_it(spark):
    values = sorted({*NUMBERS, *(value for spellings in DATES.values() for value in spellings)})
    rules = {f"number_{style}": (_number("v", style), _number("v", style, "spark")) for style in ("dot", "comma")}
    for date_format in DATES:
        likely = tuple(_slashed_formats(date_format)[:3]) if date_format in ("mdy", "dmy") else ()
        # Both as microseconds since 1970: DuckDB's epoch_us, Spark's unix_micros (read in UTC).
        rules[date_format] = (f"epoch_us({_timestamp('v', date_format, likely)})",
                              f"unix_micros(CAST({_timestamp('v', date_format, likely, 'spark')} AS TIMESTAMP))")
    with duckdb.connect() as con:
        con.execute("CREATE TABLE spellings AS SELECT unnest($values) AS v, generate_subscripts($values, 1) AS i",
                    {"values": values})
        duck = con.execute(f"SELECT {', '.join(f'{sql} AS {name}' for name, (sql, _) in rules.items())} "
                           "FROM spellings ORDER BY i").df()
    frame = spark.createDataFrame([(position, value) for position, value in enumerate(values)], "i int, v string")
    spark_read = _to_pandas(frame.selectExpr(*(f"{sql} AS {name}" for name, (_, sql) in rules.items()), "i")
                            .orderBy("i")).drop(columns="i")
    for name in rules:
        relevant = NUMBERS if name.startswith("number") else DATES[name]
        differences = [(value, duck_value, spark_value)
                       for value, duck_value, spark_value in zip(values, duck[name], spark_read[name])
                       if value in relevant and not (pd.isna(duck_value) and pd.isna(spark_value)
                                                     and np.isnan(duck_value) == np.isnan(spark_value)
                                                     if name.startswith("number") else
                                                     pd.isna(duck_value) and pd.isna(spark_value))
                       and not (pd.notna(duck_value) and pd.notna(spark_value) and duck_value == spark_value)]
        assert differences == [], name
    # The spellings are not all refused: each rule reads most of what it should.
    assert duck["number_dot"].notna().sum() > 40 and duck["mdy"].notna().sum() > 20


# -- whole files ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def messy(spark, tmp_path_factory):
    """The messy file, read by Spark (staged once for the tests below), and its path."""
    path = tmp_path_factory.mktemp("messy") / "messy.csv"
    path.write_text(MESSY, encoding="utf-8")
    return stage_on_spark(spark, path), path


@pytest.mark.parametrize("options", [
    OPTIONS,
    IngestOptions(now=NOW, drop_returns=True, drop_zero_price=True, keep_duplicates=True),
], ids=["defaults", "drop_returns_and_zero_prices_keep_duplicates"])
def test_a_messy_file_has_the_same_fate_row_by_row(messy, options):
    staged, path = messy
    result = build_on_spark(staged, options=options)
    workspace, report = _duckdb(path, options)
    with workspace:
        assert_same_build(workspace, report, result)
    # What the file holds reaches every reason but those the options do not allow.
    rejected = {reason for reason, count in report.rows_rejected.items() if count}
    if options.drop_returns:
        assert rejected == {"malformed_row", "missing_customer_id", "unparseable_date", "future_date",
                            "non_numeric_amount", "non_finite_amount", "zero_price_dropped", "return_dropped"}
        assert report.rows_flagged["duplicate"] == 1
    else:
        assert rejected == {"malformed_row", "missing_customer_id", "unparseable_date", "future_date",
                            "non_numeric_amount", "non_finite_amount", "duplicate"}
        assert report.rows_flagged == {"return": 4, "zero_price": 1, "duplicate": 0}
    result.unpersist()


def test_the_rejected_rows_are_written_for_a_lake_and_the_dataset_read_back(messy, tmp_path):
    staged, path = messy
    result = build_on_spark(staged, options=OPTIONS)
    folder = result.write_parquet(tmp_path / "lake")
    rejected = pd.read_parquet(tmp_path / "lake" / "rejected_rows.parquet")
    workspace, report = _duckdb(path)
    with workspace:
        assert_same_rows(workspace.rejected_rows(), rejected)
        reread = SparkEngine.from_parquet(folder, session=staged.session)
        assert reread.dataset.report == report
        assert_same_rows(workspace.query("preview", limit=100), reread.query("preview", limit=100))
    result.unpersist()


def test_the_demo_file_is_the_same_dataset_row_for_row(spark):
    result = ingest_on_spark(spark, DEMO_FILE, options=OPTIONS)
    workspace, report = _duckdb(DEMO_FILE)
    with workspace:
        assert report.rows_in == 27_564
        assert_same_build(workspace, report, result)
    result.unpersist()


# Online Retail's kept rows are compared whole on every 20th line of the file (collecting all 400,000 from Spark
# takes longer than the ingest), and in totals per customer computed by each engine in the same SQL.
_EVERY_20TH = "source_row % 20 = 0"
_CUSTOMER_TOTALS = """
    SELECT customer_id, count(*) AS lines, sum(source_row) AS rows, sum(quantity) AS quantity,
           sum(CASE WHEN is_return THEN 1 ELSE 0 END) AS returns, sum(amount) AS revenue
    FROM {table} GROUP BY customer_id
"""
_REJECTED_TOTALS = "SELECT reason, count(*) AS lines, sum(source_row) AS rows FROM {table} GROUP BY reason"


def _spark_totals(spark, frame, sql: str) -> pd.DataFrame:
    frame.createOrReplaceTempView("ingest_under_test")
    try:
        return _to_pandas(spark.sql(sql.format(table="ingest_under_test")))
    finally:
        spark.catalog.dropTempView("ingest_under_test")


def test_online_retail_is_the_same_dataset(spark, online_retail_path, online_retail_workspace):
    workspace, report = online_retail_workspace
    result = ingest_on_spark(spark, online_retail_path)
    assert result.report == report
    assert (report.rows_in, report.rows_kept) == (541_909, 401_604)
    assert report.rows_rejected["missing_customer_id"] == 135_080 and report.rows_rejected["duplicate"] == 5_225
    assert report.rows_flagged == {"return": 8_872, "zero_price": 40, "duplicate": 0}
    assert result.dataset.mapping == workspace.dataset.mapping
    kept, rejected = workspace.query("preview", limit=10 ** 7), workspace.rejected_rows()
    assert_same_rows(kept[kept["source_row"] % 20 == 0], _to_pandas(result.transactions.where(_EVERY_20TH)))
    assert_same_rows(rejected[rejected["source_row"] % 20 == 0], _to_pandas(result.rejected_rows.where(_EVERY_20TH)))
    with duckdb.connect() as con:
        con.register("kept", kept)
        con.register("rejected", rejected)
        duck_totals = con.execute(_CUSTOMER_TOTALS.format(table="kept")).df()
        duck_reasons = con.execute(_REJECTED_TOTALS.format(table="rejected")).df()
    spark_totals = _spark_totals(spark, result.transactions, _CUSTOMER_TOTALS)
    assert len(spark_totals) == len(duck_totals) == 4_372
    # Exact but for revenue, a sum of many amounts the engines add in another order.
    assert_same_rows(duck_totals.drop(columns="revenue"), spark_totals.drop(columns="revenue"), order="customer_id")
    duck_totals, spark_totals = (frame.sort_values("customer_id") for frame in (duck_totals, spark_totals))
    np.testing.assert_allclose(spark_totals["revenue"], duck_totals["revenue"], rtol=1e-9, atol=1e-6)
    assert_same_rows(duck_reasons, _spark_totals(spark, result.rejected_rows, _REJECTED_TOTALS), order="reason")
    result.unpersist()


def test_a_whitespace_separated_file_is_the_same_dataset(spark, cdnow_master_path):
    result = ingest_on_spark(spark, cdnow_master_path, options=OPTIONS)
    workspace, report = _duckdb(cdnow_master_path)
    with workspace:
        # No order column: the identical rows are repeat purchases, kept and flagged.
        assert report.rows_in == report.rows_kept == 69_659 and report.rows_flagged["duplicate"] == 255
        assert result.dataset.source.startswith("text, space-separated")
        assert_same_build(workspace, report, result)
    result.unpersist()


def test_a_windows_1252_file_with_decimal_commas_is_the_same_dataset(spark, tmp_path):
    rows = "".join(f"Zoë {number % 7};{number % 28 + 1:02d}.03.2021;{number * 37},{number % 100:02d} €;Café {number % 3}\n"
                   for number in range(60))
    path = tmp_path / "kassen.csv"
    path.write_bytes(("customer;date;amount;shop\n" + rows).encode("cp1252"))
    result = ingest_on_spark(spark, path, encoding="cp1252", options=OPTIONS)
    workspace, report = _duckdb(path)
    with workspace:
        assert (workspace.dataset.mapping.date_format, workspace.dataset.mapping.number_style) == ("dmy", "comma")
        assert report.notes[0] == "The file is not UTF-8; it was read as Windows-1252."
        assert_same_build(workspace, report, result)
    result.unpersist()


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_parquet_files_and_catalog_tables_are_the_same_dataset(spark, tmp_path):
    # Typed columns, as a lake holds them: both engines read them as text first.
    demo = pd.read_csv(DEMO_FILE, dtype=str).head(4_000)
    demo["order_date"] = pd.to_datetime(demo["order_date"]).astype("datetime64[us]")
    demo[["quantity", "unit_price", "amount"]] = demo[["quantity", "unit_price", "amount"]].astype(float)
    path = tmp_path / "demo.parquet"
    demo.to_parquet(path)
    workspace, report = _duckdb(path)
    with workspace:
        result = ingest_on_spark(spark, path, kind="parquet", options=OPTIONS)
        assert_same_build(workspace, report, result)
        result.unpersist()
        # A table without files behind it: rows are numbered in Spark's order, the file's here (one partition).
        spark.createDataFrame(demo).coalesce(1).createOrReplaceTempView("demo_orders")
        try:
            result = ingest_on_spark(spark, "demo_orders", kind="table", options=OPTIONS)
            assert_same_build(workspace, report, result)
        finally:
            spark.catalog.dropTempView("demo_orders")
        result.unpersist()


# -- what a user gets wrong ------------------------------------------------------------------------------------

def _one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "at org.apache" not in message and "Traceback" not in message
    return message


def test_a_mapping_naming_a_missing_column_is_one_sentence(messy):
    staged, _ = messy
    mapping = ColumnMapping(fields={"customer_id": "Customer Number", "order_ts": "Order Date"})
    with pytest.raises(MappingError) as error:
        build_on_spark(staged, mapping, OPTIONS)
    assert "no column 'Customer Number'" in _one_sentence(error)


def test_a_source_spark_cannot_read_is_one_sentence(spark, tmp_path):
    with pytest.raises(InputFileError) as error:
        stage_on_spark(spark, tmp_path / "missing.csv")
    assert "Spark cannot read" in _one_sentence(error) and "missing.csv" in str(error.value)
    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(InputFileError) as error:
        stage_on_spark(spark, damaged)
    assert "damaged.csv.gz" in _one_sentence(error)
    with pytest.raises(InputFileError) as error:
        stage_on_spark(spark, "no_such_table", kind="table")
    assert "no_such_table" in _one_sentence(error)
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("customer_id,order_date,amount\n")
    with pytest.raises(InputFileError, match="no data rows") as error:
        stage_on_spark(spark, header_only)
    _one_sentence(error)


def test_a_column_without_dates_is_explained_as_in_duckdb(spark, tmp_path):
    path = tmp_path / "soon.csv"
    path.write_text("customer_id,order_date,amount\na,soon,1\nb,later,2\n")
    mapping = ColumnMapping(fields={"customer_id": "customer_id", "order_ts": "order_date", "amount": "amount"})
    with Workspace() as workspace, pytest.raises(MappingError) as duck_error:
        workspace.ingest(path, mapping, OPTIONS)
    with pytest.raises(MappingError) as spark_error:
        ingest_on_spark(spark, path, mapping=mapping, options=OPTIONS, delimiter=",")
    assert _one_sentence(spark_error) == str(duck_error.value)
    assert "(for example 'soon')" in str(spark_error.value)


def test_the_module_loads_without_pyspark():
    # The package runs without pyspark: only a session needs it (and says what to install).
    code = "import sys; sys.modules['pyspark'] = None; import clm_core.spark_ingest"
    finished = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


# -- the command line -------------------------------------------------------------------------------------------
def test_cli_ingest_on_spark_writes_the_lake_duckdb_would(spark, tmp_path, capsys):
    """``ingest --engine spark --parquet DIR`` (in this process: it uses the running session) reports what the
    DuckDB ingest reports for the messy file with its guessed mapping overridden, and the other commands read the
    folder it wrote as the one DuckDB writes."""
    import json

    from clm_core.cli import main

    path = tmp_path / "messy.csv"
    path.write_text(MESSY)
    common = [str(path), "--map", "amount=", "--segment", "country", "--json"]
    assert main(["ingest", *common, "--db", str(tmp_path / "messy.duckdb"), "--parquet", str(tmp_path / "duck")]) == 0
    on_duckdb = json.loads(capsys.readouterr().out)
    assert main(["ingest", *common, "--engine", "spark", "--parquet", str(tmp_path / "lake")]) == 0
    on_spark = json.loads(capsys.readouterr().out)
    for key in ("mapping", "rows_in", "rows_kept", "rows_rejected", "rows_flagged", "duplicates_kept", "customers",
                "orders", "first_date", "last_date", "notes"):
        assert on_spark[key] == on_duckdb[key], key
    assert on_spark["revenue"] == pytest.approx(on_duckdb["revenue"], rel=1e-12)
    assert on_spark["rows_kept"] + sum(on_spark["rows_rejected"].values()) == on_spark["rows_in"] == 43
    for folder in ("duck", "lake"):
        assert main(["cohorts", "--engine", "spark", "--source", str(tmp_path / folder), "--json"]) == 0
    from_duckdb, from_spark = (json.loads(part) for part in capsys.readouterr().out.strip().split("\n"))
    assert from_spark == from_duckdb


def test_cli_ingest_on_spark_bad_input_is_one_line(spark, tmp_path, capsys):
    from clm_core.cli import main

    path = tmp_path / "messy.csv"
    path.write_text(MESSY)
    for args, message in (
        ([str(path), "--engine", "spark"], "give --parquet DIR"),
        ([str(path), "--engine", "spark", "--parquet", str(tmp_path / "a"), "--map", "customer_id=nope"],
         "nope"),
        ([str(tmp_path / "nothing_here.csv"), "--engine", "spark", "--parquet", str(tmp_path / "b")],
         "nothing_here.csv"),
        ([str(path), "--kind", "csv", "--db", str(tmp_path / "x.duckdb")], "--kind and --encoding are for"),
    ):
        assert main(["ingest", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
