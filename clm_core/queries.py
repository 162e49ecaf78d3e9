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
    # The first rows of the cleaned table, in file order.
    "preview": """
        SELECT * FROM transactions ORDER BY source_row LIMIT $limit
    """,
}


def query_text(name: str) -> str:
    """The SQL of a named query; KeyError names the query when it does not exist."""
    try:
        return QUERIES[name]
    except KeyError:
        raise KeyError(f"No query named {name!r}; known: {', '.join(sorted(QUERIES))}") from None
