"""Every named query, as rendered for Spark, is SQL that Spark SQL has: parsed with sqlglot's Spark reader, it
holds no function Spark lacks and none of DuckDB's own syntax. A new query that only DuckDB runs fails here, in a
second, before any Spark test starts."""

from __future__ import annotations

import pytest

from clm_core.queries import QUERIES, query_text

sqlglot = pytest.importorskip("sqlglot", reason="the portability check needs sqlglot (requirements-dev.txt)")
from sqlglot import exp  # noqa: E402
from sqlglot.errors import ErrorLevel, ParseError  # noqa: E402
from sqlglot.tokens import TokenType  # noqa: E402

# Spark built-ins sqlglot parses as unknown (Anonymous) functions. Each is in Spark's function reference
# (spark.apache.org/docs/latest/api/sql); add one here only after checking it there.
SPARK_BUILTINS_UNKNOWN_TO_SQLGLOT = {
    "hash",  # Murmur3 of the arguments: customer_bucket
    "pmod",  # the non-negative remainder: customer_bucket
}
# DuckDB constructs sqlglot's Spark reader accepts (and would rewrite for Spark) but Spark SQL itself does not run.
DUCKDB_ONLY_NODES = {
    exp.ReadCSV: "read_csv()",
    exp.Columns: "COLUMNS(*)",
    exp.List: "list()",
    exp.Qualify: "QUALIFY",
    exp.Parameter: "a $name parameter",
}
DUCKDB_ONLY_COLUMNS = {"rowid"}
# Tokens that mean DuckDB: a `::` cast (sqlglot reads it for Spark, as a TRY cast), and a double-quoted name, which
# Spark reads as a string: a column compared with a constant, silently.
DUCKDB_ONLY_TOKENS = {TokenType.DCOLON: "a :: cast"}


def spark_problems(sql: str) -> list[str]:
    """What in ``sql`` Spark SQL would not run as DuckDB does, in words; empty when it is portable."""
    problems = []
    for token in sqlglot.Dialect.get_or_raise("spark").tokenize(sql):
        if token.token_type in DUCKDB_ONLY_TOKENS:
            problems.append(f"{DUCKDB_ONLY_TOKENS[token.token_type]} at line {token.line}")
        elif token.token_type == TokenType.STRING and sql[token.start] == '"':
            problems.append(f'a double-quoted name "{token.text}" (a string to Spark; quote names with backticks)')
    try:
        tree = sqlglot.parse_one(sql, read="spark", error_level=ErrorLevel.RAISE)
    except ParseError as error:
        return [*problems, f"not Spark SQL: {error}"]
    for node in tree.find_all(exp.Anonymous, exp.AnonymousAggFunc):
        if node.name.lower() not in SPARK_BUILTINS_UNKNOWN_TO_SQLGLOT:
            problems.append(f"{node.name}() is no Spark function")
    for kind, what in DUCKDB_ONLY_NODES.items():
        problems += [f"{what} is DuckDB's own" for _ in tree.find_all(kind)]
    problems += [f"{column.name} is DuckDB's own column" for column in tree.find_all(exp.Column)
                 if column.name.lower() in DUCKDB_ONLY_COLUMNS]
    return problems


SLOTS = {
    "no slots": {},
    "a segment and attributes": {"segment": "seg_country", "attributes": ["seg_country", "contact_e-mail"]},
}


@pytest.mark.parametrize("slots", SLOTS.values(), ids=SLOTS.keys())
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_named_query_is_spark_sql(name, slots):
    text = query_text(name, dialect="spark", **slots)
    assert spark_problems(text) == [], text
    assert "$" not in text, "every parameter is bound as :name on Spark"


@pytest.mark.parametrize("sql, flagged", [
    ("SELECT list_value(customer_id, order_id) FROM transactions", "list_value() is no Spark function"),
    ("SELECT epoch(order_ts) FROM transactions", "epoch() is no Spark function"),
    ("SELECT strftime(order_ts, '%Y-%m') FROM transactions", "strftime() is no Spark function"),
    ("SELECT regexp_split_to_array(product_name, ' ') FROM transactions", "regexp_split_to_array() is no Spark"),
    ("SELECT try_strptime(order_text, '%d/%m/%Y') FROM raw_upload", "try_strptime() is no Spark function"),
    ("SELECT * FROM read_csv('orders.csv')", "read_csv() is DuckDB's own"),
    ("SELECT COLUMNS(*) FROM transactions", "COLUMNS(*) is DuckDB's own"),
    ("SELECT list(order_id) FROM transactions GROUP BY customer_id", "list() is DuckDB's own"),
    ("SELECT rowid FROM transactions", "rowid is DuckDB's own column"),
    ("SELECT amount::INTEGER FROM transactions", "a :: cast"),
    ('SELECT "seg_country" FROM transactions', "a double-quoted name"),
    ("SELECT customer_id FROM transactions WHERE amount > $limit", "a $name parameter"),
    ("SELECT customer_id FROM transactions QUALIFY row_number() OVER (ORDER BY amount) = 1", "QUALIFY"),
])
def test_duckdb_only_sql_is_flagged(sql, flagged):
    problems = spark_problems(sql)
    assert any(flagged in problem for problem in problems), problems


def test_a_new_query_in_duckdb_spelling_fails_the_check(monkeypatch):
    monkeypatch.setitem(QUERIES, "monthly_lists", """
        SELECT strftime(order_ts, '%Y-%m') AS month, list_value(MIN(order_id), MAX(order_id)) AS orders,
               MAX(epoch(order_ts)) AS last_seconds {first_attributes}
        FROM transactions t WHERE order_ts < $end GROUP BY strftime(order_ts, '%Y-%m')
    """)
    problems = spark_problems(query_text("monthly_lists", dialect="spark", attributes=["seg_country"]))
    assert sorted(set(problems)) == ["epoch() is no Spark function", "list_value() is no Spark function",
                                     "strftime() is no Spark function"]


def test_the_duckdb_text_keeps_duckdb_spelling():
    duck = query_text("customer_table", attributes=["seg_country"])
    spark = query_text("customer_table", dialect="spark", attributes=["seg_country"])
    assert "date_diff('day', p.last_day, $cutoff)" in duck and "datediff(:cutoff, p.last_day)" in spark
    assert "(hash(customer_id) % 1000) < $sample_per_mille" in duck
    assert "pmod(hash(customer_id), 1000) < :sample_per_mille" in spark
    assert 'min_by(t."seg_country", (CAST(epoch(t.order_ts) AS BIGINT)' in duck
    assert "min_by(t.`seg_country`, (CAST(round(unix_micros(CAST(t.order_ts AS TIMESTAMP))" in spark


def test_a_name_holding_a_backtick_stays_one_name_on_spark():
    text = query_text("customer_attributes", dialect="spark", attributes=["seg_a`b"])
    assert "t.`seg_a``b`" in text
    with pytest.raises(ValueError, match="NUL"):
        query_text("customer_attributes", dialect="spark", attributes=["seg_a\x00"])


def test_an_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="dialect must be one of duckdb, spark"):
        query_text("date_span", dialect="postgres")
