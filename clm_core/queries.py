"""Named SQL queries over the canonical ``transactions`` table: the only transaction-level SQL above ingest.

Every query is written in SQL that DuckDB and Spark SQL both accept
(``date_trunc``, ``year``/``month``, ``COUNT(DISTINCT ..)``, ``CASE``, window
functions, ``$name`` parameters that a Spark runner rewrites to ``:name``).
Code above this layer asks for a query by name and gets a pandas frame back;
it never writes SQL. Results are small (customer- or period-level), never
row-level, except ``preview``.

Purchases are the rows that are not returns; revenue is net of returns.
"""

from __future__ import annotations

__all__ = ["QUERIES", "query_text"]

_PURCHASES = "SELECT * FROM transactions WHERE NOT is_return"

QUERIES: dict[str, str] = {
    # One row: the headline numbers of a dataset.
    "dataset_totals": f"""
        WITH purchases AS ({_PURCHASES}),
        per_customer AS (
            SELECT customer_id, COUNT(DISTINCT order_id) AS orders
            FROM purchases GROUP BY customer_id
        )
        SELECT
            (SELECT COUNT(DISTINCT customer_id) FROM transactions) AS customers,
            (SELECT COUNT(*) FROM per_customer) AS buying_customers,
            (SELECT COUNT(*) FROM per_customer WHERE orders >= 2) AS repeat_customers,
            (SELECT COUNT(DISTINCT order_id) FROM purchases) AS orders,
            (SELECT COUNT(DISTINCT order_id) FROM transactions WHERE is_return) AS return_orders,
            (SELECT SUM(amount) FROM purchases) AS gross_revenue,
            (SELECT SUM(amount) FROM transactions) AS net_revenue,
            (SELECT MIN(order_ts) FROM transactions) AS first_ts,
            (SELECT MAX(order_ts) FROM transactions) AS last_ts,
            (SELECT COUNT(*) FROM transactions) AS rows
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
    "cohort_activity": """
        WITH firsts AS (
            SELECT t.customer_id, MIN(t.order_ts) AS first_ts, MIN({segment}) AS segment
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
                   MIN({segment}) AS segment
            FROM transactions t WHERE NOT t.is_return GROUP BY t.customer_id
        )
        SELECT date_trunc($period, first_ts) AS cohort, segment, date_trunc($period, last_ts) AS last_period,
               COUNT(*) AS customers
        FROM spans
        GROUP BY date_trunc($period, first_ts), segment, date_trunc($period, last_ts)
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

    Identifiers (``segment``) are column names the caller has checked against
    the dataset's own columns; user text only ever goes in as bound parameters.
    A slot left empty becomes a constant, so the query groups everything together.
    """
    try:
        text = QUERIES[name]
    except KeyError:
        raise KeyError(f"No query named {name!r}; known: {', '.join(sorted(QUERIES))}") from None
    if "{segment}" in text:
        segment = identifiers.get("segment")
        text = text.replace("{segment}", f"t.{segment}" if segment else "'All customers'")
    return text
