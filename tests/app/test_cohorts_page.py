"""AppTest of the Cohorts page on the demo data."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

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
