"""Speed and memory of recommendations.

    python benchmarks/bench_recommend.py                      # Online Retail: check, fit, everyone, one customer
    python benchmarks/bench_recommend.py --customers 1000000  # 1 M generated customers (~8.7 M rows)

Ingest is done before timing. With --customers the timed part runs in a fresh process over the workspace file,
so its peak resident memory (``resource.getrusage``) is that of recommending alone. "Recommendations for every
customer" is fitting the model (its SQL and sparse algebra) plus scoring and explaining every customer, with the
method already chosen; the offline check that chooses it is timed on its own, and "end to end" is what
``python -m clm_core recommend --out FILE`` does: check, fit, score everyone and write the CSV. The steps the
Recommendations page repeats on a control change (every customer's list again, own products left out; their next
best product; every product's top 3 partners) are timed as the median of five runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"

from clm_core import recommend  # noqa: E402
from clm_core.export import write_csv_stream  # noqa: E402
from clm_core.workspace import Workspace  # noqa: E402
from _generated import timed  # noqa: E402


def _peak_memory() -> str:
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.2f} GB"


def _median(label: str, step, target: str = "", runs: int = 5) -> float:
    """The median seconds of ``runs`` runs of ``step()``, printed with the label and the target."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    print(f"  {label:<58} {median:7.3f} s (median of {runs})" + (f"   target {target}" if target else ""),
          flush=True)
    return median


def _run(workspace: Workspace, name: str, targets: dict) -> None:
    print(name)
    evaluation, check = timed("offline check (hide 3 months, fit, both methods)",
                               lambda: recommend.evaluate(workspace), targets.get("evaluate", ""))
    print(f"    cutoff {evaluation.cutoff}, {evaluation.evaluated_customers:,} customers checked of "
          f"{evaluation.eligible_customers:,}; chosen: {evaluation.chosen}")
    for row in evaluation.table.itertuples():
        print(f"    {row.method:<10} {row.items:<12} hit rate@10 {row.hit_rate:.3f} ({row.hit_rate_low:.3f}-"
              f"{row.hit_rate_high:.3f})  recall@10 {row.recall:.3f} ({row.recall_low:.3f}-{row.recall_high:.3f})  "
              f"precision@10 {row.precision:.3f}  coverage {row.coverage:.3f}")
    model, fit = timed("fit (query, BM25, neighbours, popularity, best scores)",
                        lambda: recommend.build_recommender(workspace, evaluation=evaluation))
    table, scoring = timed("score and explain every customer (top 10)", lambda: model.recommend())
    print(f"  {'recommendations for every customer (fit + score)':<58} {fit + scoring:7.2f} s"
          + (f"   target {targets['everyone']}" if "everyone" in targets else ""))
    print(f"    {len(table):,} rows for {len(model.customers_):,} customers, {len(model.products_):,} products, "
          f"{model.similarity_.nnz:,} neighbour pairs; repeats first: {model.include_repeats_}")
    _median("everyone, leave out own products (top 10)", lambda: model.recommend(include_repeats=False),
            targets.get("leave_out", ""))
    _median("everyone's next best product (top 1, own left out)",
            lambda: model.recommend(top=1, include_repeats=False))
    OUT.mkdir(exist_ok=True)
    _, write = timed(f"CSV of {len(table):,} recommendations", lambda: write_csv_stream(table, OUT / "recs.csv"))
    print(f"  {'end to end (check, fit, score, CSV)':<58} {check + fit + scoring + write:7.2f} s")
    customers = model.customers_[:: max(1, len(model.customers_) // 100)][:100]
    _, many = timed(f"one customer at a time ({len(customers)} customers)",
                     lambda: [model.for_customer(customer) for customer in customers])
    print(f"  {'one customer, once fitted (mean)':<58} {many / len(customers):7.3f} s"
          + (f"   target {targets['one']}" if "one" in targets else ""))
    top_product = table["product_id"].value_counts().index[0]
    timed("bought together, one product", lambda: recommend.bought_together(workspace, top_product))
    timed("bought together, every product (top 10 each)", lambda: recommend.bought_together(workspace))
    _median("whole-catalogue pairs (top 3 each, in 5 orders or more)",
            lambda: recommend.bought_together(workspace, None, min_orders=5, top=3), targets.get("pairs", ""))
    print(f"  peak resident memory {_peak_memory()}" + (f"   target {targets['memory']}" if "memory" in targets
                                                          else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, help="benchmark on this many generated customers")
    parser.add_argument("--db", help=argparse.SUPPRESS)  # the timed child process of --customers
    args = parser.parse_args()
    targets = {"everyone": "< 60 s", "memory": "< 4 GB"}
    if args.db:
        with Workspace(args.db, read_only=True) as workspace:
            _run(workspace, f"{args.customers:,} generated customers", targets)
        return
    if args.customers:
        from _generated import generated_workspace

        workspace = generated_workspace(args.customers, "recommend")
        db = workspace.path
        workspace.close()
        subprocess.run([sys.executable, __file__, "--customers", str(args.customers), "--db", db], check=True)
        return
    with Workspace() as workspace:
        workspace.ingest(DATA / "online_retail.csv.gz")
        _run(workspace, "Online Retail", {"evaluate": "< 15 s", "everyone": "< 10 s", "one": "< 0.3 s",
                                          "leave_out": "< 0.2 s", "pairs": "< 0.7 s"})


if __name__ == "__main__":
    main()
