"""Exports are formula-safe and open in spreadsheets."""

from __future__ import annotations

import io

import openpyxl
import pandas as pd

from clm_core.export import safe_frame, to_csv_bytes, to_excel_bytes

FRAME = pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "Zoë"], "value": [1.5, -2.0, 3, 4, 5]})


def test_text_cells_cannot_start_a_formula():
    safe = safe_frame(FRAME)
    assert safe["name"].tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "Zoë"]
    assert safe["value"].tolist() == [1.5, -2.0, 3, 4, 5]  # numbers untouched


def test_csv_is_utf8_with_bom():
    data = to_csv_bytes(FRAME)
    assert data.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert back.loc[4, "name"] == "Zoë" and back.loc[1, "value"] == -2.0


def test_excel_round_trip():
    workbook = openpyxl.load_workbook(io.BytesIO(to_excel_bytes({"Customers": FRAME})))
    sheet = workbook["Customers"]
    assert sheet["A2"].value == "'=HYPERLINK(\"x\")" and sheet["A2"].data_type == "s"
    assert sheet["B3"].value == -2.0
