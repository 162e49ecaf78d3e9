"""DuckDB against Spark (local mode) on the same generated data: time and peak memory per stage.

    python benchmarks/bench_spark.py                      # 115,000 customers, about 1 M rows
    python benchmarks/bench_spark.py --customers 1150000  # about 10 M rows
    python benchmarks/bench_spark.py --master local[2] --conf spark.driver.memory=4g

Stages: the named queries the analytics run on all customers (cohort activity, the customer table, the purchase
histories the CLV models read, the recommendation interactions), each returned as a pandas frame (both engines),
then, on Spark, the customer table written as Parquet without reaching the driver. Peak memory is the peak
resident memory of this process (DuckDB runs inside it; PySpark's driver side too) and, for Spark, of its JVM
(driver and, in local mode, the executors), each reset before the stage (Linux: /proc/PID/clear_refs). Run it
on an otherwise idle machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._generated import OUT, generated_workspace  # noqa: E402
from clm_core.customers import data_span  # noqa: E402


def _reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the process's lifetime peak


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stage(label: str, step, pids: list[int]) -> None:
    for pid in pids:
        _reset_peak(pid)
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    peaks = "  ".join(f"{_peak_mb(pid):7.0f} MB" for pid in pids)
    rows = f"{len(result):>9,} rows" if result is not None and hasattr(result, "__len__") else " " * 14
    print(f"  {label:<34} {seconds:7.2f} s  {rows}  peak {peaks}", flush=True)


def _jvm_pid(session) -> int:
    """The JVM's process id (PySpark's gateway runs spark-submit, which becomes the java process)."""
    return int(session.sparkContext._gateway.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=115_000, help="about 8.7 rows each (default: ~1 M rows)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

    workspace = generated_workspace(args.customers, "spark")
    first, last = data_span(workspace)
    stages = {
        "cohort activity (month)": ("cohort_activity", {"period": "month"}),
        "customer table": ("customer_table", {"cutoff": last, "sample_per_mille": 1000}),
        "purchase histories (CLV input)": ("customer_purchases", {"cutoff": last}),
        "product interactions": ("customer_product_interactions", {"start": first, "end": last}),
    }
    me = os.getpid()
    print("DuckDB (peak of this process)")
    for label, (name, params) in stages.items():
        _stage(label, lambda: workspace.query(name, **params), [me])

    from clm_core.spark_engine import SparkEngine, spark_session

    folder = OUT / f"spark_{args.customers}"
    shutil.rmtree(folder, ignore_errors=True)
    print(f"Spark {args.master} (peaks of this process, then of the JVM, whose heap never shrinks back)")
    _stage("write Parquet (DuckDB)", lambda: workspace.write_parquet(folder), [me])
    settings = dict(setting.split("=", 1) for setting in args.conf)
    started = time.perf_counter()
    session = spark_session(args.master, settings)
    print(f"  {'session start':<34} {time.perf_counter() - started:7.2f} s", flush=True)
    engine = SparkEngine.from_parquet(folder, session=session)
    pids = [me, _jvm_pid(session)]
    engine.query("date_span")  # the JVM's first query compiles much of Spark: not part of any stage
    for label, (name, params) in stages.items():
        _stage(label, lambda: engine.query(name, **params), pids)
    _stage("customer table -> Parquet", lambda: engine.write_parquet(
        "customer_table", folder / "customer_table", cutoff=last, sample_per_mille=1000), pids)
    session.stop()
    workspace.close()


if __name__ == "__main__":
    main()
