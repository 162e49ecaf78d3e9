"""Exports are formula-safe, keep every row and value, and open in spreadsheets."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import openpyxl
import pandas as pd
import pytest

from clm_core.cli import main
from clm_core.export import safe_frame, to_csv_bytes, to_excel_bytes
from clm_core.generator import generate_transactions

FRAME = pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "Zoë"], "value": [1.5, -2.0, 3, 4, 5]})

# What a spreadsheet skips before deciding whether a cell is a formula, and what it takes for a number.
LEADING = "".join(map(chr, range(0x21))) + "\x7f"
PLAIN_NUMBER = re.compile(r"[-+]?(\d+([.]\d*)?|[.]\d+)([eE][-+]?\d+)?")
ILLEGAL_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

SNEAKY = ["\r=1+1", "\n=1+1", " =1+1", "\t=1+1", "\x00=1", "\x0b@SUM(A1)", "\x7f-2+3", " \r\n@x", "=1+1"]
CONTROL = ["a\x0bb", "\x1b[31mred", "nul\x00", "bell\x07"]


def assert_cells_safe(cells: list[str]) -> None:
    """No text cell a spreadsheet would run: formula starts carry an apostrophe, control characters are escaped."""
    for cell in cells:
        if cell.lstrip(LEADING)[:1] in ("=", "+", "-", "@") and not PLAIN_NUMBER.fullmatch(cell):
            assert cell.startswith("'"), repr(cell)
        assert not cell.startswith(("\t", "\r", "\n")), repr(cell)
        assert not ILLEGAL_IN_XLSX.search(cell), repr(cell)


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert_cells_safe([cell for row in rows for cell in row])
    assert len({len(row) for row in rows}) == 1, "a field broke out of its row"
    return rows


def xlsx_sheets(data: bytes) -> dict[str, list[list[openpyxl.cell.Cell]]]:
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    sheets = {sheet.title: [list(row) for row in sheet.iter_rows()] for sheet in workbook.worksheets}
    assert_cells_safe([cell.value for rows in sheets.values() for row in rows for cell in row
                       if isinstance(cell.value, str)])
    assert not any(cell.data_type == "f" for rows in sheets.values() for row in rows for cell in row)
    return sheets


def test_text_cells_cannot_start_a_formula():
    safe = safe_frame(FRAME)
    assert safe["name"].tolist() == ["'=HYPERLINK(\"x\")", "+1", "-2", "'@SUM(A1)", "Zoë"]
    assert safe["value"].tolist() == [1.5, -2.0, 3, 4, 5]  # numbers untouched


@pytest.mark.parametrize("value", SNEAKY)
def test_leading_whitespace_or_control_characters_do_not_hide_a_formula(value):
    assert safe_frame(pd.DataFrame({"note": [value]}))["note"].iloc[0].startswith("'")


def test_numbers_written_as_text_stay_numbers():
    numbers = ["-10", "+3.5", "-1.2e5", ".5", "-3.", "1E-3"]
    not_numbers = ["-", "- 10", "-10 ", "-1,5", "--1", "-1e", "+.e1"]
    safe = safe_frame(pd.DataFrame({"quantity": numbers + not_numbers}))
    assert safe["quantity"].tolist() == numbers + ["'" + value for value in not_numbers]


def test_column_names_follow_the_same_rule():
    frame = pd.DataFrame([[1, 2, 3, 4]], columns=[" =cmd", "\r@x", "-10", 7])
    assert list(safe_frame(frame).columns) == ["' =cmd", "'\r@x", "-10", "7"]


def test_csv_is_utf8_with_bom():
    data = to_csv_bytes(FRAME)
    assert data.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert back.loc[4, "name"] == "Zoë" and back.loc[1, "value"] == -2.0


def test_csv_keeps_line_breaks_quotes_and_separators_inside_their_cell():
    values = [*SNEAKY, "a\rb", "a\nb", "a\r\nb", 'say "hi"', "a,b", "tab\there"]
    rows = csv_rows(to_csv_bytes(pd.DataFrame({"note": values, "n": range(len(values))})))
    assert len(rows) == len(values) + 1
    assert [row[0] for row in rows[-6:]] == values[-6:]
    assert rows[1][0] == "'\r=1+1" and rows[2][0] == "'\n=1+1"
    assert [row[1] for row in rows[1:]] == [str(n) for n in range(len(values))]


def test_csv_escapes_control_characters_but_keeps_tab_and_line_breaks():
    frame = pd.DataFrame({"note\x0b": [*CONTROL, "a\tb\r\nc"]})
    rows = csv_rows(to_csv_bytes(frame))
    assert rows[0] == ["note\\x0b"]
    assert [row[0] for row in rows[1:]] == ["a\\x0bb", "\\x1b[31mred", "nul\\x00", "bell\\x07", "a\tb\r\nc"]


def test_excel_round_trip():
    workbook = openpyxl.load_workbook(io.BytesIO(to_excel_bytes({"Customers": FRAME})))
    sheet = workbook["Customers"]
    assert sheet["A2"].value == "'=HYPERLINK(\"x\")" and sheet["A2"].data_type == "s"
    assert sheet["B3"].value == -2.0


def test_excel_neutralises_sneaky_formulas():
    printable = [value for value in SNEAKY if not ILLEGAL_IN_XLSX.search(value)]
    rows = xlsx_sheets(to_excel_bytes(pd.DataFrame({"note": printable})))["data"]
    assert len(rows) == len(printable) + 1
    assert all(row[0].value.startswith("'") for row in rows[1:])


def test_excel_escapes_control_characters_in_values_and_column_names():
    frame = pd.DataFrame({"note\x0b": CONTROL, "\x1bcode": [1, 2, 3, 4]})
    rows = xlsx_sheets(to_excel_bytes(frame))["data"]
    assert [cell.value for cell in rows[0]] == ["note\\x0b", "\\x1bcode"]
    assert [row[0].value for row in rows[1:]] == ["a\\x0bb", "\\x1b[31mred", "nul\\x00", "bell\\x07"]


def test_excel_sheet_names_are_made_valid():
    long = "Q1/Q2 [draft]: what? *all* \\ customers\x0b of 2024"
    sheets = xlsx_sheets(to_excel_bytes({long: FRAME, long + " again": FRAME, "\x07": FRAME}))
    assert len(sheets) == 3
    for title in sheets:
        assert 0 < len(title) <= 31 and not re.search(r"[\[\]:*?/\\\x00-\x1f]", title)


def test_rejected_online_retail_rows_keep_their_negative_quantities(online_retail_workspace):
    workspace, _ = online_retail_workspace
    rejected = workspace.rejected_rows()
    rows = csv_rows(to_csv_bytes(rejected))
    assert len(rows) == len(rejected) + 1
    quantity = rows[0].index("Quantity")
    assert [row[quantity] for row in rows[1:]] == rejected["Quantity"].fillna("").tolist()
    assert sum(row[quantity].startswith("-") for row in rows[1:]) > 1_000


def test_types_survive_both_formats():
    frame = pd.DataFrame({
        "customer_id": ["c1", "c2", "c3"],
        "first_order": pd.to_datetime(["2024-01-02 10:00:00", None, "2024-03-04 05:06:07"]).tz_localize("Europe/Berlin"),
        "clv": [12.5, np.nan, -3.0],
        "orders": [1, 2, 3],
        "active": [True, False, True],
        "mixed": [7, "=cmd", None],
        "segment": pd.Categorical(["@home", None, "b\x07"]),
    }, index=[5, 5, 2])
    rows = csv_rows(to_csv_bytes(frame))
    assert rows[1:] == [["c1", "2024-01-02 10:00:00", "12.5", "1", "True", "7", "'@home"],
                        ["c2", "", "", "2", "False", "'=cmd", ""],
                        ["c3", "2024-03-04 05:06:07", "-3.0", "3", "True", "", "b\\x07"]]
    sheet = xlsx_sheets(to_excel_bytes(frame))["data"]
    assert [cell.value for cell in sheet[1]] == ["c1", pd.Timestamp("2024-01-02 10:00"), 12.5, 1, True, 7, "'@home"]
    assert [cell.value for cell in sheet[2]] == ["c2", None, None, 2, False, "'=cmd", None]
    assert [cell.data_type for cell in sheet[1]] == ["s", "d", "n", "n", "b", "n", "s"]
    assert [cell.value for cell in sheet[3]] == ["c3", pd.Timestamp("2024-03-04 05:06:07"), -3.0, 3, True, None,
                                                 "b\\x07"]


@pytest.mark.parametrize("formula, written", [("\r=1+1", "'\r=1+1"), ("\x0b@SUM(A1)", "'\\x0b@SUM(A1)")])
def test_cli_exports_of_hostile_contact_columns(tmp_path, formula, written):
    transactions = generate_transactions(300, seed=1)[["customer_id", "order_date", "amount", "email"]]
    first, second = transactions["customer_id"].unique()[:2]
    transactions.loc[transactions["customer_id"] == first, "email"] = formula
    transactions.loc[transactions["customer_id"] == second, "email"] = "a\x0bb"
    source = tmp_path / "shop.csv"
    transactions.to_csv(source, index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    db = tmp_path / "shop.duckdb"
    assert main(["ingest", str(source), "--db", str(db), "--contact", "email"]) == 0

    assert main(["cohorts", "--db", str(db), "--out", str(tmp_path / "c.csv")]) == 0
    csv_rows((tmp_path / "c.csv").read_bytes())

    assert main(["clv", "--db", str(db), "--out", str(tmp_path / "x.xlsx")]) == 0
    rows = xlsx_sheets((tmp_path / "x.xlsx").read_bytes())["data"]
    email = [cell.value for cell in rows[0]].index("email")  # after the id, its segment and stage
    emails = {row[0].value: row[email].value for row in rows[1:]}
    assert len(emails) == 300 and email == 3
    # XML end-of-line handling reads a carriage return stored in .xlsx back as a line feed.
    assert emails[first] == written.replace("\r", "\n") and emails[second] == "a\\x0bb"

    assert main(["clv", "--db", str(db), "--out", str(tmp_path / "x.csv")]) == 0
    rows = csv_rows((tmp_path / "x.csv").read_bytes())
    emails = {row[0]: row[rows[0].index("email")] for row in rows[1:]}
    assert len(emails) == 300
    assert emails[first] == written and emails[second] == "a\\x0bb"


def test_excel_refuses_more_rows_than_a_sheet_holds(monkeypatch):
    """No row is dropped silently: a frame longer than a sheet is refused with a sentence, not cut."""
    from clm_core import export
    from clm_core.errors import DataRangeError

    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 3)
    with pytest.raises(DataRangeError, match="download the CSV"):
        export.to_excel_bytes({"list": pd.DataFrame({"a": range(4)})})
    assert export.to_excel_bytes({"list": pd.DataFrame({"a": range(3)})})
