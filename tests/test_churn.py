"""Churn: labels and leakage by hand, the published-data bars, honest answers on data with no signal."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm_core import churn
from clm_core.errors import DataRangeError, SchemaError
from clm_core.workspace import Workspace
from tests.test_customers import _netted_purchase_days

ROOT = Path(__file__).resolve().parents[1]


def _workspace(tmp_path: Path, frame: pd.DataFrame, name: str = "shop.csv") -> Workspace:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    workspace = Workspace(tmp_path / f"{name}.duckdb")
    workspace.ingest(path)
    return workspace


HAND = pd.DataFrame({
    "customer_id": ["a", "a", "a", "b", "b", "c", "d"],
    "order_date": ["2021-01-01", "2021-02-01", "2021-03-15", "2021-01-10", "2021-05-01", "2021-03-01",
                   "2021-04-01"],
    "amount": [10, 20, 30, 5, 5, 8, 9],
})


def test_labels_are_no_purchase_in_the_horizon_after_the_cutoff(tmp_path):
    workspace = _workspace(tmp_path, HAND)
    examples = churn.labelled_examples(workspace, date(2021, 3, 1), 30, with_models=False).set_index("customer_id")
    # a buys on 15 Mar (inside 1-31 Mar): stays; b next buys on 1 May: leaves; c bought on the cutoff day
    # itself and not after; d had not bought yet, so is not an example.
    assert examples["churned"].to_dict() == {"a": 0, "b": 1, "c": 1}
    assert examples.loc["a", "purchase_days"] == 2 and examples.loc["a", "recency_days"] == 28
    workspace.close()


def test_features_never_see_rows_after_the_cutoff(tmp_path):
    """Adding purchases after the cutoff changes labels, never features: the proof there is no leakage."""
    cutoff = date(2021, 3, 1)
    before = _workspace(tmp_path, HAND, "before.csv")
    later = pd.concat([HAND, pd.DataFrame({"customer_id": ["b", "c", "a"],
                                           "order_date": ["2021-03-20", "2021-03-05", "2021-06-01"],
                                           "amount": [100, 50, 1]})])
    after = _workspace(tmp_path, later, "after.csv")
    old = churn.labelled_examples(before, cutoff, 30, with_models=False).set_index("customer_id")
    new = churn.labelled_examples(after, cutoff, 30, with_models=False).set_index("customer_id")
    features = [column for column in churn.FEATURES if column in old]
    pd.testing.assert_frame_equal(old[features], new[features])
    assert old["churned"].to_dict() == {"a": 0, "b": 1, "c": 1}
    assert new["churned"].to_dict() == {"a": 0, "b": 0, "c": 0}
    # And the check would catch a leak: features computed on the later data as of a later date differ.
    leaked = churn.labelled_examples(after, cutoff + timedelta(days=30), 30, with_models=False)
    assert not leaked.set_index("customer_id")[features].reindex(old.index).equals(old[features])
    before.close()
    after.close()


@pytest.fixture(scope="module")
def online_retail_churn(online_retail_workspace):
    workspace, _ = online_retail_workspace
    return churn.churn_from_workspace(workspace, horizon_days=90, cutoff=date(2011, 9, 10), seed=0)


def test_online_retail_best_model_beats_recency(online_retail_churn):
    result = online_retail_churn
    assert result.train_rows > 2000 and result.test_rows > 3000
    best = result.models[result.best_model]
    baseline = result.models[churn.BASELINE]
    assert best["roc_auc"] > baseline["roc_auc"]
    assert best["roc_auc_interval"][0] > 0.5 and result.predictive
    assert 0 < best["brier"] < baseline["brier"]
    assert set(result.models) == {*churn.MODEL_NAMES, churn.BASELINE}


def test_training_on_a_short_history_is_said(online_retail_churn, online_retail_workspace):
    workspace, _ = online_retail_workspace
    # The data run from 1 Dec 2010 to 9 Dec 2011: at 180 days the models learn from purchases up to 14 Dec 2010.
    long = churn.churn_from_workspace(workspace, horizon_days=180, seed=0)
    assert any("up to 14 Dec 2010, only 13 days after your data begin" in note for note in long.notes)
    # At 90 days checked from 10 Sep 2011 they learn from purchases up to 12 Jun 2011: 193 days of history.
    assert not any("days after your data begin" in note for note in online_retail_churn.notes)


def test_online_retail_scores_every_current_customer(online_retail_churn, online_retail_workspace):
    workspace, _ = online_retail_workspace
    scores = online_retail_churn.scores
    with workspace._cursor() as cursor:
        rows = cursor.execute("SELECT * FROM transactions").df()
    # Customers with a purchase their returns did not cancel in full (12 of Online Retail's buyers cancelled all).
    buyers = _netted_purchase_days(rows)["customer_id"].nunique()
    assert len(scores) == buyers == scores["customer_id"].nunique()
    assert scores["risk"].between(0, 1).all() and scores["risk"].is_monotonic_decreasing
    assert (scores["drivers"].str.len() > 0).all()
    # Recent, frequent buyers are at low risk; one-time buyers from a year ago at high risk.
    recent = scores[(scores["recency_days"] <= 14) & (scores["purchase_days"] >= 10)]["risk"].mean()
    lapsed = scores[(scores["recency_days"] >= 250) & (scores["purchase_days"] == 1)]["risk"].mean()
    assert recent < 0.2 < 0.6 < lapsed


def test_telco_reaches_the_bar(telco_path):
    table = pd.read_csv(telco_path, dtype=str, keep_default_na=False)
    result = churn.churn_from_table(table, "Churn", seed=0)
    assert (result.train_rows, result.test_rows) == (5282, 1761)
    assert result.models[result.best_model]["roc_auc"] >= 0.83 and result.predictive
    assert result.scores["customer_id"].is_unique and len(result.scores) == 7043
    assert result.base_rate == pytest.approx((table["Churn"] == "Yes").mean(), abs=0.01)


def _random_shop(customers: int, seed: int, *, money: bool = True) -> pd.DataFrame:
    """Every customer buys in each week with the same chance, whatever they did before: nothing to predict."""
    rng = np.random.default_rng(seed)
    weeks = 104
    bought = rng.random((customers, weeks)) < 0.06
    customer, week = np.nonzero(bought)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in customer],
                          "order_date": (pd.Timestamp("2021-01-04") + pd.to_timedelta(week * 7, unit="D"))
                          .strftime("%Y-%m-%d")})
    if money:
        frame["amount"] = rng.gamma(2, 20, len(frame)).round(2)
    return frame


def test_no_signal_is_said_plainly_and_ranked_descriptively(tmp_path):
    workspace = _workspace(tmp_path, _random_shop(2000, seed=3))
    result = churn.churn_from_workspace(workspace, horizon_days=60, seed=0)
    assert not result.predictive
    assert any("cannot be predicted better than chance" in note for note in result.notes)
    expected = churn.descriptive_risk(churn._features_at(workspace, date(2022, 12, 26), 60, False))
    assert result.scores["risk"].max() == pytest.approx(expected.max())
    workspace.close()


def test_without_amounts_risk_comes_from_recency_and_frequency(tmp_path, online_retail_workspace):
    workspace, _ = online_retail_workspace
    with workspace._cursor() as cursor:
        rows = cursor.execute("SELECT customer_id, order_ts AS order_date FROM transactions "
                              "WHERE NOT is_return").df()
    no_money = _workspace(tmp_path, rows, "no_money.csv")
    assert not no_money.dataset.has_money
    result = churn.churn_from_workspace(no_money, horizon_days=90, cutoff=date(2011, 9, 10))
    assert result.predictive and result.models[result.best_model]["roc_auc"] > 0.65
    assert not any(feature in result.importance["feature"].tolist() for feature in churn._MONEY_FEATURES)
    no_money.close()


def test_too_few_customers_falls_back_to_the_descriptive_view(tmp_path):
    workspace = _workspace(tmp_path, _random_shop(60, seed=1))
    result = churn.churn_from_workspace(workspace, horizon_days=60)
    assert not result.predictive and result.models == {}
    assert "at least 200 customers" in result.notes[0]
    assert len(result.scores) == 60 and result.scores["risk"].notna().all()
    workspace.close()


def test_a_horizon_longer_than_the_data_allows_is_explained(tmp_path):
    workspace = _workspace(tmp_path, HAND)
    with pytest.raises(DataRangeError, match="needs at least 361 days of data"):
        churn.churn_from_workspace(workspace, horizon_days=180)
    workspace.close()


def test_a_label_that_is_not_yes_or_no_is_refused():
    table = pd.DataFrame({"id": range(300), "plan": ["a", "b", "c"] * 100, "status": ["x", "y", "z"] * 100})
    with pytest.raises(SchemaError, match="not a yes/no churn label"):
        churn.churn_from_table(table, "status")


def test_campaign_curve_by_hand():
    curve = churn.campaign_curve(pd.Series([0.2, 0.9, 0.5]), pd.Series([100.0, 50.0, 10.0]), cost_per_contact=2,
                                 success_rate=0.5)
    assert curve["threshold"].tolist() == [0.9, 0.5, 0.2]
    assert curve["net_benefit"].tolist() == pytest.approx([0.5 * 45 - 2, 0.5 * 50 - 4, 0.5 * 70 - 6])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clm_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_cli_churn_json_and_at_risk_list(tmp_path, online_retail_path):
    db = tmp_path / "or.duckdb"
    assert _cli("ingest", str(online_retail_path), "--db", str(db)).returncode == 0
    result = _cli("churn", "--db", str(db), "--horizon-days", "90", "--cutoff", "2011-09-10", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["horizon_days"] == 90 and payload["cutoff"] == "2011-09-10" and payload["predictive"] is True
    assert {"train_rows", "test_rows", "base_rate", "best_model"} <= payload.keys()
    assert set(payload["models"]) == {"logistic", "random_forest", "gradient_boosting", "recency_baseline"}
    assert {"roc_auc", "roc_auc_interval", "pr_auc", "brier", "lift_top_decile"} <= payload["models"]["logistic"].keys()

    out = tmp_path / "at_risk.csv"
    result = _cli("at-risk", "--db", str(db), "--horizon-days", "90", "--top", "250", "--out", str(out))
    assert result.returncode == 0, result.stderr
    listed = pd.read_csv(out, encoding="utf-8-sig", dtype={"customer_id": str})
    assert len(listed) == 250 and listed["risk"].is_monotonic_decreasing
    assert list(listed.columns[:4]) == ["customer_id", "rfm_segment", "lifecycle_stage", "Country"]
    assert {"risk_band", "drivers", "last_purchase", "orders", "revenue", "clv", "value_at_risk"} <= set(listed)

    bad = _cli("at-risk", "--db", str(db), "--horizon-days", "400", "--out", str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "horizon" in bad.stderr


def test_another_model_rescores_without_training_again(online_retail_churn, online_retail_workspace):
    workspace, _ = online_retail_workspace
    result = online_retail_churn
    other = next(name for name in churn.MODEL_NAMES if name != result.best_model)
    switched = churn.with_model(result, other)
    # The same as training from scratch with that model chosen (training is seeded).
    direct = churn.churn_from_workspace(workspace, horizon_days=90, cutoff=date(2011, 9, 10), model=other)
    assert switched.best_model == direct.best_model == other
    pd.testing.assert_frame_equal(switched.scores, direct.scores)
    for name, metrics in direct.models.items():
        assert switched.models[name]["roc_auc"] == pytest.approx(metrics["roc_auc"], rel=1e-9)
    assert switched.predictive == direct.predictive
    assert churn.with_model(switched, None).scores["risk"].tolist() == result.scores["risk"].tolist()


def test_auc_by_row_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random((5, 300)) + 0.3 * labels, 1)  # rounded: many ties
    expected = [roc_auc_score(labels, row) for row in scores]
    np.testing.assert_allclose(churn._auc_by_row(labels, scores), expected, rtol=1e-12)
    assert np.isnan(churn._auc_by_row(np.ones(300, dtype=int), scores)).all()


def test_bootstrap_auc_by_weights_matches_scikit_learn_on_each_resample():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # many ties
    draws = rng.integers(0, 200, size=(40, 200))
    draws[0] = np.flatnonzero(labels)[0]  # one resample of a single churner: no AUC
    expected = [roc_auc_score(labels[row], scores[row]) if len(set(labels[row])) == 2 else np.nan for row in draws]
    np.testing.assert_allclose(churn._auc_by_weights(labels, scores, draws), expected, rtol=1e-12)


def test_permutation_importance_finds_the_feature_that_decides():
    """Churn decided by one feature: shuffling it costs the AUC what the model gained over chance (about 0.5),
    shuffling an unrelated one costs nothing, as scikit-learn's permutation importance reports."""
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    sample = pd.DataFrame({"decides": rng.normal(size=2000), "noise": rng.normal(size=2000)})
    labels = (sample["decides"] + 0.3 * rng.normal(size=2000) > 0).astype(int).to_numpy()
    model = LogisticRegression().fit(sample, labels)
    ours = churn._permutation_importance(model, sample, labels, repeats=20, seed=0).set_index("feature")
    theirs = permutation_importance(model, sample, labels, scoring="roc_auc", n_repeats=20, random_state=0)
    assert ours.index[0] == "decides"
    # Shuffles differ, so the two agree within their spread (a shuffled AUC varies by about 0.013 here).
    np.testing.assert_allclose(ours.loc["decides", "importance"], theirs.importances_mean[0], atol=0.01)
    assert abs(ours.loc["noise", "importance"]) < 0.005


def test_a_campaign_that_cannot_pay_is_explained_on_cdnow_master(cdnow_master_path, tmp_path):
    """CDNOW master at the page's default costs (1.00 a contact, 10 % success): the riskiest customers are worth
    too little (a median 12-month CLV near 6), so no list of them pays, though some further down would on their
    own: the count is checked against success rate x risk x value computed apart."""
    with Workspace(tmp_path / "cdnow.duckdb") as workspace:
        workspace.ingest(cdnow_master_path)
        result = churn.churn_from_workspace(workspace)
        value, _ = churn.customer_value(workspace)
    assert result.predictive
    worth = result.scores["customer_id"].map(value).astype(float)
    curve = churn.campaign_curve(result.scores["risk"], worth, cost_per_contact=1.0, success_rate=0.1)
    saved = 0.1 * result.scores["risk"] * worth.fillna(0)
    assert curve["net_benefit"].max() <= 0
    said = churn.campaign_shortfall(curve, cost_per_contact=1.0, success_rate=0.1)
    assert said.startswith("At 1.00 per contact and a 10% success rate, no list of the riskiest customers pays for "
                           "itself: the riskiest are worth too little to save.")
    assert f" {int((saved > 1.0).sum()):,} customers further down the list would each be worth a contact" in said
    assert f"(up to {saved.max():,.2f} expected saved" in said
    # Ten times the success rate: the list pays, nothing is said.
    paying = churn.campaign_curve(result.scores["risk"], worth, cost_per_contact=1.0, success_rate=1.0)
    assert churn.campaign_shortfall(paying, cost_per_contact=1.0, success_rate=1.0) is None


def test_when_no_contact_pays_on_its_own_the_page_says_what_to_change():
    risk = pd.Series([0.9, 0.5, 0.2])
    value = pd.Series([10.0, 30.0, 40.0])  # saves 0.9, 1.5 and 0.8 at 10 %: under the cost of 2 each
    curve = churn.campaign_curve(risk, value, cost_per_contact=2.0, success_rate=0.1)
    said = churn.campaign_shortfall(curve, cost_per_contact=2.0, success_rate=0.1)
    assert said == ("At 2.00 per contact and a 10% success rate, no list of the riskiest customers pays for itself: no "
                    "single contact is expected to save more than it costs (at most 1.50: success rate x risk x "
                    "value). A lower cost per contact or a higher success rate shows where a campaign starts to pay.")
