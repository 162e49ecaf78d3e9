"""Guess which file column feeds which canonical field, and how dates and numbers are written.

The guess uses column names from common exports (UCI Online Retail I and II,
CDNOW, Shopify's order export, generic ``customer_id,order_date,amount``) and,
when names say nothing (files with no header row), the values themselves.
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
    "mdy": "month first, e.g. 12/09/2011 12:50",
    "dmy": "day first, e.g. 09/12/2011 12:50",
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
                        "articleid", "article"),
    schema.PRODUCT_NAME: ("description", "productname", "lineitemname", "itemname", "product", "itemdescription",
                          "title"),
}
_CONTACT_PATTERN = re.compile(
    r"(e?mail|phone|mobile|telephone|^(customer|billing|shipping|first|last|full|contact)name$|^name$)"
)
_SEGMENT_MAX_LEVELS = 60

_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$")
_COMPACT = re.compile(r"^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")
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


def _by_name(columns: list[str]) -> dict[str, str]:
    normalised = {column: _normalise(column) for column in columns}
    found: dict[str, str] = {}
    taken: set[str] = set()
    # Longer, more specific synonyms win: 'lineitemprice' before 'price'.
    for name, synonyms in _SYNONYMS.items():
        for synonym in synonyms:
            match = next((c for c in columns if normalised[c] == synonym and c not in taken), None)
            if match:
                found[name] = match
                taken.add(match)
                break
    return found


def _by_content(sample: pd.DataFrame, found: dict[str, str]) -> None:
    """Fill fields the names did not give from what the values look like (headerless files)."""
    free = [column for column in sample.columns if column not in found.values()]
    if schema.ORDER_TS not in found:
        for column in free:
            fmt, _ = detect_date_format(sample[column])
            if fmt and fmt not in ("epoch_s", "epoch_ms"):
                found[schema.ORDER_TS] = column
                free.remove(column)
                break
    if schema.CUSTOMER_ID not in found and free:
        found[schema.CUSTOMER_ID] = free.pop(0)
    numeric = [column for column in free if _is_numeric(sample[column]) >= 0.95]
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
    found = _by_name(columns)
    normalised = {column: _normalise(column) for column in columns}

    # Shopify: the order is 'Name' (#1001) and the customer is known by e-mail.
    is_shopify = {"lineitemquantity", "lineitemprice"} <= set(normalised.values())
    if is_shopify:
        for field_name, header in ((schema.ORDER_ID, "name"), (schema.CUSTOMER_ID, "email")):
            column = next((c for c in columns if normalised[c] == header), None)
            if column and field_name not in found:
                found[field_name] = column
        # 'Total' is per order, not per line: revenue is quantity x line price.
        if found.get(schema.AMOUNT) and normalised[found[schema.AMOUNT]] == "total":
            del found[schema.AMOUNT]
    # An amount when unit price and quantity are given would double count; keep q x p.
    if schema.CUSTOMER_ID not in found:
        email = next((c for c in columns if "email" in normalised[c]), None)
        if email:
            found[schema.CUSTOMER_ID] = email
    _by_content(sample, found)

    date_format = "iso"
    if schema.ORDER_TS in found:
        date_format = detect_date_format(sample[found[schema.ORDER_TS]])[0] or "iso"
    money_column = found.get(schema.AMOUNT) or found.get(schema.UNIT_PRICE)
    number_style = detect_number_style(sample[money_column]) if money_column else "dot"

    used = set(found.values())
    contacts = [c for c in columns if c not in used and _CONTACT_PATTERN.search(normalised[c])]
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
