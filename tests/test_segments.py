"""RFM scores, segments, clusters and lifecycle stages: hand-built frames and a small dataset worked out by hand,
Online Retail against counts and values taken straight from the transactions or the raw file, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm_core.customers import customer_table
from clm_core.errors import ClmError, DataRangeError, SchemaError
from clm_core.segments import (
    NOT_YET_A_CUSTOMER,
    RETURNS_ONLY,
    SEGMENTS,
    STAGES,
    SegmentRulesError,
    StageSettings,
    assign_segments,
    cluster_customers,
    customer_labels,
    default_segment_rules,
    lifecycle_stages,
    purchase_timeline,
    rfm_scores,
    segment_customers,
    stage_facts,
    stage_flows,
    stage_history,
    validate_segment_rules,
    with_labels,
)
from clm_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
OR_END = date(2011, 12, 9)


def _plain_sql(workspace: Workspace, sql: str, params: list | None = None):
    with workspace._cursor() as cursor:
        return cursor.execute(sql, params or []).fetchall()


def _customers_by(workspace: Workspace, day: date) -> int:
    """Distinct customers with any row up to ``day``, counted straight from the transactions."""
    return _plain_sql(workspace, "SELECT COUNT(DISTINCT customer_id) FROM transactions "
                                 "WHERE CAST(order_ts AS DATE) <= ?", [day])[0][0]


def _table(**columns) -> pd.DataFrame:
    """A customer table of the columns the RFM scores read, ids c0, c1, ..."""
    size = len(next(iter(columns.values())))
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(size)], **columns})
    for column, default in (("recency_days", 10.0), ("purchase_days", 1), ("purchase_value", 100.0)):
        if column not in frame:
            frame[column] = default
    return frame


# --- RFM scores on hand-built frames ----------------------------------------------------------------------------

def test_scores_average_ties_so_a_tie_group_shares_the_score_of_its_middle():
    table = _table(purchase_days=[1, 1, 1, 1, 2, 2, 3, 4, 5, 6],
                   recency_days=[0.0, 5, 10, 20, 30, 40, 50, 60, 70, 80],
                   purchase_value=[10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    result = rfm_scores(table)
    scores = result.scores
    # The four one-day buyers hold ranks 1-4 (mean 2.5): percentile (2.5 - 0.5) / 10 = 0.2, score 2; the two
    # two-day buyers (mean rank 5.5) 0.5, score 3; then 0.65 and 0.75 score 4, 0.85 and 0.95 score 5.
    assert scores["f_score"].tolist() == [2, 2, 2, 2, 3, 3, 4, 4, 5, 5]
    # Fewer days since the last purchase score higher: ten distinct values, two per quintile.
    assert scores["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores["m_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["fm_score"].tolist() == [2, 2, 2, 2, 3, 3, 4, 4, 5, 5]  # (F + M + 1) // 2: 1.5 rounds to 2
    rules = result.score_rules.set_index(["score", "level"])
    assert rules.loc[("F", 1), "customers"] == 0 and rules.loc[("F", 1), "rule"] == "nobody (ties)"
    assert rules.loc[("F", 2), ["lowest", "highest", "customers"]].tolist() == [1, 1, 4]
    assert rules.loc[("R", 5), "rule"] == "last purchase 0 to 5 days ago"
    assert any("F score 1 has no customers" in note for note in result.notes)


def test_too_few_customers_use_fewer_levels_spread_over_one_to_five_with_a_note():
    result = rfm_scores(_table(recency_days=[1.0, 50, 300], purchase_days=[3, 2, 1],
                               purchase_value=[30.0, 20, 10]))
    # Percentiles 1/6, 1/2, 5/6: scores 1, 3 and 5.
    assert result.scores["r_score"].tolist() == [5, 3, 1]
    assert result.scores["f_score"].tolist() == [5, 3, 1]
    assert any("too few for five groups" in note and "3 levels" in note for note in result.notes)
    single = rfm_scores(_table(recency_days=[4.0]))
    assert single.scores[["r_score", "f_score", "m_score"]].iloc[0].tolist() == [3, 3, 3]


def test_without_amounts_there_is_no_m_score_and_fm_is_f():
    result = rfm_scores(_table(purchase_days=[1, 2, 3, 4, 5], purchase_value=[np.nan] * 5))
    assert result.scores["m_score"].isna().all()
    assert result.scores["fm_score"].tolist() == result.scores["f_score"].tolist() == [1, 2, 3, 4, 5]
    assert not result.has_money and any("no amounts" in note for note in result.notes)
    assert set(result.score_rules["score"]) == {"R", "F"}


def test_customers_with_only_returns_get_no_scores_and_their_own_segment():
    table = _table(purchase_days=[0, 1, 2], recency_days=[np.nan, 3.0, 4.0], purchase_value=[0.0, 5, 6])
    scores = rfm_scores(table).scores
    assert scores.loc[0, ["r_score", "f_score", "m_score", "fm_score"]].isna().all()
    segments = assign_segments(scores)
    assert segments[0] == RETURNS_ONLY and segments[1] != RETURNS_ONLY
    with pytest.raises(DataRangeError, match="No customer had bought"):
        rfm_scores(table.iloc[:1])
    with pytest.raises(SchemaError, match="Required column purchase_value missing"):
        rfm_scores(table.drop(columns="purchase_value"))


# --- segment rules ----------------------------------------------------------------------------------------------

def test_default_rules_give_every_score_pair_one_named_segment():
    cells = pd.DataFrame([(r, fm) for r in range(1, 6) for fm in range(1, 6)], columns=["r_score", "fm_score"],
                         dtype="Int64")
    segments = assign_segments(cells).astype(str).to_numpy().reshape(5, 5)
    assert segments[4].tolist() == ["New", "Potential loyalists", "Potential loyalists", "Champions", "Champions"]
    assert segments[2].tolist() == ["About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"]
    assert segments[0].tolist() == ["Lost", "Lost", "At risk", "At risk", "Cannot lose them"]
    assert set(segments.ravel()) == set(SEGMENTS)


def test_edited_rules_apply_by_priority_then_row_order():
    rules = pd.DataFrame({"segment": ["Rest", "Best", "Recent"], "priority": [3, 1, 2], "r_from": [1, 4, 4],
                          "r_to": [5, 5, 5], "fm_from": [1, 4, 1], "fm_to": [5, 5, 5]})
    cells = pd.DataFrame({"r_score": [5, 5, 1], "fm_score": [5, 1, 5]}, dtype="Int64")
    assert assign_segments(cells, rules).astype(str).tolist() == ["Best", "Recent", "Rest"]
    assert validate_segment_rules(rules)["segment"].tolist() == ["Best", "Recent", "Rest"]


@pytest.mark.parametrize("change, message", [
    (lambda rules: rules.iloc[:-1], r"No rule covers R 1 with F\(M\) 1, R 1 with F\(M\) 2: every customer needs "
                                    "a segment"),
    (lambda rules: rules.assign(r_to=rules["r_to"].where(rules.index != 0, 6)), "R score to in row 1 "
                                                                                  r"\(Champions\) is 6"),
    (lambda rules: rules.assign(fm_from=rules["fm_from"].astype(float).where(rules.index != 2, 2.5)),
     "scores are whole numbers"),
    (lambda rules: rules.assign(r_from=rules["r_from"].where(rules.index != 1, 5)), r"row 2 \(Loyal\) the R score "
                                                                                      "starts above where it ends"),
    (lambda rules: rules.assign(segment=rules["segment"].where(rules.index != 3, " ")), "Row 4 of the segment rules "
                                                                                        "has no segment name"),
    (lambda rules: rules.assign(segment=rules["segment"].where(rules.index != 3, RETURNS_ONLY)), "is kept for"),
    (lambda rules: rules.assign(priority=rules["priority"].astype(object).where(rules.index != 0, "first")),
     "is 'first', not a number"),
    (lambda rules: rules.assign(fm_to=rules["fm_to"].astype(object).where(rules.index != 4, None)),
     r"F\(M\) score to in row 5 \(Promising\) is empty"),
    (lambda rules: rules.iloc[:0], "The segment rules table is empty"),
    (lambda rules: rules.drop(columns="fm_to"), "no column fm_to"),
])
def test_bad_segment_rules_are_refused_with_a_sentence(change, message):
    with pytest.raises(SegmentRulesError, match=message):
        validate_segment_rules(change(default_segment_rules()))


# --- lifecycle stage rules on hand-built facts ------------------------------------------------------------------

def test_stage_rules_and_their_precedence():
    rows = {
        # purchase days, tenure, recency, recency/gap, spend trend, frequency trend, days since comeback
        "returns only": (0, np.nan, np.nan, np.nan, 0.0, 0.0, np.nan),
        "new, bought twice": (2, 10, 2, 0.25, 1.0, 1.0, np.nan),
        "came back after 200 days": (5, 400, 3, 0.1, 1.0, 1.0, 3),
        "silent 181 days": (4, 500, 181, 3.0, -1.0, -1.0, np.nan),
        "late for their usual gap": (4, 300, 50, 1.2, 0.0, 0.0, np.nan),
        "one purchase 91 days ago": (1, 91, 91, np.nan, -1.0, -1.0, np.nan),
        "one purchase 60 days ago": (1, 60, 60, np.nan, 1.0, 1.0, np.nan),
        "spending more": (3, 300, 10, 0.5, 0.4, 0.0, np.nan),
        "buying more often": (3, 300, 10, 0.5, 0.0, 0.5, np.nan),
        "steady": (3, 300, 10, 0.5, 0.0, 0.0, np.nan),
        "comeback 40 days ago": (3, 300, 40, 0.2, 1.0, 0.0, 40),
    }
    facts = pd.DataFrame(list(rows.values()), index=list(rows), columns=[
        "purchase_days", "tenure_days", "recency_days", "recency_gap_ratio", "spend_trend", "frequency_trend",
        "days_since_comeback"])
    stages = lifecycle_stages(facts).astype(str).to_dict()
    assert stages == {
        "returns only": "Returns only", "new, bought twice": "Acquisition",
        "came back after 200 days": "Reactivated", "silent 181 days": "Churned",
        "late for their usual gap": "At risk", "one purchase 91 days ago": "At risk",
        "one purchase 60 days ago": "Retention", "spending more": "Development",
        "buying more often": "Development", "steady": "Retention", "comeback 40 days ago": "Development",
    }
    models = facts.assign(risk=0.1, probability_alive=0.9)
    models.loc["steady", "risk"] = 0.7
    models.loc["spending more", "probability_alive"] = 0.1
    models.loc["new, bought twice", "probability_alive"] = 0.1  # new customers stay new
    with_models = lifecycle_stages(models).astype(str)
    assert with_models["steady"] == "At risk" and with_models["spending more"] == "Churned"
    assert with_models["new, bought twice"] == "Acquisition"
    assert lifecycle_stages(facts, StageSettings(churn_days=365))["silent 181 days"] == "At risk"
    with pytest.raises(SchemaError, match="outside 0 to 1"):
        lifecycle_stages(facts.assign(risk=2.0))
    with pytest.raises(ClmError, match="must come before churned"):
        lifecycle_stages(facts, StageSettings(one_time_days=200))


# --- a small dataset worked out by hand -------------------------------------------------------------------------

# a: three purchases then silence; b: one purchase, lapses, comes back on 20 Aug after 222 days; c: a return
# only; d: new in November; e: the same amount on the 5th of every month; z: buys on the last day.
_SMALL = """customer_id,order_id,order_date,amount
a,1,2021-01-05,10
a,2,2021-02-20,10
a,3,2021-03-25,50
b,4,2021-01-10,20
b,5,2021-08-20,20
c,C6,2021-03-05,-5
d,7,2021-11-15,30
z,99,2021-12-31,1
""" + "".join(f"e,e{month},2021-{month:02d}-05,10\n" for month in range(1, 13))

_SMALL_STAGES = {  # at each month end of 2021, worked out from the rules in the module docstring
    "a": "Acq Dev Dev Dev Risk Risk Risk Risk Churn Churn Churn Churn",
    "b": "Acq Ret Ret Risk Risk Risk Churn React Dev Dev Ret Ret",
    "c": "- - Ret0 Ret0 Ret0 Ret0 Ret0 Ret0 Ret0 Ret0 Ret0 Ret0",
    "d": "- - - - - - - - - - Acq Ret",
    "e": "Acq Dev Dev Dev Dev Ret Ret Ret Ret Ret Ret Ret",
    "z": "- - - - - - - - - - - Acq",
}
_WORDS = {"Acq": "Acquisition", "Dev": "Development", "Ret": "Retention", "React": "Reactivated",
          "Risk": "At risk", "Churn": "Churned", "Ret0": "Returns only", "-": NOT_YET_A_CUSTOMER}
_MONTH_ENDS = [d.date() for d in pd.date_range("2021-01-31", "2021-12-31", freq="ME")]


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "small.csv"
    path.write_text(_SMALL)
    workspace = Workspace(tmp_path_factory.mktemp("small_ws") / "small.duckdb")
    workspace.ingest(path)
    yield workspace
    workspace.close()


def _expected_stages(position: int) -> dict[str, str]:
    return {customer: _WORDS[stages.split()[position]] for customer, stages in _SMALL_STAGES.items()}


def test_stage_history_of_the_small_dataset_matches_the_hand_count(small_workspace):
    history = stage_history(small_workspace)
    assert [d.date() for d in history.index] == _MONTH_ENDS
    for position, month_end in enumerate(_MONTH_ENDS):
        expected = pd.Series(list(_expected_stages(position).values())).value_counts()
        expected = expected.drop(NOT_YET_A_CUSTOMER, errors="ignore").reindex(list(STAGES), fill_value=0)
        assert history.loc[pd.Timestamp(month_end)].to_dict() == expected.to_dict(), month_end


def test_stages_per_customer_at_each_month_end_follow_the_hand_count(small_workspace):
    for position, month_end in enumerate(_MONTH_ENDS):
        result = segment_customers(small_workspace, as_of=month_end)
        got = dict(zip(result.customers["customer_id"], result.customers["lifecycle_stage"].astype(str)))
        expected = {customer: stage for customer, stage in _expected_stages(position).items()
                    if stage != NOT_YET_A_CUSTOMER}
        assert got == expected, month_end


def test_stage_flows_of_the_small_dataset(small_workspace):
    flows = stage_flows(small_workspace, date(2021, 6, 30), date(2021, 12, 31))
    moves = {(start, end): int(flows.loc[start, end]) for start in flows.index for end in flows.columns
             if flows.loc[start, end]}
    assert moves == {("At risk", "Churned"): 1, ("At risk", "Retention"): 1, ("Returns only", "Returns only"): 1,
                     (NOT_YET_A_CUSTOMER, "Retention"): 1, ("Retention", "Retention"): 1,
                     (NOT_YET_A_CUSTOMER, "Acquisition"): 1}


def test_dates_outside_the_data_are_refused(small_workspace):
    with pytest.raises(DataRangeError, match="before the data start"):
        segment_customers(small_workspace, as_of=date(2020, 12, 31))
    with pytest.raises(DataRangeError, match="after the data end"):
        segment_customers(small_workspace, as_of=date(2022, 1, 1))
    with pytest.raises(DataRangeError, match="The start 01 Jan 2020 is before the data start"):
        stage_flows(small_workspace, date(2020, 1, 1), date(2021, 6, 30))
    with pytest.raises(DataRangeError, match="must come before the end"):
        stage_flows(small_workspace, date(2021, 6, 30), date(2021, 6, 30))


def test_a_dataset_without_amounts_is_segmented_on_recency_and_frequency(tmp_path):
    path = tmp_path / "no_money.csv"
    path.write_text("customer_id,order_date\n" + "".join(
        f"k{i},2021-{month:02d}-{10 + i:02d}\n" for i in range(8) for month in range(1, 2 + i % 4)))
    with Workspace(tmp_path / "nm.duckdb") as workspace:
        workspace.ingest(path)
        result = segment_customers(workspace)
    assert not result.has_money and result.customers["m_score"].isna().all()
    assert (result.customers["fm_score"] == result.customers["f_score"]).all()
    assert result.customers["rfm_segment"].notna().all() and result.customers["lifecycle_stage"].notna().all()
    assert result.profiles["revenue"].isna().all() and result.profiles["customers"].sum() == 8
    assert any("no amounts" in note for note in result.notes)


# --- labels for every page --------------------------------------------------------------------------------------

def test_labels_are_stored_once_read_back_and_dropped_by_a_new_load(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(_SMALL)
    with Workspace(tmp_path / "labels.duckdb") as workspace:
        workspace.ingest(path)
        assert workspace.customer_labels_info() is None
        labels, note, version = customer_labels(workspace)  # none stored: the standard ones, stored now
        assert "standard segment rules" in note and workspace.customer_labels_info() == (note, version)
        expected = segment_customers(workspace).customers
        assert labels.set_index("customer_id").sort_index().astype(str).equals(
            expected.set_index("customer_id")[["rfm_segment", "lifecycle_stage"]].sort_index().astype(str))
        again, _, same = customer_labels(workspace)
        assert same == version and again.equals(labels)
        earlier = segment_customers(workspace, as_of=date(2021, 6, 30))
        other = workspace.store_customer_labels(earlier.customers[["customer_id", "rfm_segment"]], "June")
        assert other != version and workspace.customer_labels_info() == ("June", other)
        assert len(workspace.customer_labels()) == 4  # only the customers of June 2021
        workspace.ingest(path)  # a new load: the labels named the last dataset's customers
        assert workspace.customer_labels_info() is None and workspace.customer_labels().empty


def test_with_labels_puts_the_labels_after_the_id_and_keeps_the_chosen_customers():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c", "a"], "product": ["x", "y", "z", "w"]})
    labels = pd.DataFrame({"customer_id": ["a", "b"], "rfm_segment": ["Champions", "Lost"],
                           "lifecycle_stage": ["Retention", "Churned"]})
    both = with_labels(frame, labels)
    assert list(both.columns) == ["customer_id", "rfm_segment", "lifecycle_stage", "product"]
    assert both["rfm_segment"].fillna("(none)").tolist() == ["Champions", "Lost", "(none)", "Champions"]
    assert with_labels(frame, labels, segments=["Champions"])["product"].tolist() == ["x", "w"]
    assert with_labels(frame, labels, segments=["Champions"], stages=["Churned"]).empty
    assert with_labels(frame, labels, stages=[]).shape[0] == 4  # an empty choice keeps everyone


# --- Online Retail ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def online_retail(online_retail_workspace):
    workspace, _ = online_retail_workspace
    table = customer_table(workspace, OR_END, attributes=False)
    return workspace, table, segment_customers(workspace, table=table)


def test_every_online_retail_customer_has_exactly_one_segment_and_one_stage(online_retail):
    workspace, _, result = online_retail
    customers = _plain_sql(workspace, "SELECT COUNT(DISTINCT customer_id) FROM transactions")[0][0]
    assert customers == 4_372
    frame = result.customers
    assert len(frame) == customers and frame["customer_id"].is_unique
    assert frame["rfm_segment"].notna().all() and frame["lifecycle_stage"].notna().all()
    assert result.profiles["customers"].sum() == customers
    assert result.stages["customers"].sum() == customers
    assert result.profiles["share_of_customers"].sum() == pytest.approx(1.0)
    revenue = _plain_sql(workspace, "SELECT SUM(amount) FROM transactions")[0][0]
    assert result.profiles["revenue"].sum() == pytest.approx(revenue, rel=1e-9)
    # Customers without a purchase left (only returns, or returns cancelling all they bought) have no scores: every
    # customer whose rows are all returns, and some who returned everything they bought.
    only_returns = {row[0] for row in _plain_sql(workspace, "SELECT customer_id FROM transactions GROUP BY "
                                                            "customer_id HAVING bool_and(is_return)")}
    with_returns = {row[0] for row in _plain_sql(workspace, "SELECT DISTINCT customer_id FROM transactions "
                                                            "WHERE is_return")}
    unscored = set(frame.loc[frame["rfm_segment"] == RETURNS_ONLY, "customer_id"])
    assert only_returns <= unscored <= with_returns and len(only_returns) == 33 and len(unscored) == 45
    assert frame.loc[frame["customer_id"].isin(unscored), "r_score"].isna().all()
    assert frame.loc[~frame["customer_id"].isin(unscored), ["r_score", "f_score", "m_score"]].notna().all().all()


def _raw_online_retail(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, encoding="latin-1", dtype={"InvoiceNo": str, "StockCode": str})
    raw = raw[raw["CustomerID"].notna()].copy()
    raw["customer_id"] = raw["CustomerID"].astype(int).astype(str)
    raw["day"] = pd.to_datetime(raw["InvoiceDate"], format="ISO8601").dt.normalize()
    return raw


def test_rfm_values_and_scores_of_a_few_customers_match_the_raw_file(online_retail, online_retail_path):
    """Customers with no return, no identical rows and no non-positive quantity: their days since the last
    purchase, purchase days and spend come straight from the raw file, and their scores from pandas' average
    ranks of the customer table's values (computed by clm_core.customers, not by the code under test)."""
    _, table, result = online_retail
    raw = _raw_online_retail(online_retail_path)
    troubled = raw.loc[raw["InvoiceNo"].str.startswith("C") | (raw["Quantity"] <= 0) | raw.duplicated(keep=False),
                       "customer_id"]
    clean = raw[~raw["customer_id"].isin(set(troubled))]
    per_customer = clean.groupby("customer_id").agg(
        last_day=("day", "max"), purchase_days=("day", "nunique"),
        spend=("Quantity", lambda q: float((q * clean.loc[q.index, "UnitPrice"]).sum())))
    picked = per_customer.sort_values(["purchase_days", "spend"]).iloc[[0, 300, 900, 1500, 2000, -1]]
    mine = result.customers.set_index("customer_id").loc[picked.index]
    assert (mine["recency_days"] == (pd.Timestamp(OR_END) - picked["last_day"]).dt.days).all()
    assert (mine["purchase_days"] == picked["purchase_days"]).all()
    np.testing.assert_allclose(mine["purchase_value"], picked["spend"], rtol=1e-9)  # sums in another order

    bought = table[table["purchase_days"] > 0].set_index("customer_id")
    for score, values in (("r_score", -bought["recency_days"]), ("f_score", bought["purchase_days"]),
                          ("m_score", bought["purchase_value"])):
        percentile = (values.rank(method="average") - 0.5) / len(values)
        expected = pd.cut(percentile, [0, 0.2, 0.4, 0.6, 0.8, 1], right=False, labels=[1, 2, 3, 4, 5]).astype(int)
        assert mine[score].tolist() == expected.loc[picked.index].tolist(), score


def test_generated_scores_match_pandas_on_the_raw_file_for_every_customer(tmp_path):
    from clm_core.generator import write_demo_file

    path = tmp_path / "demo.csv"
    write_demo_file(400, path, seed=3)
    raw = pd.read_csv(path, dtype={"customer_id": str})
    raw["day"] = pd.to_datetime(raw["order_date"]).dt.normalize()
    end = raw["day"].max()
    per_customer = raw.groupby("customer_id").agg(last_day=("day", "max"), frequency=("day", "nunique"),
                                                  monetary=("amount", "sum"))
    expected = {}
    for score, values in (("r_score", -(end - per_customer["last_day"]).dt.days),
                          ("f_score", per_customer["frequency"]), ("m_score", per_customer["monetary"])):
        percentile = (values.rank(method="average") - 0.5) / len(values)
        expected[score] = np.floor(5 * percentile).astype(int) + 1
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(path)
        scores = segment_customers(workspace).customers.set_index("customer_id")
    assert len(scores) == len(per_customer) == 400
    for score, values in expected.items():
        assert (scores.loc[values.index, score].astype(int) == values).all(), score


def test_stage_facts_equal_the_customer_table_at_a_past_date(online_retail_workspace):
    """The timeline's facts at a date are the customer table's, column by column (so the history and the stages
    of segment_customers read the same numbers)."""
    workspace, _ = online_retail_workspace
    day = date(2011, 6, 30)
    table = customer_table(workspace, day, attributes=False)
    facts = stage_facts(purchase_timeline(workspace, day), day)
    assert len(facts) == len(table)
    for column in ("purchase_days", "tenure_days", "recency_days", "mean_gap_days", "recency_gap_ratio",
                   "spend_last_90", "spend_prior_90", "spend_trend"):
        np.testing.assert_allclose(facts[column].to_numpy(float), table[column].to_numpy(float), rtol=1e-9,
                                   atol=1e-6, equal_nan=True, err_msg=column)


def test_stage_history_counts_every_customer_and_ends_at_the_stages_of_today(online_retail):
    workspace, _, result = online_retail
    history = stage_history(workspace)
    assert history.index[0] == pd.Timestamp("2010-12-31") and history.index[-1] == pd.Timestamp(OR_END)
    assert len(history) == 13
    for when in (history.index[0], pd.Timestamp("2011-06-30"), history.index[-1]):
        assert history.loc[when].sum() == _customers_by(workspace, when.date())
    assert history.iloc[-1].to_dict() == result.stages.set_index("lifecycle_stage")["customers"].to_dict()


def test_stage_flows_conserve_customers(online_retail):
    workspace, _, result = online_retail
    start = date(2011, 6, 30)
    timeline = purchase_timeline(workspace)
    flows = stage_flows(workspace, start, OR_END, timeline=timeline)
    at_start, at_end = _customers_by(workspace, start), _customers_by(workspace, OR_END)
    assert flows.to_numpy().sum() == at_end
    assert flows.loc[NOT_YET_A_CUSTOMER].sum() == at_end - at_start
    # Whatever leaves a stage arrives in one: rows are the stages at the start, columns those at the end.
    history = stage_history(workspace, timeline=timeline)
    assert flows.drop(index=NOT_YET_A_CUSTOMER).sum(axis=1).to_dict() == history.loc[pd.Timestamp(start)].to_dict()
    assert flows.sum(axis=0).to_dict() == result.stages.set_index("lifecycle_stage")["customers"].to_dict()
    # Nobody is acquired twice, and newcomers enter no stage that needs an earlier purchase.
    assert flows.drop(index=NOT_YET_A_CUSTOMER)["Acquisition"].sum() == flows.loc["Returns only", "Acquisition"]
    assert flows.loc[NOT_YET_A_CUSTOMER, "Reactivated"] == 0


def test_online_retail_figures(online_retail):
    """The figures reported for this dataset as of its last day; a change must be explained."""
    _, _, result = online_retail
    segments = result.profiles.set_index("rfm_segment")["customers"].to_dict()
    assert segments == {"Champions": 673, "Loyal": 926, "Potential loyalists": 408, "New": 34, "Promising": 89,
                        "Need attention": 165, "About to sleep": 307, "Cannot lose them": 89, "At risk": 658,
                        "Hibernating": 348, "Lost": 630, "Returns only": 45}
    stages = result.stages.set_index("lifecycle_stage")["customers"].to_dict()
    assert stages == {"Acquisition": 252, "Development": 1438, "Retention": 871, "Reactivated": 129,
                      "At risk": 778, "Churned": 859, "Returns only": 45}


def test_a_customer_table_in_another_order_gives_the_same_answer_per_customer(online_retail):
    workspace, table, plain = online_retail
    shuffled = segment_customers(workspace, table=table.sample(frac=1, random_state=3))
    assert not shuffled.customers["customer_id"].is_monotonic_increasing
    mine = shuffled.customers.set_index("customer_id").sort_index()
    pd.testing.assert_frame_equal(mine, plain.customers.set_index("customer_id"))
    with pytest.raises(ValueError, match="disagree"):
        segment_customers(workspace, table=table.iloc[1:])


def test_model_scores_change_stages_and_clv_adds_up_by_segment(online_retail):
    workspace, table, plain = online_retail
    with_models = table.assign(risk=0.0, probability_alive=1.0, clv=1.0)
    with_models.loc[with_models.index[:100], "risk"] = 0.9
    result = segment_customers(workspace, table=with_models)
    first = result.customers.iloc[:100]
    moved = first["lifecycle_stage"].isin(["At risk"]) | first["lifecycle_stage"].isin(
        ["Acquisition", "Reactivated", "Churned", "Returns only"])
    assert moved.all()
    assert result.profiles["clv"].sum() == pytest.approx(len(table))
    assert any("risk and probability_alive" in note for note in result.notes)
    assert (plain.customers["rfm_segment"] == result.customers["rfm_segment"]).all()


# --- clusters ---------------------------------------------------------------------------------------------------

def test_kmeans_picks_k_by_silhouette_and_describes_clusters_on_online_retail(online_retail):
    _, table, _ = online_retail
    clusters = cluster_customers(table)
    assert clusters.silhouette["k"].tolist() == list(range(2, 9))
    best = clusters.silhouette.loc[clusters.silhouette["silhouette"].idxmax(), "k"]
    assert clusters.k == best
    bought = table["purchase_days"] > 0
    assert clusters.labels.loc[bought, "cluster"].notna().all() and clusters.labels.loc[~bought, "cluster"].isna().all()
    assert clusters.profiles["customers"].sum() == bought.sum()
    assert clusters.profiles["customers"].is_monotonic_decreasing  # cluster 1 is the largest
    assert clusters.profiles["description"].str.len().gt(0).all()


def test_a_chosen_k_reuses_the_best_runs_silhouettes_and_gets_the_same_clusters(online_retail):
    _, table, _ = online_retail
    best = cluster_customers(table)
    alone = cluster_customers(table, k=4)
    reused = cluster_customers(table, k=4, known_silhouettes=best.silhouette)
    assert reused.silhouette.equals(alone.silhouette)
    assert reused.silhouette["silhouette"].iloc[0] == best.silhouette.set_index("k").loc[4, "silhouette"]
    pd.testing.assert_frame_equal(reused.labels, alone.labels)
    pd.testing.assert_frame_equal(reused.profiles, alone.profiles)
    # A k the earlier run did not score is scored.
    assert cluster_customers(table, k=9, known_silhouettes=best.silhouette).silhouette.equals(
        cluster_customers(table, k=9).silhouette)


def _three_groups() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    groups = [  # recency, purchase days, purchase value
        (5, 30, 60),  # frequent, recent, low spend
        (300, 1, 300),  # infrequent, lapsed, mid spend
        (150, 4, 5000),  # occasional, fairly recent, high spend
    ]
    rows = [(recency * rng.uniform(0.9, 1.1), max(1, round(days * rng.uniform(0.9, 1.1))),
             value * rng.uniform(0.9, 1.1)) for recency, days, value in groups for _ in range(20)]
    return _table(recency_days=[r[0] for r in rows], purchase_days=[r[1] for r in rows],
                  purchase_value=[r[2] for r in rows])


def test_cluster_words_follow_the_cluster_medians():
    table = _three_groups()
    clusters = cluster_customers(table, k=3)
    words = clusters.labels["cluster_description"]
    assert words[0] == "frequent, recent, low spend"
    assert words[20] == "infrequent, lapsed, mid spend"
    assert words[40] == "occasional, fairly recent, high spend"
    assert clusters.silhouette["k"].tolist() == [3]


def test_silhouettes_of_several_labelings_equal_scikit_learns():
    from sklearn.metrics import silhouette_score

    from clm_core.segments import _silhouettes

    rng = np.random.default_rng(1)
    points = rng.normal(size=(700, 3))
    labelings = [rng.integers(0, k, 700) for k in (2, 3, 5)] + [np.r_[np.zeros(699, int), 1]]
    expected = [silhouette_score(points, labels) for labels in labelings]
    np.testing.assert_allclose(_silhouettes(points, labelings, chunk=100), expected, rtol=1e-7)
    with_outliers = rng.integers(-1, 3, 700)  # DBSCAN's -1 are left out
    kept = with_outliers >= 0
    assert _silhouettes(points, [with_outliers])[0] == pytest.approx(
        silhouette_score(points[kept], with_outliers[kept]), rel=1e-7)
    assert np.isnan(_silhouettes(points, [np.zeros(700, int)])[0])


def test_dbscan_marks_outliers():
    table = pd.concat([_three_groups(), _table(recency_days=[700.0], purchase_days=[200],
                                               purchase_value=[1e7]).assign(customer_id="far")], ignore_index=True)
    clusters = cluster_customers(table, method="dbscan", eps=0.5, min_samples=5)
    assert clusters.labels["cluster"].iloc[-1] == -1
    assert clusters.labels["cluster_description"].iloc[-1].startswith("Outliers")
    assert clusters.k == 3 and any("outliers" in note for note in clusters.notes)


def test_bad_cluster_requests_are_refused():
    table = _three_groups()
    with pytest.raises(ClmError, match="k = 60 clusters cannot be made from 60 customers"):
        cluster_customers(table, k=60)
    with pytest.raises(DataRangeError, match="at least 10 customers who bought; there are 4"):
        cluster_customers(table.iloc[:4])
    with pytest.raises(SchemaError, match="Required column basket_size missing"):
        cluster_customers(table, features=["basket_size"])
    with pytest.raises(ClmError, match="not a number column"):
        cluster_customers(table.assign(note="x"), features=["note"])
    small = cluster_customers(table.iloc[:12], k_range=(2, 20))
    assert small.silhouette["k"].max() == 11 and any("tried up to 11" in note for note in small.notes)


def test_segment_customers_adds_clusters_when_asked(online_retail):
    workspace, table, _ = online_retail
    result = segment_customers(workspace, table=table, clusters={"k": 4, "features": ["spend_trend"]})
    assert {"cluster", "cluster_description"} <= set(result.customers.columns)
    assert result.clusters.k == 4 and "spend_trend" in result.clusters.features
    assert json.dumps(result.to_dict()["clusters"], allow_nan=False)


# --- the command line -------------------------------------------------------------------------------------------

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_segments_json_out_and_bad_dates(tmp_path):
    data, db, out = tmp_path / "small.csv", tmp_path / "small.duckdb", tmp_path / "segments.csv"
    data.write_text(_SMALL)
    assert _run("ingest", str(data), "--db", str(db)).returncode == 0
    result = _run("segments", "--db", str(db), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["as_of"] == "2021-12-31" and payload["customers"] == 6
    assert sum(row["customers"] for row in payload["segments"].values()) == 6
    assert payload["segments"][RETURNS_ONLY]["revenue"] == -5
    assert {name: row["customers"] for name, row in payload["stages"].items() if row["customers"]} == {
        "Acquisition": 1, "Retention": 3, "Churned": 1, "Returns only": 1}
    written = pd.read_csv(out, encoding="utf-8-sig", dtype={"customer_id": str})
    assert written["customer_id"].tolist() == ["a", "b", "c", "d", "e", "z"]
    assert {"r_score", "f_score", "m_score", "rfm_segment", "lifecycle_stage"} <= set(written.columns)
    past = json.loads(_run("segments", "--db", str(db), "--as-of", "2021-06-30", "--json").stdout)
    assert past["customers"] == 4 and past["stages"]["At risk"]["customers"] == 2
    for as_of, message in (("2021-02-30", "--as-of takes a date like"), ("2020-06-30", "before the data start")):
        failed = _run("segments", "--db", str(db), "--as-of", as_of)
        assert failed.returncode == 2 and message in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
