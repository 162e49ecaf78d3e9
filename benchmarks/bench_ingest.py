"""Ingest + validation + summary, end to end, against DuckDB's plain read_csv of the same file.

    python benchmarks/bench_ingest.py                 # Online Retail (median of 3)
    python benchmarks/bench_ingest.py --rows 10000000 # generated file of about 10 M rows
    python benchmarks/bench_ingest.py --us-dates      # Online Retail with dates written 12/1/2010 8:26

Prints seconds and the peak resident memory of each run (each run is a fresh
subprocess, so peaks do not carry over).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"
OUT = ROOT / "benchmarks" / "out"
LINES_PER_CUSTOMER = 8.7  # measured mean of the generator's default story


def _peak_memory_mb() -> float:
    """Peak resident memory of this process image (VmHWM restarts at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one_run(kind: str, path: str) -> None:
    """Child process: time one run and print JSON with seconds and peak memory."""
    import duckdb

    from clm_core.summary import dataset_summary, revenue_by_month
    from clm_core.workspace import Workspace

    db = OUT / f"bench_{kind}.duckdb"
    db.unlink(missing_ok=True)
    start = time.perf_counter()
    if kind == "count":
        duckdb.connect().execute("SELECT count(*) FROM read_csv(?)", [path]).fetchall()
    elif kind == "plain":
        # What "reading the file" means for us: the whole typed table in a database file, closed (as the
        # workspace is closed in the timed ingest below).
        with duckdb.connect(str(db)) as con:
            con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [path])
    else:
        with Workspace(db) as workspace:
            report = workspace.ingest(path)
            dataset_summary(workspace)
            revenue_by_month(workspace)
        print(json.dumps({"rows_in": report.rows_in, "rows_kept": report.rows_kept}), file=sys.stderr)
    seconds = time.perf_counter() - start
    peak_mb = _peak_memory_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def _measure(kind: str, path: Path, repeats: int) -> tuple[float, float]:
    seconds, peaks = [], []
    for _ in range(repeats):
        result = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True,
                                text=True, check=True)
        payload = json.loads(result.stdout)
        seconds.append(payload["seconds"])
        peaks.append(payload["peak_mb"])
        if result.stderr.strip():
            print("   ", result.stderr.strip())
    return statistics.median(seconds), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, help="benchmark a generated file of about this many rows")
    parser.add_argument("--us-dates", action="store_true",
                        help="benchmark Online Retail rewritten with month-first dates (12/1/2010 8:26)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _one_run(*args.child)
        return
    OUT.mkdir(exist_ok=True)
    if args.rows:
        from clm_core.generator import write_demo_file

        path = OUT / f"generated_{args.rows}.csv"
        if not path.exists():
            started = time.perf_counter()
            rows = write_demo_file(int(args.rows / LINES_PER_CUSTOMER), path, seed=1)
            print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s -> {path}")
        label = f"generated ~{args.rows:,} rows"
    elif args.us_dates:
        import duckdb

        path, label = OUT / "online_retail_us_dates.csv.gz", "Online Retail, month-first dates (541,909 rows)"
        if not path.exists():
            duckdb.execute(
                "COPY (SELECT * REPLACE (strftime(InvoiceDate, '%-m/%-d/%Y %-H:%M') AS InvoiceDate) "
                f"FROM read_csv('{ONLINE_RETAIL}')) TO '{path}' (HEADER, COMPRESSION gzip)"
            )
    else:
        path, label = ONLINE_RETAIL, "Online Retail (541,909 rows)"
    count, count_peak = _measure("count", path, args.repeats)
    plain, plain_peak = _measure("plain", path, args.repeats)
    full, full_peak = _measure("full", path, args.repeats)
    print(f"{label}: median of {args.repeats}")
    print(f"  DuckDB count(*) of read_csv   {count:7.2f} s   peak {count_peak:7.0f} MB")
    print(f"  DuckDB read_csv into a table  {plain:7.2f} s   peak {plain_peak:7.0f} MB")
    print(f"  ingest + validation + summary {full:7.2f} s   peak {full_peak:7.0f} MB   ratio {full / plain:.2f}x")


if __name__ == "__main__":
    main()
