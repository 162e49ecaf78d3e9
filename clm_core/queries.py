"""Named SQL queries over the canonical ``transactions`` table: the only transaction-level SQL above ingest.

Every query is written in SQL that DuckDB and Spark SQL both accept
(``date_trunc``, ``date_add``, ``year``/``month``, ``COUNT(DISTINCT ..)``, ``CASE``, ``min_by``, window
functions, ``$name`` parameters), plus a few named functions the two spell differently (``days_between``,
``epoch_seconds``, ``customer_bucket``, ``first_row_key``), which :func:`query_text` writes in the spelling of
the engine asked for (``dialect="duckdb"`` or ``"spark"``, where parameters become ``:name``).
``tests/test_queries_portability.py`` parses every query's Spark text and fails on what Spark lacks.
Code above this layer asks for a query by name and gets a pandas frame back;
it never writes SQL. Results are small (customer- or period-level), never
row-level, except ``preview`` and ``order_products``.

Purchases are the rows that are not returns; revenue is net of returns.
"""

from __future__ import annotations

import re

from clm_core.sql import quote_identifier

__all__ = ["QUERIES", "query_text"]

# Purchase days netted of returns, written once and used by every query that counts purchases:
# ``{purchase_days up to X}`` (X a DATE: a parameter or a subquery; add ", sampled" to keep only the customers
# of $sample_per_mille) becomes these CTEs, ending in purchase_days(customer_id, day, value, orders).
# The rule: a return cancels the purchase of the same product by the same customer in the same order when the
# file links them, else the latest purchase of that product (its id, else its name; the customer's latest
# purchase when the file has neither) on or before the return, up to what that purchase was worth. A purchase
# day whose purchases are all cancelled is no purchase; any other keeps its value net of what was cancelled
# (zero-price lines keep a day with no value). Returns that match no purchase (bought before the data start) stay in revenue and cancel nothing.
_PURCHASE_DAYS = """
        return_lines AS (
            SELECT source_row, customer_id, CAST(order_ts AS DATE) AS day, order_id,
                   coalesce(product_id, product_name, '') AS product, -amount AS value,
                   -coalesce(amount, quantity) AS measure
            FROM transactions
            WHERE is_return AND CAST(order_ts AS DATE) <= {until} {sampled}
        ),
        returned_lines AS (
            SELECT t.customer_id, CAST(t.order_ts AS DATE) AS day, t.order_id, k.product, t.amount,
                   coalesce(t.amount, t.quantity) AS measure
            FROM transactions t
                 JOIN (SELECT DISTINCT customer_id, product FROM return_lines) k
                 ON t.customer_id = k.customer_id AND coalesce(t.product_id, t.product_name, '') = k.product
            WHERE NOT t.is_return AND CAST(t.order_ts AS DATE) <= {until}
        ),
        return_targets AS (
            SELECT r.customer_id, r.product, r.value, r.measure,
                   coalesce(MAX(CASE WHEN p.order_id = r.order_id THEN p.day END), MAX(p.day)) AS day
            FROM return_lines r JOIN returned_lines p
                 ON p.customer_id = r.customer_id AND p.product = r.product AND p.day <= r.day
            GROUP BY r.source_row, r.customer_id, r.product, r.value, r.measure
        ),
        returned_products AS (
            SELECT customer_id, day, product, SUM(value) AS value, SUM(measure) AS measure
            FROM return_targets GROUP BY customer_id, day, product
        ),
        cancelled_days AS (
            SELECT b.customer_id, b.day,
                   SUM(CASE WHEN r.value < b.value THEN r.value ELSE b.value END) AS value,
                   SUM(CASE WHEN r.measure < b.measure THEN r.measure ELSE b.measure END) AS measure
            FROM (SELECT customer_id, day, product, SUM(amount) AS value, SUM(measure) AS measure
                  FROM returned_lines GROUP BY customer_id, day, product) b
                 JOIN returned_products r ON b.customer_id = r.customer_id AND b.day = r.day AND b.product = r.product
            GROUP BY b.customer_id, b.day
        ),
        day_orders AS (
            SELECT customer_id, CAST(order_ts AS DATE) AS day, order_id, SUM(amount) AS value,
                   SUM(coalesce(amount, quantity)) AS measure
            FROM transactions
            WHERE NOT is_return AND CAST(order_ts AS DATE) <= {until} {sampled}
            GROUP BY customer_id, CAST(order_ts AS DATE), order_id
        ),
        bought_days AS (
            SELECT customer_id, day, SUM(value) AS value, SUM(measure) AS measure, COUNT(*) AS orders
            FROM day_orders GROUP BY customer_id, day
        ),
        purchase_days AS (
            SELECT d.customer_id, d.day, d.value - coalesce(c.value, 0) AS value, d.orders
            FROM bought_days d LEFT JOIN cancelled_days c ON d.customer_id = c.customer_id AND d.day = c.day
            WHERE c.measure IS NULL OR c.measure < d.measure - 1e-9 * abs(d.measure)
        )"""

_COHORT_ACTIVITY = """
        WITH firsts AS (
            SELECT t.customer_id, MIN(t.order_ts) AS first_ts, {customer_segment} AS segment
            FROM transactions t {label_join} WHERE NOT t.is_return GROUP BY t.customer_id
        ),
        customer_periods AS (
            SELECT
                t.customer_id,
                date_trunc($period, f.first_ts) AS cohort,
                f.segment,
                date_trunc($period, t.order_ts) AS period,
                SUM(t.amount) AS revenue,
                COUNT(DISTINCT CASE WHEN t.is_return THEN NULL ELSE t.order_id END) AS orders
            FROM transactions t JOIN firsts f ON t.customer_id = f.customer_id
            WHERE t.order_ts >= f.first_ts
            GROUP BY t.customer_id, date_trunc($period, f.first_ts), f.segment, date_trunc($period, t.order_ts)
        )
        SELECT cohort, segment, period,
               SUM(CASE WHEN orders > 0 THEN 1 ELSE 0 END) AS active,
               SUM(revenue) AS revenue,
               SUM(orders) AS orders
        FROM customer_periods
        GROUP BY cohort, segment, period
    """
_COHORT_LAST_PURCHASE = """
        WITH spans AS (
            SELECT t.customer_id, MIN(t.order_ts) AS first_ts, MAX(t.order_ts) AS last_ts,
                   {customer_segment} AS segment
            FROM transactions t {label_join} WHERE NOT t.is_return GROUP BY t.customer_id
        )
        SELECT date_trunc($period, first_ts) AS cohort, segment, date_trunc($period, last_ts) AS last_period,
               COUNT(*) AS customers
        FROM spans
        GROUP BY date_trunc($period, first_ts), segment, date_trunc($period, last_ts)
    """


def _segmented(template: str, *, by_label: bool) -> str:
    """A cohort query split by a segment of the file's: a customer's segment is its value on their first row
    (the earliest, and of rows at one moment, lines of one order whose product category may differ, the first in
    the file; first_row_key(t) orders rows so); or by a stored customer label of kind $label_kind (customers
    without one: 'No label')."""
    if by_label:
        return template.replace("{customer_segment}", "coalesce(MIN(l.label), 'No label')").replace(
            "{label_join}", "LEFT JOIN customer_labels l ON l.customer_id = t.customer_id AND l.kind = $label_kind")
    return template.replace("{customer_segment}", "min_by({segment}, first_row_key(t))").replace("{label_join}", "")


# The lines of purchase orders with a product (its id, else its name), what products bought together count from;
# order_products: the distinct products of each order (a basket: customer_id and order_id); product_keys: those
# products numbered 1, 2, ... in their order.
_PURCHASE_LINES = "FROM transactions WHERE NOT is_return AND coalesce(product_id, product_name) IS NOT NULL"
_ORDER_PRODUCTS = f"""
        order_products AS (
            SELECT DISTINCT customer_id, order_id, coalesce(product_id, product_name) AS product
            {_PURCHASE_LINES}
        )"""
_PRODUCT_KEYS = f"""
        product_keys AS (
            SELECT product, ROW_NUMBER() OVER (ORDER BY product) AS product_key
            FROM (SELECT DISTINCT coalesce(product_id, product_name) AS product {_PURCHASE_LINES}) p
        )"""


QUERIES: dict[str, str] = {
    # One row: the headline numbers of a dataset.
    "dataset_totals": """
        WITH per_customer AS (
            SELECT customer_id, COUNT(DISTINCT CASE WHEN NOT is_return THEN order_id END) AS orders
            FROM transactions GROUP BY customer_id
        )
        SELECT
            (SELECT COUNT(*) FROM per_customer) AS customers,
            (SELECT COUNT(*) FROM per_customer WHERE orders >= 1) AS buying_customers,
            (SELECT COUNT(*) FROM per_customer WHERE orders >= 2) AS repeat_customers,
            COUNT(DISTINCT CASE WHEN NOT is_return THEN order_id END) AS orders,
            COUNT(DISTINCT CASE WHEN is_return THEN order_id END) AS return_orders,
            SUM(CASE WHEN NOT is_return THEN amount END) AS gross_revenue,
            SUM(amount) AS net_revenue,
            MIN(order_ts) AS first_ts,
            MAX(order_ts) AS last_ts,
            COUNT(*) AS rows
        FROM transactions
    """,
    # Revenue, orders and active customers per calendar month.
    "revenue_by_month": """
        SELECT
            date_trunc('month', order_ts) AS month,
            SUM(CASE WHEN is_return THEN 0 ELSE amount END) AS gross_revenue,
            SUM(amount) AS net_revenue,
            COUNT(DISTINCT CASE WHEN is_return THEN NULL ELSE order_id END) AS orders,
            COUNT(DISTINCT customer_id) AS customers
        FROM transactions
        GROUP BY date_trunc('month', order_ts)
        ORDER BY month
    """,
    # Per cohort (period of a customer's first purchase), optional segment, and calendar period:
    # customers who bought, net revenue and purchase orders. $period is 'week', 'month' or 'quarter'.
    # The segment is a column of the file's (below) or a stored customer label ("labelled_" queries).
    "cohort_activity": _segmented(_COHORT_ACTIVITY, by_label=False),
    "labelled_cohort_activity": _segmented(_COHORT_ACTIVITY, by_label=True),
    # Per cohort and segment: how many customers made their last purchase in each period
    # (the input of rolling retention).
    "cohort_last_purchase": _segmented(_COHORT_LAST_PURCHASE, by_label=False),
    "labelled_cohort_last_purchase": _segmented(_COHORT_LAST_PURCHASE, by_label=True),
    # Per calendar day, among customers who first bought by $calibration_end: how many made their first
    # purchase that day and how many repeat purchase days fell on it (the input of the tracking plot).
    "daily_repeat_purchases": """
        WITH {purchase_days up to (SELECT CAST(MAX(order_ts) AS DATE) FROM transactions)},
        firsts AS (
            SELECT customer_id, MIN(day) AS first_day FROM purchase_days GROUP BY customer_id
        )
        SELECT d.day,
               SUM(CASE WHEN d.day = f.first_day THEN 1 ELSE 0 END) AS new_customers,
               SUM(CASE WHEN d.day > f.first_day THEN 1 ELSE 0 END) AS repeat_purchases
        FROM purchase_days d JOIN firsts f ON d.customer_id = f.customer_id
        WHERE f.first_day <= $calibration_end
        GROUP BY d.day
        ORDER BY d.day
    """,
    # Customers active in a base window [$base_start, $base_end) and in the next one [$base_end, $next_end),
    # and the purchase orders of the next window: the input of observed retention and order frequency.
    "window_retention": """
        WITH flags AS (
            SELECT customer_id,
                   MAX(CASE WHEN order_ts >= $base_start AND order_ts < $base_end THEN 1 ELSE 0 END) AS in_base,
                   MAX(CASE WHEN order_ts >= $base_end AND order_ts < $next_end THEN 1 ELSE 0 END) AS in_next,
                   COUNT(DISTINCT CASE WHEN order_ts >= $base_end AND order_ts < $next_end THEN order_id END)
                       AS next_orders
            FROM transactions WHERE NOT is_return
            GROUP BY customer_id
        )
        SELECT SUM(in_base) AS base_customers, SUM(in_base * in_next) AS retained_customers,
               SUM(in_next) AS next_customers, SUM(next_orders) AS next_orders
        FROM flags
    """,
    # One row per customer with the given attribute columns (contact details, segments): the value on the
    # customer's first row (the first in the file, if that moment has several), as the cohort split takes it.
    "customer_attributes": """
        SELECT customer_id {first_attributes} FROM transactions t GROUP BY customer_id
    """,
    # The customer table as of $cutoff (a DATE, inclusive): one row per customer with any row up to it (also
    # customers with only returns, whose purchase columns are then empty or zero). Purchase days are netted of
    # their returns ({purchase_days} below). Gaps are the days between consecutive purchase days; spend is over
    # purchase days in the 90 days up to the cutoff and the 90 before those; attributes are those of the
    # customer's first row. $sample_per_mille below 1000 keeps only that share of customers (a fixed draw by
    # customer id), for training on a sample.
    "customer_table": """
        WITH {purchase_days up to $cutoff, sampled},
        ordered_days AS (
            SELECT customer_id, day, value, orders,
                   LAG(day) OVER (PARTITION BY customer_id ORDER BY day) AS previous_day,
                   ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day) AS day_number
            FROM purchase_days
        ),
        gaps AS (
            SELECT customer_id, day, value, orders, day_number, days_between(previous_day, day) AS gap
            FROM ordered_days
        ),
        purchases AS (
            SELECT customer_id,
                   MIN(day) AS first_day,
                   MAX(day) AS last_day,
                   COUNT(*) AS purchase_days,
                   SUM(orders) AS orders,
                   SUM(value) AS purchase_value,
                   SUM(CASE WHEN day_number = 1 THEN value ELSE 0 END) AS first_day_value,
                   SUM(CASE WHEN day_number > 1 AND value > 0 THEN 1 ELSE 0 END) AS repeat_spend_days,
                   SUM(CASE WHEN day_number > 1 AND value > 0 THEN value ELSE 0 END) AS repeat_spend_value,
                   AVG(gap) AS mean_gap_days,
                   STDDEV_SAMP(gap) AS gap_spread_days,
                   SUM(CASE WHEN day > date_add($cutoff, -90) THEN value ELSE 0 END) AS spend_last_90,
                   SUM(CASE WHEN day > date_add($cutoff, -180) AND day <= date_add($cutoff, -90)
                            THEN value ELSE 0 END) AS spend_prior_90
            FROM gaps
            GROUP BY customer_id
        ),
        products AS (
            SELECT customer_id, COUNT(*) AS products
            FROM (SELECT DISTINCT customer_id, coalesce(product_id, product_name) AS product
                  FROM transactions
                  WHERE NOT is_return AND CAST(order_ts AS DATE) <= $cutoff
                        AND customer_bucket(customer_id) < $sample_per_mille) bought
            WHERE product IS NOT NULL
            GROUP BY customer_id
        ),
        all_rows AS (
            SELECT t.customer_id,
                   SUM(t.amount) AS net_revenue,
                   SUM(CASE WHEN t.is_return THEN 1 ELSE 0 END) AS return_lines,
                   COUNT(*) AS lines
                   {first_attributes}
            FROM transactions t
            WHERE CAST(t.order_ts AS DATE) <= $cutoff AND customer_bucket(t.customer_id) < $sample_per_mille
            GROUP BY t.customer_id
        )
        SELECT a.customer_id, p.first_day, p.last_day,
               days_between(p.last_day, $cutoff) AS recency_days,
               days_between(p.first_day, $cutoff) AS tenure_days,
               coalesce(p.purchase_days, 0) AS purchase_days, coalesce(p.orders, 0) AS orders,
               coalesce(p.purchase_value, 0) AS purchase_value, coalesce(p.first_day_value, 0) AS first_day_value,
               coalesce(p.repeat_spend_days, 0) AS repeat_spend_days,
               coalesce(p.repeat_spend_value, 0) AS repeat_spend_value,
               p.mean_gap_days, p.gap_spread_days,
               coalesce(p.spend_last_90, 0) AS spend_last_90, coalesce(p.spend_prior_90, 0) AS spend_prior_90,
               a.net_revenue, a.return_lines, a.lines, coalesce(b.products, 0) AS products
               {selected_attributes}
        FROM all_rows a LEFT JOIN purchases p ON a.customer_id = p.customer_id
             LEFT JOIN products b ON a.customer_id = b.customer_id
        ORDER BY a.customer_id
    """,
    # The purchase history columns of customer_table alone (first and last purchase day, purchase days, the
    # repeat purchase days worth more than nothing and their value), per customer who bought by $cutoff: what the
    # CLV models read, in a third of the time of the whole table on millions of rows. The repeat days worth more
    # than nothing are those of all days less the first (min_by(value, day): the first day's value).
    "customer_purchases": """
        WITH {purchase_days up to $cutoff}
        SELECT customer_id, MIN(day) AS first_day, MAX(day) AS last_day, COUNT(*) AS purchase_days,
               SUM(CASE WHEN value > 0 THEN 1 ELSE 0 END)
                   - (CASE WHEN min_by(value, day) > 0 THEN 1 ELSE 0 END) AS repeat_spend_days,
               SUM(CASE WHEN value > 0 THEN value ELSE 0 END) - greatest(min_by(value, day), 0) AS repeat_spend_value
        FROM purchase_days
        GROUP BY customer_id
        ORDER BY customer_id
    """,
    # Per customer with a purchase day by $cutoff (netted of the returns up to it, as every query counts
    # purchases): purchase days in the 90 days up to $cutoff and in the 90 before (the frequency trend of the
    # lifecycle stages) and the last purchase day after a gap of more than $churn_days days (a comeback; empty if
    # none): what the stage rules read besides the customer table. clm_core.segments takes them from the
    # purchase-day timeline; the Spark segments (clm_core.spark_analytics) from this query.
    "customer_stage_facts": """
        WITH {purchase_days up to $cutoff},
        ordered_days AS (
            SELECT customer_id, day, LAG(day) OVER (PARTITION BY customer_id ORDER BY day) AS previous_day
            FROM purchase_days
        )
        SELECT customer_id,
               SUM(CASE WHEN day > date_add($cutoff, -90) THEN 1 ELSE 0 END) AS recent_purchase_days,
               SUM(CASE WHEN day > date_add($cutoff, -180) AND day <= date_add($cutoff, -90) THEN 1 ELSE 0 END)
                   AS prior_purchase_days,
               MAX(CASE WHEN days_between(previous_day, day) > $churn_days THEN day END) AS last_comeback
        FROM ordered_days
        GROUP BY customer_id
    """,
    # Per customer, purchase days, purchase orders and their value in the window ($start, $end] (DATEs), netted
    # of returns up to $end: the holdout of the CLV check and the label of churn ("did they buy in the next H
    # days?").
    "customer_window_activity": """
        WITH {purchase_days up to $end}
        SELECT customer_id, COUNT(*) AS purchase_days, SUM(orders) AS orders, SUM(value) AS value
        FROM purchase_days
        WHERE day > $start
        GROUP BY customer_id
    """,
    # Per product (its id, else its name; as in every recommendation query): the name it carries on most lines of
    # days up to $end (a DATE; a name over none; of equal counts, the first in alphabetical order).
    "product_names": """
        WITH named AS (
            SELECT coalesce(product_id, product_name) AS product, product_name, COUNT(*) AS lines
            FROM transactions
            WHERE coalesce(product_id, product_name) IS NOT NULL AND CAST(order_ts AS DATE) <= $end
            GROUP BY coalesce(product_id, product_name), product_name
        ),
        ranked AS (
            SELECT product, product_name,
                   ROW_NUMBER() OVER (PARTITION BY product
                                      ORDER BY CASE WHEN product_name IS NULL THEN 1 ELSE 0 END, lines DESC,
                                               product_name) AS name_rank
            FROM named
        )
        SELECT product, product_name FROM ranked WHERE name_rank = 1 ORDER BY product
    """,
    # Per customer and product, over the rows of days in ($start, $end] (DATEs): the days they bought it, the first
    # and last of them, and how much they bought and returned (units, else money, else lines): the interaction
    # matrix of recommendations. A pair with returns only (bought before $start) has no purchase days. Grouping by
    # day first is a third faster than counting distinct days.
    "customer_product_interactions": """
        WITH product_days AS (
            SELECT customer_id, coalesce(product_id, product_name) AS product, CAST(order_ts AS DATE) AS day,
                   SUM(CASE WHEN is_return THEN 0 ELSE abs(coalesce(quantity, amount, 1)) END) AS bought,
                   SUM(CASE WHEN is_return THEN abs(coalesce(quantity, amount, 1)) ELSE 0 END) AS returned,
                   MIN(CASE WHEN is_return THEN 1 ELSE 0 END) AS returns_only
            FROM transactions
            WHERE CAST(order_ts AS DATE) > $start AND CAST(order_ts AS DATE) <= $end
                  AND coalesce(product_id, product_name) IS NOT NULL
            GROUP BY customer_id, coalesce(product_id, product_name), CAST(order_ts AS DATE)
        )
        SELECT customer_id, product,
               SUM(1 - returns_only) AS purchase_days,
               MIN(CASE WHEN returns_only = 0 THEN day END) AS first_day,
               MAX(CASE WHEN returns_only = 0 THEN day END) AS last_day,
               SUM(bought) AS bought,
               SUM(returned) AS returned
        FROM product_days
        GROUP BY customer_id, product
    """,
    # Frequently bought together, as association rules report them (baskets = purchase orders): per ordered pair
    # of products in at least $min_orders orders together, orders_both, support = orders_both / all orders,
    # confidence = orders_both / orders with the first product, lift = confidence / (share of orders with the
    # other product). The $top pairs per first product by confidence (then lift); $product (or NULL: every
    # product) keeps one first product.
    "bought_together": "WITH" + _ORDER_PRODUCTS + """,
        baskets AS (
            SELECT COUNT(*) AS orders FROM (SELECT DISTINCT customer_id, order_id FROM order_products) o
        ),
        product_orders AS (
            SELECT product, COUNT(*) AS orders FROM order_products GROUP BY product
        ),
        pairs AS (
            SELECT a.product, b.product AS other_product, COUNT(*) AS orders_both
            FROM order_products a
                 JOIN order_products b
                 ON a.customer_id = b.customer_id AND a.order_id = b.order_id AND a.product <> b.product
            WHERE $product IS NULL OR a.product = $product
            GROUP BY a.product, b.product
            HAVING COUNT(*) >= $min_orders
        ),
        rules AS (
            SELECT p.product, p.other_product, p.orders_both, f.orders AS product_orders,
                   o.orders AS other_orders, n.orders AS all_orders,
                   CAST(p.orders_both AS DOUBLE) / n.orders AS support,
                   CAST(p.orders_both AS DOUBLE) / f.orders AS confidence,
                   CAST(p.orders_both AS DOUBLE) * n.orders / (CAST(f.orders AS DOUBLE) * o.orders) AS lift
            FROM pairs p
                 JOIN product_orders f ON p.product = f.product
                 JOIN product_orders o ON p.other_product = o.product
                 CROSS JOIN baskets n
        ),
        ranked AS (
            SELECT r.*, ROW_NUMBER() OVER (PARTITION BY product
                                           ORDER BY confidence DESC, lift DESC, other_product) AS pair_rank
            FROM rules r
        )
        SELECT product, other_product, orders_both, product_orders, other_orders, all_orders, support, confidence,
               lift
        FROM ranked
        WHERE pair_rank <= $top
        ORDER BY product, pair_rank
    """,
    # The distinct (basket, product_key) pairs of every purchase order, baskets numbered 1, 2, ... and products as
    # purchased_products numbers them (numbers: text is slow to fetch by the million): what
    # clm_core.recommend.bought_together counts the whole catalogue's pairs from, as one sparse matrix product,
    # when orders are large (Online Retail: 0.4 s, against 1.7 s for the self-join of bought_together, which
    # serves one product, files of small orders, and Spark).
    "order_products": "WITH" + _ORDER_PRODUCTS + "," + _PRODUCT_KEYS + """,
        baskets AS (
            SELECT customer_id, order_id, ROW_NUMBER() OVER (ORDER BY customer_id, order_id) AS basket
            FROM (SELECT DISTINCT customer_id, order_id FROM order_products) o
        )
        SELECT b.basket, k.product_key
        FROM order_products p
             JOIN baskets b ON p.customer_id = b.customer_id AND p.order_id = b.order_id
             JOIN product_keys k ON p.product = k.product
    """,
    # The products of purchase orders by their number in order_products (product_key 1, 2, ...).
    "purchased_products": "WITH" + _PRODUCT_KEYS + """
        SELECT product_key, product FROM product_keys ORDER BY product_key
    """,
    # How large purchase orders are: their lines with a product, and about how many orders hold them: which way
    # clm_core.recommend.bought_together counts pairs. approx_count_distinct (HyperLogLog) takes a tenth of a
    # second on a million customers, a quarter of the exact count's time; the engines estimate differently (the
    # demo data's 13,695 orders: DuckDB 13,995, Spark 12,700), which matters not: only DuckDB's side reads it.
    "purchase_order_size": f"""
        SELECT COUNT(*) AS lines, approx_count_distinct(order_id) AS orders {_PURCHASE_LINES}
    """,
    # The lifecycle-stage timeline (clm_core.segments): every customer's purchase days up to $end (a DATE), netted
    # of returns up to $end ({purchase_days} above), as days since $origin (a DATE) with their value (purchase =
    # 1); and marker rows (purchase = 0, no value) on the days a customer has rows but no purchase day: their
    # first return, and purchase days their returns cancelled in full or in part, so that a customer counts from
    # their first row of any kind, as customer_table counts them. By customer id, then day (a marker before a
    # purchase on the same day); first_row marks each customer's first row. One row per purchase day (millions
    # on large data): the stage rules are evaluated on it at many dates at once, in numpy.
    "purchase_day_timeline": """
        WITH {purchase_days up to $end},
        markers AS (
            SELECT customer_id, MIN(day) AS day FROM return_lines GROUP BY customer_id
            UNION ALL
            SELECT customer_id, day FROM cancelled_days
        ),
        customer_days AS (
            SELECT customer_id, day, value, 1 AS purchase FROM purchase_days
            UNION ALL
            SELECT customer_id, day, CAST(NULL AS DOUBLE) AS value, 0 AS purchase FROM markers
        ),
        numbered AS (
            SELECT customer_id, day, value, purchase,
                   ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day, purchase) AS customer_row
            FROM customer_days
        )
        SELECT days_between($origin, day) AS day, value, purchase, customer_row = 1 AS first_row
        FROM numbered
        ORDER BY customer_id, customer_row
    """,
    # First and last moment of the data.
    "date_span": """
        SELECT MIN(order_ts) AS first_ts, MAX(order_ts) AS last_ts FROM transactions
    """,
    # Type-ahead search: the customers whose id, or a contact value (``attributes``) on any of their rows,
    # contains $text (pass it in lower case). Plain text, no wildcards: instr() has none to escape (DuckDB and
    # Spark SQL both have it, as lower, length, concat_ws and chr); chr(31), a separator nobody types, keeps a
    # match from spanning two values. The first $limit: ids starting with the text (match_rank 0), then ids
    # holding it (1), then contact matches (2), shorter ids first; with the contact values of their first row,
    # their purchase orders and their last row's moment.
    "customer_search": """
        WITH matched AS (
            SELECT a.customer_id,
                   MIN(CASE WHEN instr(lower(a.customer_id), $text) = 1 THEN 0
                            WHEN instr(lower(a.customer_id), $text) > 0 THEN 1 ELSE 2 END) AS match_rank
            FROM transactions a
            WHERE instr(lower(concat_ws(chr(31), a.customer_id {selected_attributes})), $text) > 0
            GROUP BY a.customer_id
            ORDER BY match_rank, length(a.customer_id), a.customer_id
            LIMIT $limit
        )
        SELECT t.customer_id, m.match_rank {first_attributes},
               COUNT(DISTINCT CASE WHEN NOT t.is_return THEN t.order_id END) AS orders, MAX(t.order_ts) AS last_ts
        FROM transactions t JOIN matched m ON t.customer_id = m.customer_id
        GROUP BY t.customer_id, m.match_rank
        ORDER BY m.match_rank, length(t.customer_id), t.customer_id
    """,
    # One customer's ($customer_id) rows up to $cutoff (a DATE), as customer_table counts them: net revenue (every
    # row, returns included), return lines, lines, distinct products bought, and the attribute columns
    # (``attributes``) of their first row. No row: no such customer by then.
    "customer_totals": """
        SELECT t.customer_id, SUM(t.amount) AS net_revenue,
               SUM(CASE WHEN t.is_return THEN 1 ELSE 0 END) AS return_lines, COUNT(*) AS lines,
               COUNT(DISTINCT CASE WHEN NOT t.is_return THEN coalesce(t.product_id, t.product_name) END) AS products
               {first_attributes}
        FROM transactions t
        WHERE t.customer_id = $customer_id AND CAST(t.order_ts AS DATE) <= $cutoff
        GROUP BY t.customer_id
    """,
    # One customer's ($customer_id) days with any row up to $cutoff (a DATE): purchase orders, the value of what
    # they bought (before returns), their return lines and the value returned (positive); and whether the day is
    # a purchase day of customer_table (netted of returns, {purchase_days} above) with its net value, from which
    # the customer table's purchase figures follow. DuckDB pushes the customer filter down into the purchase-day
    # CTEs, so this reads one customer's rows.
    "customer_timeline": """
        WITH {purchase_days up to $cutoff},
        day_rows AS (
            SELECT CAST(order_ts AS DATE) AS day,
                   COUNT(DISTINCT CASE WHEN NOT is_return THEN order_id END) AS orders,
                   SUM(CASE WHEN NOT is_return THEN amount END) AS bought_value,
                   SUM(CASE WHEN is_return THEN 1 ELSE 0 END) AS return_lines,
                   SUM(CASE WHEN is_return THEN -amount END) AS returned_value
            FROM transactions
            WHERE customer_id = $customer_id AND CAST(order_ts AS DATE) <= $cutoff
            GROUP BY CAST(order_ts AS DATE)
        ),
        netted AS (
            SELECT day, value FROM purchase_days WHERE customer_id = $customer_id
        )
        SELECT r.day, r.orders, r.bought_value, r.return_lines, r.returned_value,
               CASE WHEN n.day IS NULL THEN FALSE ELSE TRUE END AS purchase_day, n.value AS net_value
        FROM day_rows r LEFT JOIN netted n ON r.day = n.day
        ORDER BY r.day
    """,
    # One customer's ($customer_id) products (id, else name) up to $cutoff (a DATE): a name (of the customer's
    # lines, the first alphabetically), the days they bought it and the last of them, units and value bought and
    # returned (returns as positive numbers), and what they bought and returned in one measure (units, else money,
    # else lines, as customer_product_interactions) to tell a product returned in full.
    "customer_products": """
        SELECT coalesce(product_id, product_name) AS product, MIN(product_name) AS product_name,
               COUNT(DISTINCT CASE WHEN NOT is_return THEN CAST(order_ts AS DATE) END) AS purchase_days,
               MAX(CASE WHEN NOT is_return THEN CAST(order_ts AS DATE) END) AS last_day,
               SUM(CASE WHEN NOT is_return THEN abs(quantity) END) AS bought_quantity,
               SUM(CASE WHEN is_return THEN abs(quantity) END) AS returned_quantity,
               SUM(CASE WHEN NOT is_return THEN amount END) AS bought_value,
               SUM(CASE WHEN is_return THEN -amount END) AS returned_value,
               SUM(CASE WHEN is_return THEN 0 ELSE abs(coalesce(quantity, amount, 1)) END) AS bought,
               SUM(CASE WHEN is_return THEN abs(coalesce(quantity, amount, 1)) ELSE 0 END) AS returned
        FROM transactions
        WHERE customer_id = $customer_id AND CAST(order_ts AS DATE) <= $cutoff
              AND coalesce(product_id, product_name) IS NOT NULL
        GROUP BY coalesce(product_id, product_name)
    """,
    # The first rows of the cleaned table, in file order.
    "preview": """
        SELECT * FROM transactions ORDER BY source_row LIMIT $limit
    """,
}


def query_text(name: str, *, dialect: str = "duckdb", **identifiers: str) -> str:
    """The SQL of a named query with its identifier slots filled, in ``dialect`` (``"duckdb"`` or ``"spark"``).

    Identifiers (``segment``, ``attributes``: a list) are column names the caller has checked against
    the dataset's own columns; user text only ever goes in as bound parameters.
    A slot left empty becomes a constant, so the query groups everything together.

    The Spark text binds its parameters as ``:name`` (``SparkSession.sql(text, args=...)``), quotes names with
    backticks and spells the helper functions below the Spark way. ``customer_bucket`` hashes differently in the
    two engines, so a sampled query (``$sample_per_mille`` below 1000) keeps other customers on Spark than on
    DuckDB; at 1000 both keep everyone and agree.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(_DIALECTS)}, not {dialect!r}")
    try:
        text = QUERIES[name]
    except KeyError:
        raise KeyError(f"No query named {name!r}; known: {', '.join(sorted(QUERIES))}") from None
    quote = quote_identifier if dialect == "duckdb" else _quote_spark_identifier
    text = _PURCHASE_DAYS_SLOT.sub(lambda found: _PURCHASE_DAYS.replace("{until}", found[1]).replace(
        "{sampled}", "AND customer_bucket(customer_id) < $sample_per_mille" if found[2] else ""), text)
    if "{segment}" in text:
        segment = identifiers.get("segment")
        text = text.replace("{segment}", f"t.{quote(segment)}" if segment else "'All customers'")
    columns = [quote(column) for column in identifiers.get("attributes") or ()]
    text = text.replace("{first_attributes}", "".join(
        f", min_by(t.{column}, first_row_key(t)) AS {column}" for column in columns))
    text = text.replace("{selected_attributes}", "".join(f", a.{column}" for column in columns))
    text = text.replace("first_row_key(t)", _FIRST_ROW_KEY)
    spelling = _DIALECTS[dialect]
    text = _EPOCH_SECONDS.sub(spelling["epoch_seconds"], text)
    text = _CUSTOMER_BUCKET.sub(spelling["customer_bucket"], text)
    text = _DAYS_BETWEEN.sub(spelling["days_between"], text)
    return _PARAMETER.sub(spelling["parameter"], text)


_PURCHASE_DAYS_SLOT = re.compile(r"\{purchase_days up to ([^},]+?)(, sampled)?\}")
# Functions the engines spell differently; the queries use one name and each dialect writes its own (arguments are
# plain names, parameters or casts without commas).
# Days from one DATE to another, days_between(a, b): DuckDB's date_diff('day', a, b), Spark's datediff(b, a).
_DAYS_BETWEEN = re.compile(r"days_between\(\s*([^(),]+?)\s*,\s*([^(),]+?)\s*\)")
# Seconds since 1970 as a whole number, epoch_seconds(x): DuckDB's CAST(epoch(x) AS BIGINT), which rounds the
# fraction of a second (half away from zero). Spark's unix_timestamp(x) would cut it off instead, so the Spark
# spelling rounds the microseconds the same way (round() is half-up, away from zero) to keep the first row of a
# customer the same in both when timestamps carry fractions of a second; order_ts is a TIMESTAMP_NTZ there, read
# as UTC (the Spark engine fixes the session time zone).
_EPOCH_SECONDS = re.compile(r"epoch_seconds\(\s*([^(),]+?)\s*\)")
# Orders a customer's rows by time, then by their place in the file, in one whole number (cheaper to compare
# than a pair): seconds times 1e9 plus the row number (below 1e9) fits in 64 bits for dates up to 2262.
_FIRST_ROW_KEY = "(epoch_seconds(t.order_ts) * 1000000000 + t.source_row)"
# A customer's fixed bucket, 0 to 999, customer_bucket(x), from a hash of the id: a sample of customers that stays
# the same from run to run. DuckDB's hash(x) % 1000 and Spark's pmod(hash(x), 1000) hash differently (DuckDB's
# 64-bit hash, Spark's 32-bit Murmur3), so the engines draw different samples of the same share; no hash both
# compute alike is as cheap (md5 is, in both, but costs a digest per row).
_CUSTOMER_BUCKET = re.compile(r"customer_bucket\(\s*([^(),]+?)\s*\)")
# Bound parameters: $name in the queries (DuckDB's style), :name for Spark's named parameter markers.
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DIALECTS: dict[str, dict[str, str]] = {
    "duckdb": {
        "epoch_seconds": r"CAST(epoch(\1) AS BIGINT)",
        "customer_bucket": r"(hash(\1) % 1000)",
        "days_between": r"date_diff('day', \1, \2)",
        "parameter": r"$\1",
    },
    "spark": {
        "epoch_seconds": r"CAST(round(unix_micros(CAST(\1 AS TIMESTAMP)) / 1000000.0) AS BIGINT)",
        "customer_bucket": r"pmod(hash(\1), 1000)",
        "days_between": r"datediff(\2, \1)",
        "parameter": r":\1",
    },
}


def _quote_spark_identifier(name: str) -> str:
    """``name`` as a Spark SQL identifier: in backticks, every backtick inside doubled (Spark reads double quotes
    as a string). The same refusals as :func:`clm_core.sql.quote_identifier`, which it follows."""
    quote_identifier(name)  # refuses what it refuses: not text, a NUL character
    return "`" + name.replace("`", "``") + "`"
