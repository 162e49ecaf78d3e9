"""How the Spark path scales in local mode: the same job at 1 M, 10 M and 100 M rows, time per row and peaks.

    python benchmarks/bench_spark_scale.py                  # 1 M, 10 M and 100 M rows
    python benchmarks/bench_spark_scale.py --sizes 1 10     # millions of rows
    python benchmarks/bench_spark_scale.py --sizes 100 --stages cohorts customers histories
    python benchmarks/bench_spark_scale.py --master local[2] --conf spark.driver.memory=4g

The 1 M and 10 M lakes are the project's seeded generator (115,000 and 1,150,000 customers, about 8.7 rows each)
ingested by DuckDB and written as Parquet (``Workspace.write_parquet``). The 100 M lake is generated in Spark
itself from the 10 M one: ten copies of every row, each copy's customers and orders renamed (``-0`` to ``-9``),
so 11.5 M customers with the same purchase patterns, written by Spark without passing through Python.

The job, per size, in a fresh process (so each size's peaks are its own): the cohort activity by month (a few
hundred rows, collected), the customer table written as Parquet (one row per customer, nothing collected), the
CLV models' input aggregated to distinct (frequency, recency, T) histories (collected: bounded by the days of
data, not the customers), the product interactions written as Parquet, and CLV: the models fitted on the distinct
histories and every customer scored on the executors and written as Parquet. Printed per stage: seconds, seconds
per million rows, the peak resident memory of this Python process (the driver's Python side: what a collect
would blow up) and of the JVM (in local mode the driver and the executors; its heap is capped by
``spark.driver.memory``). Spark's scratch files go to ``benchmarks/out/spark_scratch``, not /tmp. Run it on an
otherwise idle machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._generated import OUT, generated_workspace  # noqa: E402
from benchmarks.bench_spark import _jvm_pid, _peak_mb, _reset_peak  # noqa: E402

CUSTOMERS_PER_MILLION_ROWS = 115_000
COPIES = 10  # the 100 M lake: this many renamed copies of the 10 M one
STAGES = ("cohorts", "customers", "histories", "interactions", "clv")


def _lake(millions: int) -> Path:
    return OUT / f"lake_{millions}m"


def _prepare_generated(millions: int) -> None:
    """The generator's data for ``millions`` of rows, as a lake folder (once)."""
    folder = _lake(millions)
    if (folder / "dataset.json").exists():
        return
    workspace = generated_workspace(CUSTOMERS_PER_MILLION_ROWS * millions, f"lake_{millions}m")
    workspace.write_parquet(folder)
    workspace.close()


def _prepare_copies(session, source: Path, target: Path) -> float:
    """``COPIES`` renamed copies of ``source``'s transactions, written by Spark to ``target`` (once); seconds."""
    from pyspark.sql import functions as F

    if (target / "dataset.json").exists():
        return 0.0
    started = time.perf_counter()
    rows = session.read.parquet(str(source / "transactions.parquet"))
    copy = session.range(COPIES).withColumnRenamed("id", "copy")
    renamed = rows.crossJoin(copy).select(*[
        F.concat(F.col(name), F.lit("-"), F.col("copy").cast("string")).alias(name)
        if name in ("customer_id", "order_id") else F.col(name)
        for name in rows.columns])
    shutil.rmtree(target, ignore_errors=True)
    renamed.write.parquet(str(target / "transactions.parquet"))
    description = json.loads((source / "dataset.json").read_text())
    description.pop("customer_labels", None)  # the copies carry no stored labels
    (target / "dataset.json").write_text(json.dumps(description))
    return time.perf_counter() - started


def _settings(args: argparse.Namespace) -> dict[str, str]:
    scratch = OUT / "spark_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    settings = {"spark.local.dir": str(scratch),
                "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={scratch}"}
    settings.update(setting.split("=", 1) for setting in args.conf)
    return settings


def _run_size(millions: int, args: argparse.Namespace) -> None:
    """The job on one lake, in this process."""
    from clm_core.spark_engine import SparkEngine, spark_session

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    started = time.perf_counter()
    session = spark_session(args.master, _settings(args))
    print(f"  {'session start':<40} {time.perf_counter() - started:7.2f} s", flush=True)
    if millions > 10:
        seconds = _prepare_copies(session, _lake(10), _lake(millions))
        if seconds:
            print(f"  {'generate in Spark (10 renamed copies)':<40} {seconds:7.2f} s", flush=True)
    engine = SparkEngine.from_parquet(_lake(millions), session=session)
    pids = [os.getpid(), _jvm_pid(session)]
    span = engine.query("date_span").iloc[0]  # also the JVM's first query, which compiles much of Spark
    first, last = span.iloc[0].date(), span.iloc[1].date()
    rows = int(engine.query("dataset_totals")["rows"].iloc[0])
    scratch = OUT / f"spark_results_{millions}m"
    shutil.rmtree(scratch, ignore_errors=True)
    stages = {
        "cohorts": ("cohort activity (month), collected", lambda: engine.query("cohort_activity", period="month")),
        "customers": ("customer table -> Parquet", lambda: engine.write_parquet(
            "customer_table", scratch / "customer_table", cutoff=last, sample_per_mille=1000)),
        "histories": ("CLV input: distinct histories, collected", lambda: engine.distinct_histories(last)),
        "interactions": ("product interactions -> Parquet", lambda: engine.write_parquet(
            "customer_product_interactions", scratch / "interactions", start=first, end=last)),
        "clv": ("CLV fitted, every customer scored -> Parquet", lambda: _clv(engine, scratch / "clv")),
    }
    print(f"  {rows:,} rows", flush=True)
    for label, step in (stages[name] for name in args.stages):
        for pid in pids:
            _reset_peak(pid)
        started = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - started
        out = f"{len(result):>9,} rows out" if result is not None else "  (Parquet)    "
        print(f"  {label:<40} {seconds:7.2f} s  {seconds / (rows / 1e6):6.3f} s per M rows  {out}  peak Python "
              f"{_peak_mb(pids[0]):6.0f} MB  JVM {_peak_mb(pids[1]):6.0f} MB", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    session.stop()


def _clv(engine, out: Path) -> None:
    """BG/NBD and Gamma-Gamma fitted on the distinct histories and spend pairs, every customer scored on the
    executors (mapInPandas) and written: :func:`clm_core.spark_analytics.clv_on_spark`."""
    from clm_core.spark_analytics import clv_on_spark

    result = clv_on_spark(engine, out)
    print(f"    {result.customers:,} customers scored from {result.histories:,} distinct histories; "
          f"total CLV {result.total:,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], choices=[1, 10, 100],
                        help="millions of rows")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                        help="which stages to run (default: all)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.one is not None:
        _run_size(args.one, args)
        return
    for millions in args.sizes:
        for needed in ([millions] if millions <= 10 else [10]):
            _prepare_generated(needed)
    for millions in args.sizes:
        print(f"{millions} M rows, Spark {args.master}", flush=True)
        command = [sys.executable, __file__, "--one", str(millions), "--master", args.master, "--stages", *args.stages,
                   *[part for setting in args.conf for part in ("--conf", setting)]]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
