"""File sniffing and raw loading: formats, encodings, delimiters, headers, bad files."""

from __future__ import annotations

import gzip
import zipfile

import duckdb
import pandas as pd
import pytest

from clm_core.errors import InputFileError
from clm_core.reader import RAW_TABLE, load_raw, sniff

ROWS = "customer_id;order_date;amount\n1;2021-01-05;3,50\n2;2021-02-01;4,00\n"


def _load(path, **kwargs):
    con = duckdb.connect()
    info = sniff(path, workdir=path.parent)
    rows = load_raw(con, info, workdir=path.parent, **kwargs)
    return info, rows, con.execute(f"SELECT * FROM {RAW_TABLE} ORDER BY rowid").df()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_encodings_are_detected_and_text_survives(tmp_path, encoding):
    text = "customer_id,name,order_date,amount\n1,Zoë Müller,2021-01-05,3.50\n2,€ shop,2021-02-01,4\n"
    if encoding == "latin-1":
        text = text.replace("€", "£")
    path = tmp_path / "file.csv"
    path.write_bytes(text.encode(encoding))
    info, rows, frame = _load(path)
    assert rows == 2
    assert list(frame.columns[:4]) == ["customer_id", "name", "order_date", "amount"]
    assert frame.loc[0, "name"] == "Zoë Müller"
    assert frame.loc[1, "name"] == ("£ shop" if encoding == "latin-1" else "€ shop")
    assert info.encoding == {"utf-8-sig": "utf-8"}.get(encoding, encoding)


def test_gzipped_windows_1252_is_unpacked_then_transcoded(tmp_path):
    path = tmp_path / "file.csv.gz"
    path.write_bytes(gzip.compress("customer_id,name,order_date,amount\n1,€ shop,2021-01-05,3.50\n".encode("cp1252")))
    info, rows, frame = _load(path)
    assert (info.encoding, info.compression, rows) == ("cp1252", "gzip", 1)
    assert frame.loc[0, "name"] == "€ shop"
    assert sorted(item.name for item in tmp_path.iterdir()) == ["file.csv.gz"], "working copies are removed"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters(tmp_path, delimiter):
    path = tmp_path / "file.txt"
    path.write_text(ROWS.replace(";", delimiter).replace("3,50", "3.50").replace("4,00", "4"))
    info, rows, frame = _load(path)
    assert info.delimiter == delimiter and rows == 2
    assert frame["amount"].tolist() == ["3.50", "4"]


def test_gzip_and_zip(tmp_path):
    gz = tmp_path / "file.csv.gz"
    gz.write_bytes(gzip.compress(ROWS.encode()))
    assert _load(gz)[1] == 2
    archive = tmp_path / "file.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("export/file.csv", ROWS)
    info, rows, frame = _load(archive)
    assert info.compression == "zip" and rows == 2 and frame.loc[0, "amount"] == "3,50"


def test_large_gzip_keeps_file_order_and_a_damaged_one_is_explained(tmp_path):
    # Big enough (about 6 MB unpacked) that DuckDB reads the unpacked copy with several threads.
    lines = ["customer_id,order_date,amount"] + [f"c{i},2021-01-{i % 28 + 1:02d},{i}.25" for i in range(250_000)]
    packed = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)
    path = tmp_path / "big.csv.gz"
    path.write_bytes(packed)
    info, rows, frame = _load(path)
    assert rows == 250_000
    assert frame["customer_id"].tolist() == [f"c{i}" for i in range(250_000)]
    assert not list(tmp_path.glob("decompressed*")), "the unpacked copy is removed after loading"

    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.raises(InputFileError, match="damaged"):
        _load(damaged)


def test_excel_sheets_can_be_stacked(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"customer": ["a", "b"], "date": ["2021-01-01", "2021-01-02"], "amount": [1, 2]}).to_excel(
            writer, sheet_name="2021", index=False)
        pd.DataFrame({"customer": ["c"], "date": ["2022-01-01"], "amount": [3]}).to_excel(
            writer, sheet_name="2022", index=False)
    info = sniff(path)
    assert info.kind == "excel" and info.sheets == ["2021", "2022"]
    assert _load(path)[1] == 2
    _, rows, frame = _load(path, sheets=["2021", "2022"])
    assert rows == 3 and frame["customer"].tolist() == ["a", "b", "c"]


def test_parquet(tmp_path):
    path = tmp_path / "file.parquet"
    pd.DataFrame({"customer_id": ["1", "2"], "order_date": pd.to_datetime(["2021-01-01 00:00", "2021-03-04 10:00"]),
                  "amount": [1.5, 2.0]}).to_parquet(path)
    info, rows, frame = _load(path)
    assert info.kind == "parquet" and rows == 2
    assert frame.loc[1, "order_date"].startswith("2021-03-04 10:00")


def test_headerless_whitespace_file(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_bytes(b" 00004 0001 19970101  2   29.33\r\n 00004 0001 19970118  2   29.73\r\n")
    info, rows, frame = _load(path)
    assert info.kind == "whitespace" and not info.header and rows == 2
    assert frame.iloc[0, :5].tolist() == ["00004", "0001", "19970101", "2", "29.33"]


def test_cdnow_master_header_and_rows(cdnow_master_path, tmp_path):
    info, rows, frame = _load(cdnow_master_path)
    assert info.header and info.columns == ["customer_id", "date", "number_of_cds", "dollar_value"]
    assert rows == 69_659
    assert frame.loc[0, "customer_id"] == "00001"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"   \n\n", "no text"),
        (b"customer_id,order_date,amount\n", "header row but no data rows"),
        (bytes(range(256)) * 50, "binary"),
        (b"customer_id\n1\n2\n3\n", "only one column"),
    ],
)
def test_bad_files_get_specific_messages(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        _load(path)


def test_a_row_with_too_many_fields_is_set_aside_not_the_file(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n" + "1,2,3\n" * 10 + "4,5,6,7,8\n")
    info, rows, frame = _load(path)
    assert rows == 12  # every data record keeps its place
    assert frame.iloc[-1, 0] == "4,5,6,7,8" and frame.iloc[-1, 1:].isna().all()
