"""AppTest of the Cohorts page on the demo data."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

import app_state

ROOT = Path(__file__).resolve().parents[2]


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/cohorts.py").run()
    assert not at.exception, at.exception
    return at


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
