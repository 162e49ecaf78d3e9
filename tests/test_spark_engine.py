"""The Spark engine gives the numbers DuckDB gives: every named query (but the sampled draw), the cohort table and
the customer table, on the demo data and Online Retail, with Spark in local mode. Skipped without pyspark or Java,
except in CI (``CLM_REQUIRE_DATA=1``), where a missing Spark fails the run."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from clm_core.cohorts import cohort_table
from clm_core.customers import customer_table, data_span
from clm_core.errors import EngineUnavailableError, InputFileError, SchemaError
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE, spark_engine_for

@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    """The demo data in DuckDB, with stored labels (so the labelled cohort queries have something to split by),
    and the same on Spark."""
    workspace = Workspace()
    workspace.ingest(DEMO_FILE)
    ids = workspace.query("customer_attributes")["customer_id"]
    workspace.store_customer_labels(pd.DataFrame({
        "customer_id": ids[ids.index % 3 != 0],
        "rfm_segment": np.where(ids[ids.index % 3 != 0].str[-1].isin(list("01234")), "Loyal", "At risk"),
    }), "test labels")
    yield workspace, spark_engine_for(workspace, tmp_path_factory.mktemp("demo_parquet"), spark)
    workspace.close()


def _cases(workspace: Workspace, *, every_period: bool) -> list[tuple[str, dict]]:
    """Every named query but the sampled draw, with parameters as the analytics pass them."""
    first, last = data_span(workspace)
    dataset = workspace.dataset
    segment = next(iter(dataset.segment_columns), None)
    attributes = [*dataset.segment_columns, *dataset.contact_columns]
    mid = first + (last - first) / 2
    end = pd.Timestamp(last) + pd.Timedelta(days=1)
    year = pd.Timedelta(days=365)
    customer = workspace.query("customer_attributes")["customer_id"].sort_values().iloc[7]
    product = workspace.query("product_names", end=last)["product"].iloc[3]
    cases: list[tuple[str, dict]] = [
        ("dataset_totals", {}),
        ("revenue_by_month", {}),
        ("date_span", {}),
        ("daily_repeat_purchases", {"calibration_end": mid}),
        ("window_retention", {"base_start": end - 2 * year, "base_end": end - year, "next_end": end}),
        ("customer_attributes", {"attributes": attributes}),
        # (as of the last day, test_customer_tables_match compares it)
        ("customer_table", {"attributes": attributes, "cutoff": mid, "sample_per_mille": 1000}),
        ("customer_purchases", {"cutoff": mid}),
        ("customer_window_activity", {"start": mid, "end": mid + timedelta(days=90)}),
        ("product_names", {"end": last}),
        ("customer_product_interactions", {"start": date(1, 1, 1), "end": mid}),
        ("bought_together", {"min_orders": 5, "top": 10, "product": None}),
        ("bought_together", {"min_orders": 1, "top": 5, "product": product}),
        ("purchase_day_timeline", {"end": last, "origin": first}),
        ("customer_search", {"attributes": attributes, "text": "1", "limit": 20}),
        ("customer_totals", {"attributes": attributes, "customer_id": customer, "cutoff": last}),
        ("customer_timeline", {"customer_id": customer, "cutoff": last}),
        ("customer_products", {"customer_id": customer, "cutoff": last}),
        ("preview", {"limit": 50}),
    ]
    # Cohort activity in every period; the rest, and the splits by a segment column and by a stored label, by
    # month (a Spark query costs about a second here, and neither the split nor the last purchase depends on the
    # period).
    for period in ("week", "month", "quarter") if every_period else ("month",):
        cases.append(("cohort_activity", {"period": period}))
    for name in ("cohort_activity", "cohort_last_purchase"):
        if name != "cohort_activity":
            cases.append((name, {"period": "month"}))
        if segment:
            cases.append((name, {"period": "month", "segment": segment}))
        if workspace.customer_labels_info() is not None:
            cases.append(("labelled_" + name, {"period": "month", "label_kind": "rfm_segment"}))
    return cases


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Values without the engines' type differences (DuckDB's HUGEINT sums come back as floats, Spark's as
    integers), in one row order."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            frame[column] = values.astype(object)
        elif pd.api.types.is_numeric_dtype(values):
            frame[column] = values.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = values.astype("datetime64[us]")
        else:
            frame[column] = values.astype(object).where(values.notna(), None)
    return frame.sort_values(list(frame.columns), na_position="first", kind="stable").reset_index(drop=True)


def assert_same_result(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Equal frames: the same columns and rows, text and dates exactly, numbers within 1e-12 relative. Sums of
    many amounts add in another order on each engine, so where they cancel (a net revenue of 2.9 from thousands
    of lines, or of zero) the difference is rounding of the column's largest values: allowed up to 1e-12 of
    those."""
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck)
    duck, spark = _comparable(duck), _comparable(spark)
    for column in duck.columns:
        if duck[column].dtype == "float64":
            scale = np.nanmax(np.abs(duck[column])) if duck[column].notna().any() else 0.0
            np.testing.assert_allclose(spark[column], duck[column], rtol=1e-12, atol=1e-12 * scale, equal_nan=True,
                                       err_msg=column)
        else:
            assert spark[column].tolist() == duck[column].tolist(), column


def _check_every_query(pair, *, every_period: bool, only: set[str] | None = None) -> None:
    workspace, engine = pair
    for name, params in _cases(workspace, every_period=every_period):
        one_product = name == "bought_together" and params["product"] is not None
        if only is not None and (name + "_one" if one_product else name) not in only:
            continue
        identifiers = {key: params.pop(key) for key in ("segment", "attributes") if key in params}
        duck = workspace.query(name, **identifiers, **params)
        try:
            assert_same_result(duck, engine.query(name, **identifiers, **params))
        except AssertionError as error:
            raise AssertionError(f"{name} {identifiers} {params}: {error}") from None


def test_every_query_matches_duckdb_on_the_demo_data(demo):
    _check_every_query(demo, every_period=True)


# On Online Retail (540,000 rows) a Spark query takes seconds on two cores: the queries whose row-level work the
# demo data exercises least (returns netted into purchase days, a segment column, many products); the demo data
# runs the others.
_ONLINE_RETAIL_QUERIES = {"dataset_totals", "customer_purchases", "purchase_day_timeline",
                          "customer_product_interactions", "cohort_activity", "cohort_last_purchase"}


def test_chosen_queries_match_duckdb_on_online_retail(online_retail_spark):
    _check_every_query(online_retail_spark, every_period=False, only=_ONLINE_RETAIL_QUERIES)


@pytest.mark.parametrize("definition, split", [
    ("classic", {}),
    ("rolling", {"segment": "seg_country"}),
    ("classic", {"label": "rfm_segment"}),
], ids=["classic", "rolling by country", "classic by label"])
def test_cohort_tables_match(demo, definition, split):
    workspace, engine = demo
    duck = cohort_table(workspace, period="month", definition=definition, **split)
    on_spark = cohort_table(engine, period="month", definition=definition, **split)
    pd.testing.assert_frame_equal(on_spark.long, duck.long, check_dtype=False, rtol=1e-12)
    assert on_spark.notes == duck.notes


def test_customer_tables_match(demo, online_retail_spark):
    for workspace, engine in (demo, online_retail_spark):
        pd.testing.assert_frame_equal(customer_table(engine), customer_table(workspace), check_exact=False,
                                      rtol=1e-12)


def test_the_first_row_is_the_same_when_moments_have_fractions_of_a_second(spark, tmp_path):
    # a's two rows are 0.6 s apart, the later one first in the file: both engines round to the second the same
    # way (DuckDB's epoch cast rounds, Spark's unix_timestamp would cut), so both give a the same first country.
    path = tmp_path / "fractions.csv"
    path.write_text("customer_id,order_id,order_date,amount,country\n"
                    "a,1,2021-01-05 10:00:00.9,10,Later\n"
                    "a,2,2021-01-05 10:00:00.3,10,Earlier\n"
                    "b,3,2021-01-05 10:00:00.5,10,Only\n"
                    "b,4,2021-03-05 10:00:00.49,10,Only\n")
    workspace = Workspace()
    try:
        staged = workspace.stage_file(path)
        workspace.build(staged, replace(staged.guess, segments=["country"]))
        engine = spark_engine_for(workspace, tmp_path / "parquet", spark)
        duck = workspace.query("customer_attributes", attributes=["seg_country"])
        assert duck.set_index("customer_id")["seg_country"].to_dict() == {"a": "Earlier", "b": "Only"}
        assert_same_result(duck, engine.query("customer_attributes", attributes=["seg_country"]))
    finally:
        workspace.close()


def test_labels_kept_on_spark_split_cohorts_as_stored_ones_do(demo, spark, tmp_path):
    workspace, engine = demo
    stored = workspace.customer_labels()
    assert engine.customer_labels_info() == workspace.customer_labels_info()  # read back from the Parquet folder
    pd.testing.assert_frame_equal(engine.customer_labels().sort_values("customer_id", ignore_index=True),
                                  stored.sort_values("customer_id", ignore_index=True))
    other = spark_engine_for(workspace, tmp_path, spark)
    relabelled = stored.assign(rfm_segment=np.where(stored["rfm_segment"] == "Loyal", "Champions", "Hibernating"))
    version = other.store_customer_labels(relabelled, "other labels")
    assert other.customer_labels_info() == ("other labels", version)
    split = other.query("labelled_cohort_last_purchase", period="month", label_kind="rfm_segment")
    assert set(split["segment"]) == {"Champions", "Hibernating", "No label"}
    assert engine.customer_labels_info() == workspace.customer_labels_info()  # each engine keeps its own


def test_clv_fitted_on_spark_histories_matches_the_fit_on_every_customer(demo, online_retail_spark):
    from clm_core.clv import customer_summary
    from clm_core.clv_models import BetaGeoModel

    for workspace, engine in (online_retail_spark, demo):
        summary = customer_summary(workspace, unit="week")
        histories = engine.distinct_histories(summary.observation_end)
        # What reaches the driver is the distinct histories, the rows the DuckDB path compresses the customers to
        # (on a year or two of daily data many are distinct still; on millions of customers far fewer).
        (frequency, recency_days, t_days), counts, _ = summary.compressed
        compressed = pd.DataFrame({"frequency": frequency, "recency_days": np.rint(recency_days * 7),
                                   "T_days": np.rint(t_days * 7),
                                   "customers": counts}).sort_values(["frequency", "recency_days", "T_days"])
        np.testing.assert_array_equal(histories.to_numpy(dtype=float), compressed.to_numpy(dtype=float))
    # Hence the fit (on the demo data, drawn from a BG/NBD; on Online Retail a and b run off to a bound).
    on_spark = BetaGeoModel().fit(histories["frequency"], histories["recency_days"] / 7, histories["T_days"] / 7,
                                  weights=histories["customers"].astype(float))
    every_customer = BetaGeoModel().fit(summary.frame["frequency"], summary.frame["recency"], summary.frame["T"])
    np.testing.assert_allclose(on_spark.params_.to_numpy(), every_customer.params_.to_numpy(), rtol=1e-6)


def test_results_stay_on_spark_until_written(demo, tmp_path):
    workspace, engine = demo
    cutoff = data_span(workspace)[1]
    engine.write_parquet("customer_purchases", tmp_path / "purchases", cutoff=cutoff)
    written = pd.read_parquet(tmp_path / "purchases")
    assert len(written) == len(workspace.query("customer_purchases", cutoff=cutoff))


def test_a_source_spark_cannot_read_is_one_sentence(demo, spark, tmp_path):
    from clm_core.spark_engine import SparkEngine

    with pytest.raises(InputFileError, match="holds no dataset.json") as caught:
        SparkEngine.from_parquet(tmp_path / "nowhere", session=spark)
    assert "\n" not in str(caught.value)
    demo[0].write_parquet(tmp_path)
    (tmp_path / "transactions.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputFileError, match="Spark cannot read .*transactions.parquet") as caught:
        SparkEngine.from_parquet(tmp_path, session=spark)
    assert "\n" not in str(caught.value) and "at org.apache" not in str(caught.value)


def test_a_missing_column_is_named(demo, spark, tmp_path):
    from clm_core.spark_engine import SparkEngine

    workspace, _ = demo
    workspace.write_parquet(tmp_path)
    rows = pd.read_parquet(tmp_path / "transactions.parquet").drop(columns="seg_country")
    rows.to_parquet(tmp_path / "transactions.parquet")
    with pytest.raises(SchemaError, match="Required column seg_country missing from the Spark source"):
        SparkEngine.from_parquet(tmp_path, session=spark)


def test_an_unknown_segment_is_refused_before_spark_runs(demo):
    _, engine = demo
    with pytest.raises(SchemaError, match="seg_nowhere"):
        engine.query("cohort_activity", segment="seg_nowhere", period="month")


def test_a_workspace_writes_its_dataset_for_a_lake(tmp_path):
    # No Spark needed: the folder holds the canonical rows as the workspace has them, and their description.
    import json

    from clm_core.workspace import DatasetInfo

    with Workspace() as workspace:
        workspace.ingest(DEMO_FILE)
        folder = workspace.write_parquet(tmp_path / "lake")
        assert sorted(path.name for path in folder.iterdir()) == ["dataset.json", "transactions.parquet"]
        written = pd.read_parquet(folder / "transactions.parquet").sort_values("source_row", ignore_index=True)
        pd.testing.assert_frame_equal(written, workspace.query("preview", limit=10**9), check_dtype=False)
        assert DatasetInfo.from_dict(json.loads((folder / "dataset.json").read_text())) == workspace.dataset
        workspace.store_customer_labels(pd.DataFrame({"customer_id": written["customer_id"].unique()[:5],
                                                      "rfm_segment": "Loyal"}), "five")
        workspace.write_parquet(folder)
        assert len(pd.read_parquet(folder / "customer_labels.parquet")) == 5
        assert json.loads((folder / "dataset.json").read_text())["customer_labels"] == \
            list(workspace.customer_labels_info())


def test_without_pyspark_the_message_says_what_to_install(monkeypatch):
    from clm_core.spark_engine import spark_session

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install pyspark==4\.3\.0"):
        spark_session()


def test_without_java_the_message_says_what_to_install(monkeypatch):
    from clm_core import spark_engine

    pytest.importorskip("pyspark")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineUnavailableError, match="needs Java 17"):
        spark_engine.spark_session()


# --- the command line -----------------------------------------------------------------------------------------

def _cli(*args: str):
    import subprocess

    from tests.conftest import ROOT

    return subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_cli_cohorts_on_spark_equal_the_workspace_ones(spark, tmp_path):
    """``ingest --parquet`` writes the lake folder; ``cohorts --engine spark --source`` gives the JSON that
    ``cohorts --db`` gives; a missing source is one line, before any Spark starts."""
    import json

    db, lake = tmp_path / "demo.duckdb", tmp_path / "lake"
    ingested = _cli("ingest", str(DEMO_FILE), "--db", str(db), "--parquet", str(lake), "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["parquet"] == str(lake) and (lake / "dataset.json").is_file()
    on_duckdb = _cli("cohorts", "--db", str(db), "--period", "quarter", "--definition", "rolling", "--json")
    on_spark = _cli("cohorts", "--engine", "spark", "--source", str(lake), "--spark-master", "local[2]",
                    "--spark-conf", "spark.sql.shuffle.partitions=2", "--period", "quarter", "--definition",
                    "rolling", "--json")
    assert on_duckdb.returncode == 0 and on_spark.returncode == 0, on_spark.stderr
    expected, got = json.loads(on_duckdb.stdout), json.loads(on_spark.stdout)
    assert got["average"] == pytest.approx(expected["average"], rel=1e-12)
    assert [{k: v for k, v in row.items() if k != "revenue"} for row in got["rows"]] == \
        [{k: v for k, v in row.items() if k != "revenue"} for row in expected["rows"]]
    for missing in (["--engine", "spark"], ["--engine", "spark", "--source", str(tmp_path / "nowhere")],
                    ["--engine", "spark", "--source", str(lake), "--spark-conf", "nonsense"]):
        failed = _cli("cohorts", *missing)
        assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
