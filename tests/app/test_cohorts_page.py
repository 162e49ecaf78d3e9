"""AppTest of the Cohorts page on the demo data."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

import app_state
from tests.app.helpers import open_page

ROOT = Path(__file__).resolve().parents[2]


def _page() -> AppTest:
    return open_page("pages/cohorts.py", timeout=60)


def test_cohorts_page_renders_demo():
    at = _page()
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Cohorts shown"] == "12"  # the demo acquires customers during 2023
    assert metrics["Month 1 retention"].endswith("%")
    assert not at.warning


def test_switching_period_and_definition():
    at = _page()
    at.radio(key="cohorts_period").set_value("week").run()
    assert not at.exception
    at.radio(key="cohorts_definition").set_value("rolling").run()
    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert "Week 1 retention" in metrics


def test_filter_that_leaves_nothing_gets_a_message():
    at = _page()
    at.number_input(key="cohorts_min_size").set_value(100_000).run()
    assert any("No cohort matches" in warning.value for warning in at.warning)


def test_data_from_a_single_day_gets_a_message(tmp_path):
    path = tmp_path / "one_day.csv"
    path.write_text("customer_id,order_date,amount\na,2021-03-01,5\nb,2021-03-01,7\n")
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["session_space"] = space
    at.session_state["demo_checked"] = True
    at.run()
    at.switch_page("pages/cohorts.py").run()
    assert not at.exception, at.exception
    assert any("only one month" in warning.value for warning in at.warning)


def _demo_month_one(include_first: bool) -> float:
    """Month 1 retention of the demo's average cohort, counted in pandas: customers who bought in the month after
    their first, over cohort sizes, for cohorts whose next month is in the data."""
    import pandas as pd

    demo = pd.read_csv(ROOT / "data" / "demo_transactions.csv.gz", dtype={"customer_id": str},
                       parse_dates=["order_date"])
    months = demo.assign(month=demo["order_date"].dt.to_period("M"))[["customer_id", "month"]].drop_duplicates()
    months["cohort"] = months.groupby("customer_id")["month"].transform("min")
    first_cohort, last_month = months["month"].min(), months["month"].max()
    cohorts = months[(months["cohort"] + 1 <= last_month) & (include_first | (months["cohort"] != first_cohort))]
    sizes = cohorts.groupby("cohort")["customer_id"].nunique()
    back = cohorts[cohorts["month"] == cohorts["cohort"] + 1].shape[0]
    return back / sizes.sum()


def _chart(at: AppTest, key: str) -> dict:
    import json

    return json.loads(next(chart for chart in at.get("plotly_chart") if chart.proto.id.endswith(key)).proto.spec)


def test_first_cohort_is_out_of_the_average_until_switched_on():
    at = _page()
    assert {m.label: m.value for m in at.metric}["Month 1 retention"] == f"{_demo_month_one(False):.1%}"
    assert any("may include customers who bought before your data start" in caption.value for caption in at.caption)
    heatmap = _chart(at, "cohorts_heatmap")
    assert heatmap["data"][0]["y"][0].startswith("⚠ 2023-01")
    at.toggle(key="cohorts_include_first").set_value(True).run()
    assert {m.label: m.value for m in at.metric}["Month 1 retention"] == f"{_demo_month_one(True):.1%}"


def test_weekly_cohorts_say_monday_and_the_heatmap_is_capped():
    at = _page()
    at.radio(key="cohorts_period").set_value("week").run()
    assert any("Weeks start on Monday" in caption.value for caption in at.caption)
    shown = int({m.label: m.value for m in at.metric}["Cohorts shown"])
    assert shown > 36  # the demo acquires customers over all of 2023
    heatmap = _chart(at, "cohorts_heatmap")
    assert len(heatmap["data"][0]["y"]) == 36 and f"most recent 36 of {shown}" in heatmap["layout"]["title"]["text"]
    at.selectbox(key="cohorts_max_rows").set_value(0).run()  # "All"
    assert len(_chart(at, "cohorts_heatmap")["data"][0]["y"]) == shown
