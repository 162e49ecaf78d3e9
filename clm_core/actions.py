"""Next best action: one action per customer, from where they are in their life cycle, their churn risk and
their value, chosen by rules a marketer edits as one table.

The actions: a **win-back offer** (valuable customers at high risk), a **second-purchase nudge** (new one-time
buyers), a **loyalty perk** (active high-value customers), a **cross-sell** of recommended products (active
customers), a **low-cost reactivation** (lapsed, lower-value customers) and **no contact** (when no action pays).

The rules table (:func:`default_rules`; its columns in :data:`RULE_COLUMNS`) holds one row per action: who it
is for, as a few thresholds (blank: no limit), and what it costs and brings. Each customer gets the first rule
by priority that they fit *and* that pays for them:

    expected net value = success rate x value if it works - cost per contact

When the first rule they fit does not pay, the next rule they fit is tried; when none pays, "No contact", with
the reason. A "No contact" row in the table is a rule too: customers who fit it are left alone (net value 0).

The inputs per customer, from the customer table (:mod:`clm_core.customers`) and optional model columns merged
by customer id (:func:`with_model_scores`):

- **churn risk** (0 to 1): the ``risk`` column (a churn model's probability of not buying in its horizon); else
  1 - ``probability_alive`` (BG/NBD); else the customer's days since their last purchase over their usual gap
  between purchases, ``r``, as the share ``r / (1 + r)`` (:func:`clm_core.churn.chance_of_leaving`: one half
  when exactly as late as usual; one-time buyers are measured against the usual gap of all repeat customers).
- **value percentile** (0 to 100): the share of buying customers who spent less (purchase value net of
  returns; without amounts in the data: fewer orders). 80 or more is the top 20 %.
- **value if it works**, per rule either the *customer value* (the ``clv`` column, e.g. a 12-month CLV; else
  the average order value times the customer's orders per year so far) or a number of *extra orders* times the
  customer's order value (the ``expected_order_value`` column of a spend model, else their average order
  value). Without amounts in the data everything is counted in orders (an order is worth 1, the cost per contact
  is a share of an order) and the output says so (``value_unit``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clm_core.churn import chance_of_leaving, descriptive_risk
from clm_core.errors import ClmError, SchemaError

__all__ = [
    "WIN_BACK",
    "SECOND_PURCHASE",
    "LOYALTY",
    "CROSS_SELL",
    "REACTIVATION",
    "NO_CONTACT",
    "ACTIONS",
    "CUSTOMER_VALUE",
    "EXTRA_ORDERS",
    "VALUE_BASES",
    "RULE_COLUMNS",
    "ACTION_COLUMNS",
    "RulesError",
    "default_rules",
    "validate_rules",
    "describe_rules",
    "value_note",
    "with_model_scores",
    "next_best_actions",
    "action_summary",
]

WIN_BACK = "Win-back offer"
SECOND_PURCHASE = "Second-purchase nudge"
LOYALTY = "Loyalty perk"
CROSS_SELL = "Cross-sell"
REACTIVATION = "Low-cost reactivation"
NO_CONTACT = "No contact"
ACTIONS = (WIN_BACK, SECOND_PURCHASE, LOYALTY, CROSS_SELL, REACTIVATION, NO_CONTACT)

CUSTOMER_VALUE = "customer value"
EXTRA_ORDERS = "extra orders"
VALUE_BASES = (CUSTOMER_VALUE, EXTRA_ORDERS)

# The rules table's columns, with the heading a page shows for each. Thresholds left blank set no limit; "from"
# limits include the number, "up to" limits too, "below" limits do not (so "from 80" and "below 80" split the
# customers in two).
RULE_COLUMNS = {
    "action": "Action",
    "priority": "Priority (1 is tried first)",
    "who": "Who (written from the numbers)",
    "min_risk": "Churn risk from (0-1)",
    "max_risk": "Churn risk up to (0-1)",
    "min_value_percentile": "Value percentile from (80 = top 20 %)",
    "max_value_percentile": "Value percentile below",
    "max_purchase_days": "Purchase days up to (1 = one-time buyers)",
    "min_days_since_last": "Days since last purchase from",
    "max_days_since_last": "Days since last purchase up to",
    "cost_per_contact": "Cost per contact",
    "success_rate": "Success rate (0-1)",
    "value_if_it_works": "Value if it works",
    "extra_orders": "Extra orders if it works",
}
_THRESHOLDS = ["min_risk", "max_risk", "min_value_percentile", "max_value_percentile", "max_purchase_days",
               "min_days_since_last", "max_days_since_last"]
_NUMBERS = [*_THRESHOLDS, "cost_per_contact", "success_rate", "extra_orders"]

# The columns of :func:`next_best_actions`.
ACTION_COLUMNS = ["customer_id", "action", "reason", "expected_net_value", "value_unit", "value_if_it_works",
                  "value_basis", "success_rate", "cost_per_contact", "product_id", "product_name", "risk",
                  "risk_basis", "value_percentile", "purchase_days", "days_since_last_purchase"]

_REQUIRED = ["customer_id", "purchase_days", "orders", "recency_days", "tenure_days", "mean_gap_days",
             "purchase_value", "average_order_value"]
_DAYS_PER_YEAR = 365.25


class RulesError(ClmError):
    """The edited rules table cannot be used as it is."""


# --- the rules table --------------------------------------------------------------------------------------------

def _has_money(customers: pd.DataFrame) -> bool:
    return bool(customers["average_order_value"].notna().any())


def default_rules(customers: pd.DataFrame, *, valuable_share: float = 0.2) -> pd.DataFrame:
    """The starting rules for these customers (the customer table), as a marketer would set them.

    From the data: the *usual gap* is the median of repeat customers' mean days between purchases (30 without
    repeat customers); *active* customers bought within two usual gaps, *lapsed* ones longer ago; *new*
    one-time buyers bought within one usual gap; *valuable* is the top ``valuable_share`` by value. Costs per
    contact are shares of the median order value (so they read right in any currency): a win-back offer 10 %
    (a discount), a loyalty perk 5 %, a second-purchase nudge 2 %, a cross-sell or reactivation e-mail 1 %.
    Success rates (share of contacted customers who respond) are assumptions to replace with the results of
    your own campaigns: 10 %, 15 %, 20 %, 5 % and 2 %.
    """
    _require(customers)
    if not 0 < valuable_share < 1:
        raise ValueError("valuable_share is a share between 0 and 1")
    bought = customers[customers["purchase_days"] > 0]
    usual_gap = bought["mean_gap_days"].median()
    usual_gap = float(round(usual_gap)) if pd.notna(usual_gap) and usual_gap >= 1 else 30.0
    active = 2 * usual_gap
    order_value = bought["average_order_value"].median() if _has_money(customers) else 1.0
    order_value = float(order_value) if pd.notna(order_value) and order_value > 0 else 1.0

    def cost(share: float) -> float:
        return round(share * order_value, 2 if order_value >= 1 else 4)

    valuable = round(100 * (1 - valuable_share), 2)
    blank = np.nan
    rows = [
        # action, risk from, risk to, percentile from, below, purchase days, days from, days to, cost, success,
        # value if it works, extra orders
        (WIN_BACK, 0.6, blank, valuable, blank, blank, blank, blank, cost(0.10), 0.10, CUSTOMER_VALUE, blank),
        (SECOND_PURCHASE, blank, blank, blank, blank, 1, blank, usual_gap, cost(0.02), 0.15, EXTRA_ORDERS, 1.0),
        (LOYALTY, blank, blank, valuable, blank, blank, blank, active, cost(0.05), 0.20, EXTRA_ORDERS, 1.0),
        (CROSS_SELL, blank, blank, blank, blank, blank, blank, active, cost(0.01), 0.05, EXTRA_ORDERS, 1.0),
        (REACTIVATION, blank, blank, blank, valuable, blank, active + 1, blank, cost(0.01), 0.02, EXTRA_ORDERS, 1.0),
    ]
    columns = [column for column in RULE_COLUMNS if column not in ("priority", "who")]
    rules = pd.DataFrame(rows, columns=columns)
    rules.insert(1, "priority", np.arange(1, len(rules) + 1))
    return describe_rules(rules)


def _describe(rule: pd.Series) -> str:
    """Who a rule is for, in words, from its thresholds."""
    def given(column: str) -> bool:
        return pd.notna(rule[column])

    def number(value: float) -> str:
        return f"{value:g}"

    parts = []
    if given("min_risk") and given("max_risk"):
        parts.append(f"churn risk {_percent(rule['min_risk'])} to {_percent(rule['max_risk'])}")
    elif given("min_risk"):
        parts.append(f"churn risk {_percent(rule['min_risk'])} or more")
    elif given("max_risk"):
        parts.append(f"churn risk up to {_percent(rule['max_risk'])}")
    if given("min_value_percentile") and given("max_value_percentile"):
        parts.append(f"value percentile {number(rule['min_value_percentile'])} to below "
                     f"{number(rule['max_value_percentile'])}")
    elif given("min_value_percentile"):
        parts.append(f"top {number(100 - rule['min_value_percentile'])} % by value")
    elif given("max_value_percentile"):
        parts.append(f"outside the top {number(100 - rule['max_value_percentile'])} % by value")
    if given("max_purchase_days"):
        days = rule["max_purchase_days"]
        parts.append("one-time buyers" if days == 1 else f"at most {number(days)} purchase days")
    if given("min_days_since_last") and given("max_days_since_last"):
        parts.append(f"last purchase {number(rule['min_days_since_last'])} to "
                     f"{number(rule['max_days_since_last'])} days ago")
    elif given("min_days_since_last"):
        parts.append(f"no purchase for {number(rule['min_days_since_last'])} days or more")
    elif given("max_days_since_last"):
        parts.append(f"bought in the last {number(rule['max_days_since_last'])} days")
    return ", ".join(parts) or "every customer who bought"


def describe_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """``rules`` with the ``who`` column written from the thresholds, in :data:`RULE_COLUMNS` order."""
    rules = rules.copy()
    rules["who"] = [_describe(rule) for _, rule in rules.iterrows()] if len(rules) else pd.Series(dtype=object)
    return rules[list(RULE_COLUMNS)]


def _row_name(position: int, action: object) -> str:
    return f"row {position + 1} ({action})" if isinstance(action, str) and action.strip() else f"row {position + 1}"


def validate_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """The edited rules table, checked and tidied: numbers as numbers, sorted by priority, ``who`` rewritten.

    Raises :class:`RulesError` with a sentence naming the row and what to change.
    """
    if rules is None or len(rules) == 0:
        raise RulesError("The rules table is empty: add at least one action, or reset the table to the defaults.")
    missing = [column for column in RULE_COLUMNS if column not in rules.columns and column != "who"]
    if missing:
        raise RulesError(f"The rules table has no column {', '.join(missing)}; reset the table to the defaults.")
    rules = rules.reset_index(drop=True).copy()
    rules["action"] = rules["action"].astype(object).where(rules["action"].notna(), None)
    for position, action in enumerate(rules["action"]):
        if not isinstance(action, str) or not action.strip():
            raise RulesError(f"Row {position + 1} of the rules has no action: pick one of {', '.join(ACTIONS)}, "
                             "or delete the row.")
        if action.strip() not in ACTIONS:
            raise RulesError(f"Unknown action {action!r} in {_row_name(position, None)} of the rules: the actions "
                             f"are {', '.join(ACTIONS)}.")
    rules["action"] = rules["action"].str.strip()
    for column in [*_NUMBERS, "priority"]:
        numbers = pd.to_numeric(rules[column].astype(object), errors="coerce")
        bad = numbers.isna() & rules[column].notna() & (rules[column].astype(str).str.strip() != "")
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise RulesError(f"{RULE_COLUMNS[column]} in {_row_name(position, rules['action'][position])} is "
                             f"{rules[column][position]!r}, not a number.")
        rules[column] = numbers.astype(float)
    contacting = rules["action"] != NO_CONTACT

    def check(failing: pd.Series, message: str) -> None:
        if failing.any():
            position = int(np.flatnonzero(failing.to_numpy())[0])
            row = _row_name(position, rules["action"][position])
            raise RulesError(message.format(row=row, Row=row[0].upper() + row[1:],
                                            value=rules.iloc[position].to_dict()))

    check(rules["priority"].isna(), "{Row} has no priority: give it a number (1 is tried first).")
    check(contacting & rules["success_rate"].isna(),
          "{Row} has no success rate: give the share of contacted customers who respond, between 0 and 1.")
    check((rules["success_rate"] < 0) | (rules["success_rate"] > 1),
          "The success rate in {row} is {value[success_rate]:g}; it is a share between 0 and 1 (0.1 means "
          "10 % of contacted customers respond).")
    check(contacting & rules["cost_per_contact"].isna(),
          "{Row} has no cost per contact: give what one contact costs (0 if nothing).")
    check(rules["cost_per_contact"] < 0,
          "The cost per contact in {row} is {value[cost_per_contact]:g}; a cost cannot be negative.")
    for column in ("min_risk", "max_risk"):
        check((rules[column] < 0) | (rules[column] > 1),
              f"{RULE_COLUMNS[column]} in {{row}} is {{value[{column}]:g}}; churn risk is a share between 0 "
              "and 1 (0.6 means 60 %).")
    for column in ("min_value_percentile", "max_value_percentile"):
        check((rules[column] < 0) | (rules[column] > 100),
              f"{RULE_COLUMNS[column]} in {{row}} is {{value[{column}]:g}}; a percentile is between 0 and 100 "
              "(80 means the top 20 %).")
    for column in ("min_days_since_last", "max_days_since_last"):
        check(rules[column] < 0, f"{RULE_COLUMNS[column]} in {{row}} is {{value[{column}]:g}}; days cannot be "
                                 "negative.")
    check(rules["max_purchase_days"] < 1,
          "Purchase days up to in {row} is {value[max_purchase_days]:g}; it is at least 1 (1 means one-time "
          "buyers).")
    for low, high, what in (("min_risk", "max_risk", "churn risk"),
                            ("min_value_percentile", "max_value_percentile", "value percentile"),
                            ("min_days_since_last", "max_days_since_last", "days since last purchase")):
        check(rules[low] > rules[high], f"In {{row}} the {what} starts above where it ends "
                                        f"({{value[{low}]:g}} > {{value[{high}]:g}}); swap the two numbers.")
    basis = rules["value_if_it_works"].astype(object).where(rules["value_if_it_works"].notna(), None)
    rules["value_if_it_works"] = basis.map(lambda text: text.strip().lower() if isinstance(text, str) else text)
    check(contacting & ~rules["value_if_it_works"].isin(VALUE_BASES),
          f"Value if it works in {{row}} is {{value[value_if_it_works]!r}}; choose "
          f"{' or '.join(repr(basis) for basis in VALUE_BASES)}.")
    orders = contacting & (rules["value_if_it_works"] == EXTRA_ORDERS)
    check(orders & (rules["extra_orders"].isna() | (rules["extra_orders"] <= 0)),
          "{Row} counts its value in extra orders but gives no positive number of them: say how many extra "
          "orders a customer who responds places (e.g. 1).")
    rules = rules.sort_values("priority", kind="stable", ignore_index=True)
    return describe_rules(rules)


def value_note(customers: pd.DataFrame) -> str:
    """In words, what the money columns of the rules and of the actions are counted in, for these customers."""
    if _has_money(customers):
        return ("Costs and values are in the data's currency. Value is what a customer spent, net of returns; "
                "\"customer value\" is their CLV when it was computed, else their average order value times their "
                "orders per year so far.")
    return ("The data have no amounts, so costs and values are counted in orders: a cost per contact of 0.05 means "
            "one contact costs a twentieth of what an order brings, and the expected net value is in orders. Value "
            "percentiles rank customers by their number of orders.")


# --- the inputs per customer ------------------------------------------------------------------------------------

def _require(customers: pd.DataFrame) -> None:
    for column in _REQUIRED:
        if column not in customers.columns:
            raise SchemaError(f"Required column {column} missing from the customer table.")


def with_model_scores(customers: pd.DataFrame, *, churn: pd.DataFrame | None = None,
                      clv: pd.DataFrame | None = None) -> pd.DataFrame:
    """``customers`` with a churn model's ``risk`` (``churn``: customer_id, risk as a probability 0..1) and the
    CLV models' ``clv``, ``probability_alive`` and ``expected_order_value`` (``clv``: as
    :func:`clm_core.clv.predict_clv` scores), merged by customer id; columns of the same name are replaced."""
    merged = customers
    for scores, columns in ((churn, ["risk"]), (clv, ["clv", "probability_alive", "expected_order_value"])):
        if scores is None:
            continue
        columns = [column for column in columns if column in scores.columns]
        merged = merged.drop(columns=[column for column in columns if column in merged.columns])
        merged = merged.merge(scores[["customer_id", *columns]], on="customer_id", how="left",
                              validate="one_to_one")
    return merged


def _risk(customers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Churn risk 0..1 per customer and, per customer, which of :data:`_RISK_BASES` it came from."""
    descriptive = chance_of_leaving(descriptive_risk(customers), predictive=False).to_numpy(dtype=float)
    risk = descriptive.copy()
    basis = np.full(len(customers), 2, dtype=np.int8)
    if "probability_alive" in customers:
        alive = customers["probability_alive"].to_numpy(dtype=float)
        known = ~np.isnan(alive)
        risk[known], basis[known] = 1 - alive[known], 1
    if "risk" in customers:
        model = customers["risk"].to_numpy(dtype=float)
        if np.nanmax(np.abs(model - 0.5), initial=0) > 0.5:
            raise SchemaError(f"The risk column holds values outside 0 to 1 (from {np.nanmin(model):g} to "
                              f"{np.nanmax(model):g}): pass a churn probability (descriptive risk converts with "
                              "clm_core.churn.chance_of_leaving).")
        known = ~np.isnan(model)
        risk[known], basis[known] = model[known], 0
    basis[np.isnan(risk)] = -1  # no purchase: no risk to speak of
    return risk, basis


_RISK_BASES = ["churn model", "1 - probability alive", "days since last purchase vs usual gap"]


def _value_percentile(worth: pd.Series, bought: np.ndarray) -> np.ndarray:
    """Per buying customer, the share (in %) of buying customers with a lower value; NaN for the others."""
    percentile = np.full(len(worth), np.nan)
    ranks = worth[bought].rank(method="min").to_numpy()
    percentile[bought] = 100 * (ranks - 1) / max(int(bought.sum()), 1)
    return percentile


class _Inputs:
    """The per-customer numbers the rules read, as numpy arrays in the customers' order."""

    def __init__(self, customers: pd.DataFrame) -> None:
        self.money = _has_money(customers)
        self.bought = customers["purchase_days"].to_numpy() > 0
        self.days = customers["recency_days"].to_numpy(dtype=float)
        self.purchase_days = customers["purchase_days"].to_numpy(dtype=float)
        self.risk, self.risk_basis = _risk(customers)
        worth = customers["purchase_value"] if self.money else customers["orders"].astype(float)
        self.worth = worth.to_numpy(dtype=float)
        self.percentile = _value_percentile(worth, self.bought)
        per_year = customers["orders"].to_numpy(dtype=float) * _DAYS_PER_YEAR / np.maximum(
            customers["tenure_days"].to_numpy(dtype=float), _DAYS_PER_YEAR)
        if self.money:
            average = customers["average_order_value"].to_numpy(dtype=float)
            expected = customers["expected_order_value"].to_numpy(dtype=float) \
                if "expected_order_value" in customers else np.full(len(customers), np.nan)
            self.from_expected_order = ~np.isnan(expected)
            self.order_value = np.where(self.from_expected_order, expected, average)
            clv = customers["clv"].to_numpy(dtype=float) if "clv" in customers else np.full(len(customers), np.nan)
            self.from_clv = ~np.isnan(clv)
            self.customer_value = np.where(self.from_clv, clv, average * per_year)
        else:
            self.from_expected_order = self.from_clv = np.zeros(len(customers), dtype=bool)
            self.order_value = np.ones(len(customers))
            self.customer_value = per_year

    def fits(self, rule) -> np.ndarray:
        """Which customers fit the rule's thresholds (only customers who bought fit any rule)."""
        fits = self.bought.copy()
        for column, values, below in (("min_risk", self.risk, False), ("max_risk", self.risk, True),
                                      ("min_value_percentile", self.percentile, False),
                                      ("max_purchase_days", self.purchase_days, True),
                                      ("min_days_since_last", self.days, False),
                                      ("max_days_since_last", self.days, True)):
            limit = getattr(rule, column)
            if not np.isnan(limit):
                fits &= values <= limit if below else values >= limit
        if not np.isnan(rule.max_value_percentile):
            fits &= self.percentile < rule.max_value_percentile
        return fits

    def value_if_it_works(self, rule) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Per customer, what the action brings when it works; and how it was valued, as a position (0 or 1) in
        a list of two descriptions."""
        if rule.value_if_it_works == CUSTOMER_VALUE:
            if not self.money:
                return self.customer_value, np.zeros(len(self.bought), dtype=np.int8), ["orders per year so far"] * 2
            return self.customer_value, (~self.from_clv).astype(np.int8), [
                "customer's CLV", "average order value x orders per year so far"]
        orders = f"{rule.extra_orders:g} extra order{'' if rule.extra_orders == 1 else 's'}"
        value = rule.extra_orders * self.order_value
        if not self.money:
            return value, np.zeros(len(self.bought), dtype=np.int8), [orders] * 2
        return value, (~self.from_expected_order).astype(np.int8), [orders + " x expected order value",
                                                                    orders + " x average order value"]


# --- words ------------------------------------------------------------------------------------------------------

def _whole(values: np.ndarray) -> pd.Series:
    """Whole numbers as text, for a million of them in a fraction of a second."""
    return pd.Series(np.rint(np.nan_to_num(values)).astype(np.int64)).astype(str)


def _amount(values: np.ndarray) -> pd.Series:
    """Money (or orders) as text: two decimals below 100, whole numbers with thousands separators above."""
    return pd.Series([f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" for value in values.tolist()],
                     dtype=object)


def _percent(share: float) -> str:
    return f"{100 * share:.3g} %"


def _days_ago(days: np.ndarray) -> pd.Series:
    return "last purchase " + _whole(days) + pd.Series(np.where(days == 1, " day ago", " days ago"))


def _top_share(percentile: np.ndarray) -> pd.Series:
    """The top share a customer is in, as text ("top 8 %"), from their percentile (share who spent less)."""
    return "top " + _whole(np.maximum(np.rint(100 - percentile), 1)) + " %"


def _reason(rule, inputs: _Inputs, rows: np.ndarray) -> pd.Series:
    """Why each of ``rows`` (positions) fits the rule, in the customers' own numbers."""
    by = " by spend" if inputs.money else " by orders"
    parts: list[pd.Series] = []
    if not (np.isnan(rule.min_risk) and np.isnan(rule.max_risk)):
        level = "high risk (" if not np.isnan(rule.min_risk) else "risk ("
        parts.append(level + _whole(100 * inputs.risk[rows]) + " %)")
    if not np.isnan(rule.min_value_percentile):
        parts.append(_top_share(inputs.percentile[rows]) + by)
    elif not np.isnan(rule.max_value_percentile):
        parts.append("outside the top " + f"{100 - rule.max_value_percentile:g} %" + by)
    if not np.isnan(rule.max_purchase_days):
        days = inputs.purchase_days[rows]
        parts.append(pd.Series(np.where(days == 1, "one purchase so far", ""))
                     .where(days == 1, _whole(days) + " purchase days"))
    if not (np.isnan(rule.min_days_since_last) and np.isnan(rule.max_days_since_last)):
        parts.append(_days_ago(inputs.days[rows]))
    if not parts:
        return pd.Series(np.full(len(rows), "fits every customer who bought", dtype=object))
    reason = parts[0]
    for part in parts[1:]:
        reason = reason + " and " + part
    return reason


def _fits_no_rule(inputs: _Inputs, rows: np.ndarray) -> pd.Series:
    by = " by spend" if inputs.money else " by orders"
    return ("fits no rule (risk " + _whole(100 * inputs.risk[rows]) + " %, " + _top_share(inputs.percentile[rows])
            + by + ", " + _days_ago(inputs.days[rows]) + ")")


# --- choosing ---------------------------------------------------------------------------------------------------

def _top_recommendations(recommendations: pd.DataFrame) -> pd.DataFrame:
    """Each customer's best recommended product: customer_id, product_id, product_name."""
    for column in ("customer_id", "rank", "product_id"):
        if column not in recommendations.columns:
            raise SchemaError(f"Required column {column} missing from the recommendations.")
    # Sorting by rank alone (a number) and keeping each customer's first row is several times faster than sorting
    # by customer id too.
    top = recommendations.sort_values("rank", kind="stable").drop_duplicates("customer_id")
    names = top["product_name"] if "product_name" in top else pd.Series(np.nan, index=top.index)
    return pd.DataFrame({"customer_id": top["customer_id"].to_numpy(), "product_id": top["product_id"].to_numpy(),
                         "product_name": names.to_numpy()})


def next_best_actions(customers: pd.DataFrame, rules: pd.DataFrame, *,
                      recommendations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One action per customer, in the customers' order.

    ``customers``: the customer table, optionally with ``risk``, ``clv``, ``probability_alive`` and
    ``expected_order_value`` (:func:`with_model_scores`). ``rules``: the (edited) rules table, checked by
    :func:`validate_rules`. ``recommendations`` (customer_id, rank, product_id, product_name, as
    :mod:`clm_core.recommend` makes them): when given, a cross-sell goes only to customers with a recommended
    product, and names their top one.

    Columns (:data:`ACTION_COLUMNS`): ``customer_id``, ``action``, ``reason`` (plain words), ``expected_net_value``
    (success rate x value if it works - cost per contact; 0 for no contact), ``value_unit`` ("money" or
    "orders"), ``value_if_it_works`` and ``value_basis`` (how it was valued), ``success_rate``,
    ``cost_per_contact``, ``product_id`` and ``product_name`` (cross-sell only), and the inputs: ``risk`` (0..1),
    ``risk_basis``, ``value_percentile``, ``purchase_days``, ``days_since_last_purchase``.
    """
    _require(customers)
    rules = validate_rules(rules)
    customers = customers.reset_index(drop=True)
    inputs = _Inputs(customers)
    count = len(customers)
    chosen = np.full(count, -1, dtype=np.int64)
    net = np.zeros(count)
    worth = np.full(count, np.nan)
    bases: list[str] = []  # the descriptions of how values were made; ``basis`` holds positions in it
    basis = np.full(count, -1, dtype=np.int64)
    unpaid = np.full(count, -1, dtype=np.int64)  # the first rule a customer fits that does not pay for them
    unpaid_worth = np.full(count, np.nan)
    recommended = None
    if recommendations is not None:
        top = _top_recommendations(recommendations).set_index("customer_id")
        pick = top.index.get_indexer(customers["customer_id"])
        recommended = pick >= 0
    for number, rule in enumerate(rules.itertuples(index=False)):
        fits = inputs.fits(rule) & (chosen < 0)
        if rule.action == CROSS_SELL and recommended is not None:
            fits &= recommended
        if rule.action == NO_CONTACT:
            chosen[fits] = number
            continue
        value, made, words = inputs.value_if_it_works(rule)
        rule_net = rule.success_rate * value - rule.cost_per_contact
        pays = fits & (rule_net > 0)
        chosen[pays] = number
        net[pays], worth[pays], basis[pays] = rule_net[pays], value[pays], made[pays] + len(bases)
        bases += words
        missed = fits & ~pays & (unpaid < 0)
        unpaid[missed], unpaid_worth[missed] = number, value[missed]
    reason = np.full(count, "", dtype=object)
    success = np.full(count, np.nan)
    cost = np.full(count, np.nan)
    product_id = np.full(count, None, dtype=object)
    product_name = np.full(count, None, dtype=object)
    for number, rule in enumerate(rules.itertuples(index=False)):
        rows = np.flatnonzero(chosen == number)
        if not len(rows):
            continue
        text = _reason(rule, inputs, rows)
        if rule.action != NO_CONTACT:
            success[rows], cost[rows] = rule.success_rate, rule.cost_per_contact
        if rule.action == CROSS_SELL and recommended is not None:
            picks = top.iloc[pick[rows]]
            product_id[rows] = picks["product_id"].to_numpy(dtype=object)
            product_name[rows] = picks["product_name"].to_numpy(dtype=object)
            named = picks["product_name"].where(picks["product_name"].notna(), picks["product_id"])
            text = text + "; suggest " + pd.Series(named.astype(str).to_numpy())
        reason[rows] = text.to_numpy(dtype=object)
    left = chosen < 0
    for number, rule in enumerate(rules.itertuples(index=False)):
        rows = np.flatnonzero(left & (unpaid == number))
        if len(rows):
            cost_text = _amount(np.array([rule.cost_per_contact]))[0]
            reason[rows] = (f"{rule.action.lower()} would not pay: {_percent(rule.success_rate)} x "
                            + _amount(unpaid_worth[rows]) + f" is less than its cost of {cost_text}").to_numpy()
    rows = np.flatnonzero(left & (unpaid < 0) & inputs.bought)
    reason[rows] = _fits_no_rule(inputs, rows).to_numpy(dtype=object)
    reason[~inputs.bought] = "no purchase yet (only returns)"
    categories = list(dict.fromkeys([*rules["action"], NO_CONTACT]))
    action_code = np.array([categories.index(action) for action in rules["action"]] + [len(categories) - 1])[chosen]
    basis_labels = list(dict.fromkeys(bases))
    basis_code = np.array([basis_labels.index(label) for label in bases] + [-1], dtype=np.int64)[basis]
    return pd.DataFrame({
        "customer_id": customers["customer_id"],
        "action": pd.Categorical.from_codes(action_code, categories=categories),
        "reason": reason,
        "expected_net_value": net,
        "value_unit": pd.Categorical.from_codes(np.zeros(count, dtype=np.int8),
                                                categories=["money" if inputs.money else "orders"]),
        "value_if_it_works": worth,
        "value_basis": pd.Categorical.from_codes(basis_code, categories=basis_labels),
        "success_rate": success,
        "cost_per_contact": cost,
        "product_id": product_id,
        "product_name": product_name,
        "risk": inputs.risk,
        "risk_basis": pd.Categorical.from_codes(inputs.risk_basis, categories=_RISK_BASES),
        "value_percentile": inputs.percentile,
        "purchase_days": customers["purchase_days"].to_numpy(),
        "days_since_last_purchase": inputs.days,
    })


def action_summary(actions: pd.DataFrame) -> pd.DataFrame:
    """Per action (in priority order, no contact last): ``customers``, ``share`` of all customers,
    ``contact_cost`` (cost per contact x customers), ``expected_net_value`` (total) and ``value_unit``."""
    unit = str(actions["value_unit"].iloc[0]) if len(actions) else "money"
    grouped = actions.groupby("action", observed=True, sort=True)
    summary = pd.DataFrame({
        "customers": grouped.size(),
        "contact_cost": grouped["cost_per_contact"].sum(min_count=0),
        "expected_net_value": grouped["expected_net_value"].sum(),
    })
    summary.insert(1, "share", summary["customers"] / max(len(actions), 1))
    summary["value_unit"] = unit
    summary = summary.reset_index()
    summary["action"] = summary["action"].astype(str)
    return summary
