"""Column guessing for known exports, date and number style detection, mapping validation."""

from __future__ import annotations

import pandas as pd
import pytest

from clm_core.errors import MappingError
from clm_core.mapping import ColumnMapping, detect_date_format, detect_number_style, guess_mapping
from tests.data.export_gallery import GALLERY


def _frame(header: list[str], *rows: list[str]) -> pd.DataFrame:
    return pd.DataFrame([list(row) for row in rows] * 20, columns=header)


def test_online_retail_ii_columns():
    sample = _frame(
        ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"],
        ["489434", "85048", "LED LIGHT", "12", "2009-12-01 07:45:00", "6.95", "13085.0", "United Kingdom"],
        ["489435", "22350", "CAT BOWL", "12", "2009-12-01 07:46:00", "2.55", "13086.0", "France"],
    )
    mapping = guess_mapping(sample)
    assert mapping.fields == {"customer_id": "Customer ID", "order_ts": "InvoiceDate", "order_id": "Invoice",
                              "quantity": "Quantity", "unit_price": "Price", "product_id": "StockCode",
                              "product_name": "Description"}
    assert mapping.segments == ["Country"]


def test_shopify_order_export():
    header = ["Name", "Email", "Financial Status", "Paid at", "Subtotal", "Total", "Created at",
              "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku", "Billing Name", "Phone"]
    sample = _frame(header,
                    ["#1001", "ann@x.com", "paid", "2023-01-05 14:32:10 -0500", "20.00", "25.00",
                     "2023-01-05 14:30:00 -0500", "2", "Mug", "10.00", "MUG-1", "Ann Lee", "+44 1"],
                    ["#1002", "bob@x.com", "refunded", "2023-01-06 10:00:00 -0500", "5.00", "9.00",
                     "2023-01-06 09:58:00 -0500", "1", "Card", "5.00", "CARD-2", "Bob Ray", "+44 2"])
    mapping = guess_mapping(sample)
    assert mapping.fields["customer_id"] == "Email"
    assert mapping.fields["order_id"] == "Name"
    assert mapping.fields["order_ts"] == "Created at"
    assert mapping.fields["unit_price"] == "Lineitem price" and mapping.fields["quantity"] == "Lineitem quantity"
    assert "amount" not in mapping.fields  # 'Total' is per order, not per line
    assert set(mapping.contacts) == {"Billing Name", "Phone"}
    assert mapping.date_format == "iso"


@pytest.mark.parametrize("sample", GALLERY, ids=[sample.name for sample in GALLERY])
def test_real_export_headers_get_the_mapping_a_careful_person_would_choose(sample):
    assert guess_mapping(_frame(sample.header, sample.row)).fields == sample.expected


def test_a_customer_name_is_the_customer_when_there_is_no_id_and_stays_a_contact():
    (kaggle,) = [sample for sample in GALLERY if sample.name == "Kaggle sample sales"]
    mapping = guess_mapping(_frame(kaggle.header, kaggle.row))
    assert mapping.fields["customer_id"] == "CUSTOMERNAME"
    assert mapping.fields["quantity"] == "QUANTITYORDERED"
    assert "CUSTOMERNAME" in mapping.contacts and "PHONE" in mapping.contacts
    mapping.validate(kaggle.header)


def test_counts_and_calendar_parts_are_never_the_customer():
    # No column says who bought: the guess must not fall back on a count, a price or a calendar part.
    header = ["QTY_ORDERED", "UNIT_PRICE_EUR", "LINE_NUMBER", "QTR_ID", "MONTH_ID", "YEAR_ID", "ORDER_DATE",
              "STORE"]
    mapping = guess_mapping(_frame(header, ["3", "9.50", "1", "2", "4", "2021", "2021-04-03", "north"]))
    assert mapping.fields["customer_id"] == "STORE"
    assert "QTR_ID" not in mapping.fields.values()


def test_headerless_cdnow_sample_by_content():
    sample = _frame([f"column_{i}" for i in range(1, 6)],
                    ["00004", "0001", "19970101", "2", "29.33"], ["00018", "0002", "19970112", "1", "14.96"])
    mapping = guess_mapping(sample)
    assert mapping.fields == {"customer_id": "column_1", "order_ts": "column_3", "quantity": "column_4",
                              "amount": "column_5"}
    assert mapping.date_format == "ymd_compact"


@pytest.mark.parametrize(
    "values, expected",
    [
        (["2011-12-09 12:50:00", "2011-01-01"], ("iso", False)),
        (["12/31/2011 08:26", "1/2/2011 10:00"], ("mdy", False)),
        (["31/12/2011", "01/02/2011"], ("dmy", False)),
        (["01/02/2011", "03/04/2011"], ("mdy", True)),
        (["01.02.2011", "03.04.2011"], ("dmy", True)),
        (["19970101", "19981231"], ("ymd_compact", False)),
        (["11-Feb-13", "09-DEC-11 08:26"], ("dmy", False)),
        (["9 December 2011", "1 Feb 2011"], ("dmy", False)),
        (["Dec 9, 2011", "February 1, 2011 10:05"], ("mdy", False)),
        (["1609459200", "1612137600"], ("epoch_s", False)),
        (["hello", "world"], (None, False)),
    ],
)
def test_date_format_detection(values, expected):
    assert detect_date_format(pd.Series(values * 5)) == expected


def test_number_style_detection():
    assert detect_number_style(pd.Series(["£1,234.50", "12.00", "3.5"])) == "dot"
    assert detect_number_style(pd.Series(["1.234,50", "12,00", "3,5"])) == "comma"


def test_validation_messages():
    columns = ["a", "b", "c"]
    with pytest.raises(MappingError, match="Order date"):
        ColumnMapping(fields={"customer_id": "a"}).validate(columns)
    with pytest.raises(MappingError, match="both point at column 'a'"):
        ColumnMapping(fields={"customer_id": "a", "order_ts": "b", "order_id": "a"}).validate(columns)
    with pytest.raises(MappingError, match="no column 'zz'"):
        ColumnMapping(fields={"customer_id": "zz", "order_ts": "b"}).validate(columns)
    ColumnMapping(fields={"customer_id": "a", "order_ts": "b", "amount": "c"}).validate(columns)
