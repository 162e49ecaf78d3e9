"""AppTest of the Data page: the demo, uploads (names, Excel header row, errors) and the session's files."""

from __future__ import annotations

import gc
import io
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import app_state
from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_NAME = "**x** [link](http://evil.example) ![i](x.png).csv"
SHOP_CSV = (b"customer_id,order_id,order_date,amount\n"
            b"a,1,2021-01-05,10\nb,2,2021-01-09,20\na,3,2021-02-11,15\nc,4,2021-03-02,30\nb,5,2021-03-20,25\n")


def _app() -> AppTest:
    return open_page(None, timeout=60)


def _upload(at: AppTest, name: str, content: bytes, mime: str = "text/csv") -> AppTest:
    at.file_uploader(key="data_upload").set_value((name, content, mime)).run()
    assert not at.exception, at.exception
    return at


def _markdown_texts(at: AppTest) -> list[str]:
    """Every text the page shows through an element that renders Markdown (values and labels)."""
    texts = [element.value for kind in ("markdown", "caption", "header", "subheader", "title",
                                        "success", "error", "warning", "info")
             for element in getattr(at, kind)]
    texts += [element.label for kind in ("metric", "expander", "button", "number_input", "selectbox",
                                        "multiselect", "checkbox")
              for element in getattr(at, kind)]
    return texts


def test_data_page_loads_demo_and_shows_summary():
    at = _app()
    demo = pd.read_csv(ROOT / "data" / "demo_transactions.csv.gz", dtype=str)
    metrics = page_metrics(at)
    assert metrics["Rows in the file"] == f"{len(demo):,}"
    assert metrics["Customers"] == f"{demo['customer_id'].nunique():,}"
    assert metrics["Orders"] == f"{demo['order_id'].nunique():,}"
    assert not at.error


def test_load_demo_button_reloads_without_error():
    at = _app()
    at.button(key="data_load_demo").click().run()
    assert not at.exception, at.exception
    assert any("Demo data loaded" in s.value for s in at.success)


# --- file names and file content are shown as text --------------------------------------------------------------
def test_a_file_name_made_of_markdown_is_shown_as_text():
    at = _upload(_app(), HOSTILE_NAME, SHOP_CSV)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Rows in the file"] == "5"
    escaped = app_state.plain(HOSTILE_NAME)
    assert [header.value for header in at.header] == [escaped]
    assert any(escaped in success.value for success in at.success)
    _assert_nothing_renders_as_markdown(at)
    at.switch_page("pages/clv.py").run()
    assert not at.exception, at.exception
    assert at.button(key="clv_calc_prefill").label == f"Fill in from {escaped}"
    _assert_nothing_renders_as_markdown(at)


def test_the_sidebar_shows_the_dataset_name_as_text(tmp_path):
    upload = tmp_path / "shop.csv"
    upload.write_bytes(SHOP_CSV)
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(upload, original_name=HOSTILE_NAME)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["session_space"] = space
    at.session_state["demo_checked"] = True
    at.run()
    assert not at.exception, at.exception
    (name,) = at.sidebar.markdown
    assert name.value.startswith(f"**{app_state.plain(HOSTILE_NAME)}**")
    _assert_nothing_renders_as_markdown(at)


def test_file_content_quoted_in_an_error_is_shown_as_text():
    content = b"customer_id,order_date\na,[click](http://evil.example)\nb,**soon**\n"
    at = _upload(_app(), "shop.csv", content)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "could be read as a date" in error.value
    assert app_state.plain("'[click](http://evil.example)'") in error.value
    _assert_nothing_renders_as_markdown(at)


def _assert_nothing_renders_as_markdown(at: AppTest) -> None:
    for text in _markdown_texts(at):
        for raw in ("**x**", "[link](", "![i](", "[click](", "**soon**"):
            assert raw not in text, text


# --- uploads are stored under generated names in the session's folder ---------------------------------------------
def test_an_upload_named_to_climb_out_of_the_session_folder_stays_inside(session_root, tmp_path):
    target = tmp_path / "outside" / "evil.csv"
    target.parent.mkdir()
    name = "../" * 12 + str(target).lstrip("/")
    at = _upload(_app(), name, SHOP_CSV)
    assert not target.exists()
    space = at.session_state["session_space"]
    assert [path.parent for path in space.uploads.iterdir()] == [space.uploads]
    outside = [path for path in session_root.rglob("*") if space.folder not in path.parents and path != space.folder]
    assert outside == []
    # The name is still shown, as text, so users recognise their file.
    assert any(app_state.plain(name) in caption.value for caption in at.caption)
    at.button(key="data_build").click().run()
    assert page_metrics(at)["Rows in the file"] == "5"


def test_a_sessions_folder_is_removed_when_the_session_ends(session_root):
    at = _app()
    folder = at.session_state["session_space"].folder
    assert folder.parent == session_root
    assert (folder / "workspace.duckdb").exists()
    del at
    gc.collect()
    assert not folder.exists()


# --- Excel ------------------------------------------------------------------------------------------------------
def _workbook_with_a_title() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Orders"
    sheet.append(["Orders exported on 1 April 2021"])
    sheet.append([])
    sheet.append(["customer_id", "order_id", "order_date", "amount"])
    for row in [("a", 1, datetime(2021, 1, 5), 10.0), ("b", 2, datetime(2021, 1, 9), 20.0),
                ("a", 3, datetime(2021, 2, 11), 15.0), ("c", 4, datetime(2021, 3, 2), 30.0)]:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _header_row(at: AppTest):
    (number_input,) = [element for element in at.number_input if element.label == "Header row"]
    return number_input


def _column_choices(at: AppTest) -> list[str]:
    return list(at.selectbox[0].options)


def test_excel_header_row_is_detected_and_can_be_changed():
    at = _upload(_app(), "orders.xlsx", _workbook_with_a_title(), XLSX)
    header_row = _header_row(at)
    assert header_row.value == 3
    assert "we detected row 3" in header_row.help
    assert "customer_id" in _column_choices(at)
    assert any("column names in row 3" in caption.value for caption in at.caption)

    _header_row(at).set_value(1).run()
    assert not at.exception, at.exception
    assert any("column names in row 1" in caption.value for caption in at.caption)
    assert "customer_id" not in _column_choices(at)
    assert "we detected row 3" in _header_row(at).help

    _header_row(at).set_value(3).run()
    assert "customer_id" in _column_choices(at)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Rows in the file"] == "4"
    assert page_metrics(at)["Customers"] == "3"


def test_a_header_row_below_the_data_gets_a_message_and_can_be_undone():
    at = _upload(_app(), "orders.xlsx", _workbook_with_a_title(), XLSX)
    _header_row(at).set_value(40).run()
    assert not at.exception, at.exception
    assert at.error
    _header_row(at).set_value(3).run()
    assert not at.error
    assert "customer_id" in _column_choices(at)


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a workbook", b"customer_id,order_date\na,2021-01-01\n"])
def test_a_damaged_workbook_gets_a_message(content):
    at = _upload(_app(), "broken.xlsx", content, XLSX)
    assert at.error
    assert "Excel" in at.error[0].value or "xlsx" in at.error[0].value


# --- identical rows: decided from the file, one switch ------------------------------------------------------------
BASKET_CSV = (b"Member_number,Date,itemDescription\n1808,21-07-2015,tropical fruit\n1808,21-07-2015,tropical fruit\n"
              b"2552,05-01-2015,whole milk\n2552,05-01-2015,whole milk\n2552,05-01-2015,whole milk\n")
ORDERS_CSV = SHOP_CSV + b"b,5,2021-03-20,25\n"


def _duplicates_box(at: AppTest):
    (box,) = [element for element in at.checkbox if element.label == "Keep identical rows as separate purchases"]
    return box


def test_identical_rows_in_a_basket_file_are_kept_and_the_decision_is_shown():
    at = _upload(_app(), "groceries.csv", BASKET_CSV)
    assert _duplicates_box(at).value is True
    assert any("Suggested for identical rows: keep" in caption.value for caption in at.caption)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Rows kept"] == "5"
    # 1808's second fruit, 2552's second and third milk.
    assert any(caption.value.startswith("Identical rows: 3 kept as separate purchases. Decided from the file")
               for caption in at.caption)

    _duplicates_box(at).uncheck().run()
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Rows kept"] == "2"
    assert any(caption.value.startswith("Identical rows: 3 rejected as double exports. Your choice")
               for caption in at.caption)


def test_identical_rows_with_an_order_column_are_rejected_by_default():
    at = _upload(_app(), "orders.csv", ORDERS_CSV)
    assert _duplicates_box(at).value is False
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Rows rejected"] == "1"
    assert any(caption.value.startswith("Identical rows: 1 rejected as double exports. Decided from the file")
               and "order column" in caption.value for caption in at.caption)


def test_a_customer_known_by_name_is_offered_as_a_contact_column_too():
    content = (b"ORDERNUMBER,QUANTITYORDERED,PRICEEACH,SALES,ORDERDATE,QTR_ID,CUSTOMERNAME,PHONE\n"
               b"10107,30,95.7,2871,2/24/2003 0:00,1,Land of Toys Inc.,2125557818\n"
               b"10121,34,81.35,2765.9,5/7/2003 0:00,2,Reims Collectables,26.47.1555\n")
    at = _upload(_app(), "sales_data_sample.csv", content)
    assert at.selectbox[0].value == "CUSTOMERNAME"  # Customer ID, the first field
    contacts = [element for element in at.multiselect if element.label == "Contact columns"][0]
    assert contacts.value == ["CUSTOMERNAME", "PHONE"]
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert page_metrics(at)["Customers"] == "2"
