"""Speed of predictive CLV.

    python benchmarks/bench_clv.py                      # BG/NBD fit on CDNOW master; full CLV on Online Retail
    python benchmarks/bench_clv.py --customers 1000000  # full CLV on 1 M generated customers (~8.7 M rows)

"Full CLV" is the customer summary (DuckDB) + BG/NBD + Gamma-Gamma (with the
standard errors) + per-customer CLV over 12 months with 90 % intervals and the
total's interval; ingest is done before timing. Stages are printed apart:
summary, fit (both models and their Hessians), scoring with intervals, and the
diagnostics (not part of the full figure). Each figure is the median of
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"

from clm_core import clv, use_one_blas_thread  # noqa: E402
from clm_core.workspace import Workspace  # noqa: E402

use_one_blas_thread()  # as the app and the command line run


def _median_seconds(step, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _full_clv(workspace: Workspace):
    summary = clv.customer_summary(workspace, unit="week")
    fitted = clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=True)
    return clv.predict_clv(summary, fitted, horizon_months=12, monthly_discount_rate=0.01).scores


def _stage_seconds(workspace: Workspace) -> str:
    from clm_core.clv_diagnostics import diagnose

    started = time.perf_counter()
    summary = clv.customer_summary(workspace, unit="week")
    summary.compressed  # noqa: B018  (the distinct customer rows, shared by fitting and scoring)
    after_summary = time.perf_counter()
    fitted = clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=True)
    after_fit = time.perf_counter()
    forecast = clv.predict_clv(summary, fitted)
    after_scoring = time.perf_counter()
    diagnose(summary, fitted)
    done = time.perf_counter()
    low, high = forecast.total_interval
    return (f"summary {after_summary - started:.2f} s, fits with standard errors {after_fit - after_summary:.2f} s, "
            f"scoring with intervals {after_scoring - after_fit:.2f} s (fit + scoring "
            f"{after_scoring - after_summary:.2f} s); diagnostics {done - after_scoring:.2f} s; total CLV "
            f"{forecast.total:,.0f} (90 % interval {low:,.0f} to {high:,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, help="benchmark full CLV on this many generated customers")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)

    if args.customers:
        from _generated import generated_workspace

        with generated_workspace(args.customers, "clv") as workspace:
            seconds, scores = _median_seconds(lambda: _full_clv(workspace), args.repeats)
            print(f"{args.customers:,} generated customers: full predictive CLV {seconds:.2f} s "
                  f"(median of {args.repeats}; target < 5 s) for {len(scores):,} customers")
            print(f"  stages: {_stage_seconds(workspace)}")
        return

    with Workspace() as workspace:
        workspace.ingest(DATA / "cdnow_master.txt.gz")
        summary = clv.customer_summary(workspace, unit="week")
        seconds, fitted = _median_seconds(
            lambda: clv.fit_clv_models(summary, purchase_model="bgnbd", with_spend=False), args.repeats)
        params = ", ".join(f"{name} {value:.3f}" for name, value in fitted.purchase.params_.items())
        print(f"CDNOW master ({len(summary.frame):,} customers): BG/NBD fit {seconds:.3f} s "
              f"(median of {args.repeats}; target < 0.3 s); {params}")
    with Workspace() as workspace:
        workspace.ingest(DATA / "online_retail.csv.gz")
        seconds, scores = _median_seconds(lambda: _full_clv(workspace), args.repeats)
        print(f"Online Retail: full predictive CLV {seconds:.2f} s (median of {args.repeats}; target < 3 s) "
              f"for {len(scores):,} customers")
        print(f"  stages: {_stage_seconds(workspace)}")


if __name__ == "__main__":
    main()
