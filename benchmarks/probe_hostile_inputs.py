"""Run the hostile inputs of the safety review through the command line and print what happened to each.

    python benchmarks/probe_hostile_inputs.py            # the case table (about a minute)
    python benchmarks/probe_hostile_inputs.py --bombs    # also the full-size zip and gzip bombs (23 and 26 MB)

Each case runs ``python -m clm_core`` in a fresh folder and reports the exit status, the first line of stderr
and what was checked (no traceback, no leaked file text, no file written outside the folder, counts).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"
SECRET = Path("/etc/hostname")
CANARY = Path(tempfile.gettempdir()) / "clm_probe_pwned.csv"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=_environment())


def _environment() -> dict[str, str]:
    limits = {key: value for key, value in os.environ.items() if key.startswith("CLM_")}
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **limits}


def orders(count: int = 300) -> list[list[str]]:
    return [[f"c{i % 60}", f"2011-{i % 12 + 1:02d}-{i % 27 + 1:02d}", f"{i + 1}.5"] for i in range(count)]


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def case_sql_injection(folder: Path) -> dict:
    header = "customer_id order_date amount " + (
        f"x\",(SELECT/**/string_agg(content,'')/**/FROM/**/read_text('{SECRET}'))/**/AS/**/\"leak")
    rows = "\n".join(" ".join(row + ["v"]) for row in orders())
    (folder / "f.txt").write_text(header + "\n" + rows + "\nc1 notadate 3 v\n")
    result = cli("ingest", "f.txt", "--db", "w.duckdb", "--json", cwd=folder)
    leaked = SECRET.exists() and SECRET.read_text().strip() in (result.stdout + _dump(folder / "w.duckdb"))
    return {"result": result, "check": f"file text leaked: {leaked}"}


def case_quote_in_header(folder: Path) -> dict:
    (folder / "f.csv").write_text(csv_text(["customer_id", "order_date", "amount", 'no"te'], [r + ["x"] for r in orders()]))
    return {"result": cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)}


def case_copy_to_header(folder: Path) -> dict:
    name = f"x\" AS y FROM raw_upload; COPY (SELECT 42) TO '{CANARY}'; --"
    (folder / "f.csv").write_text(csv_text(["customer_id", "order_date", "amount", name], [r + ["x"] for r in orders()]))
    result = cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)
    return {"result": result, "check": f"file written outside: {CANARY.exists()}"}


def case_failed_ingest_keeps_db(folder: Path) -> dict:
    cli("ingest", str(DEMO), "--db", "w.duckdb", cwd=folder)
    (folder / "empty.csv").write_bytes(b"")
    result = cli("ingest", "empty.csv", "--db", "w.duckdb", cwd=folder)
    kept = cli("cohorts", "--db", "w.duckdb", "--json", cwd=folder).returncode == 0
    return {"result": result, "check": f"previous dataset still there: {kept}"}


def _signal_case(folder: Path, signal_number: int) -> dict:
    import signal as signals

    cli("ingest", str(DEMO), "--db", "w.duckdb", cwd=folder)
    cli("demo", "--customers", "80000", "--out", "big.csv", "--seed", "1", cwd=folder)
    process = subprocess.Popen([sys.executable, "-m", "clm_core", "ingest", "big.csv", "--db", "w.duckdb"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_environment())
    time.sleep(1.5)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    kept = cli("cohorts", "--db", "w.duckdb", "--json", cwd=folder).returncode == 0
    name = signals.Signals(signal_number).name
    return {"result": result, "check": f"{name}: previous dataset still there: {kept}"}


def case_sigint(folder: Path) -> dict:
    return _signal_case(folder, 2)


def case_sigterm(folder: Path) -> dict:
    return _signal_case(folder, 15)


def case_sigkill(folder: Path) -> dict:
    return _signal_case(folder, 9)


def case_non_finite(folder: Path) -> dict:
    rows = orders() + [["z1", "2011-05-05", "NaN"], ["z2", "2011-05-05", "inf"], ["z3", "2011-05-05", "1e400"]]
    (folder / "f.csv").write_text(csv_text(["customer_id", "order_date", "amount"], rows))
    result = cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)
    return {"result": result, "check": "JSON valid: " + str(_valid_json(result.stdout))}


def case_huge_field(folder: Path) -> dict:
    rows = [r + ["x" * (1 << 20) if i == 0 else "short"] for i, r in enumerate(orders())]
    (folder / "f.csv").write_text(csv_text(["customer_id", "order_date", "amount", "note"], rows))
    return {"result": cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)}


def case_truncated_xlsx(folder: Path) -> dict:
    import openpyxl

    workbook = openpyxl.Workbook()
    for row in orders():
        workbook.active.append(row)
    workbook.save(folder / "f.xlsx")
    data = (folder / "f.xlsx").read_bytes()
    (folder / "f.xlsx").write_bytes(data[: len(data) // 2])
    return {"result": cli("ingest", "f.xlsx", "--db", "w.duckdb", cwd=folder)}


def case_zip_garbage(folder: Path) -> dict:
    (folder / "f.zip").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 100)
    return {"result": cli("ingest", "f.zip", "--db", "w.duckdb", cwd=folder)}


def _messy(folder: Path, name: str, line: str) -> dict:
    rows = [",".join(r) for r in orders(3000)]
    rows[1500] = line
    (folder / "f.csv").write_text("customer_id,order_date,amount\n" + "\n".join(rows) + "\n")
    return {"result": cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)}


def case_quoted_newlines(folder: Path) -> dict:
    rows = [",".join(r) + ',"two\r\nlines"' if i % 10 == 0 else ",".join(r) + ",one" for i, r in enumerate(orders(3000))]
    (folder / "f.csv").write_text("customer_id,order_date,amount,note\n" + "\n".join(rows) + "\n")
    return {"result": cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)}


def case_ragged_row(folder: Path) -> dict:
    return _messy(folder, "ragged", "c1,2011-01-01,3,4,5")


def case_unterminated_quote(folder: Path) -> dict:
    return _messy(folder, "quote", 'c1,"2011-01-01,3')


def case_unquoted_date_comma(folder: Path) -> dict:
    return _messy(folder, "date", "c1,Feb 1, 2003,3")


def case_utf16(folder: Path) -> dict:
    (folder / "f.csv").write_bytes(csv_text(["customer_id", "order_date", "amount"], orders()).encode("utf-16"))
    return {"result": cli("ingest", "f.csv", "--db", "w.duckdb", "--json", cwd=folder)}


def case_zip_bomb(folder: Path, size_mb: int = 5000) -> dict:
    with zipfile.ZipFile(folder / "f.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("f.csv", "w", force_zip64=True) as member:
            block = b"0" * (1 << 24)
            for _ in range(size_mb // 16):
                member.write(block)
    result = cli("ingest", "f.zip", "--db", "w.duckdb", "--json", cwd=folder)
    return {"result": result, "check": f"zip of {(folder / 'f.zip').stat().st_size / 1e6:.1f} MB"}


def case_gzip_bomb(folder: Path, size_mb: int = 5000) -> dict:
    line = b"c1,2011-01-01,3.5\n"
    with gzip.open(folder / "f.csv.gz", "wb", compresslevel=9) as handle:
        handle.write(b"customer_id,order_date,amount\n")
        block = line * ((1 << 24) // len(line))
        for _ in range(size_mb // 16):
            handle.write(block)
    result = cli("ingest", "f.csv.gz", "--db", "w.duckdb", "--json", cwd=folder)
    return {"result": result, "check": f"gzip of {(folder / 'f.csv.gz').stat().st_size / 1e6:.1f} MB"}


def case_excel_title_row(folder: Path) -> dict:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["Sales report 2011"])
    workbook.active.append(["customer_id", "order_date", "amount"])
    for customer, day, amount in orders():
        workbook.active.append([customer, day, float(amount)])
    workbook.save(folder / "f.xlsx")
    return {"result": cli("ingest", "f.xlsx", "--db", "w.duckdb", "--json", cwd=folder)}


def case_formula_export(folder: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from clm_core.generator import generate_transactions

    frame = generate_transactions(400, seed=1)
    frame["email"] = ["a\x0bb" if code == frame["customer_id"].iloc[0] else "\r=1+1" for code in frame["customer_id"]]
    frame.to_csv(folder / "f.csv", index=False)
    cli("ingest", "f.csv", "--db", "w.duckdb", "--contact", "email", cwd=folder)
    results = [cli("clv", "--db", "w.duckdb", "--out", out, cwd=folder) for out in ("x.csv", "x.xlsx")]
    worst = max(results, key=lambda r: r.returncode)
    if worst.returncode:
        return {"result": worst}
    cells = list(csv.reader(io.StringIO((folder / "x.csv").read_text(encoding="utf-8-sig"), newline="")))
    formulas = sum(1 for row in cells for cell in row if cell.lstrip(" \t\r\n\x0b").startswith(("=", "+", "@")))
    return {"result": worst, "check": f"csv cells a spreadsheet would run: {formulas}"}


def _dump(db: Path) -> str:
    if not db.exists():
        return ""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return str(con.execute("SELECT * FROM rejected_rows").fetchall())


def _valid_json(text: str) -> bool:
    def refuse(name):
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=refuse)
        return True
    except ValueError:
        return False


def summarise(result: subprocess.CompletedProcess) -> str:
    if result.returncode == 0:
        try:
            payload = json.loads(result.stdout)
            rejected = {k: v for k, v in payload.get("rows_rejected", {}).items() if v}
            return f"loaded: rows in {payload['rows_in']:,}, kept {payload['rows_kept']:,}, rejected {rejected}"
        except (ValueError, KeyError):
            return "done"
    lines = result.stderr.strip().splitlines()
    shape = "one line" if len(lines) == 1 and "Traceback" not in result.stderr else f"{len(lines)} lines"
    return f"exit {result.returncode} ({shape}): {lines[-1] if lines else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", action="store_true", help="also the full-size zip and gzip bombs")
    args = parser.parse_args()
    cases = {name: function for name, function in globals().items() if name.startswith("case_")}
    if not args.bombs:
        cases["case_zip_bomb"] = lambda folder: case_zip_bomb(folder, 100)
        cases["case_gzip_bomb"] = lambda folder: case_gzip_bomb(folder, 100)
    CANARY.unlink(missing_ok=True)
    print("| case | outcome | checked |\n| --- | --- | --- |")
    for name, function in cases.items():
        with tempfile.TemporaryDirectory() as folder:
            limits = {} if args.bombs or "bomb" not in name else {"CLM_MAX_UNPACKED_MB": "50"}
            os.environ.update(limits)
            started = time.perf_counter()
            outcome = function(Path(folder))
            for key in limits:
                os.environ.pop(key)
            seconds = time.perf_counter() - started
            check = outcome.get("check", "")
            print(f"| {name.removeprefix('case_').replace('_', ' ')} | {summarise(outcome['result'])} | "
                  f"{check} ({seconds:.1f} s) |")


if __name__ == "__main__":
    main()
