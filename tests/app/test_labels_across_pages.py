"""AppTest: the segments and stages chosen on the Segments page are stored in the workspace, then appear as
filters and columns on the Cohorts, Customer lifetime value, Churn risk and Recommendations pages."""

from datetime import date

import pandas as pd
from streamlit.testing.v1 import AppTest

import app_state
from clm_core import segments
from tests.app.helpers import ROOT, open_page, page_metrics

DEMO = ROOT / "data" / "demo_transactions.csv.gz"
AS_OF = date(2023, 10, 31)  # inside the demo's span (2023-2024), not its last day


def _app(tmp_path) -> tuple[AppTest, app_state.SessionSpace]:
    space = app_state.SessionSpace(tmp_path)
    space.workspace.ingest(DEMO)
    return open_page(None, timeout=180, session={"session_space": space, "demo_checked": True}), space


def _frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def test_stored_segments_filter_and_label_every_page(tmp_path):
    at, space = _app(tmp_path)
    workspace = space.workspace
    at.switch_page("pages/segments.py").run()
    assert "standard segments" in next(c.value for c in at.caption if c.value.startswith("Other pages use"))
    at.date_input(key="seg_as_of").set_value(AS_OF).run()
    at.button(key="seg_store").click().run()
    assert not at.exception, at.exception
    note, _ = workspace.customer_labels_info()
    assert note.startswith(f"RFM segments and lifecycle stages as of {AS_OF:%d %b %Y}")
    # Independent of the page: the segmentation as of that day, straight from clm_core.
    expected = segments.segment_customers(workspace, as_of=AS_OF).customers.set_index("customer_id")
    stored = workspace.customer_labels().set_index("customer_id")
    assert stored["rfm_segment"].sort_index().equals(expected["rfm_segment"].astype(str).sort_index())
    champions = set(expected.index[expected["rfm_segment"] == "Champions"])
    assert champions

    # Churn risk: a segment filter keeps only its customers; the list carries the columns.
    at.switch_page("pages/churn.py").run()
    assert not at.exception, at.exception
    at.slider(key=next(s.key for s in at.slider if s.key.startswith("churn_threshold"))).set_value(0.0).run()
    everyone = int(page_metrics(at)["Customers on the list"].replace(",", ""))
    at.multiselect(key="churn_rfm_segments").set_value(["Champions"]).run()
    listed = _frame_with(at, "RFM segment")
    assert set(listed["RFM segment"]) == {"Champions"}
    on_list = int(page_metrics(at)["Customers on the list"].replace(",", ""))
    assert on_list == len(champions) < everyone  # every champion bought, so every one is scored

    # Customer lifetime value: the top customers and the download follow the filter.
    at.session_state["clv_tab"] = "Predictive CLV"
    at.switch_page("pages/clv.py").run()
    at.multiselect(key="clv_pred_rfm_segments").set_value(["Champions"]).run()
    assert not at.exception, at.exception
    top = _frame_with(at, "RFM segment")
    assert set(top["RFM segment"]) == {"Champions"} and set(top["Customer"]) <= champions
    assert any(c.value.startswith(f"{len(champions):,} customers of ") for c in at.caption)

    # Cohorts: split by RFM segment; the first-period sizes add up to each segment's buyers.
    at.switch_page("pages/cohorts.py").run()
    at.selectbox(key="cohorts_segment").set_value("label:rfm_segment").run()
    assert not at.exception, at.exception
    app_state._cached_standard_labels.clear()
    assert any(f"as of {AS_OF:%d %b %Y}" in c.value for c in at.caption)
    options = at.multiselect(key="cohorts_groups_label:rfm_segment").options
    assert set(options) == set(expected["rfm_segment"]) | {"No label"}  # customers who first bought after AS_OF

    # Recommendations: the products table and its download filtered and labelled.
    at.switch_page("pages/recommendations.py").run()
    at.multiselect(key="rec_rfm_segments").set_value(["Champions"]).run()
    assert not at.exception, at.exception
    shown = _frame_with(at, "RFM segment")
    assert set(shown["RFM segment"]) == {"Champions"} and set(shown["Customer"]) <= champions


def test_pages_go_on_without_segments_when_they_cannot_be_made(tmp_path, monkeypatch):
    from clm_core.errors import DataRangeError

    def refuse(*args, **kwargs):
        raise DataRangeError("Too few customers to score.")

    monkeypatch.setattr(segments, "segment_customers", refuse)
    app_state._cached_standard_labels.clear()  # the demo's, from another test of this process
    at, _ = _app(tmp_path)
    at.switch_page("pages/churn.py").run()
    assert not at.exception, at.exception
    assert any("no segments on this data" in c.value and "Too few customers" in c.value for c in at.caption)
    assert int(page_metrics(at)["Customers on the list"].replace(",", "")) > 0
    at.switch_page("pages/cohorts.py").run()
    at.selectbox(key="cohorts_segment").set_value("label:rfm_segment").run()
    assert not at.exception, at.exception
    app_state._cached_standard_labels.clear()


def test_a_second_session_with_the_same_file_stores_its_own_labels(tmp_path):
    """The standard labels are computed once per dataset, but every session's workspace gets them stored: its
    cohort split reads them there."""
    for session in ("first", "second"):
        (tmp_path / session).mkdir()
        at, space = _app(tmp_path / session)
        at.switch_page("pages/cohorts.py").run()
        at.selectbox(key="cohorts_segment").set_value("label:rfm_segment").run()
        assert not at.exception, at.exception
        assert space.workspace.customer_labels_info() is not None
        assert "No label" not in at.multiselect(key="cohorts_groups_label:rfm_segment").options
