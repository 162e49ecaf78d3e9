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


# --- files that must load, their bad rows set aside one by one ---------------------------------------------

def _ingest(path):
    from clm_core.workspace import Workspace

    workspace = Workspace(path.parent / "ws.duckdb")
    return workspace, workspace.ingest(path)


def _orders(count: int) -> list[str]:
    return [f"c{i % 97},2011-01-{i % 28 + 1:02d},{i}.5,item {i}" for i in range(count)]


def test_quoted_newlines_ragged_rows_and_an_unclosed_quote_load_row_by_row(tmp_path):
    lines = ["customer_id,order_date,amount,product_name"] + _orders(3000)
    lines[101] = 'c7,2011-01-03,2.5,"two\nlines"'           # quoted LF
    lines[202] = 'c8,2011-01-04,3.5,"two\r\nlines, CRLF"'   # quoted CRLF
    lines[1501] = "c9,Feb 1, 2003,1,extra"                  # an unquoted comma: one field too many
    lines[1602] = "c10,2011-01-02"                          # too few fields: padded, then no amount
    lines[2501] = 'c11,2011-01-09,3,"never closed'          # a quote never closed
    path = tmp_path / "messy.csv"
    path.write_bytes("\n".join(lines).encode() + b"\n")
    workspace, report = _ingest(path)
    assert report.rows_in == 3000
    assert report.rows_rejected["malformed_row"] == 2
    assert report.rows_rejected["non_numeric_amount"] == 1
    assert report.rows_kept == 2997
    assert report.rows_in == report.rows_kept + report.total_rejected
    rejected = workspace.rejected_rows("malformed_row")
    assert rejected["source_row"].tolist() == [1501, 2501]
    assert rejected["customer_id"].tolist() == ["c9,Feb 1, 2003,1,extra", 'c11,2011-01-09,3,"never closed']
    names = workspace.query("preview", limit=300)["product_name"].tolist()
    assert "two\nlines" in names and "two\r\nlines, CRLF" in names
    workspace.close()


def test_an_unclosed_quote_never_swallows_the_rows_after_it(tmp_path):
    lines = ["customer_id,order_date,amount"] + [f"c{i},2011-01-{i % 28 + 1:02d},{i}" for i in range(3000)]
    lines[1501] = 'c1,"2011-01-01,3'
    path = tmp_path / "quote.csv"
    path.write_text("\n".join(lines) + "\n")
    workspace, report = _ingest(path)
    assert (report.rows_in, report.rows_kept, report.rows_rejected["malformed_row"]) == (3000, 2999, 1)
    workspace.close()


def test_quoted_newlines_alone_keep_every_row(tmp_path):
    lines = ["customer_id,order_date,amount,note"] + [
        f'c{i},2011-02-{i % 28 + 1:02d},{i},"line one\r\nline two"' if i % 7 == 0 else f"c{i},2011-02-01,{i},plain"
        for i in range(1, 2001)
    ]
    path = tmp_path / "notes.csv"
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    workspace, report = _ingest(path)
    assert (report.rows_in, report.rows_kept) == (2000, 2000)
    workspace.close()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read(tmp_path, encoding):
    text = "customer_id\torder_date\tamount\tname\n1\t2021-01-05\t3.5\tZoë\n2\t2021-02-01\t4\t€ shop\n"
    data = text.encode(encoding)
    if encoding != "utf-16":  # the plain codec writes its own mark; the explicit ones need one
        data = ("\ufeff").encode(encoding) + data
    path = tmp_path / "utf16.txt"
    path.write_bytes(data)
    info, rows, frame = _load(path)
    assert info.encoding == "utf-16" and rows == 2
    assert frame["name"].tolist() == ["Zoë", "€ shop"]
    assert list(frame.columns) == ["customer_id", "order_date", "amount", "name"]


# --- errors a user can cause: one line, no traceback, no server path ----------------------------------------

def _one_line_without_paths(error: Exception, *paths) -> str:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message
    for path in paths:
        assert str(path) not in message
    assert "/tmp" not in message
    return message


def test_a_field_larger_than_the_csv_module_limit_loads(tmp_path):
    path = tmp_path / "huge_field.csv"
    path.write_text("customer_id,order_date,amount,note\n" + "a,2021-01-05,3," + "x" * 1_500_000 + "\n"
                    + "b,2021-01-06,4,short\n")
    info, rows, frame = _load(path)
    assert rows == 2 and len(frame.loc[0, "note"]) == 1_500_000


@pytest.mark.parametrize("damage", ["truncated_xlsx", "zip_magic_and_garbage", "truncated_zip"])
def test_damaged_archives_get_one_line(tmp_path, damage):
    import openpyxl

    path = tmp_path / "damaged.xlsx"
    if damage == "zip_magic_and_garbage":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40)
    else:
        workbook = openpyxl.Workbook()
        for day in range(1, 200):
            workbook.active.append([f"c{day}", f"2021-01-{day % 28 + 1:02d}", day])
        workbook.save(path)
        if damage == "truncated_zip":
            with zipfile.ZipFile(tmp_path / "t.zip", "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("orders.csv", "customer_id,order_date,amount\n" + "a,2021-01-01,1\n" * 5000)
            path = tmp_path / "t.zip"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as caught:
        _load(path)
    _one_line_without_paths(caught.value, tmp_path)


def test_out_of_memory_becomes_one_line(tmp_path, monkeypatch):
    from clm_core import reader

    def exhausted(*args, **kwargs):
        raise duckdb.OutOfMemoryException(f"Out of Memory Error: failed to allocate in {tmp_path}/x.tmp")

    monkeypatch.setattr(reader, "_load_text", exhausted)
    path = tmp_path / "orders.csv"
    path.write_text(ROWS)
    with pytest.raises(InputFileError, match="memory") as caught:
        _load(path)
    _one_line_without_paths(caught.value, tmp_path)


# --- caps: one upload cannot fill the disk or the memory -------------------------------------------------------

def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_MAX_UNPACKED_MB", "2")
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("orders.csv", b"0" * (8 * 1024 * 1024))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InputFileError, match="unpacks to more than") as caught:
        sniff(path, workdir=work)
    _one_line_without_paths(caught.value, tmp_path)
    assert list(work.iterdir()) == []


def test_a_gzip_bomb_stops_at_the_cap_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_MAX_UNPACKED_MB", "2")
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"customer_id,order_date,amount\n" + b"a,2021-01-05,3.50\n" * 400_000))
    work = tmp_path / "work"
    work.mkdir()
    info = sniff(path, workdir=work)
    with pytest.raises(InputFileError, match="unpacks to more than"):
        load_raw(duckdb.connect(), info, workdir=work)
    assert list(work.iterdir()) == []


def test_rows_beyond_the_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_MAX_ROWS", "100")
    path = tmp_path / "many.csv"
    path.write_text("customer_id,order_date,amount\n" + "a,2021-01-05,3.50\n" * 101)
    with pytest.raises(InputFileError, match="more than 100 rows"):
        _load(path)
    path.write_text("customer_id,order_date,amount\n" + "a,2021-01-05,3.50\n" * 100)
    assert _load(path)[1] == 100


# --- Excel: a title above the table -------------------------------------------------------------------------

def test_excel_title_rows_are_skipped_and_the_header_row_can_be_chosen(tmp_path):
    import openpyxl
    from datetime import datetime

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Orders exported from the shop"])
    sheet.append(["Period: January 2021"])
    sheet.append(["customer_id", "order_date", "amount"])
    for day in range(1, 6):
        sheet.append([f"c{day}", datetime(2021, 1, day), day * 1.5])
    path = tmp_path / "titled.xlsx"
    workbook.save(path)
    info, rows, frame = _load(path)
    assert info.header_row == 3 and rows == 5
    assert list(frame.columns) == ["customer_id", "order_date", "amount"]
    info, rows, frame = _load(path, header_row=2)
    assert info.header_row == 2 and rows == 6 and frame.columns[0] == "Period: January 2021"


def test_a_small_file_with_stray_control_characters_is_text(tmp_path):
    """Found by the fuzz suite: two control characters in a two-line file made it 'binary'."""
    path = tmp_path / "tiny.csv"
    path.write_bytes(b'"""","""",\x1f\x1e\nC0000,2000-01-01 00:00:00,0\n')
    info, rows, frame = _load(path)
    assert rows == 1 and list(frame.columns) == ["column_1", "column_2", "column_3"]


def test_parquet_names_that_collide_after_cleaning_load(tmp_path):
    """Found by the fuzz suite: X, x and X_2 became X, x_2 and X_2_2, and renaming one at a time collided."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "names.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array([1]), pa.array([2.5])],
                                        names=["X", "x", "X_2"]), path)
    info, rows, frame = _load(path)
    assert list(frame.columns) == ["X", "x_2", "X_2_2"] and frame.iloc[0].tolist() == ["a", "1", "2.5"]


@pytest.mark.parametrize("content, columns", [
    # A line break inside a quoted header name that is not the file's own line ending.
    (b'customer_id,"order\rdate",amount\nC1,2021-01-01,1\nC2,2021-01-02,2\n', ["customer_id", "order\rdate", "amount"]),
    (b'customer_id,"order\r\ndate",amount\r\nC1,2021-01-01,1\r\nC2,2021-01-02,2\r\n',
     ["customer_id", "order\r\ndate", "amount"]),
])
def test_line_breaks_inside_quoted_header_names_are_kept(tmp_path, content, columns):
    """Found by the fuzz suite: DuckDB took the quoted break for the file's line ending (no data rows left)."""
    path = tmp_path / "names.csv"
    path.write_bytes(content)
    info, rows, frame = _load(path)
    assert rows == 2 and list(frame.columns) == columns


def test_stray_quotes_that_pair_up_across_lines_are_set_aside(tmp_path):
    """Found by the fuzz suite: two lines with one stray quote each made the csv module raise."""
    path = tmp_path / "stray.csv"
    path.write_bytes(b'customer_id,order_date,amount\nC0,2000-01-01,1\nC0,2000-01-01,1",0\nC0,2000-01-02,1",0\n')
    info, rows, frame = _load(path)
    assert rows == 3 and frame.iloc[0].tolist() == ["C0", "2000-01-01", "1"]
