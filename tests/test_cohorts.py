"""Cohort computations: hand-checked small cases, censoring, both definitions, Online Retail, ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm_core.cohorts import cohort_table
from clm_core.errors import DataRangeError
from clm_core.generator import GeneratorParams, generate_transactions
from clm_core.ingest import IngestOptions
from clm_core.workspace import Workspace

# Four customers. Data end mid-April, so April is a partial month.
SMALL = """customer_id,order_id,order_date,amount
a,1,2021-01-05,10
a,2,2021-02-10,20
b,3,2021-01-20,5
b,4,2021-03-03,5
b,5,2021-03-04,-2
c,6,2021-02-01,8
c,7,2021-04-15,8
d,8,2021-02-02,4
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(SMALL)
    workspace = Workspace()
    workspace.ingest(path)
    yield workspace
    workspace.close()


def _cell(table, cohort: str, offset: int, column: str):
    rows = table.long[(table.long["cohort"] == pd.Timestamp(cohort)) & (table.long["offset"] == offset)]
    return rows[column].iloc[0] if len(rows) else "absent"


def test_classic_by_hand(small):
    table = cohort_table(small)
    # January cohort {a, b}: Feb a, Mar b; April is partial -> missing.
    assert _cell(table, "2021-01-01", 0, "cohort_size") == 2
    assert _cell(table, "2021-01-01", 1, "retention") == 0.5
    assert _cell(table, "2021-01-01", 2, "retention") == 0.5
    assert np.isnan(_cell(table, "2021-01-01", 3, "retention"))
    assert not _cell(table, "2021-01-01", 3, "complete")
    # February cohort {c, d}: nobody in March (a real zero), April partial, offset 3 not reached.
    assert _cell(table, "2021-02-01", 1, "retention") == 0.0
    assert _cell(table, "2021-02-01", 1, "churn_rate") == 1.0
    assert np.isnan(_cell(table, "2021-02-01", 2, "retention"))
    assert _cell(table, "2021-02-01", 3, "retention") == "absent"
    # Revenue is net of b's return in March: 5 - 2.
    assert _cell(table, "2021-01-01", 2, "revenue") == 3
    assert _cell(table, "2021-01-01", 1, "revenue_retention") == pytest.approx(20 / 15)
    assert _cell(table, "2021-01-01", 2, "cumulative_revenue_per_customer") == pytest.approx((15 + 20 + 3) / 2)
    assert table.partial_last_period == pd.Timestamp("2021-04-01")
    assert any("not complete" in note for note in table.notes)
    # The partial April's counts are as unknown as its rates: blank, not c's one purchase of 8.
    for column in ("active", "revenue", "orders"):
        assert pd.isna(_cell(table, "2021-02-01", 2, column)) and pd.isna(_cell(table, "2021-01-01", 3, column))
    assert _cell(table, "2021-01-01", 2, "active") == 1  # complete periods keep their counts
    assert not table.long["censored"].any()  # classic cells of complete periods are final


def test_exports_leave_incomplete_periods_blank(small):
    from io import StringIO

    from clm_core.export import to_csv_bytes

    exported = pd.read_csv(StringIO(to_csv_bytes(cohort_table(small).export_long()).decode("utf-8-sig")),
                           keep_default_na=False, dtype=str)
    april = exported[exported["period_start"].str.startswith("2021-04-01")]
    assert len(april) == 2 and (april["complete"] == "False").all()
    for column in ("active", "revenue", "orders", "retention"):
        assert (april[column] == "").all(), column
    march = exported[(exported["cohort_label"] == "2021-01") & (exported["offset"] == "2")]
    assert march[["active", "revenue"]].values.tolist() == [["1", "3.0"]]


def test_first_cohort_is_left_censored_and_out_of_the_average(small):
    table = cohort_table(small)
    flags = table.long.groupby("cohort")["left_censored"].agg(["min", "max"])
    assert flags.loc[pd.Timestamp("2021-01-01")].tolist() == [True, True]
    assert not flags.drop(pd.Timestamp("2021-01-01"))["max"].any()
    assert any("first cohort (2021-01) may include customers who bought before" in note for note in table.notes)
    # Month 1: January {a, b} kept a; February {c, d} kept nobody (March). By default only February counts.
    default = table.average_curve().set_index("offset")
    assert default.loc[1, "retention"] == 0.0 and default.loc[1, "cohorts"] == 1
    with_first = table.average_curve(include_left_censored=True).set_index("offset")
    assert with_first.loc[1, "retention"] == pytest.approx(1 / 4) and with_first.loc[1, "cohorts"] == 2
    assert table.headline()[1] == 0.0 and table.headline(include_left_censored=True)[1] == pytest.approx(0.25)
    # Filtered to the first cohort alone, the default average has nothing left.
    assert cohort_table(small, end=pd.Timestamp("2021-01-31")).average_curve().empty


def test_weekly_cohorts_start_on_monday(tmp_path):
    # 2021-01-03 is a Sunday: it belongs to the week of Monday 2020-12-28; 2021-01-04 (Monday) starts the next.
    path = tmp_path / "weeks.csv"
    path.write_text("customer_id,order_date,amount\na,2021-01-03,1\nb,2021-01-04,1\nc,2021-01-10,1\n"
                    "a,2021-01-12,1\nd,2021-01-20,1\n")
    with Workspace() as workspace:
        workspace.ingest(path)
        table = cohort_table(workspace, period="week")
    sizes = table.long[table.long["offset"] == 0].set_index("cohort")["cohort_size"]
    assert sizes.to_dict() == {pd.Timestamp("2020-12-28"): 1, pd.Timestamp("2021-01-04"): 2,
                               pd.Timestamp("2021-01-18"): 1}
    assert (table.long["cohort"].dt.day_of_week == 0).all()
    assert _cell(table, "2020-12-28", 2, "active") == 1  # a again on Tuesday 12 January, two weeks on


def test_rolling_by_hand(small):
    table = cohort_table(small, definition="rolling")
    # a last bought in Feb (offset 1), b in Mar (offset 2).
    assert _cell(table, "2021-01-01", 1, "retention") == 1.0
    assert _cell(table, "2021-01-01", 2, "retention") == 0.5
    # c bought again in (partial) April: rolling at offset 1 counts it.
    assert _cell(table, "2021-02-01", 1, "retention") == 0.5
    # Every rolling cell after period 0 misses purchases after the data end: censored. Period 0 is everyone.
    long = table.long
    assert long.loc[long["offset"] > 0, "censored"].all() and not long.loc[long["offset"] == 0, "censored"].any()
    assert any("lower bound" in note for note in table.notes)
    average = table.average_curve(include_left_censored=True)
    assert average.loc[average["offset"] == 1, "retention"].iloc[0] == pytest.approx((2 + 1) / 4)


def test_average_is_size_weighted_over_complete_cohorts(small):
    table = cohort_table(small)
    average = table.average_curve(include_left_censored=True).set_index("offset")
    assert average.loc[0, "retention"] == 1.0
    assert average.loc[1, "retention"] == pytest.approx((1 + 0) / 4)
    assert average.loc[2, "retention"] == pytest.approx(1 / 2) and average.loc[2, "cohorts"] == 1
    assert set(table.headline()) == {1, 3, 12}


def test_weeks_quarters_filters_and_errors(small, tmp_path):
    assert cohort_table(small, period="quarter").long["offset"].max() == 1
    weekly = cohort_table(small, period="week")
    assert weekly.long.groupby("cohort")["cohort_size"].first().sum() == 4
    assert cohort_table(small, min_cohort_size=2).long["cohort"].nunique() == 2
    with pytest.raises(DataRangeError, match="No cohort matches"):
        cohort_table(small, min_cohort_size=3)
    with pytest.raises(DataRangeError, match="No cohort matches"):
        cohort_table(small, start=pd.Timestamp("2021-05-01"))
    short = tmp_path / "short.csv"
    short.write_text("customer_id,order_date,amount\na,2021-01-05,1\nb,2021-01-20,2\n")
    with Workspace() as workspace:
        workspace.ingest(short)
        with pytest.raises(DataRangeError, match="only one month.*Try weeks"):
            cohort_table(workspace)
        assert cohort_table(workspace, period="week").long["cohort"].nunique() == 2


def test_online_retail_december_2010_matches_pandas(online_retail_path, online_retail_workspace):
    workspace, _ = online_retail_workspace
    table = cohort_table(workspace)
    # Independent computation: the rows the report kept, purchases only for activity.
    raw = pd.read_csv(online_retail_path, dtype=str, keep_default_na=False)
    raw = raw[raw["CustomerID"] != ""].drop_duplicates()
    quantity, price = raw["Quantity"].astype(float), raw["UnitPrice"].astype(float)
    purchase = ~((quantity < 0) | (price < 0) | raw["InvoiceNo"].str.startswith("C"))
    buys = raw[purchase].assign(month=pd.to_datetime(raw["InvoiceDate"]).dt.to_period("M"))
    first = buys.groupby("CustomerID")["month"].min()
    cohort = first[first == pd.Period("2010-12", "M")].index
    active = buys[buys["CustomerID"].isin(cohort)].groupby("month")["CustomerID"].nunique()
    assert _cell(table, "2010-12-01", 0, "cohort_size") == len(cohort)
    for offset in (1, 3, 11):
        month = pd.Period("2010-12", "M") + offset
        assert _cell(table, "2010-12-01", offset, "retention") == pytest.approx(active[month] / len(cohort), abs=0)
    # The first cohort (December 2010) holds customers who bought before the data start: flagged, and its
    # month 1 retention set against the size-weighted month 1 of every other cohort that completed month 1.
    sizes = first.value_counts().sort_index()
    bought = buys[["CustomerID", "month"]].drop_duplicates().assign(cohort=lambda f: f["CustomerID"].map(first))
    month_one = bought[bought["month"] == bought["cohort"] + 1].groupby("cohort").size()
    others = [c for c in sizes.index if pd.Period("2010-12", "M") < c and c + 1 <= pd.Period("2011-11", "M")]
    rest = month_one.reindex(others, fill_value=0).sum() / sizes[others].sum()
    first_cohort = month_one[pd.Period("2010-12", "M")] / sizes[pd.Period("2010-12", "M")]
    assert table.long.loc[table.long["left_censored"], "cohort"].unique().tolist() == [pd.Timestamp("2010-12-01")]
    average = table.average_curve().set_index("offset")
    assert average.loc[1, "retention"] == pytest.approx(rest, abs=1e-12)
    assert average.loc[1, "cohorts"] == len(others)
    assert table.average_curve(include_left_censored=True).set_index("offset").loc[1, "retention"] == pytest.approx(
        (month_one[others].sum() + month_one[pd.Period("2010-12", "M")]) / (sizes[others].sum() + len(cohort)))
    assert f"month 1 retention {first_cohort:.1%} against {rest:.1%}" in " ".join(table.notes)
    assert first_cohort > 1.5 * rest  # 36.6 % against 19.9 %
    # Without December 2010 the tail stops at month 10, resting on January 2011 alone.
    assert average.index.max() == 10 and average.loc[10, "cohorts"] == 1
    complete = table.long[table.long["complete"]]
    assert complete["retention"].between(0, 1).all()
    assert (complete.loc[complete["offset"] == 0, "retention"] == 1.0).all()
    assert table.partial_last_period == pd.Timestamp("2011-12-01")
    december = table.long[table.long["period_start"] == pd.Timestamp("2011-12-01")]
    assert december[["active", "revenue", "orders"]].isna().all().all() and not december["complete"].any()
    rolling = cohort_table(workspace, definition="rolling").long
    assert (rolling["censored"] == (rolling["offset"] > 0)).all()


def test_generated_average_curve_matches_ground_truth(tmp_path):
    """The pipeline's average monthly curve equals the generator's story within sampling error.

    Ground truth: the same story simulated for 150,000 other customers (another seed) and
    counted directly in pandas, with no SQL and no cohort code involved.
    """
    params = GeneratorParams(start="2022-01-01", end="2022-12-31", acquisition_days=90)
    sample = generate_transactions(6_000, seed=21, params=params)
    path = tmp_path / "generated.parquet"
    sample.to_parquet(path)
    with Workspace() as workspace:
        workspace.ingest(path, options=IngestOptions())
        curve = cohort_table(workspace).average_curve().set_index("offset")

    truth_frame = generate_transactions(150_000, seed=99, params=params)
    months = truth_frame["order_date"].dt.to_period("M")
    first = months.groupby(truth_frame["customer_id"]).transform("min")
    offset = (months - first).map(lambda delta: delta.n)
    bought = pd.DataFrame({"customer": truth_frame["customer_id"], "cohort": first, "offset": offset}).drop_duplicates()
    sizes = bought[bought["offset"] == 0].groupby("cohort").size()
    last_month = pd.Period("2022-12", "M")
    for k in range(1, 9):
        reached = sizes[[c + k <= last_month for c in sizes.index]]
        truth = bought[(bought["offset"] == k) & bought["cohort"].isin(reached.index)].shape[0] / reached.sum()
        n = curve.loc[k, "customers"]
        standard_error = np.sqrt(truth * (1 - truth) / n)
        assert abs(curve.loc[k, "retention"] - truth) < 4 * standard_error, (k, curve.loc[k, "retention"], truth)


def test_split_uses_the_segment_of_the_first_purchase(tmp_path):
    # a's first order is toys, later bags; b buys bags then toys; c's first order holds both (its first line wins).
    path = tmp_path / "categories.csv"
    path.write_text("customer_id,order_id,order_date,amount,category\n"
                    "a,1,2021-01-05,10,Toys\na,2,2021-02-10,20,Bags\n"
                    "b,3,2021-01-20,5,Bags\nb,4,2021-02-03,5,Toys\n"
                    "c,5,2021-01-21,8,Toys\nc,5,2021-01-21,3,Bags\nc,6,2021-03-01,4,Toys\n")
    from dataclasses import replace

    with Workspace() as workspace:
        staged = workspace.stage_file(path)
        workspace.build(staged, replace(staged.guess, segments=["category"]))
        table = cohort_table(workspace, segment="seg_category")
    january = table.long[(table.long["cohort"] == pd.Timestamp("2021-01-01")) & (table.long["offset"] == 0)]
    sizes = dict(zip(january["segment"], january["cohort_size"]))
    assert sizes == {"Toys": 2, "Bags": 1}


def test_cohorts_split_by_a_stored_customer_label_on_online_retail(online_retail_workspace):
    """Split by RFM segment: each segment's first-period cohort sizes add up to its customers who bought, counted
    straight from the transactions and the stored labels."""
    from clm_core.segments import segment_customers, store_labels

    workspace, _ = online_retail_workspace
    store_labels(workspace, segment_customers(workspace), chosen=False)
    table = cohort_table(workspace, label="rfm_segment")
    sizes = table.long[table.long["offset"] == 0].groupby("segment")["cohort_size"].sum()
    with workspace._cursor() as cursor:
        buyers = {row[0] for row in cursor.execute(
            "SELECT DISTINCT customer_id FROM transactions WHERE NOT is_return").fetchall()}
    labels = workspace.customer_labels()
    expected = labels[labels["customer_id"].isin(buyers)]["rfm_segment"].value_counts()
    assert sizes.sort_index().to_dict() == expected.sort_index().to_dict()
    assert sizes.sum() == len(buyers) == 4_339
    stages = cohort_table(workspace, label="lifecycle_stage", period="quarter", definition="rolling")
    assert stages.long[stages.long["offset"] == 0]["cohort_size"].sum() == 4_339
    with pytest.raises(ValueError, match="not both"):
        cohort_table(workspace, label="rfm_segment", segment="seg_country")
