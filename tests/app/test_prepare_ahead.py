"""The background preparation after a load: the pages, and their controls with few choices, find their results
computed (the same cached calls with the same arguments), so nothing is computed again when they are opened."""

from __future__ import annotations

import threading

import pytest
import streamlit as st

import app_state
from clm_core import churn, clv, recommend, segments
from tests.app.helpers import open_page


def _wait_for_preparation() -> None:
    for thread in threading.enumerate():
        if thread.name == "clm-prepare":
            thread.join(timeout=600)
            assert not thread.is_alive()


def _refuse(*args, **kwargs):
    raise AssertionError("computed again instead of read from the preparation")


# Page, then the session state its controls are set to, in turn; each must be served by the preparation.
VISITS = [
    ("pages/clv.py", [{"clv_tab": "Predictive CLV"}, {"clv_pred_unit": "day"}, {"clv_pred_unit": "week"},
                      {"clv_pred_model": "pareto"}, {"clv_tab": "Model check"}]),
    ("pages/churn.py", [{}, {"churn_model": "random_forest"}, {"churn_model": "gradient_boosting"},
                        {"churn_model": "logistic"}]),
    ("pages/recommendations.py", [{}]),
    ("pages/segments.py", [{}]),
    ("pages/customer.py", [{}]),
]


@pytest.mark.parametrize("prepare", ["1", "0"])
def test_pages_after_the_preparation_compute_no_model_again(monkeypatch, prepare):
    monkeypatch.setenv("CLM_PREPARE_AHEAD", prepare)
    st.cache_data.clear()  # nothing left by earlier tests
    st.cache_resource.clear()
    at = open_page(None, timeout=300)  # the Data page loads the demo; the preparation starts after it
    _wait_for_preparation()
    at.switch_page("pages/churn.py").run()  # shown: the horizons around it are trained next
    _wait_for_preparation()
    at.session_state["churn_custom_cutoff"] = True
    at.run()  # shown with a chosen check date (the default): the check dates around it are trained next
    _wait_for_preparation()
    at.session_state["churn_custom_cutoff"] = False
    workspace = at.session_state["session_space"].workspace
    key = f"churn_horizon_{workspace.dataset.fingerprint}"
    horizons, horizon = app_state.churn_horizons(workspace.dataset.fingerprint, workspace)
    here = horizons.index(at.select_slider(key=key).value)
    for module, name in [(clv, "fit_clv_models"), (clv, "predict_clv"), (churn, "churn_from_workspace"),
                         (churn, "_permutation_importance"), (recommend, "build_recommender"),
                         (recommend, "evaluate"), (segments, "segment_customers"), (segments, "cluster_customers")]:
        monkeypatch.setattr(module, name, _refuse)
    failures = []

    def visit(page, settings):
        at.switch_page(page).run()
        for state in settings:
            for key, value in state.items():
                at.session_state[key] = value
            at.run()
            if at.exception:
                failures.append((page, state, at.exception[0].message))

    for page, settings in VISITS:
        visit(page, settings)
    # Horizons one and three steps either side of the one the churn page showed, and its own check date chosen.
    visit("pages/churn.py", [{"churn_model": None}, *({key: horizons[here + steps]} for steps in (1, -1, 3, -3)),
                             {key: horizon, "churn_custom_cutoff": True}])
    dates = app_state.churn_check_dates(workspace.dataset.fingerprint, workspace, horizon)
    visit("pages/churn.py", [{f"churn_cutoff_{horizon}": dates[-2]}, {f"churn_cutoff_{horizon}": dates[-4]},
                             {f"churn_cutoff_{horizon}": dates[-1]}])
    if prepare == "1":
        assert failures == []
    else:  # without it the same visits compute: the check above can fail
        assert failures


def test_a_failing_step_is_logged_and_the_next_steps_still_run(tmp_path, caplog):
    from clm_core.errors import DataRangeError
    from clm_core.workspace import Workspace
    from tests.conftest import DEMO_FILE

    workspace = Workspace(tmp_path / "ws.duckdb")
    workspace.ingest(DEMO_FILE)
    ran = []

    def broken():
        raise RuntimeError("a bug")

    def unsupported():
        raise DataRangeError("too little data")  # the page says so when opened: not logged as a failure

    with caplog.at_level("WARNING", logger="app_state"):
        app_state._prepare_in_background(workspace.dataset.fingerprint, workspace,
                                         lambda: [broken, unsupported, lambda: ran.append("after")]).join(60)
    assert ran == ["after"]
    assert [record.message for record in caplog.records] == ["Preparing a page ahead failed"]
    assert "a bug" in caplog.text
    # Another dataset loaded meanwhile: the steps left stop.
    stale = app_state._prepare_in_background("another fingerprint", workspace, lambda: [lambda: ran.append("stale")])
    stale.join(60)
    assert ran == ["after"]
    workspace.close()


def test_a_newer_wish_replaces_what_waits_and_nothing_is_prepared_twice():
    made = []
    queue = app_state._Queue(made.append)
    assert queue.replace([1, 2, 3])  # nothing works through it: a thread is to be started
    steps = iter(queue)
    next(steps)()
    assert not queue.replace([4, 1, 2])  # the thread at work takes the newer wish; 1 is done already
    for step in steps:
        step()
    assert made == [1, 4, 2]
    assert not queue.replace([2, 4, 1])  # everything prepared: no thread
    assert queue.replace([5])  # the last thread has finished: a new one is to be started
    stopped = iter(queue)
    next(stopped)
    stopped.close()  # the thread stopped early (another file loaded)
    assert queue.replace([6])


def test_while_the_page_computes_the_queue_gives_no_next_setting():
    queue = app_state._Queue(lambda setting: None)
    assert queue.replace([1, 2])
    steps = iter(queue)
    taken = []
    worker = threading.Thread(target=lambda: taken.append(next(steps)))
    with queue.held():  # the page computes what it shows
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive() and taken == []  # the thread waits for the page
    worker.join(timeout=10)
    assert len(taken) == 1  # then takes the next setting
