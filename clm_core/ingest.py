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

The rules are SQL written once for two engines: DuckDB here, Spark SQL in :mod:`clm_core.spark_ingest`; the few
pieces the two spell differently (quoting, casts that must read the same values, strptime formats as Spark
patterns) sit side by side in two small classes.
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
from clm_core.queries import _quote_spark_identifier
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
    "kept_attribute_columns",
    "decide_duplicates",
    "ingested_rows_sql",
    "FATE_COUNTS",
    "refuse_unusable",
    "ingest_report",
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


# -- the validation rules, written once for DuckDB and Spark SQL -------------------------------------------------
# The rules (_text, _number, _timestamp, ingested_rows_sql) are SQL over a few pieces the two engines spell
# differently; each engine's spellings are one small class below, side by side. Patterns are written in the part
# of regular-expression syntax RE2 (DuckDB) and Java (Spark) read alike.

# Blanks: RE2's \s spelled out (Java's \s also holds \v, a cell DuckDB would refuse as a number).
_BLANKS = r"[\t\n\f\r ]"
# Currency signs, blanks and the apostrophe of 1'234.50 (as \x27: a quote inside Spark's raw string literal
# cannot be escaped).
_MONEY_NOISE = r"[£$€¥\t\n\f\r \x27]"
# What DuckDB's trim() removes: the space separators of Unicode (Zs), among them the no-break space of spreadsheets.
_SPACE_SEPARATORS = " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
# Accountants write negatives in parentheses: (12.00).
_PARENTHESES = r"^\((.*)\)$"
_RETURN_ORDER_ID = "^[Cc][0-9]"
# What DuckDB's cast reads as a DOUBLE: blanks, an optional '+' then '-', digits (single underscores between them
# allowed) with an optional fraction and exponent, or inf, infinity, nan in any case, blanks. Spark's own cast
# reads more ('1.5d', hex floats, control characters around) and less ('1_000', '+-1', '-nan').
_DUCKDB_DOUBLE = (r"^\s*\+?-?(([0-9](_?[0-9])*(\.([0-9](_?[0-9])*)?)?|\.[0-9](_?[0-9])*)([eE][+-]?[0-9](_?[0-9])*)?"
                  r"|(?i:inf|infinity|nan))\s*$")
# A whole ISO date (blanks before it), then nothing or a time with hours and minutes: Spark's cast also reads
# '2011', '2011-12', '2011-12-09 12' and '2011-12-09 ' as moments, DuckDB's does not.
_ISO_SHAPE = r"^ ?[0-9]{4,}-[0-9]{1,2}-[0-9]{1,2}($|[T ][0-9]{1,2}:[0-9])"
# strptime directives (DuckDB) as Spark datetime pattern letters: the same fields, 1 or 2 digits where strptime
# reads 1 or 2 (M, d, H, h, m, s), and fixed widths where two fields touch with no separator ('%Y%m%d').
_SPARK_PATTERN = {"%Y": "yyyy", "%y": "yy", "%m": "M", "%d": "d", "%b": "MMM", "%B": "MMMM", "%H": "H", "%I": "h",
                  "%M": "m", "%S": "s", "%p": "a"}
_SPARK_FIXED_WIDTH = {"%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}


class _DuckDBSpelling:
    """DuckDB's way of writing the pieces the validation rules are made of (each returns SQL)."""

    parameter_mark = "$"

    def identifier(self, name: str) -> str:
        return quote_identifier(name)

    def string(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def trim(self, value: str) -> str:
        """Without the spaces around it: every Unicode space separator (' ', no-break space...), no tab."""
        return f"trim({value})"

    def has_outer_space(self, value: str) -> str:
        return f"(starts_with({value}, ' ') OR ends_with({value}, ' '))"

    def replace_all(self, value: str, pattern: str, replacement: str) -> str:
        """``replacement`` may hold ``\\1`` for the first group."""
        return f"regexp_replace({value}, {self.string(pattern)}, {self.string(replacement)}, 'g')"

    def try_double(self, value: str) -> str:
        return f"TRY_CAST({value} AS DOUBLE)"

    def is_finite(self, value: str) -> str:
        return f"isfinite({value})"

    def try_timestamp(self, value: str) -> str:
        return f"TRY_CAST({value} AS TIMESTAMP)"

    def parse_time(self, value: str, fmt: str) -> str:
        return f"try_strptime({value}, {self.string(fmt)})"

    def parse_time_first_of(self, value: str, formats: list[str]) -> str:
        """The first of ``formats`` that reads the value."""
        return f"try_strptime({value}, [{', '.join(self.string(fmt) for fmt in formats)}])"

    def micros_to_timestamp(self, micros: str) -> str:
        # TRY_CAST rounds half to even; NaN, infinity and values beyond the calendar become NULL.
        return f"make_timestamp(TRY_CAST({micros} AS BIGINT))"

    def matches(self, value: str, pattern: str) -> str:
        return f"regexp_matches({value}, {self.string(pattern)})"

    def timestamp_text(self, value: str) -> str:
        return f"strftime({value}, '%Y-%m-%d %H:%M:%S')"


class _SparkSpelling:
    """Spark SQL's way of writing the same pieces, so that each reads a value as DuckDB's does (ANSI mode or not;
    the session time zone must be UTC, as :mod:`clm_core.spark_engine` sets it)."""

    parameter_mark = ":"

    def identifier(self, name: str) -> str:
        return _quote_spark_identifier(name)

    def string(self, text: str) -> str:
        # A raw literal: backslashes stay as written whatever spark.sql.parser.escapedStringLiterals says.
        if "'" in text:
            raise ValueError("a Spark SQL string here never holds a quote")
        return f"r'{text}'"

    def trim(self, value: str) -> str:
        # Spark's trim() removes ' ' only; DuckDB's removes every space separator (Unicode's Zs).
        return f"trim(BOTH {self.string(_SPACE_SEPARATORS)} FROM {value})"

    def has_outer_space(self, value: str) -> str:
        return f"(startswith({value}, ' ') OR endswith({value}, ' '))"

    def replace_all(self, value: str, pattern: str, replacement: str) -> str:
        java_replacement = replacement.replace("\\1", "$1")  # Java refers to a group as $1
        return f"regexp_replace({value}, {self.string(pattern)}, {self.string(java_replacement)})"

    def try_double(self, value: str) -> str:
        # Only what DuckDB reads, written as Spark reads it: no underscores, no '+' (an exponent's is optional),
        # no '-' before nan.
        spelled = f"regexp_replace({value}, {self.string('[_+]|-(?=[^0-9.]*(?i:nan))')}, '')"
        return f"CASE WHEN {value} RLIKE {self.string(_DUCKDB_DOUBLE)} THEN TRY_CAST({spelled} AS DOUBLE) END"

    def is_finite(self, value: str) -> str:
        # Spark orders NaN above infinity, so NaN fails the test too.
        return f"(abs({value}) < CAST('Infinity' AS DOUBLE))"

    def try_timestamp(self, value: str) -> str:
        single = f"regexp_replace({value}, {self.string(_BLANKS + '+')}, ' ')"
        return (f"CASE WHEN {single} RLIKE {self.string(_ISO_SHAPE)} "
                f"THEN TRY_CAST({single} AS TIMESTAMP_NTZ) END")

    def parse_time(self, value: str, fmt: str) -> str:
        letters = {**_SPARK_PATTERN, **_SPARK_FIXED_WIDTH} if re.search(r"%[a-zA-Z]%", fmt) else _SPARK_PATTERN
        pattern = re.sub(r"%[a-zA-Z]", lambda found: letters[found[0]], fmt)
        moment = f"CAST(try_to_timestamp({value}, {self.string(pattern)}) AS TIMESTAMP_NTZ)"
        if "%y" not in fmt:
            return moment
        # strptime reads two-digit years 69-99 as 1969-1999, Spark as 2069-2099.
        return f"({moment} - make_ym_interval(CASE WHEN year({moment}) >= 2069 THEN 100 ELSE 0 END, 0))"

    def parse_time_first_of(self, value: str, formats: list[str]) -> str:
        return f"coalesce({', '.join(self.parse_time(value, fmt) for fmt in formats)})"

    def micros_to_timestamp(self, micros: str) -> str:
        # rint: half to even, as DuckDB's cast rounds (Spark's cast cuts the fraction off).
        return f"CAST(timestamp_micros(TRY_CAST(rint({micros}) AS BIGINT)) AS TIMESTAMP_NTZ)"

    def matches(self, value: str, pattern: str) -> str:
        return f"({value} RLIKE {self.string(pattern)})"

    def timestamp_text(self, value: str) -> str:
        return f"date_format({value}, 'yyyy-MM-dd HH:mm:ss')"


_DIALECTS = {"duckdb": _DuckDBSpelling(), "spark": _SparkSpelling()}


def _spelling(dialect: str) -> _DuckDBSpelling | _SparkSpelling:
    try:
        return _DIALECTS[dialect]
    except KeyError:
        raise ValueError(f"dialect must be one of {', '.join(_DIALECTS)}, not {dialect!r}") from None


def _text(column: str | None, dialect: str = "duckdb") -> str:
    """SQL for a text field without surrounding spaces; empty becomes NULL."""
    if not column:
        return "NULL"
    say = _spelling(dialect)
    value = say.identifier(column)
    # trim() copies every string, and most values have no spaces to remove.
    return f"NULLIF(CASE WHEN {say.has_outer_space(value)} THEN {say.trim(value)} ELSE {value} END, '')"


def _number(column: str | None, style: str, dialect: str = "duckdb") -> str:
    """SQL that turns '£1,234.50', '1.234,50', '(12.00)' or '-3' into a DOUBLE, or NULL."""
    if not column:
        return "CAST(NULL AS DOUBLE)"
    say = _spelling(dialect)
    value = say.identifier(column)
    cleaned = say.replace_all(say.trim(value), _MONEY_NOISE, "")
    if style == "comma":
        cleaned = f"replace(replace({cleaned}, '.', ''), ',', '.')"
    else:
        cleaned = f"replace({cleaned}, ',', '')"
    cleaned = say.replace_all(cleaned, _PARENTHESES, "-\\1")
    if style == "comma":
        return say.try_double(cleaned)
    # Most cells are plain numbers: cast them directly (the cast ignores surrounding blanks) and clean only the
    # rest (same result, far fewer regexes).
    return f"coalesce({say.try_double(value)}, {say.try_double(cleaned)})"


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
                    sample_rows: int = 2000, table: str = RAW_TABLE) -> tuple[str, ...]:
    """The ``keep`` formats that read most of the column's first values (in ``table``), each with its
    two-digit-year twin when that reads some too, two-digit years first (so '3/4/11' never becomes the year 11)."""
    counts = ", ".join(f"count(try_strptime(v, '{fmt}'))" for fmt in formats)
    row = con.execute(
        f"SELECT {counts} FROM (SELECT trim({quote_identifier(column)}) AS v FROM {table} LIMIT {sample_rows})"
    ).fetchone()
    hits = dict(zip(formats, row))
    best = sorted(formats, key=lambda fmt: -hits[fmt])[:keep]
    chosen = {twin for fmt in best for twin in (fmt, fmt.replace("%Y", "%y")) if hits[twin]}
    return tuple(sorted(chosen, key=lambda fmt: ("%Y" in fmt, -hits[fmt], formats.index(fmt))))


def _timestamp(column: str, date_format: str, likely_formats: tuple[str, ...] = (), dialect: str = "duckdb") -> str:
    """SQL that reads the column as a TIMESTAMP, or NULL.

    Fast paths come first: a failed strptime costs ten times a successful one, and COALESCE only evaluates
    an argument for the rows still NULL, so most rows pay for one parse.
    """
    say = _spelling(dialect)
    value = say.trim(say.identifier(column))
    if date_format == "iso":
        # A trailing time-zone offset is dropped: the local time of the order is what counts.
        first_19 = f"replace(left({value}, 19), 'T', ' ')"
        return f"coalesce({say.try_timestamp(say.identifier(column))}, {say.try_timestamp(first_19)})"
    if date_format == "ymd_compact":
        return say.parse_time(value, "%Y%m%d")
    if date_format in ("epoch_s", "epoch_ms"):
        divisor = 1 if date_format == "epoch_s" else 1000
        # Unix time is UTC; kept as a plain (time-zone-free) timestamp like every other format.
        return say.micros_to_timestamp(f"{say.try_double(value)} / {divisor} * 1000000")
    fast = "".join(f"{say.parse_time(value, fmt)}, " for fmt in likely_formats)
    single_blanks = say.replace_all(value, _BLANKS + "+", " ")
    return f"coalesce({fast}{say.parse_time_first_of(single_blanks, _slashed_formats(date_format))})"


def _money(mapping: ColumnMapping, dialect: str) -> dict[str, str]:
    """SQL for the line's ``amount``, ``quantity`` and ``unit_price``, whether its money cannot be read
    (``money_bad``), whether it is a zero-price line (``zero``) and a return (``is_return``)."""
    fields, style = mapping.fields, mapping.number_style
    amount_raw = _number(fields.get(schema.AMOUNT), style, dialect)
    quantity = _number(fields.get(schema.QUANTITY), style, dialect)
    price = _number(fields.get(schema.UNIT_PRICE), style, dialect)
    has_price, has_quantity = schema.UNIT_PRICE in fields, schema.QUANTITY in fields
    if schema.AMOUNT in fields:
        amount = amount_raw
        money_bad = f"({amount_raw}) IS NULL"
        zero = f"({price}) = 0" if has_price else f"({amount_raw}) = 0"
    elif has_price:
        amount = f"({quantity}) * ({price})" if has_quantity else price
        money_bad = f"({price}) IS NULL" + (f" OR ({quantity}) IS NULL" if has_quantity else "")
        zero = f"({price}) = 0"
    else:
        amount, money_bad, zero = "CAST(NULL AS DOUBLE)", "FALSE", "FALSE"
    is_return = f"(coalesce(({quantity}) < 0, FALSE) OR coalesce(({amount}) < 0, FALSE)"
    if schema.ORDER_ID in fields:
        order_text = _text(fields[schema.ORDER_ID], dialect)
        is_return += f" OR coalesce({_spelling(dialect).matches(order_text, _RETURN_ORDER_ID)}, FALSE)"
    is_return += ")"
    return {"amount": amount, "quantity": quantity, "unit_price": price, "money_bad": money_bad, "zero": zero,
            "is_return": is_return}


# Why a row is rejected, tested in the order of REJECT_REASONS over the parsed row; $name: a bound value.
_REASON_TESTS = {
    "malformed_row": "malformed",
    "missing_customer_id": "customer_id IS NULL",
    "unparseable_date": "order_ts IS NULL",
    "future_date": "order_ts > $future_limit",
    "non_numeric_amount": "money_bad",
    "non_finite_amount": "money_not_finite",
    "zero_price_dropped": "zero_price AND $drop_zero",
    "duplicate": "is_copy AND NOT $keep_duplicates",
    "return_dropped": "is_return AND $drop_returns",
}
assert list(_REASON_TESTS) == list(REJECT_REASONS), "one test per reason, in the reasons' order"


def kept_attribute_columns(mapping: ColumnMapping) -> list[tuple[str, str]]:
    """The file columns kept as attributes and their canonical names: ``[("Country", "seg_country"), ...]``."""
    return [(label, attribute_column(prefix, label))
            for prefix, labels in ((schema.SEGMENT_PREFIX, mapping.segments), (schema.CONTACT_PREFIX, mapping.contacts))
            for label in labels]


def ingested_rows_sql(mapping: ColumnMapping, raw_columns: list[str], *, dialect: str, source: str,
                      source_row: str, malformed: str, is_copy: str, likely_formats: tuple[str, ...] = ()) -> str:
    """SQL for every row of ``source`` (the file's columns, as text) with its fate, as DuckDB stores it in
    ``ingested_rows``: the canonical columns (:mod:`clm_core.schema`), ``source_row``, the kept attributes,
    ``reason`` (NULL for a kept row, else the first of :data:`REJECT_REASONS` that applies), the flags the report
    counts (``money_bad``, ``zero_price``, ``is_copy``) and, for rejected rows only, the file's text as
    ``raw_0``, ``raw_1``... in the order of ``raw_columns``.

    ``source_row``, ``malformed`` and ``is_copy`` are SQL over ``source`` in ``dialect`` ("duckdb" or "spark"):
    the row's 1-based place in the file, whether it did not fit the file's columns, whether it repeats an earlier
    row. Bound values: ``future_limit`` (TIMESTAMP), ``drop_zero``, ``drop_returns``, ``keep_duplicates``
    (BOOLEAN), marked in the dialect's style.
    """
    say = _spelling(dialect)
    fields = mapping.fields
    money = _money(mapping, dialect)
    order_ts = _timestamp(fields[schema.ORDER_TS], mapping.date_format, likely_formats, dialect)
    attributes = kept_attribute_columns(mapping)
    attribute_sql = "".join(f", {_text(label, dialect)} AS {say.identifier(name)}" for label, name in attributes)
    raw_names = [f"raw_{position}" for position in range(len(raw_columns))]
    raw_kept = "".join(f", {say.identifier(column)} AS {name}" for column, name in zip(raw_columns, raw_names))
    raw_if_rejected = "".join(f", CASE WHEN reason IS NOT NULL THEN {name} END AS {name}" for name in raw_names)
    reason = "".join(f"\n                    WHEN {test} THEN '{name}'" for name, test in _REASON_TESTS.items())
    reason = re.sub(r"\$(\w+)", lambda found: say.parameter_mark + found[1], reason)
    return f"""
        WITH parsed AS (
            SELECT
                {source_row} AS {LINE_COLUMN},
                {_text(fields[schema.CUSTOMER_ID], dialect)} AS customer_id,
                {_text(fields.get(schema.ORDER_ID), dialect)} AS order_text,
                {order_ts} AS order_ts,
                {money["amount"]} AS amount,
                {money["quantity"]} AS quantity,
                {money["unit_price"]} AS unit_price,
                {_text(fields.get(schema.PRODUCT_ID), dialect)} AS product_id,
                {_text(fields.get(schema.PRODUCT_NAME), dialect)} AS product_name,
                coalesce({money["money_bad"]}, TRUE) AS money_bad,
                -- 'NaN', 'inf' and 1e400 (which overflows) are numbers to a cast but not amounts.
                coalesce(NOT {say.is_finite(money["amount"])} OR NOT {say.is_finite(money["quantity"])}
                         OR NOT {say.is_finite(money["unit_price"])}, FALSE) AS money_not_finite,
                {malformed} AS malformed,
                coalesce({money["zero"]}, FALSE) AS zero_price,
                {money["is_return"]} AS is_return,
                {is_copy} AS is_copy
                {attribute_sql}
                {raw_kept}
            FROM {source}
        ),
        classified AS (
            SELECT *, CASE {reason}
                END AS reason
            FROM parsed
        )
        -- Without an order id, a customer's lines at one timestamp form one order.
        SELECT
            customer_id AS {schema.CUSTOMER_ID},
            coalesce(order_text, customer_id || '@' || {say.timestamp_text("order_ts")}) AS {schema.ORDER_ID},
            order_ts AS {schema.ORDER_TS},
            CASE WHEN is_return THEN -abs(amount) ELSE amount END AS {schema.AMOUNT},
            CASE WHEN is_return THEN -abs(quantity) ELSE quantity END AS {schema.QUANTITY},
            unit_price AS {schema.UNIT_PRICE},
            product_id AS {schema.PRODUCT_ID},
            product_name AS {schema.PRODUCT_NAME},
            is_return AS {schema.IS_RETURN},
            {LINE_COLUMN}
            {"".join(f", {say.identifier(name)}" for _, name in attributes)},
            reason, money_bad, zero_price, is_copy
            {raw_if_rejected}
        FROM classified
        """


# One row of counts over the rows :func:`ingested_rows_sql` makes, in SQL DuckDB and Spark both read:
# ``rows_in``, ``rows_kept``, ``dated`` and ``priced`` (rows whose date, money could be read), ``returns_kept``,
# ``zero_kept``, ``duplicates_kept`` (flags of kept rows) and one count per reason.
FATE_COUNTS = (
    "count(*) AS rows_in",
    "count(*) FILTER (WHERE reason IS NULL) AS rows_kept",
    f"count(*) FILTER (WHERE {schema.ORDER_TS} IS NOT NULL) AS dated",
    "count(*) FILTER (WHERE NOT money_bad) AS priced",
    f"count(*) FILTER (WHERE reason IS NULL AND {schema.IS_RETURN}) AS returns_kept",
    "count(*) FILTER (WHERE reason IS NULL AND zero_price) AS zero_kept",
    "count(*) FILTER (WHERE reason IS NULL AND is_copy) AS duplicates_kept",
    *(f"count(*) FILTER (WHERE reason = '{reason}') AS {reason}" for reason in REJECT_REASONS),
)


def refuse_unusable(counts: dict[str, int], mapping: ColumnMapping, example: Callable[[str], object]) -> None:
    """Raise when the counts (:data:`FATE_COUNTS`) show the mapping or the file cannot be used:
    :class:`MappingError` when no date (or, with a money column, no amount) could be read, :class:`InputFileError`
    when every row was rejected. ``example(column)``: a non-empty value of that file column, or None."""
    fields = mapping.fields
    if counts["dated"] == 0:
        sample = example(fields[schema.ORDER_TS])
        example_text = f" (for example {sample!r})" if sample is not None else ""
        raise MappingError(
            f"None of the values in column '{fields[schema.ORDER_TS]}' could be read as a date{example_text}. "
            "Pick the column that holds order dates, or change the date format."
        )
    if mapping.has_money and counts["priced"] == 0:
        column = fields.get(schema.AMOUNT) or fields.get(schema.UNIT_PRICE)
        sample = example(column)
        example_text = f" (for example {sample!r})" if sample is not None else ""
        raise MappingError(
            f"Column '{column}' holds no numbers{example_text}, so it cannot be the amount. Pick the column with "
            "money values, or leave Line amount and Unit price empty to load the file without revenue."
        )
    if counts["rows_kept"] == 0:
        raise InputFileError(
            "Every row was rejected; nothing is left to analyse. Check the validation report below "
            "and the column mapping."
        )


def ingest_report(counts: dict[str, int], mapping: ColumnMapping, options: IngestOptions, *, keep_duplicates: bool,
                  duplicate_evidence: str) -> IngestReport:
    """The report of a build from its counts (:data:`FATE_COUNTS`): the same sentences on every engine."""
    fields = mapping.fields
    notes = []
    if not mapping.has_money:
        notes.append(
            "No money column was mapped: cohort retention, churn risk (from recency and frequency) and purchase "
            "predictions work; revenue, order value and CLV need an amount or unit price column."
        )
    elif schema.AMOUNT not in fields and schema.UNIT_PRICE in fields and schema.QUANTITY in fields:
        notes.append("Line amount was computed as quantity x unit price.")
    elif schema.AMOUNT not in fields and schema.UNIT_PRICE in fields:
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
        rows_in=int(counts["rows_in"]),
        rows_kept=int(counts["rows_kept"]),
        rows_rejected={reason: int(counts[reason]) for reason in REJECT_REASONS},
        rows_flagged={"return": int(counts["returns_kept"]), "zero_price": int(counts["zero_kept"]),
                      "duplicate": int(counts["duplicates_kept"])},
        notes=notes,
        duplicates_kept=keep_duplicates,
        duplicate_reason=duplicate_reason,
    )
    assert report.rows_in == report.rows_kept + report.total_rejected, "every row is kept or rejected"
    return report


def decide_duplicates(mapping: ColumnMapping, raw_columns: list[str], options: IngestOptions) -> tuple[bool, str]:
    """Whether identical rows are kept (flagged) rather than rejected, and the file's evidence (a sentence)."""
    duplicates_are_errors, evidence = duplicates_are_export_errors(mapping, raw_columns)
    return (not duplicates_are_errors if options.keep_duplicates is None else options.keep_duplicates), evidence


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
    keep_duplicates, duplicate_evidence = decide_duplicates(mapping, raw_columns, options)
    now = options.now or datetime.now()
    future_limit = now + timedelta(days=1)
    date_column = mapping.fields[schema.ORDER_TS]
    likely = _likely_formats(con, date_column, _slashed_formats(mapping.date_format)) if mapping.date_format in (
        "mdy", "dmy") else ()
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
    rows_sql = ingested_rows_sql(
        mapping, raw_columns, dialect="duckdb", source=RAW_TABLE, source_row=RAW_LINE,
        malformed=f"{RAW_LINE} IN (SELECT source_row FROM {MALFORMED_TABLE})",
        is_copy=f"{RAW_LINE} IN (SELECT {LINE_COLUMN} FROM duplicate_rows)", likely_formats=likely,
    )
    con.execute(f"DROP TABLE IF EXISTS {_NEW_TABLE}")
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(
            f"CREATE TABLE {_NEW_TABLE} AS {rows_sql}",
            {"future_limit": future_limit, "drop_zero": options.drop_zero_price,
             "drop_returns": options.drop_returns, "keep_duplicates": keep_duplicates},
        )
    finally:
        con.execute("RESET preserve_insertion_order")
        con.execute("DROP TABLE duplicate_rows")
    cursor = con.execute(f"SELECT {', '.join(FATE_COUNTS)} FROM {_NEW_TABLE}")
    counts = dict(zip([column[0] for column in cursor.description], cursor.fetchone()))
    if counts["rows_kept"] == 0:
        con.execute(f"DROP TABLE {_NEW_TABLE}")  # the previous dataset, if any, stays as it was

    def example(column: str) -> object:
        found = con.execute(
            f"SELECT {quote_identifier(column)} FROM {RAW_TABLE} WHERE {_text(column)} IS NOT NULL LIMIT 1"
        ).fetchone()
        return found[0] if found else None

    refuse_unusable(counts, mapping, example)
    report = ingest_report(counts, mapping, options, keep_duplicates=keep_duplicates,
                           duplicate_evidence=duplicate_evidence)
    extra_names = [quote_identifier(name) for _, name in kept_attribute_columns(mapping)]
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
