"""Validate the raw upload and build the canonical ``transactions`` table, reporting every row.

Each raw row ends up either in ``transactions`` or in ``rejected_rows`` with
exactly one reason (the first that applies, in the order of ``REJECT_REASONS``),
so ``rows_in == rows_kept + sum(rows_rejected.values())`` always holds. Both are
views over one stored table, ``ingested_rows``, that holds every row of the file
with its reason (none for kept rows) and, for rejected rows, the file's own text.
Returns (negative quantity or amount, or an invoice id like ``C536379``) are
kept with negative amounts and netted against revenue unless dropped; zero-price
lines are kept as purchases unless dropped. Both are counted as flags.
Identical rows are decided per file (:func:`duplicates_are_export_errors`): with an
order or line id they are double exports and rejected; without one they may be
separate purchases and are kept (flagged), unless the user chooses otherwise.

Part of the DuckDB engine layer (it parses text with DuckDB functions).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import duckdb

from clm_core import schema
from clm_core.errors import InputFileError, MappingError
from clm_core.mapping import ColumnMapping
from clm_core.reader import LINE_COLUMN, MALFORMED_TABLE, RAW_LINE, RAW_TABLE
from clm_core.sql import quote_identifier

__all__ = [
    "REJECTED_TABLE",
    "INGESTED_TABLE",
    "REJECT_REASONS",
    "FLAG_REASONS",
    "IngestOptions",
    "IngestReport",
    "build_transactions",
    "duplicates_are_export_errors",
    "attribute_column",
]

REJECTED_TABLE = "rejected_rows"
INGESTED_TABLE = "ingested_rows"
_NEW_TABLE = "ingested_rows_new"
REJECT_REASONS = {
    "malformed_row": "Row does not fit the file's columns (more fields than the header, or a quote never closed)",
    "missing_customer_id": "Customer ID is empty",
    "unparseable_date": "Order date could not be read as a date",
    "future_date": "Order date is in the future",
    "non_numeric_amount": "Amount (or quantity / price) is missing or not a number",
    "non_finite_amount": "Amount (or quantity / price) is infinite or NaN, or too large to be a real amount",
    "zero_price_dropped": "Zero price (dropped by your choice)",
    "duplicate": "Exact duplicate of an earlier row (a double export)",
    "return_dropped": "Return or cancellation (dropped by your choice)",
}
FLAG_REASONS = {
    "return": "Returns and cancellations, kept and netted against revenue",
    "zero_price": "Zero-price lines, kept as purchases with no revenue",
    "duplicate": "Rows identical to an earlier one, kept as separate purchases",
}


@dataclass(frozen=True)
class IngestOptions:
    """Cleaning choices; the defaults keep returns (netted) and zero-price lines."""

    drop_returns: bool = False
    drop_zero_price: bool = False
    # Identical rows: None decides from the file (see duplicates_are_export_errors); True keeps and flags them,
    # False rejects them.
    keep_duplicates: bool | None = None
    # Rows dated after this moment are rejected as future dates.
    now: datetime | None = None

    def to_dict(self) -> dict:
        values = asdict(self)
        values.pop("now")
        return values


@dataclass
class IngestReport:
    """What happened to every row of the upload."""

    rows_in: int
    rows_kept: int
    rows_rejected: dict[str, int]
    rows_flagged: dict[str, int]
    notes: list[str] = field(default_factory=list)
    # What was done with identical rows, and why (a sentence for the user).
    duplicates_kept: bool = False
    duplicate_reason: str = ""

    @property
    def total_rejected(self) -> int:
        return sum(self.rows_rejected.values())

    def to_dict(self) -> dict:
        return asdict(self)


# Names of columns that number each line or record: with one, two identical rows are one line exported twice.
_LINE_ID = re.compile(r"^(line(item)?(id|no|number)|orderline(id|no|number)|rowid|recordid|transactionlineid"
                      r"|lineid|id)$")


def duplicates_are_export_errors(mapping: ColumnMapping, columns: list[str]) -> tuple[bool, str]:
    """Whether identical rows of this file are double exports (True) or may be separate purchases (False), with
    the evidence as a sentence.

    An order or line id makes every real line distinct, so a repeat is an export error. Without one, the same
    customer buying the same item twice on one day (a basket file, CDNOW) writes two identical rows.
    """
    order_column = mapping.fields.get(schema.ORDER_ID)
    if order_column:
        return True, f"the file has an order column ({order_column}), so an identical row is the same line twice"
    # A column feeding another field ('id' as the customer) numbers customers or products, not lines.
    line_column = next((c for c in columns if c not in mapping.fields.values()
                        and _LINE_ID.match(re.sub(r"[^a-z0-9]", "", c.lower()))), None)
    if line_column:
        return True, f"the file has a line number column ({line_column}), so an identical row is the same line twice"
    return False, ("the file has no order or line number, so identical rows can be real repeat purchases "
                   "(the same item bought twice on one day)")


def attribute_column(prefix: str, label: str) -> str:
    """The canonical column name for a kept attribute: ``seg_country``, ``contact_email``."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "column"
    return prefix + slug


def _text(column: str | None) -> str:
    """SQL for a text field without surrounding spaces; empty becomes NULL."""
    if not column:
        return "NULL"
    value = quote_identifier(column)
    # trim() copies every string, and most values have no spaces to remove (trim removes spaces only).
    return (f"NULLIF(CASE WHEN starts_with({value}, ' ') OR ends_with({value}, ' ') THEN trim({value}) "
            f"ELSE {value} END, '')")


def _number(column: str | None, style: str) -> str:
    """SQL that turns '£1,234.50', '1.234,50', '(12.00)' or '-3' into a DOUBLE, or NULL."""
    if not column:
        return "CAST(NULL AS DOUBLE)"
    cleaned = f"regexp_replace(trim({quote_identifier(column)}), '[£$€¥\\s'']', '', 'g')"
    if style == "comma":
        cleaned = f"replace(replace({cleaned}, '.', ''), ',', '.')"
    else:
        cleaned = f"replace({cleaned}, ',', '')"
    # Accountants write negatives in parentheses.
    cleaned = f"regexp_replace({cleaned}, '^\\((.*)\\)$', '-\\1')"
    if style == "comma":
        return f"TRY_CAST({cleaned} AS DOUBLE)"
    # Most cells are plain numbers: cast them directly (the cast ignores surrounding blanks) and clean only the
    # rest (same result, far fewer regexes).
    return f"coalesce(TRY_CAST({quote_identifier(column)} AS DOUBLE), TRY_CAST({cleaned} AS DOUBLE))"


def _slashed_formats(date_format: str) -> list[str]:
    """Every strptime format a month-first or day-first date may be written in: with numbers ('09/12/2011'), or
    with the month's English name or its abbreviation ('09-Dec-11', '9 December 2011'; 'Dec 9, 2011')."""
    first, second = ("%d", "%m") if date_format == "dmy" else ("%m", "%d")
    bases = []
    # Two-digit years first: '%Y' would read '3/4/11' as the year 11, while '%y' never reads a four-digit year.
    for separator in ("/", "-", "."):
        for year in ("%y", "%Y"):
            bases.append(separator.join((first, second, year)))
    for month in ("%b", "%B"):
        for year in ("%y", "%Y"):
            bases += ([f"%d{separator}{month}{separator}{year}" for separator in ("-", " ", "/")]
                      if date_format == "dmy" else [f"{month} %d, {year}", f"{month} %d {year}"])
    return [fmt for base in bases for fmt in (f"{base} %H:%M:%S", f"{base} %H:%M", f"{base} %I:%M %p", base)]


def _likely_formats(con: duckdb.DuckDBPyConnection, column: str, formats: list[str], *, keep: int = 3,
                    sample_rows: int = 2000) -> tuple[str, ...]:
    """The ``keep`` formats that read most of the column's first values, each with its two-digit-year twin
    when that reads some too, two-digit years first (so '3/4/11' never becomes the year 11)."""
    counts = ", ".join(f"count(try_strptime(v, '{fmt}'))" for fmt in formats)
    row = con.execute(
        f"SELECT {counts} FROM (SELECT trim({quote_identifier(column)}) AS v FROM {RAW_TABLE} LIMIT {sample_rows})"
    ).fetchone()
    hits = dict(zip(formats, row))
    best = sorted(formats, key=lambda fmt: -hits[fmt])[:keep]
    chosen = {twin for fmt in best for twin in (fmt, fmt.replace("%Y", "%y")) if hits[twin]}
    return tuple(sorted(chosen, key=lambda fmt: ("%Y" in fmt, -hits[fmt], formats.index(fmt))))


def _timestamp(column: str, date_format: str, likely_formats: tuple[str, ...] = ()) -> str:
    """SQL that reads the column as a TIMESTAMP, or NULL.

    Fast paths come first: a failed strptime costs ten times a successful one, and COALESCE only evaluates
    an argument for the rows still NULL, so most rows pay for one parse.
    """
    value = f"trim({quote_identifier(column)})"
    if date_format == "iso":
        # A trailing time-zone offset is dropped: the local time of the order is what counts.
        return (f"coalesce(TRY_CAST({quote_identifier(column)} AS TIMESTAMP), "
                f"TRY_CAST(replace(left({value}, 19), 'T', ' ') AS TIMESTAMP))")
    if date_format == "ymd_compact":
        return f"try_strptime({value}, '%Y%m%d')"
    if date_format in ("epoch_s", "epoch_ms"):
        divisor = 1 if date_format == "epoch_s" else 1000
        # Unix time is UTC; kept as a plain (time-zone-free) timestamp like every other format.
        # TRY_CAST: NaN, infinity and values beyond the calendar become NULL (an unreadable date), not an error.
        return f"make_timestamp(TRY_CAST(TRY_CAST({value} AS DOUBLE) / {divisor} * 1000000 AS BIGINT))"
    listed = ", ".join(f"'{fmt}'" for fmt in _slashed_formats(date_format))
    fast = "".join(f"try_strptime({value}, '{fmt}'), " for fmt in likely_formats)
    return f"coalesce({fast}try_strptime(regexp_replace({value}, '\\s+', ' ', 'g'), [{listed}]))"


def build_transactions(
    con: duckdb.DuckDBPyConnection,
    mapping: ColumnMapping,
    options: IngestOptions = IngestOptions(),
    *,
    before_commit: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Turn ``raw_upload`` into ``transactions`` and ``rejected_rows``; return the report.

    ``before_commit(report)`` runs inside the transaction that swaps the new dataset in.

    A build that fails (no dates, no numbers, nothing kept) leaves the previous dataset as it was.
    """
    raw_columns = [row[0] for row in con.execute(f"DESCRIBE {RAW_TABLE}").fetchall()]
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {MALFORMED_TABLE} (source_row BIGINT, problem VARCHAR)")
    mapping.validate(raw_columns)
    fields = mapping.fields
    duplicates_are_errors, duplicate_evidence = duplicates_are_export_errors(mapping, raw_columns)
    keep_duplicates = not duplicates_are_errors if options.keep_duplicates is None else options.keep_duplicates
    now = options.now or datetime.now()
    future_limit = now + timedelta(days=1)

    has_amount = schema.AMOUNT in fields
    has_price = schema.UNIT_PRICE in fields
    has_quantity = schema.QUANTITY in fields
    style = mapping.number_style
    amount_raw = _number(fields.get(schema.AMOUNT), style)
    quantity = _number(fields.get(schema.QUANTITY), style)
    price = _number(fields.get(schema.UNIT_PRICE), style)
    if has_amount:
        amount = amount_raw
        money_bad = f"({amount_raw}) IS NULL"
        zero = f"({price}) = 0" if has_price else f"({amount_raw}) = 0"
    elif has_price:
        amount = f"({quantity}) * ({price})" if has_quantity else price
        money_bad = f"({price}) IS NULL" + (f" OR ({quantity}) IS NULL" if has_quantity else "")
        zero = f"({price}) = 0"
    else:
        amount, money_bad, zero = "CAST(NULL AS DOUBLE)", "FALSE", "FALSE"

    date_column = fields[schema.ORDER_TS]
    likely = _likely_formats(con, date_column, _slashed_formats(mapping.date_format)) if mapping.date_format in (
        "mdy", "dmy") else ()
    order_ts = _timestamp(date_column, mapping.date_format, likely)
    order_text = _text(fields.get(schema.ORDER_ID))
    return_test = f"(coalesce(({quantity}) < 0, FALSE) OR coalesce(({amount}) < 0, FALSE)"
    if schema.ORDER_ID in fields:
        return_test += f" OR coalesce(regexp_matches({order_text}, '^[Cc][0-9]'), FALSE)"
    return_test += ")"

    extra_names = [
        quote_identifier(attribute_column(prefix, label))
        for prefix, labels in ((schema.SEGMENT_PREFIX, mapping.segments), (schema.CONTACT_PREFIX, mapping.contacts))
        for label in labels
    ]
    extra_labels = mapping.segments + mapping.contacts
    extra_sql = "".join(f", {_text(label)} AS {name}" for label, name in zip(extra_labels, extra_names))
    every_column = ", ".join(quote_identifier(column) for column in raw_columns)

    # Exact duplicates: rows whose hash occurs more than once are the only candidates; among them a window over
    # every column (so a hash collision can never reject a row) numbers the copies in file order.
    con.execute("DROP TABLE IF EXISTS duplicate_rows")
    con.execute(
        f"""
        CREATE TEMP TABLE duplicate_rows AS
        WITH repeated AS (
            SELECT list(rowid) AS ids FROM {RAW_TABLE} GROUP BY hash({every_column}) HAVING count(*) > 1
        ),
        candidates AS (
            SELECT {RAW_LINE} AS {LINE_COLUMN}, {every_column} FROM {RAW_TABLE}
            WHERE rowid IN (SELECT unnest(ids) FROM repeated)
        ),
        numbered AS (
            SELECT {LINE_COLUMN}, row_number() OVER (PARTITION BY {every_column} ORDER BY {LINE_COLUMN}) AS copy_number
            FROM candidates
        )
        SELECT {LINE_COLUMN} FROM numbered WHERE copy_number > 1
        """
    )

    # Every row of the file, parsed, with its fate: the kept rows are the canonical columns with no reason; the
    # file's own text is stored for rejected rows only. One stored table is written once; physical row order is
    # free (source_row says where each row was), and writing it unordered halves the time of the write.
    raw_names = [f"raw_{position}" for position in range(len(raw_columns))]
    raw_kept = "".join(f", {quote_identifier(column)} AS {name}" for column, name in zip(raw_columns, raw_names))
    raw_if_rejected = "".join(f", CASE WHEN reason IS NOT NULL THEN {name} END AS {name}" for name in raw_names)
    con.execute(f"DROP TABLE IF EXISTS {_NEW_TABLE}")
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(
            f"""
            CREATE TABLE {_NEW_TABLE} AS
            WITH parsed AS (
                SELECT
                    {RAW_LINE} AS {LINE_COLUMN},
                    {_text(fields[schema.CUSTOMER_ID])} AS customer_id,
                    {order_text} AS order_text,
                    {order_ts} AS order_ts,
                    {amount} AS amount,
                    {quantity} AS quantity,
                    {price} AS unit_price,
                    {_text(fields.get(schema.PRODUCT_ID))} AS product_id,
                    {_text(fields.get(schema.PRODUCT_NAME))} AS product_name,
                    coalesce({money_bad}, TRUE) AS money_bad,
                    -- 'NaN', 'inf' and 1e400 (which overflows) are numbers to a cast but not amounts.
                    coalesce(NOT isfinite({amount}) OR NOT isfinite({quantity}) OR NOT isfinite({price}), FALSE)
                        AS money_not_finite,
                    {RAW_LINE} IN (SELECT source_row FROM {MALFORMED_TABLE}) AS malformed,
                    coalesce({zero}, FALSE) AS zero_price,
                    {return_test} AS is_return,
                    {RAW_LINE} IN (SELECT {LINE_COLUMN} FROM duplicate_rows) AS is_copy
                    {extra_sql}
                    {raw_kept}
                FROM {RAW_TABLE}
            ),
            classified AS (
                SELECT *,
                    CASE
                        WHEN malformed THEN 'malformed_row'
                        WHEN customer_id IS NULL THEN 'missing_customer_id'
                        WHEN order_ts IS NULL THEN 'unparseable_date'
                        WHEN order_ts > $future_limit THEN 'future_date'
                        WHEN money_bad THEN 'non_numeric_amount'
                        WHEN money_not_finite THEN 'non_finite_amount'
                        WHEN zero_price AND $drop_zero THEN 'zero_price_dropped'
                        WHEN is_copy AND NOT $keep_duplicates THEN 'duplicate'
                        WHEN is_return AND $drop_returns THEN 'return_dropped'
                    END AS reason
                FROM parsed
            )
            -- Without an order id, a customer's lines at one timestamp form one order.
            SELECT
                customer_id AS {schema.CUSTOMER_ID},
                coalesce(order_text, customer_id || '@' || strftime(order_ts, '%Y-%m-%d %H:%M:%S'))
                    AS {schema.ORDER_ID},
                order_ts AS {schema.ORDER_TS},
                CASE WHEN is_return THEN -abs(amount) ELSE amount END AS {schema.AMOUNT},
                CASE WHEN is_return THEN -abs(quantity) ELSE quantity END AS {schema.QUANTITY},
                unit_price AS {schema.UNIT_PRICE},
                product_id AS {schema.PRODUCT_ID},
                product_name AS {schema.PRODUCT_NAME},
                is_return AS {schema.IS_RETURN},
                {LINE_COLUMN}
                {"".join(f", {name}" for name in extra_names)},
                reason, money_bad, zero_price, is_copy
                {raw_if_rejected}
            FROM classified
            """,
            {"future_limit": future_limit, "drop_zero": options.drop_zero_price,
             "drop_returns": options.drop_returns, "keep_duplicates": keep_duplicates},
        )
    finally:
        con.execute("RESET preserve_insertion_order")
        con.execute("DROP TABLE duplicate_rows")
    counts = con.execute(
        f"""
        SELECT count(*),
               count(*) FILTER (WHERE reason IS NULL),
               count(*) FILTER (WHERE order_ts IS NOT NULL),
               count(*) FILTER (WHERE NOT money_bad),
               count(*) FILTER (WHERE reason IS NULL AND is_return),
               count(*) FILTER (WHERE reason IS NULL AND zero_price),
               count(*) FILTER (WHERE reason IS NULL AND is_copy)
        FROM {_NEW_TABLE}
        """
    ).fetchone()
    rows_in, rows_kept, dated, priced, returns_kept, zero_kept, duplicates_kept = counts
    if rows_kept == 0:
        con.execute(f"DROP TABLE {_NEW_TABLE}")  # the previous dataset, if any, stays as it was
    if dated == 0:
        sample = con.execute(
            f"SELECT {quote_identifier(fields[schema.ORDER_TS])} FROM {RAW_TABLE} "
            f"WHERE {_text(fields[schema.ORDER_TS])} IS NOT NULL LIMIT 1"
        ).fetchone()
        example = f" (for example {sample[0]!r})" if sample else ""
        raise MappingError(
            f"None of the values in column '{fields[schema.ORDER_TS]}' could be read as a date{example}. "
            "Pick the column that holds order dates, or change the date format."
        )
    if mapping.has_money and priced == 0:
        column = fields.get(schema.AMOUNT) or fields.get(schema.UNIT_PRICE)
        sample = con.execute(
            f"SELECT {quote_identifier(column)} FROM {RAW_TABLE} WHERE {_text(column)} IS NOT NULL LIMIT 1"
        ).fetchone()
        example = f" (for example {sample[0]!r})" if sample else ""
        raise MappingError(
            f"Column '{column}' holds no numbers{example}, so it cannot be the amount. Pick the column with "
            "money values, or leave Line amount and Unit price empty to load the file without revenue."
        )
    if rows_kept == 0:
        raise InputFileError(
            "Every row was rejected; nothing is left to analyse. Check the validation report below "
            "and the column mapping."
        )

    rejected = dict(con.execute(
        f"SELECT reason, count(*) FROM {_NEW_TABLE} WHERE reason IS NOT NULL GROUP BY reason").fetchall())
    rows_rejected = {reason: int(rejected.get(reason, 0)) for reason in REJECT_REASONS}
    rows_flagged = {"return": int(returns_kept), "zero_price": int(zero_kept), "duplicate": int(duplicates_kept)}

    notes = []
    if not mapping.has_money:
        notes.append(
            "No money column was mapped: cohort retention, churn risk (from recency and frequency) and purchase "
            "predictions work; revenue, order value and CLV need an amount or unit price column."
        )
    elif not has_amount and has_price and has_quantity:
        notes.append("Line amount was computed as quantity x unit price.")
    elif not has_amount and has_price:
        notes.append("No quantity column: each line counts as one unit at its unit price.")
    if schema.ORDER_ID not in fields:
        notes.append("No order column: each customer's lines at one date and time form one order.")
    if mapping.number_style == "comma":
        notes.append("Numbers were read with a decimal comma (1.234,50 means one thousand two hundred thirty-four and a half).")
    if options.keep_duplicates is None:
        duplicate_reason = f"Decided from the file: {duplicate_evidence}."
    else:
        duplicate_reason = "Your choice."
    report = IngestReport(
        rows_in=int(rows_in),
        rows_kept=int(rows_kept),
        rows_rejected=rows_rejected,
        rows_flagged=rows_flagged,
        notes=notes,
        duplicates_kept=keep_duplicates,
        duplicate_reason=duplicate_reason,
    )
    assert report.rows_in == report.rows_kept + report.total_rejected, "every row is kept or rejected"
    _replace_dataset(con, raw_columns, extra_names, lambda: before_commit(report) if before_commit else None)
    return report


def _drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a view or table of that name (workspaces written by earlier versions hold tables). Asks the catalog
    first: a failed statement would abort the transaction it runs in."""
    kinds = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    for (kind,) in kinds:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {name}")


def _replace_dataset(con: duckdb.DuckDBPyConnection, raw_columns: list[str], extra_names: list[str],
                     before_commit: Callable[[], None]) -> None:
    """Make the newly built table the dataset: ``transactions`` (kept rows, canonical columns) and
    ``rejected_rows`` (reason, file row and the file's text) are views over it. One transaction with
    ``before_commit`` (the workspace writes the dataset's description), so a reader on another cursor sees the
    old dataset or the new one, each with its own description, never none or a mix."""
    con.execute("BEGIN TRANSACTION")
    try:
        _swap_dataset(con, raw_columns, extra_names)
        before_commit()
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _swap_dataset(con: duckdb.DuckDBPyConnection, raw_columns: list[str], extra_names: list[str]) -> None:
    for name in (schema.TRANSACTIONS, REJECTED_TABLE):
        _drop_relation(con, name)
    con.execute(f"DROP TABLE IF EXISTS {INGESTED_TABLE}")
    con.execute(f"ALTER TABLE {_NEW_TABLE} RENAME TO {INGESTED_TABLE}")
    canonical = [schema.CUSTOMER_ID, schema.ORDER_ID, schema.ORDER_TS, schema.AMOUNT, schema.QUANTITY,
                 schema.UNIT_PRICE, schema.PRODUCT_ID, schema.PRODUCT_NAME, schema.IS_RETURN, LINE_COLUMN]
    con.execute(
        f"CREATE VIEW {schema.TRANSACTIONS} AS SELECT {', '.join(canonical + extra_names)} "
        f"FROM {INGESTED_TABLE} WHERE reason IS NULL"
    )
    file_text = ", ".join(f"raw_{position} AS {quote_identifier(column)}" for position, column in enumerate(raw_columns))
    con.execute(
        f"CREATE VIEW {REJECTED_TABLE} AS SELECT reason, {LINE_COLUMN}, {file_text} "
        f"FROM {INGESTED_TABLE} WHERE reason IS NOT NULL"
    )
