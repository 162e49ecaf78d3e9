"""Guess which file column feeds which canonical field, and how dates and numbers are written.

The guess uses column names from common exports (UCI Online Retail I and II,
CDNOW, Shopify, WooCommerce, Magento, Square, Stripe, Lightspeed, Kaggle's retail
sets; ``tests/data/export_gallery.py`` holds their real headers) and, for columns
whose names say nothing (files with no header row), the values themselves.

Names are matched exactly first, then by the words they contain. A column whose
name says quantity, price, amount, line number, quarter, month or year is never
the customer; without any id or e-mail column, a customer or company name is.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import pandas as pd

from clm_core import schema
from clm_core.errors import MappingError

__all__ = [
    "DATE_FORMATS",
    "NUMBER_STYLES",
    "ColumnMapping",
    "guess_mapping",
    "detect_date_format",
    "detect_number_style",
]

DATE_FORMATS = {
    "iso": "ISO, e.g. 2011-12-09 12:50:00",
    "mdy": "month first, e.g. 12/09/2011 12:50 or Dec 9, 2011",
    "dmy": "day first, e.g. 09/12/2011 12:50 or 09-Dec-11",
    "ymd_compact": "YYYYMMDD, e.g. 20111209",
    "epoch_s": "seconds since 1970 (Unix time)",
    "epoch_ms": "milliseconds since 1970",
}
NUMBER_STYLES = {
    "dot": "1,234.50 (dot for decimals)",
    "comma": "1.234,50 (comma for decimals)",
}

# Normalised header names (lower case, letters and digits only) per field, best first.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    schema.CUSTOMER_ID: ("customerid", "customer", "custid", "customerno", "customernumber", "clientid",
                         "client", "userid", "user", "memberid", "accountid", "account", "buyerid", "shopperid"),
    schema.ORDER_TS: ("invoicedate", "orderdate", "orderts", "ordertimestamp", "createdat", "purchasedate",
                      "transactiondate", "orderdatetime", "date", "datetime", "timestamp", "paidat",
                      "purchasetime", "eventtime", "time", "day"),
    schema.ORDER_ID: ("invoiceno", "invoice", "invoiceid", "invoicenumber", "orderid", "ordernumber", "orderno",
                      "order", "transactionid", "receiptid", "basketid", "ticketid"),
    schema.AMOUNT: ("amount", "lineamount", "linetotal", "revenue", "sales", "salesamount", "dollarvalue",
                    "value", "netamount", "spend", "monetary", "totalamount", "total"),
    schema.QUANTITY: ("quantity", "qty", "lineitemquantity", "units", "numberofcds", "itemcount", "count"),
    schema.UNIT_PRICE: ("unitprice", "price", "lineitemprice", "itemprice", "priceeach", "saleprice"),
    schema.PRODUCT_ID: ("stockcode", "sku", "productid", "lineitemsku", "itemid", "productcode", "itemcode",
                        "articleid", "article", "upc", "gtin", "ean", "barcode"),
    schema.PRODUCT_NAME: ("description", "productname", "lineitemname", "itemname", "product", "itemdescription",
                          "title", "item", "lineitem"),
}
# Words a name contains, for names no synonym matched exactly (normalised: 'Net Sales' is 'netsales').
_CUSTOMER_ID_WORDS = re.compile(r"(customer|client|member|buyer|shopper|user|account|cust)_?(id|no|number|code|key)$")
_CUSTOMER_NAME_WORDS = re.compile(r"^(customer|client|company|buyer|billto|billing|account|member)name$")
# Quantity, price, amount, line number, quarter, month, year: a count or a calendar part, never who bought.
_NEVER_CUSTOMER = re.compile(r"(quantity|qty|price|amount|total|sales|revenue|value|linenumber|lineno|quarter|qtr"
                             r"|month|year|date|time)")
_DATE_WORDS = re.compile(r"(date|time|timestamp|created|purchased)")
_NOT_ORDER_DATE = re.compile(r"(ship|deliver|due|dispute|fulfil|cancel|estimat|approv|updat|modif|birth|expir|zone"
                             r"|refund|closed)")
_QUANTITY_WORDS = re.compile(r"(quantity|^qty|qty$)")
_AMOUNT_WORDS = re.compile(r"(amount|sales|total|revenue)")
_TAX_INCLUSION = re.compile(r"(inc|incl|exc|excl|ex)(tax|vat)")  # 'Order Total (inc tax)' is still the total
_PRODUCT_ID_WORDS = re.compile(r"(sku|upc|gtin|ean|barcode)$")
_NOT_LINE_AMOUNT = re.compile(r"(tax|fee|discount|shipping|refund|subtotal|converted|disputed|outstanding|balance"
                              r"|cost|profit|due$|tip|duties)")
# Columns named by the reader or a spreadsheet when the file had no name for them: only their values can tell.
_NAMELESS = re.compile(r"^((column|col|field|unnamed|var)\d*|[a-z]?\d*)$")
# Exports recognised by columns only they have, and the fields their names would get wrong.
_KNOWN_EXPORTS: tuple[tuple[frozenset[str], dict[str, str | None]], ...] = (
    # Shopify: the order is 'Name' (#1001) and the customer is known by e-mail.
    (frozenset({"lineitemquantity", "lineitemprice"}), {schema.ORDER_ID: "name", schema.CUSTOMER_ID: "email"}),
    # Stripe payments: 'id' is the payment ('Invoice ID' is often empty); 'Description' is about the payment.
    (frozenset({"sellermessage", "createdutc"}), {schema.ORDER_ID: "id", schema.PRODUCT_NAME: None}),
)
_CONTACT_PATTERN = re.compile(
    r"(e?mail|phone|mobile|telephone|^(customer|billing|shipping|first|last|full|contact)name$|^name$)"
)
_SEGMENT_MAX_LEVELS = 60

_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$")
_COMPACT = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
# Month names (English): "09-Dec-11", "9 December 2011" are day first; "Dec 9, 2011" is month first.
_TIME_PART = r"(\s+\d{1,2}:\d{2}(:\d{2})?(\s*[AaPp][Mm])?)?$"
_NAMED_DAY_FIRST = re.compile(r"^\d{1,2}[-\s/.]+[A-Za-z]{3,9}\.?[-\s/.,]+\d{2,4}" + _TIME_PART)
_NAMED_MONTH_FIRST = re.compile(r"^[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{2,4}" + _TIME_PART)
_SLASHED = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(\s+\d{1,2}:\d{2}(:\d{2})?(\s*[AaPp][Mm])?)?$")
_EPOCH_S = re.compile(r"^1\d{9}(\.\d+)?$|^[5-9]\d{8}(\.\d+)?$")
_EPOCH_MS = re.compile(r"^1\d{12}$")
_NUMBER = re.compile(r"^[-+]?\(?\s*[£$€¥]?\s*[-+]?\d[\d,.\s']*\)?$")


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class ColumnMapping:
    """Which source column feeds each canonical field, plus extras and parsing styles."""

    fields: dict[str, str] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    date_format: str = "iso"
    number_style: str = "dot"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ColumnMapping":
        return cls(**data)

    @property
    def has_money(self) -> bool:
        """True when revenue can be computed (an amount, or a unit price)."""
        return schema.AMOUNT in self.fields or schema.UNIT_PRICE in self.fields

    def validate(self, columns: list[str]) -> None:
        """Raise :class:`MappingError` with a sentence for the first problem found."""
        for name in schema.REQUIRED_FIELDS:
            if not self.fields.get(name):
                label = schema.FIELD_BY_NAME[name].label
                hint = " No column looks like a date; pick the date column by hand." if name == schema.ORDER_TS else ""
                raise MappingError(f"Choose the column that holds the {label}.{hint}")
        for name, column in self.fields.items():
            if name not in schema.FIELD_BY_NAME:
                raise MappingError(f"Unknown field {name!r}; the fields are {', '.join(schema.FIELD_BY_NAME)}.")
            if column not in columns:
                raise MappingError(f"The file has no column {column!r} (for {schema.FIELD_BY_NAME[name].label}).")
        used: dict[str, str] = {}
        for name, column in self.fields.items():
            if column in used:
                first, second = schema.FIELD_BY_NAME[used[column]].label, schema.FIELD_BY_NAME[name].label
                raise MappingError(
                    f"{first} and {second} both point at column '{column}'. Each field needs its own column; "
                    "change one of them."
                )
            used[column] = name
        for column in self.segments + self.contacts:
            if column not in columns:
                raise MappingError(f"The file has no column {column!r} to keep as an attribute.")
        if self.date_format not in DATE_FORMATS:
            raise MappingError(f"Unknown date format {self.date_format!r}; choose one of {', '.join(DATE_FORMATS)}.")
        if self.number_style not in NUMBER_STYLES:
            raise MappingError(f"Unknown number style {self.number_style!r}; choose 'dot' or 'comma'.")


def detect_date_format(values: pd.Series) -> tuple[str | None, bool]:
    """The date format most sample values follow, and whether the choice was ambiguous.

    Day-first vs month-first is read from values whose first (or second) part is
    above 12; when none is, month-first is assumed and ``ambiguous`` is True.
    """
    sample = values.dropna().astype(str).str.strip()
    sample = sample[sample != ""].head(5000)
    if sample.empty:
        return None, False
    share = lambda pattern: sample.str.match(pattern).mean()  # noqa: E731
    if share(_ISO) >= 0.9:
        return "iso", False
    if share(_COMPACT) >= 0.9:
        return "ymd_compact", False
    if share(_EPOCH_MS) >= 0.9:
        return "epoch_ms", False
    if share(_EPOCH_S) >= 0.9:
        return "epoch_s", False
    if share(_NAMED_DAY_FIRST) >= 0.9:
        return "dmy", False
    if share(_NAMED_MONTH_FIRST) >= 0.9:
        return "mdy", False
    parts = sample.str.extract(_SLASHED)
    if parts[0].notna().mean() >= 0.9:
        first, second = parts[0].dropna().astype(int), parts[1].dropna().astype(int)
        if (first > 12).any() and not (second > 12).any():
            return "dmy", False
        if (second > 12).any() and not (first > 12).any():
            return "mdy", False
        dotted = sample.str.contains(r"^\d{1,2}\.\d{1,2}\.", regex=True).mean() > 0.5
        return ("dmy" if dotted else "mdy"), True
    return None, False


def detect_number_style(values: pd.Series) -> str:
    """'comma' when sample numbers use a decimal comma (``1.234,50``, ``3,5``), else 'dot'."""
    sample = values.dropna().astype(str).str.replace(r"[£$€¥\s']", "", regex=True).head(5000)
    comma_decimal = sample.str.match(r"^[-+(]?\d{1,3}(\.\d{3})*,\d{1,2}\)?$|^[-+(]?\d+,\d{1,2}\)?$").sum()
    dot_decimal = sample.str.match(r"^[-+(]?\d{1,3}(,\d{3})*\.\d+\)?$|^[-+(]?\d+\.\d+\)?$").sum()
    return "comma" if comma_decimal > dot_decimal else "dot"


def _is_numeric(values: pd.Series) -> float:
    sample = values.dropna().astype(str).str.strip()
    sample = sample[sample != ""]
    return float(sample.str.match(_NUMBER).mean()) if len(sample) else 0.0


def _by_name(columns: list[str], sample: pd.DataFrame) -> dict[str, str]:
    """Fields given by column names: exact synonyms first, then the words a name contains."""
    normalised = {column: _normalise(column) for column in columns}
    found: dict[str, str] = {}
    taken: set[str] = set()

    def first(test) -> str | None:
        return next((c for c in columns if c not in taken and test(normalised[c])), None)

    def take(name: str, column: str | None) -> None:
        if column and name not in found:
            found[name] = column
            taken.add(column)

    # Longer, more specific synonyms win: 'lineitemprice' before 'price'.
    for name, synonyms in _SYNONYMS.items():
        for synonym in synonyms:
            take(name, first(lambda n, synonym=synonym: n == synonym))
    take(schema.CUSTOMER_ID, first(lambda n: bool(_CUSTOMER_ID_WORDS.search(n)) and not _NEVER_CUSTOMER.search(n)))
    take(schema.CUSTOMER_ID, first(lambda n: "email" in n))
    take(schema.CUSTOMER_ID, first(lambda n: bool(_CUSTOMER_NAME_WORDS.search(n))))
    dates = [c for c in columns if c not in taken and _DATE_WORDS.search(normalised[c])
             and not _NOT_ORDER_DATE.search(normalised[c])]
    take(schema.ORDER_TS, next((c for c in dates if re.search(r"(order|purchase|invoice|trans|sale)", normalised[c])),
                               dates[0] if dates else None))
    take(schema.QUANTITY, first(lambda n: bool(_QUANTITY_WORDS.search(n))))
    take(schema.PRODUCT_ID, first(lambda n: bool(_PRODUCT_ID_WORDS.search(n))))
    # A line's money: numbers only, the net figure before the gross one, never tax, fees or shipping.
    amounts = [c for c in columns if c not in taken and _AMOUNT_WORDS.search(normalised[c])
               and not _NOT_LINE_AMOUNT.search(_TAX_INCLUSION.sub("", normalised[c]))
               and _is_numeric(sample[c]) >= 0.95]
    take(schema.AMOUNT, next((c for c in amounts if normalised[c].startswith("net")), amounts[0] if amounts else None))
    return found


def _apply_known_exports(columns: list[str], found: dict[str, str]) -> None:
    """Correct the fields that a recognised export's names would get wrong."""
    normalised = {column: _normalise(column) for column in columns}
    for signature, fields in _KNOWN_EXPORTS:
        if not signature <= set(normalised.values()):
            continue
        for name, header in fields.items():
            column = next((c for c in columns if normalised[c] == header), None) if header else None
            if header is None:
                found.pop(name, None)
            elif column and column not in found.values():
                found[name] = column


def _by_content(sample: pd.DataFrame, found: dict[str, str]) -> None:
    """Fill fields the names did not give from what the values look like (headerless files).

    The date and the customer may come from any free column; numbers only from columns whose names say nothing,
    since a named column (QTR_ID, shipping_total) that no rule took is something else.
    """
    free = [column for column in sample.columns if column not in found.values()]
    if schema.ORDER_TS not in found:
        for column in free:
            fmt, _ = detect_date_format(sample[column])
            if fmt and fmt not in ("epoch_s", "epoch_ms"):
                found[schema.ORDER_TS] = column
                free.remove(column)
                break
    if schema.CUSTOMER_ID not in found:
        candidates = [c for c in free if not _NEVER_CUSTOMER.search(_normalise(c))]
        if candidates:
            found[schema.CUSTOMER_ID] = candidates[0]
            free.remove(candidates[0])
    nameless = [column for column in free if _NAMELESS.match(_normalise(column))]
    numeric = [column for column in nameless if _is_numeric(sample[column]) >= 0.95]
    decimals = [c for c in numeric if sample[c].astype(str).str.contains(r"[.,]\d{1,2}$").mean() > 0.3]
    integers = [c for c in numeric if c not in decimals]
    if schema.AMOUNT not in found and schema.UNIT_PRICE not in found and decimals:
        found[schema.AMOUNT] = decimals[-1]
    if schema.QUANTITY not in found and integers:
        date_position = list(sample.columns).index(found.get(schema.ORDER_TS, sample.columns[0]))
        after_date = [c for c in integers if list(sample.columns).index(c) > date_position]
        if after_date:
            found[schema.QUANTITY] = after_date[0]


def guess_mapping(sample: pd.DataFrame) -> ColumnMapping:
    """Guess a full mapping from a sample of the raw (all-text) rows."""
    columns = list(sample.columns)
    found = _by_name(columns, sample)
    normalised = {column: _normalise(column) for column in columns}
    _apply_known_exports(columns, found)
    # Shopify's 'Total' is per order, not per line: revenue is quantity x line price.
    if {"lineitemquantity", "lineitemprice"} <= set(normalised.values()) and found.get(schema.AMOUNT) and \
            normalised[found[schema.AMOUNT]] == "total":
        del found[schema.AMOUNT]
    _by_content(sample, found)
    # A bare 'id' beside a known customer is the record's own id: the order (Magento's grid, Stripe's payments).
    bare_id = next((c for c in columns if normalised[c] == "id" and c not in found.values()), None)
    if bare_id and schema.ORDER_ID not in found and schema.CUSTOMER_ID in found:
        found[schema.ORDER_ID] = bare_id

    date_format = "iso"
    if schema.ORDER_TS in found:
        date_format = detect_date_format(sample[found[schema.ORDER_TS]])[0] or "iso"
    money_column = found.get(schema.AMOUNT) or found.get(schema.UNIT_PRICE)
    number_style = detect_number_style(sample[money_column]) if money_column else "dot"

    used = set(found.values())
    # A customer known by name stays a contact column too (campaign lists need the name).
    customer = found.get(schema.CUSTOMER_ID)
    named_customer = customer if customer and _CUSTOMER_NAME_WORDS.search(normalised[customer]) else None
    contacts = [c for c in columns if (c not in used or c == named_customer) and _CONTACT_PATTERN.search(normalised[c])]
    segments = []
    for column in columns:
        if column in used or column in contacts:
            continue
        values = sample[column].dropna().astype(str).str.strip()
        values = values[values != ""]
        if len(values) < max(10, len(sample) * 0.5) or _is_numeric(values) > 0.5:
            continue
        levels = values.nunique()
        if 2 <= levels <= _SEGMENT_MAX_LEVELS and levels <= len(values) * 0.2:
            segments.append(column)
    return ColumnMapping(fields=found, segments=segments, contacts=contacts,
                         date_format=date_format, number_style=number_style)
