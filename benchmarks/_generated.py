"""What the benchmarks share: the generated data set (written once per size, seeded, loaded into a fresh workspace
per run) and a timed step that prints its figure. Importing it sets what the app and the command line set at start
(BLAS on one thread, :func:`clm_core.use_one_blas_thread`), so the figures are the app's."""

from __future__ import annotations

import time
from pathlib import Path

from clm_core import use_one_blas_thread
from clm_core.generator import write_demo_file
from clm_core.workspace import Workspace

use_one_blas_thread()

OUT = Path(__file__).resolve().parent / "out"


def generated_workspace(customers: int, name: str) -> Workspace:
    """A new workspace ``out/<name>_<customers>.duckdb`` holding the generated file of that many customers
    (about 8.7 rows each, seed 1), printing how long generating (first time only) and loading took."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"generated_{customers}_customers.parquet"
    if not path.exists():
        started = time.perf_counter()
        rows = write_demo_file(customers, path, seed=1)
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s -> {path}")
    db = OUT / f"{name}_{customers}.duckdb"
    db.unlink(missing_ok=True)
    workspace = Workspace(db)
    started = time.perf_counter()
    report = workspace.ingest(path)
    print(f"ingest of {report.rows_in:,} rows: {time.perf_counter() - started:.1f} s (not part of the timings)")
    return workspace


def timed(label: str, step, target: str = ""):
    """``(step(), seconds)``, printing the label, the seconds and the target."""
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    print(f"  {label:<58} {seconds:7.2f} s" + (f"   target {target}" if target else ""), flush=True)
    return result, seconds
