"""Cohort table speed: Online Retail and a generated ~10 M row workspace.

    python benchmarks/bench_cohorts.py                # Online Retail
    python benchmarks/bench_cohorts.py --rows 10000000

Prints the median of 5 runs per setting (monthly classic first: the page's default view).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

from clm_core.cohorts import cohort_table  # noqa: E402
from clm_core.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.rows:
        source = OUT / f"generated_{args.rows}.csv"
        if not source.exists():
            sys.exit(f"run benchmarks/bench_ingest.py --rows {args.rows} first to make {source}")
    else:
        source = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"
    db = OUT / f"cohorts_{args.rows or 'online_retail'}.duckdb"
    if not db.exists():
        with Workspace(db) as workspace:
            workspace.ingest(source)
    with Workspace(db, read_only=True) as workspace:
        print(f"{source.name}: {workspace.dataset.report.rows_kept:,} rows")
        for period, definition in (("month", "classic"), ("month", "rolling"), ("week", "classic"),
                                   ("quarter", "classic")):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                cohort_table(workspace, period=period, definition=definition)
                times.append(time.perf_counter() - started)
            print(f"  {period:<8} {definition:<8} median {statistics.median(times):6.3f} s")


if __name__ == "__main__":
    main()
