"""The analytics on Spark give DuckDB's numbers: CLV (parameters and every customer's value), churn scores of the
same model, RFM segments and lifecycle stages, and the products bought together, on the demo data and Online
Retail with Spark in local mode, read back from the Parquet folders Spark wrote. Skipped without pyspark or Java,
except in CI (``CLM_REQUIRE_DATA=1``). The DuckDB path of each analysis is the reference: its own tests check it
against published figures and hand computations."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from clm_core import clv
from clm_core.churn import churn_from_workspace, descriptive_risk, risk_band
from clm_core.cli import main
from clm_core.customers import data_span
from clm_core.recommend import bought_together
from clm_core.segments import purchase_timeline, segment_customers, stage_facts
from clm_core.workspace import Workspace
from tests.conftest import DEMO_FILE, spark_engine_for


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    """The demo data in DuckDB and, from the lake folder it writes, on Spark."""
    workspace = Workspace()
    workspace.ingest(DEMO_FILE)
    yield workspace, spark_engine_for(workspace, tmp_path_factory.mktemp("demo_lake"), spark)
    workspace.close()


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id", ignore_index=True)


def _same_customers(written: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same customers (both by id) with the same scores, segment and stage, and measures within 1e-12."""
    assert written["customer_id"].tolist() == expected["customer_id"].tolist()
    for column in ("purchase_days", "r_score", "f_score", "m_score", "fm_score"):
        assert written[column].astype("Int64").tolist() == expected[column].astype("Int64").tolist(), column
    for column in ("rfm_segment", "lifecycle_stage"):
        assert written[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    for column in ("recency_days", "purchase_value"):
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-12, err_msg=column)


# --- CLV ------------------------------------------------------------------------------------------------------

# On Online Retail (on the demo data: test_cli_clv_and_segments_on_spark_equal_the_workspace_ones). BG/NBD:
# Pareto/NBD is fitted by the same call on the same rows, but takes a minute on the demo data alone.
def test_clv_on_spark_fits_and_scores_as_duckdb(online_retail_spark, tmp_path):
    from clm_core.spark_analytics import clv_on_spark

    workspace, engine = online_retail_spark
    first, last = data_span(workspace)
    calibration_end = clv.default_calibration_end(first, last)
    summary = clv.customer_summary(workspace, unit="week", calibration_end=calibration_end)
    fitted = clv.fit_clv_models(summary)
    forecast = clv.predict_clv(summary, fitted)

    run = clv_on_spark(engine, tmp_path / "clv", calibration_end=calibration_end)

    np.testing.assert_allclose(run.fitted.purchase.params_, fitted.purchase.params_, rtol=1e-6)
    np.testing.assert_allclose(run.fitted.spend.params_, fitted.spend.params_, rtol=1e-6)
    # What reached the driver: one row per distinct history, per distinct spend history; fewer than customers.
    assert run.histories == len(summary.compressed[1]) < len(summary.frame)
    assert run.spend_rows <= (summary.frame["spend_frequency"] > 0).sum()
    written = _by_customer(pd.read_parquet(tmp_path / "clv"))
    expected = _by_customer(forecast.scores)
    assert written["customer_id"].tolist() == expected["customer_id"].tolist()
    assert run.customers == len(expected)
    pd.testing.assert_series_equal(written["frequency"], expected["frequency"], check_dtype=False)
    for column in ("probability_alive", "expected_purchases", "expected_order_value", "clv"):
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-9, atol=1e-300, err_msg=column)
    # The intervals rest on standard errors from a numerical Hessian of the spend fit, which turns the last digits
    # of the fitted parameters into differences near 1e-10: held to 1e-6.
    for column in ("clv_low", "clv_high"):
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-6, err_msg=column)
    assert run.total == pytest.approx(forecast.total, rel=1e-9)
    assert run.top_10pct_share == pytest.approx(clv.value_concentration(forecast.scores["clv"])[0.1], rel=1e-9)
    for name, check in (("repeat_transactions", clv.holdout_totals(summary, fitted)),
                        ("average_transaction_value", clv.holdout_spend(summary, fitted))):
        assert run.holdout[name] == pytest.approx(check, rel=1e-9), name


def test_spend_model_past_its_row_limit_is_fitted_on_a_fixed_sample_of_customers(demo):
    from pyspark.sql import functions as F

    from clm_core.spark_analytics import _fit_spend
    from clm_core.spark_engine import _to_pandas

    workspace, engine = demo
    purchases = engine.frame("customer_purchases", cutoff=data_span(workspace)[1]).persist()
    spend, rows, notes = _fit_spend(purchases, 500)

    # The sample: the customers whose bucket (Spark's hash of the id, by which the named queries draw samples) is
    # below the share 500 is of the distinct spend histories.
    spenders = purchases.where(F.col("repeat_spend_days") > 0)
    distinct = spenders.select("repeat_spend_days", F.col("repeat_spend_value") / F.col("repeat_spend_days")).distinct()
    per_mille = 500 * 1000 // distinct.count()
    buckets = _to_pandas(spenders.select("customer_id", F.pmod(F.hash("customer_id"), F.lit(1000)).alias("bucket")))
    purchases.unpersist()
    summary = clv.customer_summary(workspace, unit="week").frame
    sample = summary.merge(buckets[buckets["bucket"] < per_mille], on="customer_id")
    reference = clv.GammaGammaModel().fit(sample["spend_frequency"], sample["monetary_value"])
    np.testing.assert_allclose(spend.params_, reference.params_, rtol=1e-6)
    # Distinct by floating-point means, which the engines may round apart in the last digit: to a few rows.
    assert rows == pytest.approx(len(sample.drop_duplicates(["spend_frequency", "monetary_value"])), abs=3)
    assert f"about {per_mille / 10:g} % of the customers" in notes[0]


# --- churn ----------------------------------------------------------------------------------------------------

def test_churn_scores_on_spark_equal_duckdb_scores_of_the_same_model(online_retail_spark, tmp_path):
    from clm_core.spark_analytics import score_churn_on_spark

    workspace, engine = online_retail_spark
    result = churn_from_workspace(workspace)
    assert result.predictive

    written = score_churn_on_spark(engine, result, tmp_path / "scores")

    scores = _by_customer(pd.read_parquet(tmp_path / "scores"))
    expected = _by_customer(result.scores)
    assert written == len(expected)
    assert scores["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_allclose(scores["risk"], expected["risk"], rtol=1e-12)
    assert scores["risk_band"].tolist() == expected["risk_band"].tolist()
    assert scores["Country"].tolist() == expected["Country"].tolist()
    assert scores["days_since_last_purchase"].tolist() == expected["recency_days"].astype(int).tolist()


def test_without_a_predictive_model_spark_ranks_by_how_overdue_customers_are(demo, tmp_path):
    from clm_core.spark_analytics import score_churn_on_spark

    workspace, engine = demo
    result = replace(churn_from_workspace(workspace), predictive=False)
    features = result.customers  # every customer who bought, as of the last day
    risk = descriptive_risk(features)
    expected = pd.DataFrame({"customer_id": features["customer_id"], "risk": risk,
                             "risk_band": risk_band(risk, predictive=False)})
    expected = expected.sort_values(["risk", "customer_id"], ascending=[False, True], ignore_index=True).head(25)

    assert score_churn_on_spark(engine, result, tmp_path / "top", top=25) == 25

    top = pd.read_parquet(tmp_path / "top")  # riskiest first, equal risks by id, as the at-risk list
    assert top["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_allclose(top["risk"], expected["risk"], rtol=1e-12)
    assert top["risk_band"].tolist() == expected["risk_band"].tolist()


# --- segments -------------------------------------------------------------------------------------------------

# On Online Retail in the middle of the data (on the demo data as of its last day:
# test_cli_clv_and_segments_on_spark_equal_the_workspace_ones).
def test_segments_and_stages_on_spark_equal_duckdb(online_retail_spark, tmp_path):
    from clm_core.spark_analytics import segments_on_spark

    workspace, engine = online_retail_spark
    first, last = data_span(workspace)
    as_of = first + (last - first) / 2
    expected = segment_customers(workspace, as_of=as_of)

    run = segments_on_spark(engine, tmp_path / "segments", as_of=as_of)

    written = _by_customer(pd.read_parquet(tmp_path / "segments"))
    customers = _by_customer(expected.customers)
    assert list(written.columns) == list(customers.columns)
    assert written["customer_id"].tolist() == customers["customer_id"].tolist()
    _same_customers(written, customers)
    assert run.customers == len(customers)
    pd.testing.assert_frame_equal(run.stages, expected.stages.astype({"lifecycle_stage": str}), check_dtype=False)
    pd.testing.assert_frame_equal(run.profiles, expected.profiles.astype({"rfm_segment": str}), check_dtype=False,
                                  rtol=1e-12)


def test_the_stage_facts_query_gives_the_timeline_facts(demo, online_retail_spark):
    # The query Spark reads frequency trends and comebacks from, run by DuckDB, against the numpy timeline
    # clm_core.segments computes them from.
    for workspace, _ in (demo, online_retail_spark):
        first, last = data_span(workspace)
        for as_of in (last, first + (last - first) / 3):
            facts = stage_facts(purchase_timeline(workspace, as_of), as_of)
            facts.insert(0, "customer_id", workspace.query("customer_table", cutoff=as_of,
                                                           sample_per_mille=1000)["customer_id"])
            facts = facts[facts["purchase_days"] > 0]
            rows = workspace.query("customer_stage_facts", cutoff=as_of, churn_days=180)
            rows = facts[["customer_id"]].merge(rows, on="customer_id", how="left")
            recent, prior = rows["recent_purchase_days"], rows["prior_purchase_days"]
            np.testing.assert_array_equal((recent - prior) / np.maximum(recent + prior, 1), facts["frequency_trend"])
            since = (pd.Timestamp(as_of) - pd.to_datetime(rows["last_comeback"])).dt.days
            np.testing.assert_array_equal(since.to_numpy(dtype=float), facts["days_since_comeback"].to_numpy())


def test_the_stage_facts_query_is_spark_sql():
    from clm_core.queries import query_text
    from tests.test_queries_portability import spark_problems

    importlib.import_module("clm_core.spark_analytics")  # which registers the query

    text = query_text("customer_stage_facts", dialect="spark")
    assert spark_problems(text) == [] and "$" not in text


# --- the command line, in this process (Spark's session is shared) ------------------------------------------------

@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A workspace file of the demo data for ``--db``."""
    path = tmp_path_factory.mktemp("demo_db") / "demo.duckdb"
    with Workspace(path) as workspace:
        workspace.ingest(DEMO_FILE)
    return str(path)


@pytest.fixture(scope="module")
def lake(demo, tmp_path_factory):
    """The demo data's lake folder, for ``--source``."""
    return str(demo[0].write_parquet(tmp_path_factory.mktemp("cli_lake")))


def _run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 and "--json" in args else None, captured.err


def _same_numbers(got: dict, expected: dict, rel: float) -> None:
    """Two JSON objects of the command line with the same keys, and numbers within ``rel`` (one level of nesting)."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=rel), key


def test_cli_clv_and_segments_on_spark_equal_the_workspace_ones(demo, lake, demo_db, capsys, tmp_path):
    first, last = data_span(demo[0])
    calibration = ["--calibration-end", clv.default_calibration_end(first, last).isoformat()]
    for command in (["clv", "--model", "gg", *calibration], ["segments"]):
        name = command[0]
        code, on_duckdb, _ = _run(capsys, *command, "--db", demo_db, "--out", str(tmp_path / f"{name}.csv"), "--json")
        assert code == 0
        code, on_spark, err = _run(capsys, *command, "--engine", "spark", "--source", lake, "--out",
                                   str(tmp_path / name), "--json")
        assert code == 0, err
        written = _by_customer(pd.read_parquet(tmp_path / name))
        expected = _by_customer(pd.read_csv(tmp_path / f"{name}.csv", dtype={"customer_id": str}))
        assert len(written) == on_spark["customers"] == on_duckdb["customers"]
        if name == "clv":
            assert on_spark["params"] == pytest.approx(on_duckdb["params"], rel=1e-6)
            for key in ("clv_total", "clv_top_10pct_share", "holdout_actual", "holdout_predicted"):
                assert on_spark[key] == pytest.approx(on_duckdb[key], rel=1e-9), key
            assert written["customer_id"].tolist() == expected["customer_id"].tolist()
            np.testing.assert_allclose(written["clv"], expected["clv"], rtol=1e-9)
        else:
            for part in ("segments", "stages"):
                _same_numbers(on_spark[part], on_duckdb[part], rel=1e-12)
            _same_customers(written, expected)


def test_cli_at_risk_on_spark_trains_and_scores_as_the_workspace(demo, lake, capsys, tmp_path):
    # Trained on Spark (every customer of the demo data: no sample), scored on Spark: the list DuckDB's model gives.
    # (The churn command trains the same way and prints the checks: no second training here.)
    result = churn_from_workspace(demo[0])
    expected = result.scores.head(30)

    code, listed, err = _run(capsys, "at-risk", "--engine", "spark", "--source", lake, "--top", "30", "--out",
                             str(tmp_path / "risk"), "--json")

    assert code == 0, err
    assert listed["customers"] == 30
    assert (listed["best_model"], listed["predictive"]) == (result.best_model, result.predictive)
    written = pd.read_parquet(tmp_path / "risk")
    assert written["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_allclose(written["risk"], expected["risk"], rtol=1e-9)


def test_cli_recommend_on_spark_writes_the_products_bought_together_as_duckdb_counts_them(demo, lake, capsys,
                                                                                         tmp_path):
    expected = bought_together(demo[0], min_orders=5, top=3)

    code, result, err = _run(capsys, "recommend", "--engine", "spark", "--source", lake, "--top", "3",
                             "--out", str(tmp_path / "pairs"), "--json")

    assert code == 0, err
    assert result["pairs"] == len(expected)
    keys = ["product_id", "other_product_id"]
    written = pd.read_parquet(tmp_path / "pairs").sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(written, expected.sort_values(keys, ignore_index=True), check_dtype=False,
                                  rtol=1e-12)


def test_cli_bad_spark_input_is_one_line(demo, lake, capsys, tmp_path, monkeypatch):
    workspace, _ = demo
    broken = tmp_path / "broken"
    workspace.write_parquet(broken)
    (broken / "transactions.parquet").write_bytes(b"not parquet at all")
    missing = tmp_path / "missing"
    workspace.write_parquet(missing)
    rows = pd.read_parquet(missing / "transactions.parquet").drop(columns="seg_country")
    rows.to_parquet(missing / "transactions.parquet")
    for source, message in ((broken, "Spark cannot read"), (missing, "Required column seg_country missing")):
        code, _, err = _run(capsys, "segments", "--engine", "spark", "--source", str(source), "--out",
                            str(tmp_path / "out"))
        assert code == 2 and message in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    code, _, err = _run(capsys, "clv", "--engine", "spark", "--source", lake, "--out", str(tmp_path / "c"))
    assert code == 2 and "pip install pyspark" in err and len(err.strip().splitlines()) == 1


def test_cli_options_spark_cannot_serve_are_refused_in_one_line(lake, capsys):
    for args, message in (
        (["clv", "--engine", "spark", "--source", lake], "give --out DIR"),
        (["recommend", "--engine", "spark", "--source", lake, "--customer", "x", "--out", "p"], "--customer is for"),
        (["at-risk", "--engine", "spark", "--source", lake, "--out", "p", "--only-stage", "Churned"],
         "--only-segment and --only-stage need --db"),
    ):
        code, _, err = _run(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_calibration_end_outside_the_data_is_one_line(demo, lake, capsys):
    last = data_span(demo[0])[1]
    code, _, err = _run(capsys, "clv", "--engine", "spark", "--source", lake, "--out", "x",
                        "--calibration-end", (last + timedelta(days=3)).isoformat())
    assert code == 2 and "outside the data" in err and len(err.strip().splitlines()) == 1
