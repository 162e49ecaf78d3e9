"""Next best action: each rule reached by a hand-made customer, priorities, pay-offs, units and bad tables; and
on Online Retail, one action per customer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from clm_core.actions import (ACTIONS, CROSS_SELL, CUSTOMER_VALUE, EXTRA_ORDERS, LOYALTY, NO_CONTACT, REACTIVATION,
                              SECOND_PURCHASE, WIN_BACK, RulesError, action_summary, default_rules,
                              next_best_actions, validate_rules, value_note, with_model_scores)
from clm_core.customers import customer_table
from clm_core.errors import SchemaError


def _customers(*rows: dict) -> pd.DataFrame:
    """Customer-table rows with only what the rules read; each row gives ``customer_id`` and what differs."""
    base = {"purchase_days": 3, "orders": 3, "recency_days": 20.0, "tenure_days": 400.0, "mean_gap_days": 50.0,
            "average_order_value": 100.0}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    spent = frame["average_order_value"] * frame["orders"]
    frame["purchase_value"] = frame["purchase_value"].fillna(spent) if "purchase_value" in frame else spent
    return frame


def _rule(action: str, priority: int, *, cost: float = 1.0, success: float = 0.1, value: str = EXTRA_ORDERS,
          extra_orders: float | None = 1.0, **thresholds: float) -> dict:
    return {"action": action, "priority": priority, "min_risk": np.nan, "max_risk": np.nan,
            "min_value_percentile": np.nan, "max_value_percentile": np.nan, "max_purchase_days": np.nan,
            "min_days_since_last": np.nan, "max_days_since_last": np.nan, "cost_per_contact": cost,
            "success_rate": success, "value_if_it_works": value,
            "extra_orders": np.nan if value == CUSTOMER_VALUE else extra_orders, **thresholds}


# Six actions, thresholds easy to check by hand: "valuable" is value percentile 60 or more (with six buying
# customers: the top two), "active" bought in the last 60 days, "lapsed" 61 days ago or more.
RULES = pd.DataFrame([
    _rule(WIN_BACK, 1, min_risk=0.6, min_value_percentile=60, cost=10.0, success=0.1, value=CUSTOMER_VALUE),
    _rule(SECOND_PURCHASE, 2, max_purchase_days=1, max_days_since_last=30, cost=2.0, success=0.15),
    _rule(LOYALTY, 3, min_value_percentile=60, max_days_since_last=60, cost=5.0, success=0.2),
    _rule(CROSS_SELL, 4, max_days_since_last=60, cost=1.0, success=0.05),
    _rule(REACTIVATION, 5, min_days_since_last=61, max_value_percentile=60, cost=1.0, success=0.02),
])

CUSTOMERS = _customers(
    {"customer_id": "at-risk-vip", "risk": 0.8, "recency_days": 120.0, "orders": 20, "purchase_days": 20,
     "average_order_value": 500.0},
    {"customer_id": "newcomer", "risk": 0.3, "recency_days": 10.0, "tenure_days": 10.0, "orders": 1,
     "purchase_days": 1, "mean_gap_days": np.nan, "average_order_value": 60.0},
    {"customer_id": "loyal-vip", "risk": 0.1, "recency_days": 5.0, "orders": 30, "purchase_days": 30,
     "average_order_value": 400.0},
    {"customer_id": "regular", "risk": 0.2, "recency_days": 25.0, "orders": 4, "purchase_days": 4,
     "average_order_value": 80.0},
    {"customer_id": "lapsed", "risk": 0.9, "recency_days": 300.0, "orders": 2, "purchase_days": 2,
     "average_order_value": 90.0},
    {"customer_id": "lapsed-small", "risk": 0.9, "recency_days": 300.0, "orders": 1, "purchase_days": 1,
     "mean_gap_days": np.nan, "average_order_value": 20.0},
    {"customer_id": "returns-only", "risk": np.nan, "recency_days": np.nan, "tenure_days": np.nan, "orders": 0,
     "purchase_days": 0, "mean_gap_days": np.nan, "average_order_value": np.nan, "purchase_value": 0.0},
)


def _by_customer(actions: pd.DataFrame) -> pd.DataFrame:
    return actions.set_index("customer_id")


def test_each_action_is_reached_by_the_customer_it_is_for():
    actions = _by_customer(next_best_actions(CUSTOMERS, RULES))
    assert actions["action"].astype(str).to_dict() == {
        "at-risk-vip": WIN_BACK, "newcomer": SECOND_PURCHASE, "loyal-vip": LOYALTY, "regular": CROSS_SELL,
        "lapsed": REACTIVATION, "lapsed-small": NO_CONTACT, "returns-only": NO_CONTACT}
    assert actions.loc["at-risk-vip", "reason"] == "high risk (80 %) and top 33 % by spend"
    assert actions.loc["newcomer", "reason"] == "one purchase so far and last purchase 10 days ago"
    assert actions.loc["lapsed", "reason"] == "outside the top 40 % by spend and last purchase 300 days ago"
    assert actions.loc["lapsed-small", "reason"] == ("low-cost reactivation would not pay: 2 % x 20.00 is less than "
                                                     "its cost of 1.00")
    assert actions.loc["returns-only", "reason"] == "no purchase yet (only returns)"


def test_expected_net_value_is_success_times_value_less_cost():
    actions = _by_customer(next_best_actions(CUSTOMERS, RULES))
    # The win-back values the customer: average order value x orders per year (20 orders over 400 days).
    vip_value = 500.0 * 20 * 365.25 / 400
    expected = {"at-risk-vip": 0.1 * vip_value - 10, "newcomer": 0.15 * 60 - 2, "loyal-vip": 0.2 * 400 - 5,
                "regular": 0.05 * 80 - 1, "lapsed": 0.02 * 90 - 1, "lapsed-small": 0.0, "returns-only": 0.0}
    assert_allclose(actions["expected_net_value"].reindex(list(expected)), list(expected.values()), rtol=1e-12)
    assert actions.loc["at-risk-vip", "value_basis"] == "average order value x orders per year so far"
    assert actions.loc["regular", "value_basis"] == "1 extra order x average order value"
    assert (actions["value_unit"] == "money").all()


def test_the_first_rule_by_priority_wins_and_swapping_priorities_swaps_the_action():
    # The at-risk VIP fits both the win-back (risk 80 %, top value) and, once recent, the loyalty perk.
    customers = CUSTOMERS.assign(recency_days=CUSTOMERS["recency_days"].where(
        CUSTOMERS["customer_id"] != "at-risk-vip", 40.0))
    assert _by_customer(next_best_actions(customers, RULES)).loc["at-risk-vip", "action"] == WIN_BACK
    swapped = RULES.assign(priority=RULES["priority"].replace({1: 3, 3: 1}))
    assert _by_customer(next_best_actions(customers, swapped)).loc["at-risk-vip", "action"] == LOYALTY


def test_a_rule_that_does_not_pay_passes_the_customer_to_the_next_one():
    # A win-back dearer than what the at-risk VIP is worth: no other rule fits them (they are not recent, and too
    # valuable for reactivation), so no contact, saying why.
    dear = RULES.assign(cost_per_contact=RULES["cost_per_contact"].where(RULES["action"] != WIN_BACK, 1e9))
    vip = _by_customer(next_best_actions(CUSTOMERS, dear)).loc["at-risk-vip"]
    assert vip["action"] == NO_CONTACT
    assert vip["reason"].startswith("win-back offer would not pay: 10 % x ")
    assert vip["expected_net_value"] == 0
    # Made recent, the same customer gets the loyalty perk, the next rule they fit that pays.
    recent = CUSTOMERS.assign(recency_days=np.where(CUSTOMERS["customer_id"] == "at-risk-vip", 40.0,
                                                    CUSTOMERS["recency_days"]))
    assert _by_customer(next_best_actions(recent, dear)).loc["at-risk-vip", "action"] == LOYALTY


def test_a_no_contact_rule_leaves_its_customers_alone():
    rules = pd.concat([RULES, pd.DataFrame([_rule(NO_CONTACT, 0, min_days_since_last=200, cost=np.nan,
                                                  success=np.nan, value=None, extra_orders=np.nan)])])
    actions = _by_customer(next_best_actions(CUSTOMERS, rules))
    assert actions.loc["lapsed", "action"] == NO_CONTACT
    assert actions.loc["lapsed", "reason"] == "last purchase 300 days ago"
    assert actions.loc["regular", "action"] == CROSS_SELL


def test_cross_sell_names_the_top_recommended_product_and_needs_one():
    recommendations = pd.DataFrame({"customer_id": ["regular", "regular"], "rank": [2, 1],
                                    "product_id": ["P2", "P1"], "product_name": ["Jar", "Mug"],
                                    "score": [0.5, 0.9], "reason": ["", ""], "method": ["cf", "cf"]})
    customers = pd.concat([CUSTOMERS, _customers({"customer_id": "regular-2", "risk": 0.2, "recency_days": 25.0,
                                                  "orders": 4, "purchase_days": 4, "average_order_value": 80.0})])
    actions = _by_customer(next_best_actions(customers, RULES, recommendations=recommendations))
    assert actions.loc["regular", ["action", "product_id", "product_name"]].tolist() == [CROSS_SELL, "P1", "Mug"]
    assert actions.loc["regular", "reason"] == "last purchase 25 days ago; suggest Mug"
    # Nothing to recommend to the other regular: cross-sell does not fit them, and no later rule does either.
    assert actions.loc["regular-2", "action"] == NO_CONTACT
    assert actions.loc["regular-2", "reason"].startswith("fits no rule (risk 20 %")


def test_without_churn_or_clv_risk_comes_from_days_since_last_purchase_over_the_usual_gap():
    customers = CUSTOMERS.drop(columns="risk")
    actions = _by_customer(next_best_actions(customers, RULES))
    # 120 days against a usual gap of 50: 2.4 gaps late, a chance of leaving of 2.4 / 3.4.
    assert_allclose(actions.loc["at-risk-vip", "risk"], 2.4 / 3.4)
    # A one-time buyer against the usual gap of the repeat customers (all 50 days here): 10 / 50.
    assert_allclose(actions.loc["newcomer", "risk"], 0.2 / 1.2)
    assert (actions["risk_basis"].dropna() == "days since last purchase vs usual gap").all()
    assert actions.loc["at-risk-vip", "action"] == WIN_BACK


def test_probability_alive_and_clv_are_used_when_given():
    clv = pd.DataFrame({"customer_id": ["at-risk-vip", "loyal-vip"], "clv": [9000.0, 3000.0],
                        "probability_alive": [0.25, 0.9], "expected_order_value": [450.0, 350.0]})
    customers = with_model_scores(CUSTOMERS.drop(columns="risk"), clv=clv)
    actions = _by_customer(next_best_actions(customers, RULES))
    assert_allclose(actions.loc["at-risk-vip", "risk"], 0.75)
    assert actions.loc["at-risk-vip", "risk_basis"] == "1 - probability alive"
    assert actions.loc["at-risk-vip", ["value_if_it_works", "value_basis"]].tolist() == [9000.0, "customer's CLV"]
    assert_allclose(actions.loc["at-risk-vip", "expected_net_value"], 0.1 * 9000 - 10)
    assert actions.loc["loyal-vip", "value_basis"] == "1 extra order x expected order value"
    assert_allclose(actions.loc["loyal-vip", "expected_net_value"], 0.2 * 350 - 5)


def test_a_risk_that_is_not_a_probability_is_refused():
    with pytest.raises(SchemaError, match="outside 0 to 1"):
        next_best_actions(CUSTOMERS.assign(risk=2.5), RULES)


def test_without_amounts_values_are_counted_in_orders():
    customers = CUSTOMERS.assign(average_order_value=np.nan, purchase_value=np.nan)
    rules = default_rules(customers)
    assert_allclose(rules["cost_per_contact"], [0.1, 0.02, 0.05, 0.01, 0.01])
    actions = _by_customer(next_best_actions(customers, RULES.assign(cost_per_contact=0.01)))
    assert (actions["value_unit"] == "orders").all()
    # A loyalty perk brings one extra order, in one case out of five: 0.2 orders less 0.01.
    assert actions.loc["loyal-vip", "action"] == LOYALTY
    assert_allclose(actions.loc["loyal-vip", "expected_net_value"], 0.2 - 0.01)
    assert actions.loc["loyal-vip", "value_basis"] == "1 extra order"
    assert actions.loc["at-risk-vip", "reason"] == "high risk (80 %) and top 33 % by orders"
    assert "counted in orders" in value_note(customers)


def test_default_rules_follow_the_data():
    rules = default_rules(CUSTOMERS.assign(mean_gap_days=40.0))
    assert rules["action"].tolist() == [WIN_BACK, SECOND_PURCHASE, LOYALTY, CROSS_SELL, REACTIVATION]
    assert rules["who"].tolist() == [
        "churn risk 60 % or more, top 20 % by value",
        "one-time buyers, bought in the last 40 days",
        "top 20 % by value, bought in the last 80 days",
        "bought in the last 80 days",
        "outside the top 20 % by value, no purchase for 81 days or more",
    ]
    # Costs are shares of the median average order value of the buying customers (85 here).
    assert_allclose(rules["cost_per_contact"], [8.5, 1.7, 4.25, 0.85, 0.85])


@pytest.mark.parametrize("edit, message", [
    (lambda rules: rules.iloc[:0], "The rules table is empty"),
    (lambda rules: rules.drop(columns="success_rate"), "no column success_rate"),
    (lambda rules: rules.assign(success_rate=[1.5, 0.1, 0.1, 0.1, 0.1]),
     r"success rate in row 1 \(Win-back offer\) is 1.5; it is a share between 0 and 1"),
    (lambda rules: rules.assign(cost_per_contact=[1.0, -2.0, 1.0, 1.0, 1.0]),
     r"cost per contact in row 2 \(Second-purchase nudge\) is -2; a cost cannot be negative"),
    (lambda rules: rules.assign(action=["Win-back offer", "Free lunch", "Loyalty perk", "Cross-sell", "Cross-sell"]),
     "Unknown action 'Free lunch' in row 2"),
    (lambda rules: rules.assign(action=[None, *rules["action"][1:]]), "Row 1 of the rules has no action"),
    (lambda rules: rules.assign(min_risk=[0.7, 0.1, np.nan, np.nan, np.nan], max_risk=[0.5, 0.2, np.nan, np.nan,
                                                                                       np.nan]),
     r"churn risk starts above where it ends \(0.7 > 0.5\)"),
    (lambda rules: rules.assign(min_risk=[60, np.nan, np.nan, np.nan, np.nan]), "churn risk is a share between 0"),
    (lambda rules: rules.assign(max_value_percentile=[np.nan, np.nan, np.nan, np.nan, 120]),
     "a percentile is between 0 and 100"),
    (lambda rules: rules.assign(cost_per_contact=["ten", 1, 1, 1, 1]), "Cost per contact in row 1 .* not a number"),
    (lambda rules: rules.assign(value_if_it_works=["customer value", "extra orders", "a lot", "extra orders",
                                                   "extra orders"]),
     r"Value if it works in row 3 \(Loyalty perk\) is 'a lot'"),
    (lambda rules: rules.assign(extra_orders=[np.nan, 0, 1, 1, 1]), "no positive number of them"),
])
def test_an_edited_table_that_cannot_be_used_says_what_to_change(edit, message):
    with pytest.raises(RulesError, match=message):
        validate_rules(edit(RULES.copy()))


def test_validated_rules_are_sorted_by_priority_with_who_rewritten():
    edited = RULES.assign(priority=[5, 4, 3, 2, 1], min_days_since_last=[np.nan, np.nan, np.nan, np.nan, 90])
    rules = validate_rules(edited)
    assert rules["action"].tolist() == [REACTIVATION, CROSS_SELL, LOYALTY, SECOND_PURCHASE, WIN_BACK]
    assert rules["who"][0] == "outside the top 40 % by value, no purchase for 90 days or more"


def test_summary_counts_every_customer_once():
    actions = next_best_actions(CUSTOMERS, RULES)
    summary = action_summary(actions).set_index("action")
    assert summary["customers"].sum() == len(CUSTOMERS)
    assert summary.loc[NO_CONTACT, "customers"] == 2
    assert_allclose(summary["expected_net_value"].sum(), actions["expected_net_value"].sum())
    assert_allclose(summary.loc[LOYALTY, "contact_cost"], 5.0)


def test_online_retail_every_customer_gets_exactly_one_action(online_retail_workspace):
    workspace, _ = online_retail_workspace
    customers = customer_table(workspace)
    rules = default_rules(customers)
    actions = next_best_actions(customers, rules)
    assert actions["customer_id"].tolist() == customers["customer_id"].tolist()
    assert set(actions["action"].astype(str)) <= set(ACTIONS)
    assert actions["action"].notna().all() and actions["reason"].str.len().gt(0).all()
    contacted = actions["action"] != NO_CONTACT
    assert (actions.loc[contacted, "expected_net_value"] > 0).all()
    assert (actions.loc[~contacted, "expected_net_value"] == 0).all()
    # Customers with only returns are never contacted; every action is used on this dataset.
    assert (actions.loc[customers["purchase_days"].to_numpy() == 0, "action"] == NO_CONTACT).all()
    assert set(actions["action"].astype(str)) == set(ACTIONS)
    summary = action_summary(actions)
    assert summary["customers"].sum() == len(customers)
    assert_allclose(summary["expected_net_value"].sum(), actions["expected_net_value"].sum())
    # Each contacted customer fits their rule: e.g. every second-purchase nudge goes to a one-time buyer.
    nudged = customers[(actions["action"] == SECOND_PURCHASE).to_numpy()]
    assert (nudged["purchase_days"] == 1).all()
