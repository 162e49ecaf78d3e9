"""AppTest of the Churn risk page on the demo data and on Telco."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from clm_core import churn
from clm_core.workspace import Workspace
from tests.app.helpers import open_page, page_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo_transactions.csv.gz"


def _page() -> AppTest:
    return open_page("pages/churn.py", timeout=180)


def test_defaults_show_the_list_and_the_model_check(tmp_path):
    at = _page()
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(DEMO)
        horizon, _ = churn.suggest_horizon(workspace)
        expected = churn.churn_from_workspace(workspace, horizon_days=horizon)
    metrics = page_metrics(at)
    assert metrics["Customers scored"] == f"{len(expected.scores):,}"
    best = expected.models[expected.best_model]["roc_auc"]
    assert metrics["ROC AUC of the model used"] == f"{best:.2f}"
    assert int(metrics["Customers on the list"].replace(",", "")) > 0
    assert [button.label for button in at.get("download_button")][:2] == [
        "Download the at-risk list (CSV)", "Download the at-risk list (Excel)"]
    assert not any("Model" in frame.value for frame in at.dataframe)  # the closed tab does not run
    at.session_state["churn_tab"] = "How good is the prediction?"
    at.run()
    model_rows = next(frame.value for frame in at.dataframe if "Model" in frame.value)
    assert list(model_rows["Model"]) == ["Logistic regression", "Random forest", "Gradient boosting",
                                         "Recency only (baseline)"]


def test_threshold_and_filters_change_the_list():
    at = _page()
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("churn_threshold"))).set_value(0.9).run()
    high = int(page_metrics(at)["Customers on the list"].replace(",", ""))
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("churn_threshold"))).set_value(0.1).run()
    low = int(page_metrics(at)["Customers on the list"].replace(",", ""))
    assert high < low
    at.multiselect(key="churn_bands").set_value(["High"]).run()
    assert not at.exception
    assert int(page_metrics(at)["Customers on the list"].replace(",", "")) <= low


def test_the_longest_horizon_offered_is_the_longest_the_data_can_train_and_check(tmp_path):
    at = _page()
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        workspace.ingest(DEMO)
        first, last = churn.data_span(workspace)
    span = (last - first).days  # 730 on the demo
    key = next(s.key for s in at.select_slider if s.key.startswith("churn_horizon"))
    slider = at.select_slider(key=key)
    # A horizon trains on the horizon before the check date and checks on the one after: twice it, and a day.
    longest = (span - 1) // 2 // 15 * 15
    assert slider.options[-1] == f"{longest} days"
    assert slider.options[:3] == ["15 days", "30 days", "45 days"]
    slider.set_value(longest).run()
    assert not at.exception
    assert not at.error


def _chart_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def test_the_gap_chart_is_made_only_while_its_box_is_open():
    at = _page()
    gaps = "How long do repeat customers usually wait between purchases?"
    assert gaps not in _chart_titles(at)
    at.session_state["churn_why"] = True  # the user opens "Why N days?"
    at.run()
    assert not at.exception
    assert gaps in _chart_titles(at)
    at.session_state["churn_why"] = False
    at.run()
    assert gaps not in _chart_titles(at)


def test_a_campaign_that_cannot_pay_is_said(tmp_path):
    at = _page()
    assert not any("pays for itself" in info.value for info in at.info)  # the demo's list pays at the defaults
    at.number_input(key="churn_cost").set_value(1_000_000.0).run()
    assert not at.exception
    message = next(info.value for info in at.info if "pays for itself" in info.value)
    assert message.startswith("At 1,000,000.00 per contact and a 10% success rate, no list")
    with Workspace(tmp_path / "demo.duckdb") as workspace:  # the most one contact saves, computed apart
        workspace.ingest(DEMO)
        result = churn.churn_from_workspace(workspace)
        value, _ = churn.customer_value(workspace)
    most = (0.1 * result.scores["risk"] * result.scores["customer_id"].map(value)).max()
    assert f"no single contact is expected to save more than it costs (at most {most:,.2f}:" in message
