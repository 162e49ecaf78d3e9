"""AppTest of the Segments page on the demo data: every customer in one segment and one stage, flows that add up."""

from pathlib import Path

import pandas as pd

from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"


def _frame(at, column: str) -> pd.DataFrame:
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def test_segments_stages_and_flows_add_up():
    at = open_page("pages/segments.py", timeout=180)
    assert not at.error
    customers = pd.read_csv(DEMO, dtype={"customer_id": str})["customer_id"].nunique()
    assert page_metrics(at)["Customers"] == f"{customers:,}"
    profiles = _frame(at, "Median days since last purchase")
    assert profiles["Customers"].sum() == customers
    stages = _frame(at, "Stage")
    assert stages["Customers"].sum() == customers
    flows = next(frame.value for frame in at.dataframe if any(str(c).startswith("Stage on") for c in frame.value))
    by_end = flows.drop(columns=flows.columns[0]).sum()
    # The flows' end is the last day: their columns are the stages the table above shows.
    assert by_end.to_dict() == {row.Stage: row.Customers for row in stages.itertuples()} | \
        {stage: 0 for stage in by_end.index if stage not in set(stages["Stage"])}


def test_clusters_by_either_method():
    at = open_page("pages/segments.py", timeout=180)
    at.radio(key="seg_cluster_method").set_value("dbscan").run()
    assert not at.exception and not at.error
    at.radio(key="seg_cluster_method").set_value("kmeans").run()
    at.selectbox(key="seg_cluster_k").set_value(4).run()
    clusters = _frame(at, "cluster") if any("cluster" in f.value.columns for f in at.dataframe) else None
    assert clusters is not None and len(clusters) == 4
