"""The canonical transaction model: column names defined once, checked by one helper.

Every analysis reads the ``transactions`` table (or a frame of it) with these
columns. ``amount`` is line revenue in the file's currency, negative for returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from clm_core.errors import SchemaError

__all__ = [
    "TRANSACTIONS",
    "CUSTOMER_ID",
    "ORDER_ID",
    "ORDER_TS",
    "AMOUNT",
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "QUANTITY",
    "UNIT_PRICE",
    "IS_RETURN",
    "Field",
    "FIELDS",
    "FIELD_BY_NAME",
    "REQUIRED_FIELDS",
    "SEGMENT_PREFIX",
    "CONTACT_PREFIX",
    "require_columns",
]

TRANSACTIONS = "transactions"

CUSTOMER_ID = "customer_id"
ORDER_ID = "order_id"
ORDER_TS = "order_ts"
AMOUNT = "amount"
PRODUCT_ID = "product_id"
PRODUCT_NAME = "product_name"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
IS_RETURN = "is_return"

# Extra columns the user keeps are stored with these prefixes, so they can never
# collide with a canonical name: seg_country, contact_email.
SEGMENT_PREFIX = "seg_"
CONTACT_PREFIX = "contact_"


@dataclass(frozen=True)
class Field:
    """One canonical field a file column can be mapped to."""

    name: str
    label: str
    required: bool
    help: str


FIELDS: tuple[Field, ...] = (
    Field(CUSTOMER_ID, "Customer ID", True, "Who bought: a customer number, account id or e-mail."),
    Field(ORDER_TS, "Order date", True, "When the order was placed (date, or date and time)."),
    Field(ORDER_ID, "Order / invoice ID", False,
          "Groups lines into one order. Without it, each customer's purchases at one timestamp form an order."),
    Field(AMOUNT, "Line amount", False,
          "Money for the line (revenue). Leave empty to compute it as quantity x unit price."),
    Field(QUANTITY, "Quantity", False, "Units on the line; negative means a return."),
    Field(UNIT_PRICE, "Unit price", False, "Price of one unit."),
    Field(PRODUCT_ID, "Product ID / SKU", False, "Product code, used by recommendations."),
    Field(PRODUCT_NAME, "Product name", False, "Product description shown to people."),
)
FIELD_BY_NAME = {field.name: field for field in FIELDS}
REQUIRED_FIELDS = tuple(field.name for field in FIELDS if field.required)


def require_columns(columns: Iterable[str], required: Iterable[str], *, what: str = "the data") -> None:
    """Raise :class:`SchemaError` naming the first required column that is missing."""
    present = set(columns)
    for name in required:
        if name not in present:
            raise SchemaError(f"Required column {name} missing from {what}.")
