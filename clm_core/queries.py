"""Named SQL queries over the canonical ``transactions`` table: the only transaction-level SQL above ingest.

Every query is written in SQL that DuckDB and Spark SQL both accept
(``date_trunc``, ``date_add``, ``year``/``month``, ``COUNT(DISTINCT ..)``, ``CASE``, ``min_by``, window
functions, ``$name`` parameters that a Spark runner rewrites to ``:name``), plus one named function the
two spell differently, ``days_between(a, b)``, which :func:`query_text` writes in DuckDB's spelling.
Code above this layer asks for a query by name and gets a pandas frame back;
it never writes SQL. Results are small (customer- or period-level), never
row-level, except ``preview``.

Purchases are the rows that are not returns; revenue is net of returns.
"""

from __future__ import annotations

import re

from clm_core.sql import quote_identifier

__all__ = ["QUERIES", "query_text"]

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
    # A customer's segment is its value on their first purchase (the smallest if that order has several, as a
    # product category may): min_by over (time, value) exists in DuckDB and Spark SQL alike.
    # Per cohort (period of a customer's first purchase), optional segment, and calendar period:
    # customers who bought, net revenue and purchase orders. $period is 'week', 'month' or 'quarter'.
    "cohort_activity": """
        WITH firsts AS (
            SELECT t.customer_id, MIN(t.order_ts) AS first_ts, min_by({segment}, (t.order_ts, {segment})) AS segment
            FROM transactions t WHERE NOT t.is_return GROUP BY t.customer_id
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
    """,
    # Per cohort and segment: how many customers made their last purchase in each period
    # (the input of rolling retention).
    "cohort_last_purchase": """
        WITH spans AS (
            SELECT t.customer_id, MIN(t.order_ts) AS first_ts, MAX(t.order_ts) AS last_ts,
                   min_by({segment}, (t.order_ts, {segment})) AS segment
            FROM transactions t WHERE NOT t.is_return GROUP BY t.customer_id
        )
        SELECT date_trunc($period, first_ts) AS cohort, segment, date_trunc($period, last_ts) AS last_period,
               COUNT(*) AS customers
        FROM spans
        GROUP BY date_trunc($period, first_ts), segment, date_trunc($period, last_ts)
    """,
    # Per calendar day, among customers who first bought by $calibration_end: how many made their first
    # purchase that day and how many repeat purchase days fell on it (the input of the tracking plot).
    "daily_repeat_purchases": """
        WITH purchase_days AS (
            SELECT DISTINCT customer_id, CAST(order_ts AS DATE) AS day FROM transactions WHERE NOT is_return
        ),
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
    # customer's first row (the smallest, if that moment has several), as the cohort split takes it.
    "customer_attributes": """
        SELECT customer_id {first_attributes} FROM transactions t GROUP BY customer_id
    """,
    # The customer table as of $cutoff (a DATE, inclusive): one row per customer with any row up to it (also
    # customers with only returns, whose purchase columns are then empty or zero). Purchases on one day are one
    # purchase day. Gaps are the days between consecutive purchase days; spend is over purchase days in the 90
    # days up to the cutoff and the 90 before those; attributes are those of the customer's first row.
    "customer_table": """
        WITH purchase_days AS (
            SELECT customer_id, CAST(order_ts AS DATE) AS day, SUM(amount) AS value,
                   COUNT(DISTINCT order_id) AS orders
            FROM transactions
            WHERE NOT is_return AND CAST(order_ts AS DATE) <= $cutoff
            GROUP BY customer_id, CAST(order_ts AS DATE)
        ),
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
                   AVG(gap) AS mean_gap_days,
                   STDDEV_SAMP(gap) AS gap_spread_days,
                   SUM(CASE WHEN day > date_add($cutoff, -90) THEN value ELSE 0 END) AS spend_last_90,
                   SUM(CASE WHEN day > date_add($cutoff, -180) AND day <= date_add($cutoff, -90)
                            THEN value ELSE 0 END) AS spend_prior_90
            FROM gaps
            GROUP BY customer_id
        ),
        all_rows AS (
            SELECT t.customer_id,
                   SUM(t.amount) AS net_revenue,
                   SUM(CASE WHEN t.is_return THEN 1 ELSE 0 END) AS return_lines,
                   COUNT(*) AS lines,
                   COUNT(DISTINCT CASE WHEN t.is_return THEN NULL ELSE t.product_id END) AS products
                   {first_attributes}
            FROM transactions t
            WHERE CAST(t.order_ts AS DATE) <= $cutoff
            GROUP BY t.customer_id
        )
        SELECT a.customer_id, p.first_day, p.last_day,
               days_between(p.last_day, $cutoff) AS recency_days,
               days_between(p.first_day, $cutoff) AS tenure_days,
               coalesce(p.purchase_days, 0) AS purchase_days, coalesce(p.orders, 0) AS orders,
               coalesce(p.purchase_value, 0) AS purchase_value, coalesce(p.first_day_value, 0) AS first_day_value,
               p.mean_gap_days, p.gap_spread_days,
               coalesce(p.spend_last_90, 0) AS spend_last_90, coalesce(p.spend_prior_90, 0) AS spend_prior_90,
               a.net_revenue, a.return_lines, a.lines, a.products
               {selected_attributes}
        FROM all_rows a LEFT JOIN purchases p ON a.customer_id = p.customer_id
        ORDER BY a.customer_id
    """,
    # Per customer, purchase days, purchase orders and their value in the window ($start, $end] (DATEs): the
    # holdout of the CLV check and the label of churn ("did they buy in the next H days?").
    "customer_window_activity": """
        SELECT customer_id,
               COUNT(DISTINCT CAST(order_ts AS DATE)) AS purchase_days,
               COUNT(DISTINCT order_id) AS orders,
               SUM(amount) AS value
        FROM transactions
        WHERE NOT is_return AND CAST(order_ts AS DATE) > $start AND CAST(order_ts AS DATE) <= $end
        GROUP BY customer_id
    """,
    # First and last moment of the data.
    "date_span": """
        SELECT MIN(order_ts) AS first_ts, MAX(order_ts) AS last_ts FROM transactions
    """,
    # The first rows of the cleaned table, in file order.
    "preview": """
        SELECT * FROM transactions ORDER BY source_row LIMIT $limit
    """,
}


def query_text(name: str, **identifiers: str) -> str:
    """The SQL of a named query with its identifier slots filled.

    Identifiers (``segment``, ``attributes``: a list) are column names the caller has checked against
    the dataset's own columns; user text only ever goes in as bound parameters.
    A slot left empty becomes a constant, so the query groups everything together.
    """
    try:
        text = QUERIES[name]
    except KeyError:
        raise KeyError(f"No query named {name!r}; known: {', '.join(sorted(QUERIES))}") from None
    if "{segment}" in text:
        segment = identifiers.get("segment")
        text = text.replace("{segment}", f"t.{quote_identifier(segment)}" if segment else "'All customers'")
    columns = [quote_identifier(column) for column in identifiers.get("attributes") or ()]
    text = text.replace("{first_attributes}", "".join(
        f", min_by(t.{column}, (t.order_ts, t.{column})) AS {column}" for column in columns))
    text = text.replace("{selected_attributes}", "".join(f", a.{column}" for column in columns))
    return _DAYS_BETWEEN.sub(r"date_diff('day', \1, \2)", text)


# Days from one DATE to another: DuckDB's date_diff('day', a, b); Spark SQL writes it datediff(b, a). The queries
# say days_between(a, b) (arguments plain names or parameters) and each engine spells it its own way.
_DAYS_BETWEEN = re.compile(r"days_between\(\s*([^(),]+?)\s*,\s*([^(),]+?)\s*\)")
