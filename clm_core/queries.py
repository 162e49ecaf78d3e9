"""Named SQL queries over the canonical ``transactions`` table: the only transaction-level SQL above ingest.

Every query is written in SQL that DuckDB and Spark SQL both accept
(``date_trunc``, ``year``/``month``, ``COUNT(DISTINCT ..)``, ``CASE``, ``min_by``, window
functions, ``$name`` parameters that a Spark runner rewrites to ``:name``).
Code above this layer asks for a query by name and gets a pandas frame back;
it never writes SQL. Results are small (customer- or period-level), never
row-level, except ``preview``.

Purchases are the rows that are not returns; revenue is net of returns.
"""

from __future__ import annotations

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
    # Per customer, purchase days (purchases on one day are one transaction) split at $calibration_end
    # (a DATE, inclusive): first and last purchase day and count in calibration, value of the repeat days,
    # and the purchase days and value after it (the holdout). Customers who first bought after it are left out.
    "customer_purchase_summary": """
        WITH purchase_days AS (
            SELECT customer_id, CAST(order_ts AS DATE) AS day, SUM(amount) AS value
            FROM transactions WHERE NOT is_return
            GROUP BY customer_id, CAST(order_ts AS DATE)
        ),
        firsts AS (
            SELECT customer_id, MIN(day) AS first_day FROM purchase_days GROUP BY customer_id
        )
        SELECT
            d.customer_id,
            f.first_day,
            MAX(CASE WHEN d.day <= $calibration_end THEN d.day END) AS last_day,
            SUM(CASE WHEN d.day <= $calibration_end THEN 1 ELSE 0 END) AS purchase_days,
            SUM(CASE WHEN d.day <= $calibration_end AND d.day > f.first_day THEN d.value ELSE 0 END) AS repeat_value,
            SUM(CASE WHEN d.day > $calibration_end THEN 1 ELSE 0 END) AS holdout_purchases,
            SUM(CASE WHEN d.day > $calibration_end THEN d.value ELSE 0 END) AS holdout_value
        FROM purchase_days d JOIN firsts f ON d.customer_id = f.customer_id
        WHERE f.first_day <= $calibration_end
        GROUP BY d.customer_id, f.first_day
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
    # One row per customer with the given attribute columns (contact details, segments): the first value seen.
    "customer_attributes": """
        SELECT customer_id {attributes} FROM transactions t GROUP BY customer_id
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
    if "{attributes}" in text:
        columns = identifiers.get("attributes") or ()
        text = text.replace("{attributes}", "".join(
            f", MIN(t.{quote_identifier(column)}) AS {quote_identifier(column)}" for column in columns))
    return text
