"""Speed of RFM scores, segments and lifecycle stages.

    python benchmarks/bench_segments.py                       # Online Retail
    python benchmarks/bench_segments.py --customers 1150000   # 1.15 M generated customers (~10 M rows)
    python benchmarks/bench_segments.py --clusters            # also k-means (k 2..8 by silhouette) and DBSCAN

Ingest is done before timing. "Everything from the workspace" is segment_customers on its own: the customer table
and the purchase-day timeline (two queries, run side by side), RFM scores, segments and stages of every customer.
The lines above it time the parts with the customer table (and the timeline) computed once and passed in, as a
page that has them cached does. The stage history is one timeline query plus the rules at every month end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

from clm_core import segments, use_one_blas_thread  # noqa: E402
from clm_core.customers import customer_table, data_span  # noqa: E402
from clm_core.workspace import Workspace  # noqa: E402

use_one_blas_thread()  # as the app and the command line run


def _timed(label: str, step, target: str = ""):
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    print(f"  {label:<62} {seconds:7.2f} s" + (f"   target {target}" if target else ""))
    return result


def _run(workspace: Workspace, name: str, target: str, clusters: bool) -> None:
    print(name)
    first, last = data_span(workspace)
    table = _timed("customer table (once; passed in below)", lambda: customer_table(workspace, last, attributes=False))
    _timed("RFM scores (table given)", lambda: segments.rfm_scores(table))
    timeline = _timed("purchase-day timeline query", lambda: segments.purchase_timeline(workspace, last))
    _timed("RFM, segments and stages (table and timeline given)",
           lambda: segments.segment_customers(workspace, table=table, timeline=timeline))
    _timed("RFM, segments and stages (table given)", lambda: segments.segment_customers(workspace, table=table))
    result = _timed("RFM, segments and stages: everything from the workspace",
                    lambda: segments.segment_customers(workspace), target)
    history = _timed("stage history, month ends (timeline given)",
                     lambda: segments.stage_history(workspace, timeline=timeline))
    _timed("stage history from the workspace", lambda: segments.stage_history(workspace))
    start = history.index[max(len(history) - 7, 0)].date()
    _timed(f"stage flows {start} to {last} (timeline given)",
           lambda: segments.stage_flows(workspace, start, last, timeline=timeline))
    if clusters:
        found = _timed("k-means, k 2..8 by silhouette", lambda: segments.cluster_customers(table))
        print(f"    k = {found.k}; silhouette " + ", ".join(
            f"{row.k}: {row.silhouette:.3f}" for row in found.silhouette.itertuples()))
        dense = _timed("DBSCAN (eps 0.5, min_samples 10)", lambda: segments.cluster_customers(table, method="dbscan"))
        print(f"    {dense.k} dense groups; {dense.notes[-1]}")
    print(f"  {len(result.customers):,} customers as of {last}, {len(history)} month ends from {first}")
    print("  segments: " + ", ".join(f"{row.rfm_segment} {row.customers:,}" for row in result.profiles.itertuples()))
    print("  stages:   " + ", ".join(f"{row.lifecycle_stage} {row.customers:,}" for row in result.stages.itertuples()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, help="benchmark on this many generated customers")
    parser.add_argument("--clusters", action="store_true", help="also time k-means and DBSCAN")
    args = parser.parse_args()
    if args.customers:
        from _generated import generated_workspace

        with generated_workspace(args.customers, "segments") as workspace:
            _run(workspace, f"{args.customers:,} generated customers", "< 10 s", args.clusters)
        return
    with Workspace() as workspace:
        workspace.ingest(DATA / "online_retail.csv.gz")
        _run(workspace, "Online Retail", "< 1 s", args.clusters)


if __name__ == "__main__":
    main()
