"""Customer segments: RFM scores and named segments, clusters, and lifecycle stages, as of any date.

**RFM scores** (:func:`rfm_scores`) read the customer table (:mod:`clm_core.customers`) of the customers who
bought by the date: R from ``recency_days`` (fewer days scores higher), F from ``purchase_days``, M from
``purchase_value`` (what their purchase days were worth, net of the returns that cancel them). Each is scored
1 to 5 on its percentile rank with ties averaged:

    p = (average rank - 1/2) / n,    score = floor(5 p) + 1

so score s holds the customers whose percentile falls in [(s-1)/5, s/5): quintiles. Customers with the same
value always share a score, that of the middle of their tie group; a tie group wider than a fifth leaves a
score empty (in Online Retail 36 % bought on one day only: their middle is the 18th percentile, so all get
F 1; those with two purchase days, from the 36th to the 56th, get F 3; nobody gets F 2). The score rules
(``RFMScores.score_rules``) list the values each score covers. With fewer than five customers the same rule
uses fewer levels, spread over 1 to 5 (one customer scores 3), with a note. Without amounts in the data there
is no M score, and a note says so. **FM** is the mean of F and M rounded half up, (F + M + 1) // 2 (F alone
without amounts).

**Named segments** come from an editable rules table (:func:`default_segment_rules`): each rule a range of R
and a range of FM; a customer gets the first rule by priority they fit. Every one of the 25 (R, FM) pairs must
be covered (:func:`validate_segment_rules` says which is not), so every customer gets exactly one segment;
the default table ends with a catch-all. Customers with no purchase left by the date, only returns (of what
they bought before the data start, or of all they bought), have no scores and are in their own segment and
stage, :data:`RETURNS_ONLY`.

**Clusters** (:func:`cluster_customers`): k-means on log-scaled, standardized R, F, M (and any numeric
customer-table columns named), k chosen by the silhouette over a range; or DBSCAN. Each cluster is described in
words from its medians against the tertiles of all customers ("frequent, recent, low spend").

**Lifecycle stages** (:func:`lifecycle_stages`; thresholds in :class:`StageSettings`), one per customer, the
first that applies in this order:

1. *Returns only*: no purchase left by the date, only returns.
2. *Acquisition*: first purchase in the last ``period_days`` (default 30).
3. *Reactivated*: bought in the last ``period_days`` after a gap longer than ``churn_days``.
4. *Churned*: no purchase for more than ``churn_days`` (default 180); or, when a ``probability_alive`` column
   is given, probability alive below ``alive_threshold`` (default 0.2).
5. *At risk*: a repeat customer past their usual gap (``recency_gap_ratio`` above ``gap_ratio``, default 1), a
   one-time buyer with no purchase for more than ``one_time_days`` (default 90); or, when a churn ``risk``
   column is given, risk above ``risk_threshold`` (default 0.5).
6. *Development*: repeat customers spending or buying more: ``spend_trend`` or ``frequency_trend`` (purchase
   days in the last 90 days against the 90 before, as ``spend_trend``) above zero.
7. *Retention*: every other active customer: repeat customers within their usual gap and not growing, and
   one-time buyers past the acquisition period but not yet past ``one_time_days`` (awaiting a second purchase).

**Stages over time** (:func:`stage_history`, :func:`stage_flows`) evaluate the same rules at many dates. A
customer table per month end would re-read every row once per month (5 s each on 10 M rows), and a query giving
the facts per customer and month end would return customers x months rows (27 M for 1.15 M customers over 24
months). Instead one named query (``purchase_day_timeline``) returns every purchase day once (4.9 M on 10 M
rows), netted of returns, as whole days since the data start with its value, by customer then day; numpy then
evaluates all dates at once, by blocks of customers. It finds from which date on each purchase day counts
(``searchsorted``), counts per customer and date the purchase days up to the date, up to 90 and up to 180 days
before it (a ``bincount`` and a ``cumsum``), and from these positions gathers the first and last purchase day,
the spend of the two 90-day windows (prefix sums) and the last comeback (a purchase after a gap longer than
``churn_days``). Those are the customer table's columns the stage rules read, and the tests check the two
agree. The rules then run on customers x dates arrays, so the history of 1.15 M customers over 25 dates costs
the query (2.5 s) and 2.5 s of numpy. :func:`segment_customers` reads the customer table's own columns and
takes from the timeline only what the customer table lacks (``frequency_trend``, ``days_since_comeback``).

Purchase days are netted of every return up to the timeline's end, so a purchase later returned in full counts
at no date; the customer table as of an earlier date knows only the returns made by then (so a flow's starting
stages can differ from those of :func:`segment_customers` at that date for the few customers who returned
since). The model columns (``risk``, ``probability_alive``) exist only for the present, so history and flows use
the day-count rules alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from clm_core.customers import customer_table, data_span
from clm_core.engine import Engine
from clm_core.errors import ClmError, DataRangeError, SchemaError

__all__ = [
    "LABELS",
    "result_labels",
    "store_labels",
    "standard_labels",
    "stored_labels",
    "customer_labels",
    "with_labels",
    "SEGMENTS",
    "RETURNS_ONLY",
    "ACQUISITION",
    "REACTIVATED",
    "CHURNED",
    "AT_RISK",
    "DEVELOPMENT",
    "RETENTION",
    "STAGES",
    "NOT_YET_A_CUSTOMER",
    "SEGMENT_RULE_COLUMNS",
    "SCORE_LEVELS",
    "SegmentRulesError",
    "RFMScores",
    "rfm_scores",
    "default_segment_rules",
    "validate_segment_rules",
    "assign_segments",
    "segment_profiles",
    "ClusterResult",
    "cluster_customers",
    "StageSettings",
    "lifecycle_stages",
    "PurchaseTimeline",
    "purchase_timeline",
    "stage_facts",
    "stage_history",
    "stage_flows",
    "SegmentResult",
    "segment_customers",
]

SCORE_LEVELS = 5

SEGMENTS = ("Champions", "Loyal", "Potential loyalists", "New", "Promising", "Need attention", "About to sleep",
            "Cannot lose them", "At risk", "Hibernating", "Lost")
RETURNS_ONLY = "Returns only"

ACQUISITION = "Acquisition"
DEVELOPMENT = "Development"
RETENTION = "Retention"
REACTIVATED = "Reactivated"
AT_RISK = "At risk"
CHURNED = "Churned"
# In lifecycle order, the order of a stacked chart.
STAGES = (ACQUISITION, DEVELOPMENT, RETENTION, REACTIVATED, AT_RISK, CHURNED, RETURNS_ONLY)
NOT_YET_A_CUSTOMER = "Not yet a customer"

# The segment rules table's columns, with the heading a page shows for each. Score ranges include both ends.
SEGMENT_RULE_COLUMNS = {
    "segment": "Segment",
    "priority": "Priority (1 is tried first)",
    "r_from": "R score from",
    "r_to": "R score to",
    "fm_from": "F(M) score from",
    "fm_to": "F(M) score to",
    "description": "Who they are",
}
_RULE_SCORES = ["r_from", "r_to", "fm_from", "fm_to"]

_TABLE_COLUMNS = ["customer_id", "recency_days", "purchase_days", "purchase_value"]
_MEASURES = {"R": ("recency_days", "days since last purchase"), "F": ("purchase_days", "purchase days"),
             "M": ("purchase_value", "purchase value")}
# A trend counts as growth above this (a millionth), so that rounding in sums never does.
_GROWTH = 1e-6
# The customer table's spend windows: the 90 days up to the date and the 90 before.
_TREND_DAYS = 90


class SegmentRulesError(ClmError):
    """The edited segment rules table cannot be used as it is."""


# --- RFM scores -------------------------------------------------------------------------------------------------

@dataclass
class RFMScores:
    """RFM scores as of one date.

    ``scores``: per customer of the table (same order), ``customer_id``, ``recency_days``, ``purchase_days``,
    ``purchase_value``, ``r_score``, ``f_score``, ``m_score``, ``fm_score`` (whole numbers 1-5; empty for
    customers with only returns, and ``m_score`` without amounts). ``score_rules``: per score letter and level,
    the customers, the percentile band and the values it covers (``lowest``, ``highest``) with the rule in words.
    """

    scores: pd.DataFrame
    score_rules: pd.DataFrame
    has_money: bool
    notes: list[str] = field(default_factory=list)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank; whole numbers over a short range (days, purchase days) by
    counting, three times faster than sorting a million of them."""
    low = values.min()
    if np.all(values == np.round(values)) and values.max() - low < 4 * len(values) + 1000:
        shifted = (values - low).astype(np.int64)
        counts = np.bincount(shifted)
        below = np.cumsum(counts) - counts
        return (below + (counts + 1) / 2)[shifted]
    return rankdata(values, method="average")


def _percentile_scores(values: np.ndarray) -> np.ndarray:
    """Score 1..5 per value: floor(5 p) + 1 with p = (average rank - 1/2) / n (ties share the mean rank)."""
    percentile = (_average_ranks(values) - 0.5) / len(values)
    return (np.floor(SCORE_LEVELS * percentile) + 1).astype(np.int64)


def _has_money(table: pd.DataFrame) -> bool:
    return bool(table["purchase_value"].notna().any())


def _require(table: pd.DataFrame, columns: list[str], what: str = "the customer table") -> None:
    for column in columns:
        if column not in table.columns:
            raise SchemaError(f"Required column {column} missing from {what}.")


def _count(number: int, word: str) -> str:
    return f"{number:,} {word}{'' if number == 1 else 's'}"


def _value_words(letter: str, low: float, high: float) -> str:
    def show(value: float) -> str:
        return f"{value:,.2f}" if letter == "M" else f"{value:,.0f}"

    span = show(low) if low == high else f"{show(low)} to {show(high)}"
    if letter == "R":
        return f"last purchase {span} days ago"
    if letter == "F":
        return f"{span} purchase day" + ("" if low == high == 1 else "s")
    return f"spent {span}"


def _score_rules(bought: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = []
    for letter, level in scores.items():
        column, measure = _MEASURES[letter]
        values = bought[column].to_numpy(dtype=float)
        for score in range(1, SCORE_LEVELS + 1):
            chosen = values[level == score]
            low, high = (chosen.min(), chosen.max()) if len(chosen) else (np.nan, np.nan)
            rows.append({"score": letter, "level": score, "measure": measure, "customers": len(chosen),
                         "percentile_from": 100 * (score - 1) / SCORE_LEVELS,
                         "percentile_to": 100 * score / SCORE_LEVELS, "lowest": low, "highest": high,
                         "rule": _value_words(letter, low, high) if len(chosen) else "nobody (ties)"})
    return pd.DataFrame(rows)


def rfm_scores(table: pd.DataFrame) -> RFMScores:
    """R, F and M scores 1-5 of the customers in ``table`` (the customer table as of the date), with the score
    rules and notes; see the module docstring for the rule. :class:`DataRangeError` when nobody has bought."""
    _require(table, _TABLE_COLUMNS)
    bought_mask = table["purchase_days"].to_numpy() > 0
    bought = table[bought_mask]
    n = len(bought)
    if n == 0:
        raise DataRangeError("No customer had bought anything by this date: RFM scores need purchases. Pick a "
                             "later date.")
    money = _has_money(table)
    levels = {"R": _percentile_scores(-bought["recency_days"].to_numpy(dtype=float)),
              "F": _percentile_scores(bought["purchase_days"].to_numpy(dtype=float))}
    if money:
        levels["M"] = _percentile_scores(bought["purchase_value"].fillna(0).to_numpy(dtype=float))
    fm = (levels["F"] + levels["M"] + 1) // 2 if money else levels["F"]
    scores = table[_TABLE_COLUMNS].copy()
    for name, values in (("r_score", levels["R"]), ("f_score", levels["F"]), ("m_score", levels.get("M")),
                         ("fm_score", fm)):
        column = pd.Series(pd.NA, index=table.index, dtype="Int64")
        if values is not None:
            column[bought_mask] = values
        scores[name] = column
    notes = []
    if not money:
        notes.append("The data have no amounts: customers are scored on recency and frequency only (no M score), "
                     "and the segment rules read F where they say F(M).")
    if n < SCORE_LEVELS:
        notes.append(f"Only {_count(n, 'customer')} had bought by then: too few for five groups, so the scores use "
                     f"{len(np.unique(levels['R']))} levels spread over 1 to 5 (each customer's percentile "
                     "decides).")
    rules = _score_rules(bought, levels)
    if n >= SCORE_LEVELS:
        for letter in levels:
            empty = rules[(rules["score"] == letter) & (rules["customers"] == 0)]["level"].tolist()
            if empty:
                measure = _MEASURES[letter][1]
                notes.append(f"Many customers share the same {measure}, so {letter} score "
                             f"{', '.join(map(str, empty))} {'has' if len(empty) == 1 else 'have'} no customers: "
                             "tied customers share one score, that of the middle of their group.")
    returns_only = int((~bought_mask).sum())
    if returns_only:
        notes.append(f"{_count(returns_only, 'customer')} had no purchase left by then, only returns (of what they "
                     f"bought before the data start, or of all they bought): they have no scores and are in "
                     f"'{RETURNS_ONLY}'.")
    return RFMScores(scores=scores, score_rules=rules, has_money=money, notes=notes)


# --- segment rules ----------------------------------------------------------------------------------------------

def default_segment_rules() -> pd.DataFrame:
    """The starting segment rules: one row per rule in :data:`SEGMENT_RULE_COLUMNS`, tried by priority.

    ======================  ======  =======
    Segment                 R       F(M)
    ======================  ======  =======
    Champions               5       4-5
    Loyal                   3-4     4-5
    Potential loyalists     4-5     2-3
    New                     5       1
    Promising               4       1
    Need attention          3       3
    About to sleep          3       1-2
    Cannot lose them        1-2     5
    At risk                 1-2     3-4
    Hibernating             2       1-2
    Lost                    1-5     1-5 (catch-all: what is left is R 1, F(M) 1-2)
    ======================  ======  =======
    """
    rows = [
        ("Champions", 5, 5, 4, 5, "Bought most recently, buy often and spend the most."),
        ("Loyal", 3, 4, 4, 5, "Buy often and spend well, though not the very latest buyers."),
        ("Potential loyalists", 4, 5, 2, 3, "Recent customers with average frequency and spend."),
        ("New", 5, 5, 1, 1, "Bought most recently, but rarely so far."),
        ("Promising", 4, 4, 1, 1, "Fairly recent, with little frequency and spend so far."),
        ("Need attention", 3, 3, 3, 3, "Average recency, frequency and spend."),
        ("About to sleep", 3, 3, 1, 2, "Average recency, below-average frequency and spend: slipping away."),
        ("Cannot lose them", 1, 2, 5, 5, "Used to buy most often and spend the most, but not for a long time."),
        ("At risk", 1, 2, 3, 4, "Bought often and spent well, but long ago."),
        ("Hibernating", 2, 2, 1, 2, "Last bought long ago, rarely and for little."),
        ("Lost", 1, 5, 1, 5, "Everyone the rules above leave out: the longest gone, rarest and lowest spenders."),
    ]
    rules = pd.DataFrame(rows, columns=["segment", "r_from", "r_to", "fm_from", "fm_to", "description"])
    rules.insert(1, "priority", np.arange(1, len(rules) + 1))
    return rules[list(SEGMENT_RULE_COLUMNS)]


def _refuse_first(failing: pd.Series | np.ndarray, rules: pd.DataFrame, message: str) -> None:
    """:class:`SegmentRulesError` for the first failing row: ``message`` formatted with ``row`` ("row 3
    (Loyal)"), ``Row`` (the same, capitalised) and ``rule`` (that row as a dict)."""
    failing = np.asarray(failing, dtype=bool)
    if failing.any():
        position = int(np.flatnonzero(failing)[0])
        name = rules["segment"].iloc[position]
        row = f"row {position + 1}" + (f" ({name.strip()})" if isinstance(name, str) and name.strip() else "")
        raise SegmentRulesError(message.format(row=row, Row=row[0].upper() + row[1:],
                                                rule=rules.iloc[position].to_dict()))


def validate_segment_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """The edited rules, checked and tidied: whole-number scores, sorted by priority (rows of equal priority
    keep their order). Raises :class:`SegmentRulesError` with a sentence naming the row and what to change,
    or the (R, F(M)) scores no rule covers."""
    if rules is None or len(rules) == 0:
        raise SegmentRulesError("The segment rules table is empty: add at least one rule, or reset the table to "
                                "the defaults.")
    missing = [column for column in SEGMENT_RULE_COLUMNS if column not in rules.columns and column != "description"]
    if missing:
        raise SegmentRulesError(f"The segment rules table has no column {', '.join(missing)}; reset the table to "
                                "the defaults.")
    rules = rules.reset_index(drop=True).copy()
    if "description" not in rules:
        rules["description"] = ""
    names = rules["segment"].astype(object)
    named = names.map(lambda name: isinstance(name, str) and bool(name.strip()))
    _refuse_first(~named, rules, "{Row} of the segment rules has no segment name: name it, or delete the row.")
    rules["segment"] = names.str.strip()
    _refuse_first(rules["segment"] == RETURNS_ONLY, rules,
                  f"'{RETURNS_ONLY}' in {{row}} is kept for customers with no purchase, only returns; choose "
                  "another name.")
    for column in ["priority", *_RULE_SCORES]:
        heading = SEGMENT_RULE_COLUMNS[column]
        text = rules[column].astype(object)
        blank = text.isna() | (text.astype(str).str.strip() == "")
        _refuse_first(blank, rules, f"{heading} in {{row}} is empty: give a number.")
        numbers = pd.to_numeric(text, errors="coerce")
        _refuse_first(numbers.isna(), rules, f"{heading} in {{row}} is {{rule[{column}]!r}}, not a number.")
        rules[column] = numbers.astype(float)
    for column in _RULE_SCORES:
        scores = rules[column]
        _refuse_first((scores < 1) | (scores > SCORE_LEVELS) | (scores % 1 != 0), rules,
                      f"{SEGMENT_RULE_COLUMNS[column]} in {{row}} is {{rule[{column}]:g}}; scores are whole numbers "
                      "from 1 to 5.")
        rules[column] = scores.astype(np.int64)
    for low, high, letter in (("r_from", "r_to", "R"), ("fm_from", "fm_to", "F(M)")):
        _refuse_first(rules[low] > rules[high], rules,
                      f"In {{row}} the {letter} score starts above where it ends ({{rule[{low}]}} > "
                      f"{{rule[{high}]}}); swap the two numbers.")
    rules = rules.sort_values("priority", kind="stable", ignore_index=True)
    uncovered = [f"R {r + 1} with F(M) {fm + 1}" for r, fm in zip(*np.nonzero(_rule_grid(rules) < 0))]
    if uncovered:
        shown = ", ".join(uncovered[:4]) + (f" and {len(uncovered) - 4} more" if len(uncovered) > 4 else "")
        raise SegmentRulesError(f"No rule covers {shown}: every customer needs a segment. Widen a rule, or end "
                                "with a catch-all (R 1 to 5, F(M) 1 to 5).")
    return rules[list(SEGMENT_RULE_COLUMNS)]


def _rule_grid(rules: pd.DataFrame) -> np.ndarray:
    """Per (R - 1, FM - 1), the position of the first rule (in ``rules``' order) covering it; -1 for none."""
    grid = np.full((SCORE_LEVELS, SCORE_LEVELS), -1, dtype=np.int64)
    for position, rule in enumerate(rules.itertuples(index=False)):
        cells = grid[rule.r_from - 1:rule.r_to, rule.fm_from - 1:rule.fm_to]
        cells[cells < 0] = position
    return grid


def _segment_order(rules: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(rules["segment"])) + [RETURNS_ONLY]


def assign_segments(scores: pd.DataFrame, rules: pd.DataFrame | None = None) -> pd.Series:
    """Each customer's segment (a categorical in rule order, then :data:`RETURNS_ONLY`): the first rule by
    priority whose R and F(M) ranges hold their ``r_score`` and ``fm_score``; :data:`RETURNS_ONLY` for customers
    without scores. ``rules`` default to :func:`default_segment_rules` and are validated."""
    rules = validate_segment_rules(default_segment_rules() if rules is None else rules)
    _require(scores, ["r_score", "fm_score"], "the scores")
    grid = _rule_grid(rules)
    scored = scores["r_score"].notna().to_numpy()
    r = scores["r_score"].to_numpy(dtype=float, na_value=1).astype(np.int64)
    fm = scores["fm_score"].to_numpy(dtype=float, na_value=1).astype(np.int64)
    order = _segment_order(rules)
    code_of_rule = np.array([order.index(name) for name in rules["segment"]], dtype=np.int64)
    codes = np.where(scored, code_of_rule[grid[r - 1, fm - 1]], len(order) - 1)
    return pd.Series(pd.Categorical.from_codes(codes, categories=order), index=scores.index, name="rfm_segment")


# --- profiles ---------------------------------------------------------------------------------------------------

def _share(part: pd.Series, whole: float) -> pd.Series:
    return part / whole if whole and np.isfinite(whole) and whole > 0 else pd.Series(np.nan, index=part.index)


def segment_profiles(customers: pd.DataFrame, by: str = "rfm_segment") -> pd.DataFrame:
    """Per group of ``by`` (a column of the customer table joined with the segments; categories in their order,
    empty ones included): ``customers``, ``share_of_customers``, ``revenue`` (net of every return),
    ``share_of_revenue``, ``average_order_value`` (purchase value over orders), ``median_days_since_last_purchase``
    and, when the table has a ``clv`` column, ``clv`` (its total). Money columns are empty without amounts."""
    _require(customers, [by, "customer_id", "revenue", "purchase_value", "orders", "recency_days"])
    groups = customers.groupby(by, observed=False, sort=True)
    money = bool(customers["revenue"].notna().any())
    profile = pd.DataFrame({
        "customers": groups["customer_id"].size(),
        "revenue": groups["revenue"].sum() if money else np.nan,
        "purchase_value": groups["purchase_value"].sum() if money else np.nan,
        "orders": groups["orders"].sum(),
        "median_days_since_last_purchase": groups["recency_days"].median(),
    })
    profile["share_of_customers"] = _share(profile["customers"], len(customers))
    profile["share_of_revenue"] = _share(profile["revenue"], customers["revenue"].sum())
    profile["average_order_value"] = profile["purchase_value"] / profile["orders"].where(profile["orders"] > 0)
    columns = ["customers", "share_of_customers", "revenue", "share_of_revenue", "average_order_value",
               "median_days_since_last_purchase"]
    if "clv" in customers:
        profile["clv"] = groups["clv"].sum(min_count=1)
        columns.append("clv")
    profile.index.name = by
    return profile[columns].reset_index()


# --- clusters ---------------------------------------------------------------------------------------------------

MIN_CLUSTER_CUSTOMERS = 10
_FIT_SAMPLE = 20_000
_SILHOUETTE_SAMPLE = 10_000
_OUTLIERS = "Outliers: customers in no dense group"
_FEATURE_WORDS = {"recency_days": ("recent", "fairly recent", "lapsed"),
                  "purchase_days": ("infrequent", "occasional", "frequent"),
                  "purchase_value": ("low spend", "mid spend", "high spend")}


@dataclass
class ClusterResult:
    """Clusters of the customers who bought.

    ``labels``: per customer of the table (same index), ``cluster`` (1 = the largest; -1 = DBSCAN's outliers;
    empty for customers with only returns) and ``cluster_description``. ``profiles``: per cluster, customers,
    share, the median of each feature and the description. ``silhouette``: per k tried, the mean silhouette
    on the fixed sample (-1 to 1; higher: better separated). ``k``: clusters found (outliers not counted).
    """

    method: str
    k: int
    features: list[str]
    labels: pd.DataFrame
    profiles: pd.DataFrame
    silhouette: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def _feature_matrix(bought: pd.DataFrame, features: list[str]) -> np.ndarray:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    prepare = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                            FunctionTransformer(_signed_log), StandardScaler())
    return prepare.fit_transform(bought[features].to_numpy(dtype=float))


def _cluster_features(table: pd.DataFrame, extra: tuple[str, ...] | list[str]) -> list[str]:
    features = ["recency_days", "purchase_days"] + (["purchase_value"] if _has_money(table) else [])
    for column in extra:
        if column not in table.columns:
            raise SchemaError(f"Required column {column} missing from the customer table.")
        if not pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]):
            raise ClmError(f"{column} is not a number column: clusters can only use numbers.")
        if column not in features:
            features.append(column)
    return features


def _describe_clusters(bought: pd.DataFrame, labels: np.ndarray, features: list[str]) -> pd.DataFrame:
    """Per cluster: size, share, median per feature and words: each feature's median against the tertiles of
    all customers who bought (below the lower: low; above the upper: high; in between: said for R, F, M only)."""
    frame = bought[features].assign(cluster=labels)
    medians = frame.groupby("cluster")[features].median()
    sizes = frame.groupby("cluster").size()
    low, high = bought[features].quantile(1 / 3), bought[features].quantile(2 / 3)
    descriptions = {}
    for cluster, row in medians.iterrows():
        if cluster == -1:
            descriptions[cluster] = _OUTLIERS
            continue
        words = []
        for feature in ["purchase_days", "recency_days", *[f for f in features if f not in ("purchase_days",
                                                                                          "recency_days")]]:
            value, lower, upper = row[feature], low[feature], high[feature]
            position = 0 if (value < lower or (value <= lower < upper)) else (
                2 if (value > upper or (value >= upper > lower)) else 1)
            choice = _FEATURE_WORDS.get(feature, (f"low {feature}", "", f"high {feature}"))[position]
            if choice:
                words.append(choice)
        descriptions[cluster] = ", ".join(words)
    profile = medians.add_prefix("median_")
    profile.insert(0, "share", sizes / sizes.sum())
    profile.insert(0, "customers", sizes)
    profile["description"] = pd.Series(descriptions)
    return profile.reset_index()


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1, 2, ... from the largest cluster down; -1 (outliers) kept."""
    kept = labels[labels >= 0]
    if not len(kept):
        return labels
    counts = np.bincount(kept)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(order) + 1)
    return np.where(labels >= 0, rank[np.maximum(labels, 0)], -1)


def _silhouettes(points: np.ndarray, labelings: list[np.ndarray], chunk: int = 512) -> list[float]:
    """The mean silhouette (Rousseeuw 1987; scikit-learn's ``silhouette_score``) of each labeling of ``points``
    (labels 0..k-1; -1 left out), from one pass over the pairwise distances shared by all of them: per point, the
    sum of its distances to each cluster is a product with the labeling's one-hot matrix. Per point s = (b - a) /
    max(a, b), a its mean distance to the rest of its cluster, b to the nearest other cluster; 0 alone in its
    cluster. NaN for a labeling with fewer than two clusters or no two points in one."""
    from sklearn.metrics import pairwise_distances

    kept = [labels >= 0 for labels in labelings]
    onehots = [np.eye(labels.max() + 1)[np.maximum(labels, 0)] * mask[:, None] if labels.max() >= 0
               else np.zeros((len(labels), 1)) for labels, mask in zip(labelings, kept)]
    sums = [np.empty_like(onehot) for onehot in onehots]
    for start in range(0, len(points), chunk):
        distances = pairwise_distances(points[start:start + chunk], points)
        for onehot, total in zip(onehots, sums):
            total[start:start + chunk] = distances @ onehot
    means = []
    for labels, mask, onehot, total in zip(labelings, kept, onehots, sums):
        sizes = onehot.sum(axis=0)
        if (sizes > 0).sum() < 2 or sizes.max() < 2:
            means.append(np.nan)
            continue
        rows, own = np.flatnonzero(mask), labels[mask]
        within = total[rows, own] / np.maximum(sizes[own] - 1, 1)
        between = np.where(np.arange(len(sizes)) == own[:, None], np.inf,
                           total[rows] / np.where(sizes > 0, sizes, np.nan))
        nearest = np.nanmin(np.where(sizes > 0, between, np.inf), axis=1)
        score = np.where(sizes[own] > 1, (nearest - within) / np.maximum(within, nearest), 0.0)
        means.append(float(score.mean()))
    return means


def _kmeans(points: np.ndarray, sample: np.ndarray, k: int | None, k_range: tuple[int, int],
            random_state: int, known: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    from sklearn.cluster import KMeans

    fit_points = points[sample]
    silhouette_points = fit_points[:_SILHOUETTE_SAMPLE]  # the sample is in random order
    candidates = [k] if k is not None else list(range(k_range[0], k_range[1] + 1))
    models = {candidate: KMeans(n_clusters=candidate, n_init=4, random_state=random_state).fit(fit_points)
              for candidate in candidates}
    known_scores = {} if known is None else dict(zip(known["k"], known["silhouette"]))
    if all(candidate in known_scores for candidate in candidates):  # the pairwise distances, most of the time
        scores = [known_scores[candidate] for candidate in candidates]
    else:
        scores = _silhouettes(silhouette_points, [models[c].predict(silhouette_points) for c in candidates])
    silhouette = pd.DataFrame({"k": candidates, "silhouette": scores})
    best = int(silhouette.loc[silhouette["silhouette"].fillna(-2).idxmax(), "k"])
    model = models[best]
    if len(sample) == len(points):
        return model.predict(points), silhouette
    model = KMeans(n_clusters=best, init=model.cluster_centers_, n_init=1, random_state=random_state).fit(points)
    return model.labels_, silhouette


def _dbscan(points: np.ndarray, sample: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import NearestNeighbors

    fitted = DBSCAN(eps=eps, min_samples=min_samples).fit(points[sample])
    labels = np.full(len(points), -1, dtype=np.int64)
    cores = fitted.core_sample_indices_
    if len(sample) < len(points) and len(cores):
        distance, nearest = NearestNeighbors(n_neighbors=1).fit(points[sample][cores]).kneighbors(points)
        close = distance[:, 0] <= eps
        labels[close] = fitted.labels_[cores][nearest[close, 0]]
    labels[sample] = fitted.labels_
    return labels


def cluster_customers(table: pd.DataFrame, *, method: str = "kmeans", k: int | None = None,
                      k_range: tuple[int, int] = (2, 8), features: tuple[str, ...] | list[str] = (),
                      eps: float = 0.5, min_samples: int = 10, random_state: int = 0,
                      known_silhouettes: pd.DataFrame | None = None) -> ClusterResult:
    """Clusters of the customers in ``table`` (the customer table) who bought, on log-scaled, standardized
    recency, purchase days and purchase value (value only with amounts) plus the numeric ``features`` named
    (missing values take the median; negative values keep their sign: sign(x) log(1 + |x|)).

    ``method="kmeans"``: with ``k`` given, that many clusters; else each k of ``k_range`` (inclusive) is fitted
    on a fixed sample of at most 20,000 customers and the k with the highest mean silhouette on the first
    10,000 of them is refitted on everyone (starting from the sample's centres). ``method="dbscan"``: a dense
    group is grown from *core* customers, those with at least ``min_samples`` customers (themselves included)
    within distance ``eps`` (in standard deviations of the scaled features: 0.5 is half of one); customers
    within ``eps`` of a core join its group; the others are outliers, cluster -1. DBSCAN runs on the same
    sample (``min_samples`` counts neighbours in it), and the other customers join the group of their nearest
    core within ``eps``, else are outliers. ``random_state`` fixes the sample and the k-means starts.

    ``known_silhouettes``: the ``silhouette`` table of an earlier k-means run on the same customers, features
    and ``random_state`` (each k fitted there is fitted here alike): a k found in it is not scored again.
    """
    if method not in ("kmeans", "dbscan"):
        raise ValueError("method is 'kmeans' or 'dbscan'")
    _require(table, _TABLE_COLUMNS)
    features = _cluster_features(table, features)
    bought_mask = table["purchase_days"].to_numpy() > 0
    bought = table[bought_mask]
    n = len(bought)
    if n < MIN_CLUSTER_CUSTOMERS:
        raise DataRangeError(f"Clustering needs at least {MIN_CLUSTER_CUSTOMERS} customers who bought; there "
                             f"{'is' if n == 1 else 'are'} {n:,}.")
    notes: list[str] = []
    if method == "kmeans":
        if k is not None and not 2 <= k < n:
            raise ClmError(f"k = {k} clusters cannot be made from {n:,} customers who bought: choose k from 2 to "
                           f"{n - 1:,}.")
        low, high = k_range
        if not 2 <= low <= high:
            raise ClmError(f"The range of k ({low} to {high}) must start at 2 or more and not end below its start.")
        if high >= n:
            if low >= n:
                raise ClmError(f"k from {low} to {high} clusters cannot be made from {n:,} customers who bought.")
            notes.append(f"Only {n:,} customers bought: k was tried up to {n - 1}.")
            high = n - 1
        k_range = (low, high)
    elif eps <= 0 or min_samples < 1:
        raise ClmError("DBSCAN needs a distance eps above 0 and min_samples of 1 or more.")
    points = _feature_matrix(bought, features)
    sample = np.random.RandomState(random_state).permutation(n)[:_FIT_SAMPLE]
    # One thread each for BLAS and OpenMP: on a few columns their threads wait on each other more than they work
    # (Online Retail's k-means and silhouettes: 8 s on two cores, 1.5 s on one).
    with threadpool_limits(1):
        if method == "kmeans":
            labels, silhouette = _kmeans(points, sample, k, k_range, random_state, known_silhouettes)
        else:
            labels = _dbscan(points, sample, eps, min_samples)
            silhouette = pd.DataFrame([{"k": int(len(np.unique(labels[labels >= 0]))),
                                        "silhouette": _silhouettes(points[sample][:_SILHOUETTE_SAMPLE],
                                                                   [labels[sample][:_SILHOUETTE_SAMPLE]])[0]}])
    if method == "dbscan":
        outliers = int((labels < 0).sum())
        notes.append(f"{_count(outliers, 'customer')} ({outliers / n:.0%}) are outliers (cluster -1): in no "
                     f"group of at least {min_samples} customers within {eps:g} standard deviations.")
    labels = _by_size(np.asarray(labels, dtype=np.int64))
    profiles = _describe_clusters(bought, labels, features)
    words = profiles.set_index("cluster")["description"]
    frame = pd.DataFrame({"cluster": pd.Series(pd.NA, index=table.index, dtype="Int64"),
                          "cluster_description": pd.Series(None, index=table.index, dtype=object)})
    frame.loc[bought_mask, "cluster"] = labels
    frame.loc[bought_mask, "cluster_description"] = words.reindex(labels).to_numpy()
    return ClusterResult(method=method, k=int(len(np.unique(labels[labels >= 0]))), features=features,
                         labels=frame, profiles=profiles, silhouette=silhouette, notes=notes)


# --- lifecycle stages -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSettings:
    """Thresholds of the lifecycle stages (days are whole days; see the module docstring for the rules)."""

    period_days: int = 30
    churn_days: int = 180
    one_time_days: int = 90
    gap_ratio: float = 1.0
    risk_threshold: float = 0.5
    alive_threshold: float = 0.2

    def check(self) -> "StageSettings":
        """Itself, or :class:`ClmError` saying which threshold to change."""
        if self.period_days < 1:
            raise ClmError("The acquisition period is at least 1 day.")
        if not self.period_days < self.churn_days:
            raise ClmError(f"Churned after {self.churn_days} days must be longer than the acquisition period "
                           f"({self.period_days} days).")
        if not 0 < self.one_time_days < self.churn_days:
            raise ClmError(f"One-time buyers at risk after {self.one_time_days} days must come before churned "
                           f"({self.churn_days} days).")
        if self.gap_ratio <= 0:
            raise ClmError("At risk past the usual gap times a ratio above 0 (1 = as late as usual).")
        for name in ("risk_threshold", "alive_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ClmError(f"{name.replace('_', ' ').capitalize()} is a probability between 0 and 1.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


_STAGE_FACTS = ["purchase_days", "tenure_days", "recency_days", "recency_gap_ratio", "spend_trend",
                "frequency_trend", "days_since_comeback"]
_CODE = {stage: code for code, stage in enumerate(STAGES)}
_NOT_YET = len(STAGES)


def _stage_codes(facts: dict[str, np.ndarray], settings: StageSettings, *, risk: np.ndarray | None = None,
                 probability_alive: np.ndarray | None = None) -> np.ndarray:
    """The stage of each customer as a position in :data:`STAGES`, by the rules of the module docstring."""
    bought = facts["purchase_days"] > 0
    repeat = facts["purchase_days"] >= 2
    recency = facts["recency_days"]
    churned = recency > settings.churn_days
    at_risk = np.where(repeat, facts["recency_gap_ratio"] > settings.gap_ratio, recency > settings.one_time_days)
    if probability_alive is not None:
        churned |= probability_alive < settings.alive_threshold
    if risk is not None:
        at_risk |= risk > settings.risk_threshold
    growing = repeat & ((facts["spend_trend"] > _GROWTH) | (facts["frequency_trend"] > _GROWTH))
    conditions = [~bought, facts["tenure_days"] < settings.period_days,
                  facts["days_since_comeback"] < settings.period_days, churned, at_risk, growing]
    choices = [_CODE[RETURNS_ONLY], _CODE[ACQUISITION], _CODE[REACTIVATED], _CODE[CHURNED], _CODE[AT_RISK],
               _CODE[DEVELOPMENT]]
    return np.select(conditions, choices, _CODE[RETENTION]).astype(np.int8)


def lifecycle_stages(customers: pd.DataFrame, settings: StageSettings | None = None) -> pd.Series:
    """Each customer's lifecycle stage (a categorical in :data:`STAGES` order), by the rules of the module
    docstring, from the customer table's ``purchase_days``, ``tenure_days``, ``recency_days``,
    ``recency_gap_ratio`` and ``spend_trend`` with :func:`stage_facts`' ``frequency_trend`` and
    ``days_since_comeback``; a ``risk`` (0-1) or ``probability_alive`` column, when present, is used too."""
    settings = (settings or StageSettings()).check()
    _require(customers, _STAGE_FACTS, "the customers (the customer table with stage_facts)")
    facts = {name: customers[name].to_numpy(dtype=float) for name in _STAGE_FACTS}
    models = {}
    for column in ("risk", "probability_alive"):
        if column in customers:
            values = customers[column].to_numpy(dtype=float)
            if np.nanmax(np.abs(values - 0.5), initial=0) > 0.5:
                raise SchemaError(f"The {column} column holds values outside 0 to 1 (from {np.nanmin(values):g} to "
                                  f"{np.nanmax(values):g}): pass a probability.")
            models[column] = values
    codes = _stage_codes(facts, settings, **models)
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(STAGES)), index=customers.index,
                     name="lifecycle_stage")


# --- the purchase-day timeline ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PurchaseTimeline:
    """Every customer's purchase days up to ``end`` (netted of returns up to ``end``), from the named query
    ``purchase_day_timeline``; customers in customer id order, days as whole days since ``origin`` (the data
    start). Read-only arrays: share one between calls (``timeline=``) rather than reading it again.

    ``first_row_day``: per customer, their first row of any kind; ``offsets``: customer c's purchase days are
    positions ``offsets[c]`` to ``offsets[c + 1]`` of ``day`` (ascending), ``value`` (NaN without amounts) and
    ``gap`` (days since their previous purchase day; -1 for their first).
    """

    origin: date
    end: date
    has_money: bool
    first_row_day: np.ndarray
    offsets: np.ndarray
    day: np.ndarray
    value: np.ndarray
    gap: np.ndarray

    @property
    def customers(self) -> int:
        return len(self.first_row_day)

    def days(self, when: date) -> int:
        return (when - self.origin).days


def purchase_timeline(workspace: Engine, end: date | None = None) -> PurchaseTimeline:
    """The :class:`PurchaseTimeline` of the data up to ``end`` (default: the last day of the data)."""
    first, last = data_span(workspace)
    end = _check_date(end or last, first, last)
    frame = workspace.query("purchase_day_timeline", end=end, origin=first)
    # Few passes over the rows and few arrays as long as them: on millions of rows, touching new memory is what
    # costs (a tenth of a second per 40 MB here), more than the arithmetic.
    day = frame["day"].to_numpy().astype(np.int32)
    starts = np.flatnonzero(frame["first_row"].to_numpy(dtype=bool))
    first_row_day = day[starts]
    purchase = frame["purchase"].to_numpy() == 1
    value = frame["value"].to_numpy(dtype=float)
    ends = np.append(starts, len(day))
    if purchase.all():
        offsets = ends
    else:
        rows = np.flatnonzero(purchase)
        offsets = np.searchsorted(rows, ends)
        day, value = day[rows], value[rows]
    gap = np.empty_like(day)
    np.subtract(day[1:], day[:-1], out=gap[1:])
    firsts = offsets[:-1]
    gap[firsts[firsts < len(day)]] = -1  # each customer's first purchase day (one without any: the next one's)
    money = workspace.dataset.has_money
    if money and np.isnan(value).any():
        value = np.nan_to_num(value)
    arrays = [first_row_day, offsets, day, value, gap]
    for array in arrays:
        array.flags.writeable = False
    return PurchaseTimeline(first, end, money, *arrays)


# Blocks of customers x dates of a quarter of a million cells: their arrays (2 MB) are reused from block to block,
# where arrays of millions of cells would each touch new memory (2.6 s for 25 month ends of 1.15 M customers,
# against 4 s in blocks of 2 M).
_CELLS_PER_BLOCK = 250_000


def _first_date_at_or_after(dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Per day, the position of the first of ``dates`` (ascending) on or after it (``len(dates)``: none). For one
    or two dates (a stage at a date, a flow) a comparison each: four times faster than a binary search."""
    if len(dates) > 2:
        return np.searchsorted(dates, days)
    return sum((days > when).astype(np.int64) for when in dates)


def _counts_at(positions: np.ndarray, owners: np.ndarray, customers: int, dates: int) -> np.ndarray:
    """Per customer and date, how many rows count (a row counts from date ``positions`` on; ``dates``: never)."""
    flat = np.bincount(owners * (dates + 1) + positions, minlength=customers * (dates + 1))
    return np.cumsum(flat.reshape(customers, dates + 1)[:, :dates], axis=1, dtype=np.int32)


@dataclass(frozen=True)
class _Comebacks:
    """Where the purchase days that came after a gap over the churn threshold are (positions, ascending)."""

    positions: np.ndarray

    @classmethod
    def of(cls, timeline: PurchaseTimeline, churn_days: int) -> "_Comebacks":
        return cls(np.flatnonzero(timeline.gap > churn_days))

    def last_day(self, timeline: PurchaseTimeline, rows: np.ndarray, owners_first_row: np.ndarray) -> np.ndarray:
        """Per purchase day in ``rows`` (positions), the day of the customer's last comeback up to it; -1."""
        if not len(self.positions):
            return np.full(rows.shape, -1, dtype=np.int64)
        before = np.searchsorted(self.positions, rows, side="right")  # comebacks at or before the row
        candidate = self.positions[np.maximum(before - 1, 0)]
        return np.where((before > 0) & (candidate >= owners_first_row), timeline.day[candidate], -1)


def _facts_block(timeline: PurchaseTimeline, dates: np.ndarray, first: int, stop: int, comebacks: _Comebacks, *,
                 full: bool = False) -> dict[str, np.ndarray]:
    """Stage facts of customers ``first`` to ``stop`` (excluded) at ``dates`` (days since the origin,
    ascending), each a (customers, dates) array, with ``known`` (a row by then). Facts of customers with no
    purchase day by a date are meaningless there unless ``full`` (then empty, as in the customer table, and with
    the spend windows too): the stage rules look at them only after ``purchase_days``."""
    customers, count = stop - first, len(dates)
    start, finish = timeline.offsets[first], timeline.offsets[stop]
    day = timeline.day[start:finish]
    owners = np.repeat(np.arange(customers), np.diff(timeline.offsets[first:stop + 1]))
    local = (timeline.offsets[first:stop] - start)[:, None]
    bought = _counts_at(_first_date_at_or_after(dates, day), owners, customers, count)
    before = _counts_at(_first_date_at_or_after(dates, day + _TREND_DAYS), owners, customers, count)
    earlier = _counts_at(_first_date_at_or_after(dates, day + 2 * _TREND_DAYS), owners, customers, count)
    when = dates[None, :].astype(np.int32)
    facts = {"known": timeline.first_row_day[first:stop, None] <= when, "purchase_days": bought}
    if len(day):
        # A customer without purchase days points at a neighbour's row (or past the end): never read, see above.
        last_row = np.minimum(local + np.maximum(bought - 1, 0), len(day) - 1)
        first_day, last_day = day[np.minimum(local, len(day) - 1)], day[last_row]
        comeback = comebacks.last_day(timeline, start + last_row, start + local)
    else:
        first_day = last_day = comeback = np.zeros(bought.shape, dtype=np.int64)
    recency = when - last_day
    mean_gap = (last_day - first_day) / np.maximum(bought - 1, 1)
    recent, prior = bought - before, before - earlier
    if timeline.has_money:
        values = np.concatenate([[0.0], np.cumsum(timeline.value[start:finish])])
        spend_last, spend_prior = values[local + bought] - values[local + before], \
            values[local + before] - values[local + earlier]
        total = spend_last + spend_prior
        spend_trend = (spend_last - spend_prior) / np.where(total > 0, total, 1)
    else:
        spend_last = spend_prior = np.full(bought.shape, np.nan)
        spend_trend = np.zeros(bought.shape)
    facts.update({
        "tenure_days": when - first_day,
        "recency_days": recency,
        "mean_gap_days": mean_gap,
        "recency_gap_ratio": recency / np.where(mean_gap > 0, mean_gap, 1),
        "spend_trend": spend_trend,
        "frequency_trend": (recent - prior) / np.maximum(recent + prior, 1),
        "days_since_comeback": np.where(comeback >= 0, when - comeback, np.iinfo(np.int32).max),
    })
    if full:
        has, repeat = bought > 0, bought >= 2
        for name in ("tenure_days", "recency_days"):
            facts[name] = np.where(has, facts[name], np.nan)
        for name in ("mean_gap_days", "recency_gap_ratio"):
            facts[name] = np.where(repeat, facts[name], np.nan)
        facts["days_since_comeback"] = np.where(has & (comeback >= 0), facts["days_since_comeback"], np.nan)
        facts.update({"spend_last_90": spend_last, "spend_prior_90": spend_prior})
    return facts


def _blocks(timeline: PurchaseTimeline, dates: int, cells: int = _CELLS_PER_BLOCK):
    size = max(1, cells // max(dates, 1))
    for first in range(0, timeline.customers, size):
        yield first, min(first + size, timeline.customers)


def _stage_blocks(timeline: PurchaseTimeline, dates: np.ndarray, settings: StageSettings):
    """Per block of customers: the stage codes at ``dates`` ((customers, dates); :data:`_NOT_YET` before their
    first row)."""
    comebacks = _Comebacks.of(timeline, settings.churn_days)
    for first, stop in _blocks(timeline, len(dates)):
        facts = _facts_block(timeline, dates, first, stop, comebacks)
        yield np.where(facts["known"], _stage_codes(facts, settings), _NOT_YET)


def _check_date(when: date, first: date, last: date, what: str = "The date") -> date:
    when = pd.Timestamp(when).date()
    if when < first:
        raise DataRangeError(f"{what} {when:%d %b %Y} is before the data start ({first:%d %b %Y}); pick a later "
                             "date.")
    if when > last:
        raise DataRangeError(f"{what} {when:%d %b %Y} is after the data end ({last:%d %b %Y}); pick an earlier "
                             "date.")
    return when


def stage_facts(timeline: PurchaseTimeline, at: date, settings: StageSettings | None = None) -> pd.DataFrame:
    """Per customer with a row by ``at`` (customer id order: the customer table's), the facts the stage rules
    read, at ``at``: ``purchase_days``, ``tenure_days``, ``recency_days``, ``mean_gap_days``,
    ``recency_gap_ratio``, ``spend_last_90``, ``spend_prior_90``, ``spend_trend`` (as the customer table's),
    ``frequency_trend`` (purchase days in the last 90 days less those in the 90 before, over their sum) and
    ``days_since_comeback`` (since the last purchase after a gap over ``churn_days``; empty if none)."""
    frame = pd.DataFrame(_facts_at(timeline, at, (settings or StageSettings()).check()))
    frame["purchase_days"] = frame["purchase_days"].astype(np.int64)
    return frame


def _facts_at(timeline: PurchaseTimeline, at: date, settings: StageSettings) -> dict[str, np.ndarray]:
    """:func:`stage_facts` as arrays."""
    at = _check_date(at, timeline.origin, timeline.end)
    dates = np.array([timeline.days(at)])
    comebacks = _Comebacks.of(timeline, settings.churn_days)
    columns: dict[str, list[np.ndarray]] = {}
    for first, stop in _blocks(timeline, 1):
        facts = _facts_block(timeline, dates, first, stop, comebacks, full=True)
        known = facts.pop("known")[:, 0]
        for name, values in facts.items():
            columns.setdefault(name, []).append(values[known, 0])
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def _month_ends(first: date, last: date) -> list[date]:
    ends = pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq="ME").date.tolist()
    return ends if ends and ends[-1] == last else ends + [last]


def stage_history(workspace: Engine, *, settings: StageSettings | None = None,
                  timeline: PurchaseTimeline | None = None) -> pd.DataFrame:
    """Customers per lifecycle stage at each month end (and the last day of the data, for the last month):
    index ``date``, one column per stage in :data:`STAGES` order (a stacked area chart's input). Each row adds
    up to the customers with a row by that date. ``timeline``: a :func:`purchase_timeline` to the data end."""
    settings = (settings or StageSettings()).check()
    first, last = data_span(workspace)
    if timeline is None or timeline.end != last:
        timeline = purchase_timeline(workspace, last)
    ends = _month_ends(first, last)
    dates = np.array([timeline.days(end) for end in ends])
    counts = np.zeros((len(dates), len(STAGES) + 1), dtype=np.int64)
    for codes in _stage_blocks(timeline, dates, settings):
        counts += np.bincount((np.arange(len(dates)) * (len(STAGES) + 1) + codes).ravel(),
                              minlength=counts.size).reshape(counts.shape)
    history = pd.DataFrame(counts[:, :len(STAGES)], columns=list(STAGES),
                           index=pd.DatetimeIndex(pd.to_datetime(ends), name="date"))
    history.columns.name = "stage"
    return history


def stage_flows(workspace: Engine, start: date, end: date, *, settings: StageSettings | None = None,
                timeline: PurchaseTimeline | None = None) -> pd.DataFrame:
    """How many customers moved from each stage at ``start`` (rows, ``from_stage``, with
    :data:`NOT_YET_A_CUSTOMER` for those whose first row came later) to each stage at ``end`` (columns,
    ``to_stage``). Every customer with a row by ``end`` is counted once: rows add up to the stages at
    ``start`` (plus the newcomers), columns to the stages at ``end``. ``timeline``: a :func:`purchase_timeline`
    to ``end``."""
    settings = (settings or StageSettings()).check()
    first, last = data_span(workspace)
    start, end = _check_date(start, first, last, "The start"), _check_date(end, first, last, "The end")
    if not start < end:
        raise DataRangeError(f"The start ({start:%d %b %Y}) must come before the end ({end:%d %b %Y}).")
    if timeline is None or timeline.end != end:
        timeline = purchase_timeline(workspace, end)
    dates = np.array([timeline.days(start), timeline.days(end)])
    size = len(STAGES) + 1
    flows = np.zeros(size * size, dtype=np.int64)
    for codes in _stage_blocks(timeline, dates, settings):
        flows += np.bincount(codes[:, 0].astype(np.int64) * size + codes[:, 1], minlength=size * size)
    labels = [*STAGES, NOT_YET_A_CUSTOMER]
    matrix = pd.DataFrame(flows.reshape(size, size), index=pd.Index(labels, name="from_stage"),
                          columns=pd.Index(labels, name="to_stage"))
    return matrix.drop(columns=NOT_YET_A_CUSTOMER)


# --- everything per customer ------------------------------------------------------------------------------------

@dataclass
class SegmentResult:
    """Segments and stages as of one date.

    ``customers``: per customer (in the customer table's order) ``customer_id``, ``recency_days``, ``purchase_days``,
    ``purchase_value``, ``r_score``, ``f_score``, ``m_score``, ``fm_score``, ``rfm_segment``,
    ``lifecycle_stage`` and, when asked, ``cluster`` and ``cluster_description``. ``profiles``: per segment
    (:func:`segment_profiles`); ``stages``: per stage, customers and share; ``score_rules``: the values each
    score covers; ``rules``: the segment rules used.
    """

    as_of: date
    customers: pd.DataFrame
    profiles: pd.DataFrame
    stages: pd.DataFrame
    score_rules: pd.DataFrame
    rules: pd.DataFrame
    settings: StageSettings
    has_money: bool
    clusters: ClusterResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain numbers for JSON: ``segments`` (name -> customers, share_of_customers, revenue,
        share_of_revenue, average_order_value, median_days_since_last_purchase), ``stages`` (name -> customers,
        share_of_customers), the score rules, the stage settings and notes."""
        def plain(value):
            if isinstance(value, (np.integer,)):
                return int(value)
            if isinstance(value, (float, np.floating)):
                return None if pd.isna(value) else float(value)
            return value

        segments = {row["rfm_segment"]: {key: plain(value) for key, value in row.items() if key != "rfm_segment"}
                    for row in self.profiles.to_dict("records")}
        stages = {row["lifecycle_stage"]: {key: plain(value) for key, value in row.items()
                                           if key != "lifecycle_stage"}
                  for row in self.stages.to_dict("records")}
        result = {
            "as_of": self.as_of.isoformat(),
            "customers": len(self.customers),
            "has_money": self.has_money,
            "segments": segments,
            "stages": stages,
            "score_rules": [{key: plain(value) for key, value in row.items()}
                            for row in self.score_rules.to_dict("records")],
            "stage_settings": self.settings.to_dict(),
            "notes": self.notes,
        }
        if self.clusters is not None:
            result["clusters"] = {
                "method": self.clusters.method, "k": self.clusters.k,
                "silhouette": [{key: plain(value) for key, value in row.items()}
                               for row in self.clusters.silhouette.to_dict("records")],
                "profiles": [{key: plain(value) for key, value in row.items()}
                             for row in self.clusters.profiles.to_dict("records")],
            }
        return result


def _customer_order(table: pd.DataFrame) -> np.ndarray | None:
    """Positions that put ``table`` in customer id order (the timeline's), or None when it is in it already."""
    ids = table["customer_id"]
    if ids.is_monotonic_increasing:  # ids are unique in a customer table
        return None
    return np.argsort(ids.to_numpy(dtype=str), kind="stable")


def _with_stage_facts(table: pd.DataFrame, timeline: PurchaseTimeline, as_of: date,
                      settings: StageSettings) -> pd.DataFrame:
    """``table`` with the two stage facts the customer table lacks (``frequency_trend``,
    ``days_since_comeback``), matched by customer id order."""
    facts = _facts_at(timeline, as_of, settings)
    order = _customer_order(table)
    ordered = table if order is None else table.iloc[order]
    if len(facts["purchase_days"]) != len(table) or not np.array_equal(facts["purchase_days"],
                                                                       ordered["purchase_days"].to_numpy()):
        raise ValueError("The customer table and the purchase timeline disagree: pass the customer table as of "
                         f"{as_of} with every customer (customer_table(workspace, as_of)).")
    back = slice(None) if order is None else np.argsort(order)
    return table.assign(**{column: facts[column][back] for column in ("frequency_trend", "days_since_comeback")})


def segment_customers(workspace: Engine, *, as_of: date | None = None, table: pd.DataFrame | None = None,
                      rules: pd.DataFrame | None = None, settings: StageSettings | None = None,
                      clusters: dict | None = None, timeline: PurchaseTimeline | None = None) -> SegmentResult:
    """RFM scores, segments and lifecycle stages of every customer as of ``as_of`` (default: the last day of
    the data). ``table``: the customer table as of that date when the caller has it (with a churn ``risk`` or a
    ``probability_alive`` column merged in, the stages use them; a ``clv`` column adds each segment's total);
    ``rules``: the segment rules (default :func:`default_segment_rules`); ``settings``: the stage thresholds;
    ``clusters``: None for no clusters, else the keyword arguments of :func:`cluster_customers` ({} for its
    defaults); ``timeline``: a :func:`purchase_timeline` to ``as_of``, to reuse."""
    settings = (settings or StageSettings()).check()
    rules = validate_segment_rules(default_segment_rules() if rules is None else rules)
    first, last = data_span(workspace)
    as_of = _check_date(as_of or last, first, last)
    if table is None:
        table = customer_table(workspace, as_of, attributes=False)
    if timeline is None or timeline.end != as_of:
        timeline = purchase_timeline(workspace, as_of)
    rfm = rfm_scores(table)
    customers = rfm.scores.copy()
    customers["rfm_segment"] = assign_segments(customers, rules)
    customers["lifecycle_stage"] = lifecycle_stages(_with_stage_facts(table, timeline, as_of, settings), settings)
    notes = list(rfm.notes)
    present = [column for column in ("risk", "probability_alive") if column in table]
    if present:
        notes.append(f"Stages use the {' and '.join(present)} column{'s' if len(present) > 1 else ''} given; the "
                     "stage history and flows use days alone.")
    clustered = None
    if clusters is not None:
        clustered = cluster_customers(table, **clusters)
        customers = pd.concat([customers, clustered.labels], axis=1)
        notes.extend(clustered.notes)
    joined = table.assign(rfm_segment=customers["rfm_segment"])
    profiles = segment_profiles(joined)
    if not rfm.has_money:
        notes.append("Without amounts, revenue, its share and order values are empty.")
    stage_counts = customers["lifecycle_stage"].value_counts(sort=False).reindex(list(STAGES))
    stages = pd.DataFrame({"lifecycle_stage": list(STAGES), "customers": stage_counts.to_numpy(),
                           "share_of_customers": stage_counts.to_numpy() / max(len(customers), 1)})
    return SegmentResult(as_of=as_of, customers=customers.reset_index(drop=True), profiles=profiles,
                         stages=stages, score_rules=rfm.score_rules, rules=rules, settings=settings,
                         has_money=rfm.has_money, clusters=clustered, notes=notes)


# --- labels for every other page ----------------------------------------------------------------------------------

# The customer labels every page can filter by and every export carries: column -> what a marketer calls it.
LABELS = {"rfm_segment": "RFM segment", "lifecycle_stage": "Lifecycle stage"}


def result_labels(result: SegmentResult) -> pd.DataFrame:
    """``customer_id`` and the :data:`LABELS` columns of a segmentation, as text."""
    return result.customers[["customer_id", *LABELS]].astype({column: str for column in LABELS})


def _labels_note(result: SegmentResult, *, chosen: bool) -> str:
    how = ("your segment rules and stage thresholds from the Segments page" if chosen
           else "the standard segment rules and stage thresholds")
    return f"RFM segments and lifecycle stages as of {result.as_of:%d %b %Y}, by {how}"


def store_labels(workspace: Engine, result: SegmentResult, *, chosen: bool = True) -> str:
    """Store ``result``'s segments and stages in the workspace for every page and export; returns their version.
    ``chosen``: the user's own settings (else the standard ones), said in the note the pages show."""
    return workspace.store_customer_labels(result_labels(result), _labels_note(result, chosen=chosen))


def standard_labels(workspace: Engine, table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """(labels, note): the standard segmentation at the end of the data (``table``: the customer table then,
    when the caller has it)."""
    result = segment_customers(workspace, table=table)
    return result_labels(result), _labels_note(result, chosen=False)


def stored_labels(workspace: Engine) -> pd.DataFrame:
    """The labels stored in the workspace: ``customer_id`` and the :data:`LABELS` columns it has."""
    labels = workspace.customer_labels()
    return labels[["customer_id", *[column for column in LABELS if column in labels]]]


def customer_labels(workspace: Engine, table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str, str]:
    """(labels, note, version): the labels stored in the workspace; when none are, the standard ones
    (:func:`standard_labels`), stored when the workspace can be written (the app's), computed each time
    otherwise (the command line's read-only workspaces)."""
    stored = workspace.customer_labels_info()
    if stored is not None:
        note, version = stored
        return stored_labels(workspace), note, version
    labels, note = standard_labels(workspace, table)
    version = "computed" if workspace.read_only else workspace.store_customer_labels(labels, note)
    return labels, note, version


def with_labels(frame: pd.DataFrame, labels: pd.DataFrame, *, segments: list[str] | None = None,
                stages: list[str] | None = None) -> pd.DataFrame:
    """``frame`` (with ``customer_id``) with the :data:`LABELS` columns after the id, keeping only the customers
    in ``segments`` and ``stages`` when given (empty or None: all). Customers the labels do not know (who first
    bought after the labels' date) get empty labels, and are left out by a filter."""
    present = [column for column in LABELS if column in labels]
    frame = frame.drop(columns=[column for column in present if column in frame])
    merged = frame.merge(labels[["customer_id", *present]], on="customer_id", how="left", validate="many_to_one")
    keep = pd.Series(True, index=merged.index)
    for column, chosen in (("rfm_segment", segments), ("lifecycle_stage", stages)):
        if chosen and column in merged:
            keep &= merged[column].isin(chosen)
    rest = [column for column in frame.columns if column != "customer_id"]
    return merged.loc[keep, ["customer_id", *present, *rest]].reset_index(drop=True)
