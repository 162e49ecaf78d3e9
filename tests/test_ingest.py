"""Validation and the canonical table: reasons, flags, invariants, and exact counts on Online Retail."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from clm_core.errors import MappingError
from clm_core.ingest import IngestOptions
from clm_core.mapping import ColumnMapping
from clm_core.workspace import Workspace

NOW = datetime(2026, 1, 1)


def _ingest(tmp_path, text: str, mapping: ColumnMapping | None = None, **options):
    path = tmp_path / "upload.csv"
    path.write_text(text, encoding="utf-8")
    workspace = Workspace()
    report = workspace.ingest(path, mapping, IngestOptions(now=NOW, **options))
    return workspace, report


def _dated_rows(values: list[str]) -> str:
    """A CSV with one customer per date value."""
    return "customer_id,order_date,amount\n" + "".join(f"c{i},{v},1\n" for i, v in enumerate(values))


SMALL = """customer_id,order_id,order_date,quantity,unit_price
c1,1001,2021-01-05 10:00:00,2,1.50
c1,1001,2021-01-05 10:00:00,2,1.50
,1002,2021-01-06 10:00:00,1,1.00
c2,1003,not a date,1,1.00
c2,1004,2030-01-01 10:00:00,1,1.00
c3,1005,2021-01-07 10:00:00,x,1.00
c3,1006,2021-01-08 10:00:00,1,0
c3,C1007,2021-01-09 10:00:00,-1,1.50
c4,1008,2021-02-01 10:00:00,3,2.00
"""


def test_every_row_has_one_fate(tmp_path):
    workspace, report = _ingest(tmp_path, SMALL)
    assert report.rows_in == 9
    assert report.rows_rejected == {
        "malformed_row": 0, "missing_customer_id": 1, "unparseable_date": 1, "future_date": 1,
        "non_numeric_amount": 1, "non_finite_amount": 0, "zero_price_dropped": 0, "duplicate": 1,
        "return_dropped": 0,
    }
    assert report.rows_flagged == {"return": 1, "zero_price": 1, "duplicate": 0}
    assert report.rows_kept == 4
    assert report.rows_in == report.rows_kept + report.total_rejected
    rejected = workspace.rejected_rows()
    assert rejected["source_row"].tolist() == [2, 3, 4, 5, 6]
    assert rejected.loc[0, "reason"] == "duplicate"
    kept = workspace.query("preview", limit=10)
    assert kept["amount"].tolist() == [3.0, 0.0, -1.5, 6.0]
    assert kept["is_return"].tolist() == [False, False, True, False]


def test_drop_options_reject_returns_and_zero_prices(tmp_path):
    _, report = _ingest(tmp_path, SMALL, drop_returns=True, drop_zero_price=True)
    assert report.rows_rejected["return_dropped"] == 1
    assert report.rows_rejected["zero_price_dropped"] == 1
    assert report.rows_kept == 2
    assert report.rows_in == report.rows_kept + report.total_rejected


BASKET = """Member_number,Date,itemDescription
1808,21-07-2015,tropical fruit
1808,21-07-2015,tropical fruit
1808,21-07-2015,whole milk
2552,05-01-2015,whole milk
2552,05-01-2015,whole milk
2552,05-01-2015,whole milk
"""


def test_identical_rows_with_an_order_id_are_rejected_as_double_exports(tmp_path):
    _, report = _ingest(tmp_path, SMALL)
    assert report.rows_rejected["duplicate"] == 1 and not report.duplicates_kept
    assert "order column (order_id)" in report.duplicate_reason


def test_identical_rows_in_a_basket_file_are_kept_as_purchases(tmp_path):
    workspace, report = _ingest(tmp_path, BASKET)
    assert workspace.dataset.mapping.fields == {"customer_id": "Member_number", "order_ts": "Date",
                                                "product_name": "itemDescription"}
    assert report.duplicates_kept and "no order or line number" in report.duplicate_reason
    assert report.rows_rejected["duplicate"] == 0
    assert report.rows_flagged["duplicate"] == 3  # 1808's second fruit, 2552's second and third milk
    assert report.rows_kept == 6
    lines = workspace.query("preview", limit=10)
    assert (lines["customer_id"] == "2552").sum() == 3


def test_the_switch_overrides_the_decision_both_ways(tmp_path):
    _, report = _ingest(tmp_path, BASKET, keep_duplicates=False)
    assert report.rows_rejected["duplicate"] == 3 and report.rows_kept == 3
    assert not report.duplicates_kept and report.duplicate_reason == "Your choice."
    _, report = _ingest(tmp_path, SMALL, keep_duplicates=True)
    assert report.rows_flagged["duplicate"] == 1 and report.duplicate_reason == "Your choice."


def test_a_line_number_column_is_evidence_but_a_customer_id_named_id_is_not(tmp_path):
    text = "customer,date,amount,line_no\na,2021-01-05,1,7\na,2021-01-05,1,7\n"
    _, report = _ingest(tmp_path, text)
    assert report.rows_rejected["duplicate"] == 1 and "line number column (line_no)" in report.duplicate_reason
    mapping = ColumnMapping(fields={"customer_id": "id", "order_ts": "date", "amount": "amount"})
    _, report = _ingest(tmp_path, "id,date,amount\na,2021-01-05,1\na,2021-01-05,1\n", mapping)
    assert report.duplicates_kept and report.rows_flagged["duplicate"] == 1


def test_keep_duplicates_flags_instead_of_rejecting(tmp_path):
    workspace, report = _ingest(tmp_path, SMALL, keep_duplicates=True)
    assert report.rows_rejected["duplicate"] == 0
    assert report.rows_flagged["duplicate"] == 1
    assert report.rows_kept == 5
    assert report.rows_in == report.rows_kept + report.total_rejected


def test_money_styles_are_parsed(tmp_path):
    text = 'customer_id;order_date;amount\na;2021-01-01;"£1,234.50"\nb;2021-01-02;(12.00)\nc;2021-01-03;$ 7\n'
    workspace, report = _ingest(tmp_path, text)
    assert workspace.query("preview", limit=5)["amount"].tolist() == [1234.5, -12.0, 7.0]
    text = "customer_id;order_date;amount\na;02.01.2021;1.234,50\nb;15.01.2021;3,5\n"
    workspace, report = _ingest(tmp_path, text)
    assert workspace.dataset.mapping.number_style == "comma"
    assert workspace.dataset.mapping.date_format == "dmy"
    frame = workspace.query("preview", limit=5)
    assert frame["amount"].tolist() == [1234.5, 3.5]
    assert frame["order_ts"].tolist() == [pd.Timestamp("2021-01-02"), pd.Timestamp("2021-01-15")]


@pytest.mark.parametrize(
    "values, date_format",
    [
        (["12/31/2011 08:26", "2/1/2011 10:05"], "mdy"),
        (["31/12/2011", "01/02/2011"], "dmy"),
        (["31-Dec-11", "01-FEB-11 10:05"], "dmy"),
        (["31 December 2011", "1 Feb 2011"], "dmy"),
        (["Dec 31 2011 08:26", "February 1 2011"], "mdy"),  # (a comma would need quotes in this CSV)
        (["20111231", "20110201"], "ymd_compact"),
        (["1325320560", "1296641100"], "epoch_s"),
        (["2011-12-31T08:26:00Z", "2011-02-01 10:05"], "iso"),
    ],
)
def test_date_formats(tmp_path, values, date_format):
    workspace, report = _ingest(tmp_path, _dated_rows(values))
    assert workspace.dataset.mapping.date_format == date_format
    assert report.rows_rejected["unparseable_date"] == 0
    stamps = workspace.query("preview", limit=5)["order_ts"]
    assert stamps.dt.year.tolist() == [2011, 2011]
    assert stamps.dt.month.tolist() == [12, 2]


def test_every_shape_of_a_date_format_is_read_exactly(tmp_path):
    # The most common shapes are parsed first (fast paths); every other shape still reaches the full list.
    values = ["12/31/2011 08:26"] * 3 + ["2/1/2011", "3/4/11 1:05 PM", "12-30-2011 08:26:07", " 5/6/2011   10:00 "]
    workspace, report = _ingest(tmp_path, _dated_rows(values))
    assert report.rows_rejected["unparseable_date"] == 0
    stamps = workspace.query("preview", limit=10)["order_ts"].tolist()
    assert stamps == [pd.Timestamp("2011-12-31 08:26")] * 3 + [
        pd.Timestamp("2011-02-01"), pd.Timestamp("2011-03-04 13:05"), pd.Timestamp("2011-12-30 08:26:07"),
        pd.Timestamp("2011-05-06 10:00")]


def test_rare_two_digit_years_are_not_read_as_the_year_11(tmp_path):
    # Four-digit shapes dominate the sample, so they lead the fast paths; the rare '3/4/11 1:05 PM' must still
    # be read with a two-digit year.
    values = ["12/31/2011 08:26"] * 1000 + ["2/1/2011"] * 500 + ["3/4/2011 1:05 PM"] * 300 + ["3/4/11 1:05 PM"] * 10
    workspace, report = _ingest(tmp_path, _dated_rows(values))
    assert report.rows_kept == len(values)
    stamps = workspace.query("preview", limit=len(values))["order_ts"]
    assert stamps.value_counts().to_dict() == {pd.Timestamp("2011-12-31 08:26"): 1000,
                                               pd.Timestamp("2011-02-01"): 500,
                                               pd.Timestamp("2011-03-04 13:05"): 310}


def test_iso_dates_keep_local_time_and_drop_offsets(tmp_path):
    values = ["2011-12-09T12:50:00+01:00", "2011-12-09 12:50:00-0500", " 2011-12-09T12:50:00Z ", "2011-12-09"]
    workspace, report = _ingest(tmp_path, _dated_rows(values))
    stamps = workspace.query("preview", limit=10)["order_ts"].tolist()
    assert stamps == [pd.Timestamp("2011-12-09 12:50")] * 3 + [pd.Timestamp("2011-12-09")]


def test_file_without_money_still_loads(tmp_path):
    workspace, report = _ingest(tmp_path, "customer,date,product\na,2021-01-01,p1\nb,2021-01-02,p2\n")
    assert report.rows_kept == 2
    assert not workspace.dataset.has_money
    assert any("No money column" in note for note in report.notes)


def test_no_date_column_and_text_amounts_are_explained(tmp_path):
    with pytest.raises(MappingError, match="Order date"):
        _ingest(tmp_path, "customer,colour,amount\na,red,1\nb,blue,2\n")
    with pytest.raises(MappingError, match="holds no numbers"):
        _ingest(tmp_path, "customer_id,order_date,amount\na,2021-01-01,lots\nb,2021-01-02,few\n")
    with pytest.raises(MappingError, match="could be read as a date"):
        _ingest(tmp_path, "customer_id,order_date,amount\na,soon,1\nb,later,2\n",
                ColumnMapping(fields={"customer_id": "customer_id", "order_ts": "order_date", "amount": "amount"}))


def test_a_failed_build_keeps_the_previous_dataset(tmp_path):
    workspace, first = _ingest(tmp_path, SMALL)
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,order_date,amount\na,2021-01-01,lots\nb,2021-01-02,few\n")
    with pytest.raises(MappingError, match="holds no numbers"):
        workspace.ingest(bad, options=IngestOptions(now=NOW))
    assert workspace.dataset.report == first
    assert workspace.query("dataset_totals").loc[0, "rows"] == first.rows_kept
    assert len(workspace.rejected_rows()) == first.total_rejected


def test_a_workspace_written_with_stored_tables_is_rebuilt(tmp_path):
    # Earlier versions stored transactions and rejected_rows as tables; a new load replaces them.
    path = tmp_path / "old.duckdb"
    with Workspace(path) as workspace:
        workspace._con.execute("CREATE TABLE transactions AS SELECT 1 AS customer_id")
        workspace._con.execute("CREATE TABLE rejected_rows AS SELECT 'x' AS reason")
    upload = tmp_path / "upload.csv"
    upload.write_text(SMALL)
    with Workspace(path) as workspace:
        report = workspace.ingest(upload, options=IngestOptions(now=NOW))
        assert workspace.query("dataset_totals").loc[0, "rows"] == report.rows_kept == 4
        assert len(workspace.rejected_rows()) == 5


def test_online_retail_counts_match_independent_pandas(online_retail_path, online_retail_workspace):
    workspace, report = online_retail_workspace
    raw = pd.read_csv(online_retail_path, dtype=str, keep_default_na=False)
    missing = raw["CustomerID"].str.strip() == ""
    dates = pd.to_datetime(raw["InvoiceDate"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    duplicate = raw.duplicated(keep="first")
    bad_date = ~missing & dates.isna()
    bad_money = ~missing & ~bad_date & (quantity.isna() | price.isna())
    is_duplicate = ~missing & ~bad_date & ~bad_money & duplicate
    kept = ~(missing | bad_date | bad_money | is_duplicate)

    assert report.rows_in == len(raw) == 541_909
    assert report.rows_rejected["missing_customer_id"] == missing.sum() == 135_080
    assert report.rows_rejected["unparseable_date"] == bad_date.sum()
    assert report.rows_rejected["non_numeric_amount"] == bad_money.sum()
    assert report.rows_rejected["duplicate"] == is_duplicate.sum()
    assert not report.duplicates_kept and "order column (InvoiceNo)" in report.duplicate_reason
    assert report.rows_kept == kept.sum()
    assert report.rows_in == report.rows_kept + report.total_rejected
    is_return = (quantity < 0) | (price < 0) | raw["InvoiceNo"].str.match(r"^[Cc]\d")
    assert report.rows_flagged["return"] == (kept & is_return).sum()
    assert report.rows_flagged["zero_price"] == (kept & (price == 0)).sum()

    # Every rejected row points back at its line in the file and carries that line's text.
    rejected = workspace.rejected_rows()
    for reason, mask in (("missing_customer_id", missing), ("duplicate", is_duplicate)):
        rows = rejected[rejected["reason"] == reason]
        assert rows["source_row"].tolist() == (np.flatnonzero(mask.to_numpy()) + 1).tolist()
        assert rows["Description"].fillna("").tolist() == raw.loc[mask, "Description"].tolist()

    totals = workspace.query("dataset_totals").iloc[0]
    line_revenue = np.where(is_return, -np.abs(quantity * price), quantity * price)
    assert totals["customers"] == raw.loc[kept, "CustomerID"].nunique()
    assert totals["net_revenue"] == pytest.approx(line_revenue[kept].sum(), rel=1e-9)
    assert totals["orders"] == raw.loc[kept & ~is_return, "InvoiceNo"].nunique()
    assert set(workspace.dataset.segment_columns.values()) == {"Country"}


def _cdnow_master_frame(path) -> pd.DataFrame:
    return pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False)


def test_cdnow_files_ingest_with_guessed_mapping(cdnow_master_path, cdnow_sample_workspace):
    dataset = cdnow_sample_workspace.dataset
    assert dataset.mapping.fields == {"customer_id": "column_1", "order_ts": "column_3", "quantity": "column_4",
                                      "amount": "column_5"}
    totals = cdnow_sample_workspace.query("dataset_totals").iloc[0]
    assert totals["customers"] == 2_357
    # No order id: the 21 identical lines are repeat purchases, kept and flagged.
    assert dataset.report.rows_in == dataset.report.rows_kept == 6_919
    assert dataset.report.rows_flagged["duplicate"] == 21 and dataset.report.duplicates_kept
    with Workspace() as workspace:
        report = workspace.ingest(cdnow_master_path)
        assert workspace.dataset.mapping.fields == {"customer_id": "customer_id", "order_ts": "date",
                                                    "quantity": "number_of_cds", "amount": "dollar_value"}
        assert report.rows_in == 69_659 and report.rows_flagged["duplicate"] == 255
        assert report.rows_flagged["zero_price"] == 80
        assert workspace.query("dataset_totals").iloc[0]["customers"] == 23_570


def test_cdnow_master_keeps_identical_rows_unless_switched(cdnow_master_path):
    raw = _cdnow_master_frame(cdnow_master_path)
    missing = raw["customer_id"].str.strip() == ""
    bad_date = ~missing & pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce").isna()
    quantity = pd.to_numeric(raw["number_of_cds"], errors="coerce")
    amount = pd.to_numeric(raw["dollar_value"], errors="coerce")
    bad_money = ~missing & ~bad_date & amount.isna()
    other_reasons = missing | bad_date | bad_money
    repeated = ~other_reasons & raw.duplicated(keep="first")
    with Workspace() as workspace:
        report = workspace.ingest(cdnow_master_path, options=IngestOptions(now=NOW))
        assert report.rows_kept == len(raw) - other_reasons.sum()
        assert report.rows_flagged["duplicate"] == repeated.sum() == 255
        assert report.total_rejected == other_reasons.sum()
        revenue = workspace.query("dataset_totals").iloc[0]["net_revenue"]
        assert revenue == pytest.approx(amount[~other_reasons].sum(), rel=1e-9)
        assert quantity[~other_reasons].notna().all()
        report = workspace.ingest(cdnow_master_path, options=IngestOptions(keep_duplicates=False, now=NOW))
        assert report.rows_rejected["duplicate"] == repeated.sum()
        assert report.rows_kept == len(raw) - other_reasons.sum() - repeated.sum()


def test_the_command_line_switch_and_its_report(tmp_path, capsys):
    from clm_core.cli import main

    upload = tmp_path / "basket.csv"
    upload.write_text(BASKET)
    assert main(["ingest", str(upload), "--db", str(tmp_path / "auto.duckdb")]) == 0
    assert "Identical rows: kept as purchases. Decided from the file" in capsys.readouterr().out
    assert main(["ingest", str(upload), "--db", str(tmp_path / "rejected.duckdb"), "--reject-duplicates",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows_rejected"]["duplicate"] == 3 and result["duplicate_reason"] == "Your choice."
    with pytest.raises(SystemExit):
        main(["ingest", str(upload), "--db", str(tmp_path / "x.duckdb"), "--keep-duplicates", "--reject-duplicates"])
