"""Speed of churn risk and the at-risk export.

    python benchmarks/bench_churn.py                      # Online Retail: train, check and score; exports
    python benchmarks/bench_churn.py --customers 1000000  # 1 M generated customers (~8.7 M rows)

Ingest is done before timing. "Features of every customer" is the customer table at the end of the data
(DuckDB) with the BG/NBD features; "end to end" adds the customer tables of a fixed sample of customers at the
training and check cutoffs, training and checking the three models on it, and scoring every customer; "scoring
every customer" is the scoring alone (probabilities of the model used and drivers in words for everyone).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"

from clm_core import churn  # noqa: E402
from clm_core.export import write_csv_stream, write_excel_stream  # noqa: E402
from clm_core.workspace import Workspace  # noqa: E402
from _generated import timed  # noqa: E402


def _run(workspace: Workspace, name: str, horizon_days: int, cutoff: date | None, targets: dict) -> None:
    print(name)
    _, last = churn.data_span(workspace)
    _, features = timed("features of every customer (customer table, BG/NBD)",
                         lambda: churn._features_at(workspace, last, horizon_days, with_models=True))
    result, _ = timed("train on a sample, check, score everyone (end to end)",
                       lambda: churn.churn_from_workspace(workspace, horizon_days=horizon_days, cutoff=cutoff),
                       targets.get("churn", ""))
    if result.fit is not None:
        current = result.customers
        _, scoring = timed(f"scoring every customer ({result.best_model}: risk, importance, drivers)",
                            lambda: churn._scored(result, result.fit, current))
        print(f"  {'features and scoring of every customer':<52} {features + scoring:7.2f} s"
              + (f"   target {targets['scoring']}" if "scoring" in targets else ""))
    best = result.models.get(result.best_model, {})
    print(f"  {len(result.scores):,} customers scored; trained on {result.train_rows:,}, checked on "
          f"{result.test_rows:,}; best {result.best_model} ROC AUC {best.get('roc_auc', float('nan')):.3f}, "
          f"recency baseline {result.models.get(churn.BASELINE, {}).get('roc_auc', float('nan')):.3f}")
    (value, _), _ = timed("customer value (12-month CLV)", lambda: churn.customer_value(workspace))
    table, _ = timed("at-risk list (every customer)", lambda: churn.at_risk_list(workspace, result, value=value))
    OUT.mkdir(exist_ok=True)
    timed(f"at-risk CSV of {len(table):,} customers", lambda: write_csv_stream(table, OUT / "at_risk.csv"),
           targets.get("csv", ""))
    rows, _ = timed("at-risk Excel (write-only workbook)", lambda: write_excel_stream(table, OUT / "at_risk.xlsx"))
    print(f"  Excel rows written: {rows:,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, help="benchmark on this many generated customers")
    args = parser.parse_args()
    if args.customers:
        from _generated import generated_workspace

        with generated_workspace(args.customers, "churn") as workspace:
            _run(workspace, f"{args.customers:,} generated customers, 90-day horizon", 90, None,
                 {"scoring": "< 15 s", "csv": "< 3 s"})
        return
    with Workspace() as workspace:
        workspace.ingest(DATA / "online_retail.csv.gz")
        _run(workspace, "Online Retail, 90-day horizon, check at 2011-09-10", 90, date(2011, 9, 10),
             {"churn": "< 10 s"})


if __name__ == "__main__":
    main()
