"""Names from a file reach SQL only through the quoting helper: hostile headers, through every reader path,
arrive verbatim as column names and never read or write a file."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clm_core.sql import quote_identifier
from clm_core.workspace import Workspace

SECRET = Path("/etc/hostname")
READ_SECRET = f"x\",(SELECT/**/string_agg(content,'')/**/FROM/**/read_text('{SECRET}'))/**/AS/**/\"leak"


def _hostile_names(canary: Path, *, spaces: bool) -> list[str]:
    """Header cells an attacker might write; ``spaces=False`` for space-separated files, where a name is one word."""
    names = [
        READ_SECRET,
        'no"te',
        f"x\";COPY/**/(SELECT/**/42)/**/TO/**/'{canary}';--",
        "semi;colon;DROP/**/TABLE/**/transactions;",
        "n" * 10_000,
        "dup",
        "dup",
        "it's",
    ]
    if spaces:
        names += [
            "a -- comment",
            "/* c */ b",
            f"x\" AS y FROM raw_upload; COPY (SELECT 42) TO '{canary}'; --",
            "new\nline",
            "",
        ]
    return names


def _expected(names: list[str], offset: int) -> list[str]:
    """The reader's documented cleaning: empty -> column_N, repeats -> _2."""
    seen: list[str] = []
    for position, name in enumerate(names, start=offset + 1):
        name = name or f"column_{position}"
        base, suffix = name, 2
        while name.lower() in (existing.lower() for existing in seen):
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.append(name)
    return seen


BASE = ["customer_id", "order_date", "amount"]
ROWS = [["a", "2021-01-05", "10"], ["", "2021-01-06", "3"], ["b", "2021-02-07", "4"]]


def _csv_bytes(header: list[str], delimiter: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for row in ROWS:
        writer.writerow(row + [f"v{i}" for i in range(len(header) - len(row))])
    return buffer.getvalue().encode()


def _write(kind: str, folder: Path, header: list[str]) -> Path:
    if kind.startswith("csv"):
        delimiter = {"csv_comma": ",", "csv_semicolon": ";", "csv_tab": "\t", "csv_pipe": "|"}[kind]
        path = folder / "upload.csv"
        path.write_bytes(_csv_bytes(header, delimiter))
    elif kind == "whitespace":
        path = folder / "upload.txt"
        lines = ["   ".join(header)] + ["   ".join(row + [f"v{i}" for i in range(len(header) - 3)])
                                         for row in ROWS if row[0]]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "gz":
        path = folder / "upload.csv.gz"
        path.write_bytes(gzip.compress(_csv_bytes(header, ",")))
    elif kind == "zip":
        path = folder / "upload.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner.csv", _csv_bytes(header, ","))
    elif kind == "excel":
        path = folder / "upload.xlsx"
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        sheet.append([name or None for name in header])
        for row in ROWS:
            sheet.append(row + [f"v{i}" for i in range(len(header) - 3)])
        workbook.save(path)
    elif kind == "parquet":
        path = folder / "upload.parquet"
        columns = [pa.array([row[i] if i < 3 else f"v{i - 3}" for row in ROWS]) for i in range(len(header))]
        pq.write_table(pa.Table.from_arrays(columns, names=header), path)
    return path


KINDS = ["csv_comma", "csv_semicolon", "csv_tab", "csv_pipe", "whitespace", "gz", "zip", "excel", "parquet"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_headers_arrive_verbatim_and_touch_no_file(tmp_path, kind):
    upload_folder, canary_folder = tmp_path / "upload", tmp_path / "elsewhere"
    upload_folder.mkdir()
    canary_folder.mkdir()
    canary = canary_folder / "pwned.csv"
    names = _hostile_names(canary, spaces=kind != "whitespace")
    path = _write(kind, upload_folder, BASE + names)

    (tmp_path / "ws").mkdir()
    with Workspace(tmp_path / "ws" / "ws.duckdb") as workspace:
        staged = workspace.stage_file(path)
        assert staged.columns == BASE + _expected(names, offset=3)
        report = workspace.build(staged)
        rejected = workspace.rejected_rows()
        preview = workspace.query("preview", limit=10)

    expected_rejected = 0 if kind == "whitespace" else 1  # the row with an empty customer id
    assert report.rows_rejected["missing_customer_id"] == expected_rejected
    assert report.rows_kept == 2
    assert list(rejected.columns) == ["reason", "source_row", *BASE, *_expected(names, offset=3)]
    secret = SECRET.read_text().strip() if SECRET.exists() else "\x00never"
    for frame in (rejected, preview, staged.sample):
        assert not frame.astype(str).apply(lambda column: column.str.contains(secret, regex=False)).any().any()
    assert list(canary_folder.iterdir()) == []


def test_quote_identifier_doubles_quotes_and_refuses_nul():
    assert quote_identifier('no"te') == '"no""te"'
    assert quote_identifier("") == '""'
    with pytest.raises(ValueError):
        quote_identifier("a\x00b")


def test_a_workspace_cannot_read_or_write_files_outside_its_folders(tmp_path):
    """Defence in depth: even SQL text made by mistake cannot reach the disk outside the workspace."""
    import duckdb

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a,b\n1,2\n")
    (tmp_path / "inside").mkdir()
    with Workspace(tmp_path / "inside" / "ws.duckdb") as workspace:
        with workspace._cursor() as cursor:
            for statement in (
                f"SELECT * FROM read_csv('{outside / 'secret.csv'}')",
                f"SELECT * FROM read_text('{SECRET}')",
                f"COPY (SELECT 1) TO '{outside / 'written.csv'}'",
                f"ATTACH '{outside / 'other.duckdb'}'",
                "SET enable_external_access = true",
                f"SET temp_directory = '{outside}'",
            ):
                with pytest.raises(duckdb.Error):
                    cursor.execute(statement)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
