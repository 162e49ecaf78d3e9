"""Product recommendations from purchase history, "frequently bought together", and an offline check of both.

Method: item-to-item collaborative filtering on the sparse customer x product matrix, written with
``scipy.sparse`` (already a dependency) rather than the ``implicit`` package. Measured on the same matrices,
implicit 0.7.3's item-item fit is faster by under half a second (0.13 s against 0.36 s on Online Retail, 0.4 s
against 0.9 s on a million generated customers) but scoring a million customers takes it 35 s against 10 s here,
so it brings no clear win for a compiled dependency.

Interactions (named query ``customer_product_interactions``). A product is its id, else its name (one product
under several names shows the name on most of its lines, query ``product_names``). The interaction of a
customer with a product is the number of distinct days they bought it. Returns are netted per customer and
product: when what the customer returned of a product (units, else money, else lines) is at least what they
bought of it, they have no positive interaction with it and it is never recommended to them (also when it was
bought before the data start); a partial return leaves the purchase days as they are.

Similarity. Purchase-day counts ``x`` are weighted with Okapi BM25 (Robertson and Zaragoza, "The Probabilistic
Relevance Framework: BM25 and Beyond", 2009), products as documents and customers as terms, ``k1 = 1.2``,
``b = 0.75``, and the idf kept positive as Lucene writes it::

    w(c, i) = idf(c) x (k1 + 1) / (x + k1 (1 - b + b L(i) / mean L))
    idf(c)  = ln(1 + (P - n(c) + 0.5) / (n(c) + 0.5))

where ``L(i)`` is product i's total purchase days, ``P`` the number of products and ``n(c)`` the customer's
distinct products (a customer who bought everything says little about any pair). Two products' similarity is
the cosine of their weighted customer vectors, ``s(i, j) = w_i . w_j / (|w_i| |w_j|)``; each product keeps its
``neighbours`` (default 50) most similar products. (On Online Retail, BM25 and plain 0/1 cosine are within noise
of each other: hit rate at 10 for new products 0.46 and 0.44.)

Scoring. A customer's score for a product they have not bought is the sum of its similarities to the products
they bought: ``score(c, j) = sum over bought i of s(i, j)``; the reason names the bought product contributing
most and how many customers bought both. Customers with fewer than ``min_products`` (2) products get the
recent popularity list instead: distinct customers who bought the product in the 90 days up to the date (in the
customer's segment when one is chosen and it has at least 30 such customers, then the products popular
overall); it also fills a personalised list that has fewer than ``top`` products. Each customer's best scores
are kept at fit (``keep_top``): lists for every customer again (another length, repeats on or off) are then
mostly explaining, 0.09 s for Online Retail's 4,372 customers.

Repeats. When ``include_repeats`` is on, the customer's own products come first, by how many days they bought
them (ties by popularity), up to half the list (5 of 10), then the new ones: a regular buyer gets a reminder of
their usual products and products new to them, never only the former. On Online Retail the offline check "with
repeats" gives hit rate at 10 of 0.81 so, against 0.84 when own products may fill the whole list and 0.74 with
only the products bought on two days or more: we give up three points of hit rate for lists that offer something
new. By default it is on for repeat-purchase catalogues: when, among customers
who bought on two days or more, at least 10 % of their (customer, product) pairs were bought on two days or more
(Online Retail: 25 %; the generated demo data: 20 %).

Offline evaluation (:func:`evaluate`): every model input is built from the rows up to a cutoff (default: three
calendar months before the end of the data) and checked against what customers who bought both before and after
it bought after it: precision, recall and hit rate at 10 (normal intervals over customers) and catalogue
coverage, for new products only and with repeats. Personalised recommendations are chosen only when their hit
rate at 10 for new products beats popularity's beyond chance (the 95 % interval of the paired difference lies
above zero); otherwise the simpler popularity list is.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from clm_core import schema
from clm_core.customer_view import close_matches
from clm_core.customers import data_span
from clm_core.engine import Engine
from clm_core.errors import DataRangeError, SchemaError

__all__ = [
    "CF",
    "POPULARITY",
    "REPEAT",
    "METHODS",
    "METHOD_LABELS",
    "INTERACTION_COLUMNS",
    "REPEAT_SHARE_THRESHOLD",
    "bm25_weights",
    "cosine_neighbours",
    "repeat_share",
    "Recommender",
    "build_recommender",
    "bought_together",
    "Evaluation",
    "evaluate",
    "choose_method",
]

CF = "cf"
POPULARITY = "popularity"
REPEAT = "repeat"  # a row's method when it is one of the customer's own products (include_repeats)
METHODS = (CF, POPULARITY)
METHOD_LABELS = {
    CF: "Personalised (bought together by similar customers)",
    POPULARITY: "Most popular recently",
    REPEAT: "Bought before",
}
INTERACTION_COLUMNS = ("customer_id", "product", "purchase_days", "first_day", "last_day", "bought", "returned")
REPEAT_SHARE_THRESHOLD = 0.10
NEW_ITEMS = "new items"
WITH_REPEATS = "with repeats"

_NO_PRODUCTS = ("This file has no product column, so there is nothing to recommend; load it again with its "
                "product ID or product name column mapped to get recommendations.")
_EARLIEST = date(1, 1, 1)
# Customers are ranked in batches of at most this many customer x product cells (a mask of what each one bought, a
# byte a cell). A batch scales its personalised keys by its own largest score: another size would change the last
# bits of some scores.
_BLOCK_CELLS = 1 << 23
# Entries per row whose k-th largest bounds the row's k-th largest from below (_largest_per_row).
_SAMPLE = 64
# Lines per purchase order from which bought_together counts the whole catalogue's pairs in Python: on Online
# Retail (21 an order) in 0.4 s against the query's 1.7 s, on a million generated customers (2 an order) in 5 s
# against its 3.3 s; the two cost alike at about 5.
_LARGE_ORDER = 6
_MIN_SEGMENT_BUYERS = 30
_EPOCH = np.datetime64("1970-01-01", "D")
# Ranking tiers: the customer's own products (repeats), then personalised, then popular products.
_TIER_POPULAR, _TIER_CF, _TIER_REPEAT = 0, 1, 2
_TIER_METHOD = {_TIER_POPULAR: POPULARITY, _TIER_CF: CF, _TIER_REPEAT: REPEAT}


# -- the model's mathematics -----------------------------------------------------------------------------------
def bm25_weights(counts: sp.spmatrix, *, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25 weights of a customer x product count matrix (same shape and sparsity, float64).

    ``w(c, i) = idf(c) * x (k1 + 1) / (x + k1 (1 - b + b L(i) / mean L))`` with
    ``idf(c) = ln(1 + (P - n(c) + 0.5) / (n(c) + 0.5))``: ``x`` the count, ``L(i)`` the column sum of product i,
    ``mean L`` the mean over products, ``P`` the number of products (columns), ``n(c)`` the number of products
    of customer c (stored entries of the row). Okapi BM25 (Robertson and Zaragoza 2009) with products as documents
    and customers as terms; the idf is Lucene's, which stays positive.
    """
    matrix = sp.csr_matrix(counts, dtype=np.float64)
    matrix.sum_duplicates()
    products = matrix.shape[1]
    per_customer = np.diff(matrix.indptr)
    idf = np.log1p((products - per_customer + 0.5) / (per_customer + 0.5))
    length = np.asarray(matrix.sum(axis=0)).ravel()
    mean_length = length.mean() if length.size and length.mean() > 0 else 1.0
    rows = np.repeat(np.arange(matrix.shape[0]), per_customer)
    x = matrix.data
    data = idf[rows] * x * (k1 + 1) / (x + k1 * (1 - b + b * length[matrix.indices] / mean_length))
    return sp.csr_matrix((data, matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape)


def cosine_neighbours(weights: sp.spmatrix, *, neighbours: int = 50) -> sp.csr_matrix:
    """Product x product cosine similarity of the columns of ``weights``, ``s(i, j) = w_i . w_j / (|w_i| |w_j|)``,
    keeping per row i its ``neighbours`` largest positive values (the product itself left out)."""
    """Computed in blocks of products, so memory stays bounded whatever the catalogue."""
    weights = sp.csr_matrix(weights, dtype=np.float64)
    products = weights.shape[1]
    lengths = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=0)).ravel())
    unit = sp.csr_matrix(weights @ sp.diags(1.0 / np.where(lengths > 0, lengths, 1.0)))
    unit_by_product = unit.T.tocsr()
    keep = min(neighbours, max(products - 1, 0))
    block = max(1, _BLOCK_CELLS // max(products, 1))
    rows, columns, values = [], [], []
    for start in range(0, products, block):
        stop = min(start + block, products)
        similarity = (unit_by_product[start:stop] @ unit).toarray()
        local = np.arange(stop - start)
        similarity[local, start + local] = 0.0
        if keep == 0:
            continue
        if keep < products:
            top = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
        else:
            top = np.broadcast_to(np.arange(products), similarity.shape)
        top_values = np.take_along_axis(similarity, top, axis=1)
        positive = top_values > 1e-12
        rows.append(np.broadcast_to(local[:, None] + start, top.shape)[positive])
        columns.append(top[positive])
        values.append(top_values[positive])
    if not rows:
        return sp.csr_matrix((products, products), dtype=np.float64)
    matrix = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                           shape=(products, products))
    matrix.sort_indices()
    return matrix


def repeat_share(purchase_days: sp.csr_matrix, first_day: sp.csr_matrix, last_day: sp.csr_matrix) -> float:
    """Among customers who bought on two days or more, the share of their (customer, product) pairs bought on two
    days or more. Arguments: customer x product purchase days and the first and last of those days (any day
    numbers), with the same sparsity. NaN when no customer bought on two days."""
    counts = np.diff(purchase_days.indptr)
    filled = counts > 0
    starts = purchase_days.indptr[:-1][filled]
    earliest = np.minimum.reduceat(first_day.data, starts) if len(starts) else np.empty(0)
    latest = np.maximum.reduceat(last_day.data, starts) if len(starts) else np.empty(0)
    repeater = np.zeros(len(counts), dtype=bool)
    repeater[np.flatnonzero(filled)] = latest > earliest
    pairs = np.repeat(repeater, counts)
    return float((purchase_days.data[pairs] >= 2).mean()) if pairs.any() else math.nan


def _day_numbers(column: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64; a very negative number for a missing day)."""
    return (column.to_numpy("datetime64[D]") - _EPOCH).astype(np.int64)


def _has_ties(values: np.ndarray) -> np.ndarray:
    """Per row of ``values`` (sorted along rows, -inf for none), whether two neighbours are equal."""
    return ((values[:, 1:] == values[:, :-1]) & np.isfinite(values[:, 1:])).any(axis=1)


def _largest_per_row(matrix: sp.csr_matrix, k: int, blocked: np.ndarray | None = None) -> np.ndarray:
    """Positions in ``matrix.data`` of each row's ``k`` largest values, largest first, leaving out the entries
    ``blocked`` (a rows x columns mask; None: none): rows x k, -1 where a row has fewer. Of equal values, any."""
    n_rows, n_columns = matrix.shape
    size = max(_SAMPLE, 4 * k)
    counts = np.diff(matrix.indptr)
    # The k-th largest of some allowed entries of a row bounds its k-th largest from below. First, on every
    # entry (once, so only the comparison looks at them all): those of a row of more than `size` entries at or
    # above the bound of `size` of them.
    if counts.max(initial=0) > size:
        bound = _sampled_bound(matrix, None, counts, k, size, blocked)
        positions = np.flatnonzero(matrix.data >= np.repeat(bound, counts))
        counts = np.diff(np.searchsorted(positions, matrix.indptr))
    else:
        positions = np.arange(len(matrix.data))
    rows = np.repeat(np.arange(n_rows), counts)
    if blocked is not None:
        allowed = ~blocked.ravel()[rows * n_columns + matrix.indices[positions]]
        positions, rows = positions[allowed], rows[allowed]
        counts = np.bincount(rows, minlength=n_rows)
    # Then, while a row holds more than `size`: those above a new bound. A row with fewer than k above it has the
    # bound for its k-th largest, and any of the entries equal to it complete the row. The rest are sorted.
    while counts.max(initial=0) > size:
        bound = _sampled_bound(matrix, positions, counts, k, size)[rows]
        values = matrix.data[positions]
        above, tied = values > bound, values == bound
        above_count = np.bincount(rows[above], minlength=n_rows)
        tied_before = np.cumsum(tied) - tied
        tied_before -= np.concatenate([[0], np.cumsum(tied)])[np.cumsum(counts) - counts][rows]
        kept = above | (tied & (tied_before < k - above_count[rows]))
        positions, rows = positions[kept], rows[kept]
        counts = np.bincount(rows, minlength=n_rows)
    if len(positions) == 0:
        return np.full((n_rows, k), -1, dtype=np.int64)
    # What is left of each row fits a small block: its k largest, sorted.
    block = np.arange(max(k, int(counts.max())))
    inside = block < counts[:, None]
    block = np.where(inside, positions[np.where(inside, (np.cumsum(counts) - counts)[:, None] + block, 0)], -1)
    block_values = np.where(inside, -matrix.data[block], np.inf)
    if block.shape[1] > k:
        head = np.argpartition(block_values, k - 1, axis=1)[:, :k]
        block, block_values = np.take_along_axis(block, head, axis=1), np.take_along_axis(block_values, head, axis=1)
    return np.take_along_axis(block, np.argsort(block_values, axis=1, kind="stable"), axis=1)


def _sampled_bound(matrix: sp.csr_matrix, positions: np.ndarray | None, counts: np.ndarray, k: int, size: int,
                   blocked: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``matrix`` with more than ``size`` of the entries ``positions`` (None: all; grouped by row,
    ``counts`` per row), the k-th largest of ``size`` of them spread over the row, leaving out ``blocked`` ones
    (-inf for fewer than k); -inf for the other rows."""
    bound = np.full(len(counts), -np.inf)
    large = np.flatnonzero(counts > size)
    picked = (np.cumsum(counts) - counts)[large, None] + np.arange(size) * counts[large, None] // size
    if positions is not None:
        picked = positions[picked]
    values = -matrix.data[picked]
    if blocked is not None:
        values[blocked.ravel()[large[:, None] * matrix.shape[1] + matrix.indices[picked]]] = np.inf
    bound[large] = -np.partition(values, k - 1, axis=1)[:, k - 1]
    return bound


def _first_free(rows: np.ndarray, places: np.ndarray, wanted: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per row r, its first ``wanted[r]`` places 0, 1, ... below ``length[r]`` that are not taken: ``places`` below
    the length, distinct per row, of the rows ``rows``. Rows x wanted.max(), -1 where there are no more."""
    n_rows = len(wanted)
    columns = np.arange(int(wanted.max(initial=0)))
    span = int(length.max(initial=0)) + len(columns) + 1
    rows, places = np.divmod(np.sort(rows * span + places), span)
    starts = np.searchsorted(rows, np.arange(n_rows))
    # The j-th free place is j plus the taken places before it: those with at most j free places before them.
    free_before = places - (np.arange(len(places)) - starts[rows])
    passed = np.searchsorted(rows * span + free_before, np.arange(n_rows)[:, None] * span + columns, side="right")
    free = columns + passed - starts[:, None]
    return np.where((columns < wanted[:, None]) & (free < length[:, None]), free, -1)


def _similar_sources(similarity: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per product j, the products i that keep j among their neighbours, most similar first (s(i, j); of equal
    ones, the first i): ``(indptr, products)``, products[indptr[j]:indptr[j + 1]] those of j."""
    by_candidate = similarity.T.tocsr()
    candidate = np.repeat(np.arange(by_candidate.shape[0]), np.diff(by_candidate.indptr))
    order = np.lexsort((by_candidate.indices, -by_candidate.data, candidate))
    return by_candidate.indptr.astype(np.int64), by_candidate.indices[order].astype(np.int64)


@dataclass(frozen=True)
class _Candidates:
    """Customers' best personalised products: ``products`` (customers x k, -1 past the last) with their
    ``summed`` similarity (-inf past the last), of those the customer neither bought nor returned in full, largest
    first; and ``largest``, the largest summed similarity of any product for the customer (0 for none)."""

    products: np.ndarray
    summed: np.ndarray
    largest: np.ndarray


@dataclass(frozen=True)
class _BatchKeys:
    """The sort keys of a batch of customers (:meth:`Recommender._rank`), sparse: ``history`` (rows x products,
    purchase days), ``popular`` (lists x products: each popular list's keys, -inf where nobody bought) with
    ``popular_counts`` (the recent buyers it counts) and ``lists`` (each row's list), ``personal`` (the best
    personalised products, None without personalised rows; their key is ``summed / personal_scale + 1``), ``own``
    (the history's keys: repeats, or -inf) with ``repeat_place`` (each own product's place among the customer's,
    None without repeats), and ``excluded`` (returned in full)."""

    history: sp.csr_matrix
    lists: np.ndarray
    popular: np.ndarray
    popular_counts: np.ndarray
    personal: _Candidates | None
    personal_scale: float | None
    own: sp.csr_matrix
    repeat_place: np.ndarray | None
    excluded: sp.csr_matrix


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


# -- the model --------------------------------------------------------------------------------------------------
class Recommender(BaseEstimator):
    """Item-to-item collaborative filtering with a recent-popularity fallback (see the module docstring).

    Settings (keyword-only, stored as given): ``neighbours`` (similar products kept per product),
    ``include_repeats`` (None: decided from the data by :data:`REPEAT_SHARE_THRESHOLD`), ``min_products``
    (customers with fewer distinct products get popularity), ``popular_days`` (the popularity window), ``k1`` and
    ``b`` (BM25), ``method`` (what :meth:`recommend` uses by default: ``"cf"`` or ``"popularity"``),
    ``method_reason`` (why, in words) and ``keep_top`` (when ``method`` is cf, each customer's ``keep_top + 1``
    best personalised products are kept at fit, 12 bytes each, so that lists of up to ``keep_top`` products rank
    without scoring every customer again; longer lists and 0 score at every call).

    Fitted attributes: ``customers_`` and ``products_`` (indexes of the matrices' rows and columns),
    ``product_names_``, ``purchases_`` (customer x product purchase days, net of returns), ``first_day_`` and
    ``last_day_`` (the first and last of those days, as days since 1970, same sparsity), ``excluded_`` (pairs
    returned in full), ``similarity_`` (top-K cosine per product),
    ``popularity_`` (recent buyers per product), ``segment_popularity_`` (per segment and product),
    ``customer_segment_`` (segment number per customer, -1 for none), ``segments_``, ``segment_label_``,
    ``popular_window_`` (days, or None for all history), ``include_repeats_``, ``repeat_share_``, ``as_of_``.
    """

    def __init__(self, *, neighbours: int = 50, include_repeats: bool | None = None, min_products: int = 2,
                 popular_days: int = 90, k1: float = 1.2, b: float = 0.75, method: str = CF,
                 method_reason: str = "", keep_top: int = 10) -> None:
        self.neighbours = neighbours
        self.include_repeats = include_repeats
        self.min_products = min_products
        self.popular_days = popular_days
        self.k1 = k1
        self.b = b
        self.method = method
        self.method_reason = method_reason
        self.keep_top = keep_top

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame, *, as_of: date, names: pd.Series | None = None,
            segments: pd.Series | None = None, segment_label: str = "") -> "Recommender":
        """Fit on the customer x product interactions up to ``as_of`` (columns :data:`INTERACTION_COLUMNS`, as
        the named query ``customer_product_interactions`` returns them). ``names``: display name per product key;
        ``segments``: segment value per customer id (popularity is then counted within segments), called
        ``segment_label`` in reasons."""
        schema.require_columns(interactions.columns, INTERACTION_COLUMNS, what="the interactions")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if interactions.empty:
            raise DataRangeError(f"No purchases with a product up to {as_of:%d %b %Y}, so there is nothing to learn "
                                 "recommendations from.")
        customer_codes, customers = pd.factorize(interactions["customer_id"], sort=True)
        product_codes, products = pd.factorize(interactions["product"], sort=True)
        shape = (len(customers), len(products))
        days = interactions["purchase_days"].to_numpy(np.int64)
        bought = interactions["bought"].to_numpy(np.float64)
        returned = interactions["returned"].to_numpy(np.float64)
        returned_in_full = (returned > 0) & (returned >= bought * (1 - 1e-9))
        kept = (days > 0) & ~returned_in_full
        # Rows in customer, then product order (as CSR stores them), by a counting sort rather than a lexsort.
        positions = sp.csr_matrix((np.arange(1, len(days) + 1), (customer_codes, product_codes)), shape=shape)
        positions.sort_indices()
        order = positions.data - 1
        kept_order = order[kept[order]]

        def pairs(values: np.ndarray, selected: np.ndarray, dtype) -> sp.csr_matrix:
            rows = customer_codes[selected]
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
            return sp.csr_matrix((values[selected].astype(dtype), product_codes[selected], indptr), shape=shape)

        self.customers_ = pd.Index(customers, name="customer_id")
        self.products_ = pd.Index(products, name="product_id")
        labels = pd.Series(self.products_, index=self.products_, dtype=object)
        if names is not None:
            labels = pd.Series(names).reindex(self.products_).astype(object).where(lambda n: n.notna(), labels)
        self.product_names_ = pd.Index(labels.to_numpy(), name="product_name")
        self.purchases_ = pairs(days.astype(np.float32), kept_order, np.float32)
        self.first_day_ = pairs(_day_numbers(interactions["first_day"]), kept_order, np.int64)
        self.last_day_ = pairs(_day_numbers(interactions["last_day"]), kept_order, np.int64)
        self.excluded_ = pairs(np.ones(len(order), dtype=bool), order[returned_in_full[order]], bool)
        self.as_of_ = as_of
        self.repeat_share_ = repeat_share(self.purchases_, self.first_day_, self.last_day_)
        self.include_repeats_ = (bool(self.include_repeats) if self.include_repeats is not None
                                 else bool(self.repeat_share_ >= REPEAT_SHARE_THRESHOLD))
        self._fit_popularity(segments, segment_label)
        weights = bm25_weights(self.purchases_, k1=self.k1, b=self.b)
        self.similarity_ = cosine_neighbours(weights, neighbours=self.neighbours)
        self._similar_sources = _similar_sources(self.similarity_)
        self._kept_candidates = None
        if self.method == CF and self.keep_top > 0:
            # Scored once here, not at every call: a list for every customer is then mostly explaining.
            parts = [self._candidates(batch, self.keep_top + 1) for batch in self._batches(np.arange(shape[0]))]
            self._kept_candidates = _Candidates(*(np.concatenate([getattr(part, name) for part in parts])
                                                  for name in ("products", "summed", "largest")))
        return self

    def _fit_popularity(self, segments: pd.Series | None, segment_label: str) -> None:
        purchases = self.purchases_
        rows = np.repeat(np.arange(purchases.shape[0]), np.diff(purchases.indptr))
        recent = self.last_day_.data > (np.datetime64(self.as_of_, "D") - _EPOCH).astype(np.int64) - self.popular_days
        self.popular_window_ = self.popular_days
        if not recent.any():  # nobody bought in the window: popularity over all history
            recent = np.ones_like(recent)
            self.popular_window_ = None
        products = purchases.shape[1]
        self.popularity_ = np.bincount(purchases.indices[recent], minlength=products).astype(np.int64)
        if segments is None:
            self.customer_segment_ = np.full(purchases.shape[0], -1, dtype=np.int64)
            self.segments_ = pd.Index([], dtype=object)
            self.segment_popularity_ = sp.csr_matrix((0, products), dtype=np.int64)
        else:
            values = pd.Series(segments).reindex(self.customers_)
            codes, labels = pd.factorize(values.to_numpy(), sort=True)
            self.segments_ = pd.Index(labels)
            counted = recent & (codes[rows] >= 0)  # customers without a segment value count overall only
            self.segment_popularity_ = sp.csr_matrix(
                (np.ones(int(counted.sum()), dtype=np.int64), (codes[rows[counted]], purchases.indices[counted])),
                shape=(len(labels), products))
            buyers = np.bincount(codes[np.unique(rows[counted])], minlength=len(labels))
            # A segment uses its own list only when enough of its customers bought recently.
            big_enough = np.append(buyers >= _MIN_SEGMENT_BUYERS, False)
            self.customer_segment_ = np.where(big_enough[codes], codes, -1)
        self.segment_label_ = segment_label

    # -- ranking ----------------------------------------------------------------------------------------------
    def _rank(self, rows: np.ndarray, top: int, method: str, include_repeats: bool) -> dict[str, np.ndarray]:
        """The ``top`` products per customer row: ``products`` (rows x top, -1 where there are fewer), their
        ``tier`` and ``score`` (cf: summed similarity; repeat: purchase days; popularity: recent buyers).

        One sort key per customer and product ranks the tiers in order, [0, 1) popular (recent buyers, with
        overall popularity breaking ties), [1, 2) personalised (summed similarity), [2, 3) the customer's own
        products (purchase days, ties by popularity), -inf for what may not be recommended. The keys stay sparse
        (:meth:`_batch_keys`): a list is the customer's repeats, then their best personalised products, then the
        head of their popular list (:meth:`_sparse_choice`). A customer whose list holds two equal keys is ranked
        on the full row of every product's key (:meth:`_dense_choice`), for the order of equal keys a partial
        sort of that row gives."""
        width = min(top, self.purchases_.shape[1])
        keys = self._batch_keys(rows, top, width, method, include_repeats)
        chosen, ranked, unsure = self._sparse_choice(keys, width)
        if unsure.any():
            chosen[unsure], ranked[unsure] = self._dense_choice(keys, np.flatnonzero(unsure), width)
        return self._scored(keys, chosen, ranked)

    def _batch_keys(self, rows: np.ndarray, top: int, width: int, method: str, include_repeats: bool) -> _BatchKeys:
        """The sort keys of :meth:`_rank` for customer ``rows``, sparse, for lists of ``width`` products; their
        scales (the most recent buyers, summed similarity and purchase days) are the batch's."""
        history = self.purchases_[rows]
        n_rows, n_products = history.shape
        popularity = self.popularity_
        tiebreak = 0.5 * popularity / (popularity.max(initial=0) + 1.0)
        segment = self.customer_segment_[rows]
        if (segment >= 0).any():
            # One popular list per segment of the batch (and the overall one, -1, for customers without one): the
            # segment's own buyers first; products none of them bought recently follow by overall popularity.
            segments, lists = np.unique(segment, return_inverse=True)
            counts = np.empty((len(segments), n_products))
            counts[:] = popularity
            counts[segments >= 0] = self.segment_popularity_[segments[segments >= 0]].toarray()
            popular = (counts + tiebreak) / (counts.max(initial=0) + 1.0)
            popular[(counts == 0) & (popularity == 0)] = -np.inf
        else:
            lists = np.zeros(n_rows, dtype=np.int64)
            counts = popularity.astype(np.float64)[None, :]
            overall = (popularity + tiebreak) / (popularity.max(initial=0) + 1.0)
            popular = np.where(popularity > 0, overall, -np.inf)[None, :]
        personal = None
        per_row = np.diff(history.indptr)
        if method == CF and (per_row >= self.min_products).any():
            kept = self._kept_candidates
            if kept is not None and width < kept.products.shape[1]:
                personal = _Candidates(products=kept.products[rows, :width + 1],
                                       summed=kept.summed[rows, :width + 1], largest=kept.largest[rows])
            else:
                personal = self._candidates(rows, width + 1)
        own = np.full(history.nnz, -np.inf)
        repeat_place = None
        if include_repeats:
            days = history.data.astype(np.float64)
            own = 2.0 + (days + tiebreak[history.indices]) / (days.max(initial=0.0) + 1.0)
            # At most half the list (rounded up) is the customer's own products, their most bought first: the
            # rest is new to them, so a regular buyer's list is never only a reminder of what they already buy.
            order = np.lexsort((-own, np.repeat(np.arange(n_rows), per_row)))
            repeat_place = np.empty(len(own), dtype=np.int64)
            repeat_place[order] = np.arange(len(own)) - np.repeat(history.indptr[:-1], per_row)
            own[repeat_place >= (top + 1) // 2] = -np.inf
        return _BatchKeys(history=history, lists=lists, popular=popular, popular_counts=counts, personal=personal,
                          personal_scale=None if personal is None else personal.largest.max(initial=0.0) + 1.0,
                          own=sp.csr_matrix((own, history.indices, history.indptr), shape=history.shape),
                          repeat_place=repeat_place, excluded=self.excluded_[rows])

    def _summed_similarity(self, history: sp.csr_matrix) -> sp.csr_matrix:
        """Per customer row of ``history``, the summed similarity of each product similar to something they
        bought, ``score(c, j) = sum over bought i of s(i, j)`` (rows of customers with fewer than ``min_products``
        products left empty), kept sparse: only the products similar to something bought have a score."""
        per_row = np.diff(history.indptr)
        bought = np.repeat(per_row >= self.min_products, per_row).astype(np.float64)
        return sp.csr_matrix(sp.csr_matrix((bought, history.indices, history.indptr), shape=history.shape)
                             @ self.similarity_)

    def _candidates(self, rows: np.ndarray, k: int) -> _Candidates:
        """The ``k`` personalised products of customer ``rows`` with the largest summed similarity, of those they
        neither bought nor returned in full, and the largest summed similarity of each row."""
        history, excluded = self.purchases_[rows], self.excluded_[rows]
        summed = self._summed_similarity(history)
        filled = np.flatnonzero(np.diff(summed.indptr))
        largest = np.zeros(len(rows))
        largest[filled] = np.maximum.reduceat(summed.data, summed.indptr[filled])
        largest = np.maximum(largest, 0.0)
        # Not offered: the customer's own products, those they returned in full, and any without similarity.
        blocked = np.zeros(summed.shape, dtype=bool)
        for taken in (history, excluded):
            blocked[np.repeat(np.arange(len(rows)), np.diff(taken.indptr)), taken.indices] = True
        unscored = summed.data <= 0
        if unscored.any():
            blocked[np.repeat(np.arange(len(rows)), np.diff(summed.indptr))[unscored], summed.indices[unscored]] = True
        best = _largest_per_row(summed, k, blocked)
        found = best >= 0
        products = np.full(best.shape, -1, dtype=np.int32)
        products[found] = summed.indices[best[found]]
        values = np.full(best.shape, -np.inf)
        values[found] = summed.data[best[found]]
        return _Candidates(products=products, summed=values, largest=largest)

    def _sparse_choice(self, keys: _BatchKeys, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row its ``width`` largest keys, largest first: ``(products, keys, unsure)`` (rows x width; -1 and
        -inf past the row's last product). ``unsure`` marks the rows where two of the keys that decide the list
        are equal: another order of equal keys would give another list."""
        n_rows = keys.history.shape[0]
        own = keys.own
        own_rows = np.repeat(np.arange(n_rows), np.diff(own.indptr))
        # The customer's own products offered again come first, in the order of their keys (repeat_place).
        offered = np.isfinite(own.data)
        repeats = int(keys.repeat_place[offered].max(initial=-1)) + 1 if keys.repeat_place is not None else 0
        heads = np.full((n_rows, repeats), -1, dtype=np.int64)
        head_keys = np.full((n_rows, repeats), -np.inf)
        if repeats:
            heads[own_rows[offered], keys.repeat_place[offered]] = own.indices[offered]
            head_keys[own_rows[offered], keys.repeat_place[offered]] = own.data[offered]
        if keys.personal is not None:
            # Then the personalised products (the width + 1 best, to see whether the last one on the list ties with
            # the next).
            personal = keys.personal.products >= 0
            heads = np.concatenate([heads, keys.personal.products.astype(np.int64)], axis=1)
            head_keys = np.concatenate([head_keys, np.where(
                personal, keys.personal.summed / keys.personal_scale + 1.0, -np.inf)], axis=1)
            order = np.argsort(-head_keys, axis=1, kind="stable")
            heads = np.take_along_axis(heads, order, axis=1)
            head_keys = np.take_along_axis(head_keys, order, axis=1)
        chosen = np.full((n_rows, width), -1, dtype=np.int64)
        ranked = np.full((n_rows, width), -np.inf)
        shown = min(width, heads.shape[1])
        chosen[:, :shown], ranked[:, :shown] = heads[:, :shown], head_keys[:, :shown]
        unsure = _has_ties(head_keys[:, :width + 1])
        listed = np.isfinite(ranked).sum(axis=1)
        short = np.flatnonzero(listed < width)
        if len(short):
            self._fill_popular(keys, short, listed[short], chosen, ranked, unsure)
        return chosen, ranked, unsure

    @staticmethod
    def _fill_popular(keys: _BatchKeys, rows: np.ndarray, listed: np.ndarray, chosen: np.ndarray,
                      ranked: np.ndarray, unsure: np.ndarray) -> None:
        """Complete the lists of ``rows`` of :meth:`_sparse_choice` (holding ``listed`` products, all the
        products they may have besides popular ones) with the head of each one's popular list, in place."""
        n_products = keys.history.shape[1]
        order = np.argsort(-keys.popular, axis=1, kind="stable")
        length = np.isfinite(keys.popular).sum(axis=1)
        place = np.empty_like(order)
        np.put_along_axis(place, order, np.arange(n_products), axis=1)
        # What a popular list may not offer the customer: their own products, those returned in full, and those
        # already on their list.
        own, excluded = keys.own[rows], keys.excluded[rows]
        listed_columns = np.arange(chosen.shape[1]) < listed[:, None]
        taken_rows = np.concatenate([np.repeat(np.arange(len(rows)), np.diff(own.indptr)),
                                     np.repeat(np.arange(len(rows)), np.diff(excluded.indptr)),
                                     np.nonzero(listed_columns)[0]])
        taken = np.unique(taken_rows * n_products + np.concatenate(
            [own.indices, excluded.indices, chosen[rows][listed_columns]]))
        taken_rows, taken_products = np.divmod(taken, n_products)
        lists = keys.lists[rows]
        taken_place = place[lists[taken_rows], taken_products]
        on_list = taken_place < length[lists[taken_rows]]
        # One more than needed, to see whether the last one ties with the next.
        wanted = chosen.shape[1] - listed + 1
        free = _first_free(taken_rows[on_list], taken_place[on_list], wanted, length[lists])
        valid = free >= 0
        products = np.where(valid, order[lists[:, None], np.maximum(free, 0)], -1)
        values = np.where(valid, keys.popular[lists[:, None], np.maximum(products, 0)], -np.inf)
        unsure[rows] |= _has_ties(values)
        columns = np.arange(free.shape[1])
        fits = valid & (columns < (wanted - 1)[:, None])
        target_rows = np.broadcast_to(rows[:, None], free.shape)[fits]
        target_columns = (listed[:, None] + columns)[fits]
        chosen[target_rows, target_columns] = products[fits]
        ranked[target_rows, target_columns] = values[fits]

    def _dense_choice(self, keys: _BatchKeys, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_sparse_choice` for ``rows`` of the batch from the full row of every product's key, partially
        sorted: of equal keys, those (and in the order) the partition leaves."""
        n_products = keys.history.shape[1]
        key = keys.popular[keys.lists[rows]]
        if keys.personal is not None:
            summed = self._summed_similarity(keys.history[rows])
            scored = summed.data > 0
            key[np.repeat(np.arange(len(rows)), np.diff(summed.indptr))[scored], summed.indices[scored]] = \
                summed.data[scored] / keys.personal_scale + 1.0
        own, excluded = keys.own[rows], keys.excluded[rows]
        key[np.repeat(np.arange(len(rows)), np.diff(own.indptr)), own.indices] = own.data
        key[np.repeat(np.arange(len(rows)), np.diff(excluded.indptr)), excluded.indices] = -np.inf
        np.negative(key, out=key)  # argpartition puts the smallest first
        chosen = np.argpartition(key, width - 1, axis=1)[:, :width] if width < n_products else \
            np.broadcast_to(np.arange(n_products), key.shape)
        ranked = np.take_along_axis(key, chosen, axis=1)
        order = np.argsort(ranked, axis=1, kind="stable")
        return np.take_along_axis(chosen, order, axis=1), -np.take_along_axis(ranked, order, axis=1)

    def _scored(self, keys: _BatchKeys, chosen: np.ndarray, ranked: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`_rank`'s result from the chosen products and their keys."""
        valid = np.isfinite(ranked)
        tier = np.where(valid, np.floor(np.where(valid, ranked, 0)), -1).astype(np.int64)
        products = np.where(valid, chosen, -1)
        score = np.full(products.shape, np.nan)
        popular = tier == _TIER_POPULAR
        in_list = keys.popular_counts[np.broadcast_to(keys.lists[:, None], products.shape)[popular],
                                      products[popular]]
        score[popular] = np.where(in_list > 0, in_list, self.popularity_[products[popular]])
        if keys.personal_scale is not None:
            score[tier == _TIER_CF] = (ranked[tier == _TIER_CF] - 1.0) * keys.personal_scale
        repeat = tier == _TIER_REPEAT
        if repeat.any():
            score[repeat] = np.asarray(keys.history[np.nonzero(repeat)[0], products[repeat]]).ravel()
        return {"products": products, "tier": tier, "score": score}

    def _batches(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        size = max(1, _BLOCK_CELLS // max(len(self.products_), 1))
        for start in range(0, len(rows), size):
            yield rows[start:start + size]

    # -- explaining -------------------------------------------------------------------------------------------
    def _contributors(self, rows: np.ndarray, products: np.ndarray) -> np.ndarray:
        """For personalised picks (customer row, product j): the bought product i with the largest s(i, j) (of
        equal ones, the first i). ``rows`` hold a batch of customers at most (a customer x product mask)."""
        contributor = np.full(len(rows), -1, dtype=np.int64)
        indptr, sources = self._similar_sources
        if len(rows) == 0 or len(sources) == 0:
            return contributor
        customers, local = np.unique(rows, return_inverse=True)
        history = self.purchases_[customers]
        bought = np.zeros(history.shape, dtype=bool)
        bought[np.repeat(np.arange(len(customers)), np.diff(history.indptr)), history.indices] = True
        # Each pick's sources (the products it is a neighbour of), most similar first, a block at a time: the
        # first one the customer bought contributes most. Most picks find it in the first block.
        start, stop = indptr[products], indptr[products + 1]
        pending, offset, block = np.arange(len(rows)), 0, 8
        while len(pending):
            at = start[pending, None] + offset + np.arange(block)
            inside = at < stop[pending, None]
            candidates = sources[np.where(inside, at, 0)]
            hit = inside & bought[local[pending, None], candidates]
            found = hit.any(axis=1)
            contributor[pending[found]] = candidates[found, hit[found].argmax(axis=1)]
            pending = pending[~found & (start[pending] + offset + block < stop[pending])]
            offset, block = offset + block, 2 * block
        return contributor

    def _bought_both(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """How many customers bought both product ``first[k]`` and product ``second[k]`` (purchases kept by the
        fit), for the distinct pairs only: the cells of the co-purchase matrix the reasons read, not the whole
        catalogue's (which the ranking never needs)."""
        purchases = self.purchases_
        bought = sp.csr_matrix((np.ones(purchases.nnz, dtype=np.int64), purchases.indices, purchases.indptr),
                               shape=purchases.shape)
        buyers = bought.T.tocsr()
        pairs, inverse = np.unique(first.astype(np.int64) * buyers.shape[0] + second, return_inverse=True)
        left, right = np.divmod(pairs, buyers.shape[0])
        firsts = np.unique(left)
        # Two exact counts: intersect each pair's lists of buyers (steps: the lists' lengths), or count what the
        # buyers of each first product bought (steps: their products); the one of fewer steps. Few pairs of
        # products with many buyers each (a million customers, a small catalogue) take the second.
        per_product, per_customer = np.diff(buyers.indptr), np.diff(bought.indptr)
        if (per_product[left] + per_product[right]).sum() <= (buyers[firsts] @ per_customer).sum():
            both = np.asarray(buyers[left].multiply(buyers[right]).sum(axis=1)).ravel()
        else:
            both = np.asarray(sp.csr_matrix(buyers[firsts] @ bought)[np.searchsorted(firsts, left), right]).ravel()
        return both[inverse].astype(np.int64)

    def _reason_keys(self, rows: np.ndarray, products: np.ndarray, tier: np.ndarray,
                     contributor: np.ndarray) -> tuple[np.ndarray, ...]:
        """Two numbers per pick that fix its sentence: personalised, the bought product contributing most
        (``contributor``, from :meth:`_contributors`) and the customers who bought both; repeat, the purchase days
        and the usual gap (or the one day); popular, the segment (-1: all customers) and its recent buyers."""
        first = np.zeros(len(rows), dtype=np.int64)
        second = np.zeros(len(rows), dtype=np.int64)
        cf = tier == _TIER_CF
        if cf.any():
            first[cf] = contributor[cf]
            second[cf] = self._bought_both(contributor[cf], products[cf])
        repeat = tier == _TIER_REPEAT
        if repeat.any():
            days = np.asarray(self.purchases_[rows[repeat], products[repeat]]).ravel().astype(np.int64)
            first_day = np.asarray(self.first_day_[rows[repeat], products[repeat]]).ravel()
            last_day = np.asarray(self.last_day_[rows[repeat], products[repeat]]).ravel()
            first[repeat] = days
            second[repeat] = np.where(days >= 2, np.rint((last_day - first_day) / np.maximum(days - 1, 1)), last_day)
        popular = tier == _TIER_POPULAR
        if popular.any():
            segment = self.customer_segment_[rows[popular]]
            counts = self.popularity_[products[popular]].copy()
            own = np.flatnonzero(segment >= 0)
            if len(own):
                in_segment = np.asarray(self.segment_popularity_[segment[own], products[popular][own]]).ravel()
                counts[own[in_segment > 0]] = in_segment[in_segment > 0]
                segment[own[in_segment == 0]] = -1  # no recent buyer in the segment: said as overall popularity
            first[popular], second[popular] = segment, counts
        return first, second

    def _reasons(self, tier: np.ndarray, first: np.ndarray, second: np.ndarray) -> pd.Categorical:
        """One sentence per pick from :meth:`_reason_keys`, as categories: a million customers' picks share few
        distinct sentences, each written once."""
        codes = np.zeros(len(tier), dtype=np.int64)
        sentences: list[str] = []
        names = self.product_names_.to_numpy(dtype=object)  # plain strings: an Index looks each one up slowly
        say = {
            _TIER_CF: lambda i, n: f"bought with {names[i]} by {_plural(n, 'customer')}",
            _TIER_REPEAT: self._repeat_reason,
            _TIER_POPULAR: self._popular_reason,
        }
        for level, sentence in say.items():
            selected = tier == level
            if not selected.any():
                continue
            low, high = int(second[selected].min()), int(second[selected].max())
            keys, inverse = np.unique(first[selected] * (high - low + 1) + (second[selected] - low),
                                      return_inverse=True)
            codes[selected] = len(sentences) + inverse
            sentences.extend(sentence(int(key // (high - low + 1)), int(key % (high - low + 1) + low)) for key in keys)
        # Two products may share a name, and so a sentence: one category per distinct sentence.
        sentence_codes, categories = pd.factorize(pd.Index(sentences, dtype=object))
        return pd.Categorical.from_codes(sentence_codes[codes] if sentences else codes, categories=categories)

    @staticmethod
    def _repeat_reason(days: int, gap_or_day: int) -> str:
        if days >= 2:
            return f"you bought this on {days:,} days, about every {_plural(max(gap_or_day, 1), 'day')}"
        return f"you bought this on {pd.Timestamp(_EPOCH + gap_or_day):%d %b %Y}"

    def _popular_reason(self, segment: int, customers: int) -> str:
        window = f" in the last {self.popular_window_} days" if self.popular_window_ else ""
        where = f" with customers whose {self.segment_label_} is {self.segments_[segment]}" if segment >= 0 else ""
        return f"popular{where}{window} ({_plural(customers, 'customer')})"

    # -- public -----------------------------------------------------------------------------------------------
    def _rows_of(self, customer_ids: Iterable[object] | None) -> np.ndarray:
        if customer_ids is None:
            return np.arange(len(self.customers_))
        ids = pd.Index([str(customer) for customer in customer_ids])
        rows = self.customers_.get_indexer(ids)
        if (rows < 0).any():
            raise DataRangeError(_unknown_customer(str(ids[np.argmax(rows < 0)]), self.customers_, self.as_of_))
        return rows

    def recommend(self, customer_ids: Iterable[object] | None = None, top: int = 10,
                  method: str | None = None, include_repeats: bool | None = None) -> pd.DataFrame:
        """The ``top`` recommendations per customer (default: every customer known up to ``as_of_``), by customer
        and rank: ``customer_id, rank, product_id, product_name, score, reason, method``.

        ``method``: ``"cf"`` (personalised; customers with too little history get popularity), ``"popularity"``,
        or None for the fitted default (``method``, the one the offline check chose). A row's ``method`` says
        what picked it: ``cf``, ``popularity`` or ``repeat`` (one of the customer's own products, first when
        ``include_repeats_``). ``score``: for ``cf`` the summed cosine similarity to what the customer bought,
        for ``repeat`` the days they bought it, for ``popularity`` the customers who bought it recently.
        Products the customer returned in full are never recommended. Customers are scored in batches, so memory
        stays bounded; an unknown customer id raises :class:`DataRangeError` naming close matches.
        ``include_repeats`` overrides the fitted ``include_repeats_`` (nothing is refitted: it only ranks).
        """
        check_is_fitted(self, "similarity_")
        method = method or self.method
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if top < 1:
            raise ValueError("top must be at least 1")
        rows = self._rows_of(customer_ids)
        parts: dict[str, list[np.ndarray]] = {"rows": [], "products": [], "tier": [], "score": [],
                                              "contributor": []}
        for batch in self._batches(rows):
            ranked = self._rank(batch, top, method,
                                self.include_repeats_ if include_repeats is None else include_repeats)
            valid = ranked["products"] >= 0
            batch_rows = np.broadcast_to(batch[:, None], valid.shape)[valid]
            picks = {"rows": batch_rows, **{name: ranked[name][valid] for name in ("products", "tier", "score")}}
            picks["contributor"] = np.full(len(batch_rows), -1, dtype=np.int64)
            cf = picks["tier"] == _TIER_CF
            picks["contributor"][cf] = self._contributors(batch_rows[cf], picks["products"][cf])
            for name, values in picks.items():
                parts[name].append(values)
        picked = {name: np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
                  for name, arrays in parts.items()}
        customer_rows, products, tier = picked["rows"].astype(np.int64), picked["products"].astype(np.int64), \
            picked["tier"].astype(np.int64)
        first, second = self._reason_keys(customer_rows, products, tier, picked["contributor"])
        starts = np.flatnonzero(np.r_[True, customer_rows[1:] != customer_rows[:-1]])
        rank = np.arange(len(customer_rows)) - np.repeat(starts, np.diff(np.r_[starts, len(customer_rows)])) + 1
        methods = pd.Categorical.from_codes(tier, categories=[_TIER_METHOD[t] for t in sorted(_TIER_METHOD)])
        name_codes, names = pd.factorize(self.product_names_)
        return pd.DataFrame({
            "customer_id": self.customers_.take(customer_rows),
            "rank": rank.astype(np.int64),
            # Categories, not text: ten picks per customer repeat few products (a third less memory at 1 M customers).
            "product_id": pd.Categorical.from_codes(products, categories=self.products_),
            "product_name": pd.Categorical.from_codes(name_codes[products], categories=names),
            "score": picked["score"].astype(np.float64),
            "reason": self._reasons(tier, first, second),
            "method": methods,
        })

    def for_customer(self, customer_id: object, top: int = 10, method: str | None = None,
                     include_repeats: bool | None = None) -> pd.DataFrame:
        """:meth:`recommend` for one customer (the same columns; fast once fitted)."""
        return self.recommend([customer_id], top=top, method=method, include_repeats=include_repeats)

    @property
    def summary(self) -> pd.DataFrame:
        """The fitted model in a few numbers: customers, products, neighbour pairs, the repeat rule, the method."""
        check_is_fitted(self, "similarity_")
        rows = {
            "as of": self.as_of_.isoformat(),
            "customers": len(self.customers_),
            "products": len(self.products_),
            "customer-product pairs": int(self.purchases_.nnz),
            "similar-product pairs kept": int(self.similarity_.nnz),
            "pairs bought on 2+ days (repeat buyers)": self.repeat_share_,
            "repeats included": self.include_repeats_,
            "method": self.method,
        }
        return pd.DataFrame({"value": pd.Series(rows, dtype=object)})


def _unknown_customer(customer: str, customers: pd.Index, as_of: date) -> str:
    """A one-line message for an unknown customer id, naming up to three close matches (the Customer page's)."""
    close = close_matches(customers, customer)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return f"No customer {customer!r} with purchases up to {as_of:%d %b %Y} in this dataset{hint}"


# -- from a workspace -------------------------------------------------------------------------------------------
def _require_products(workspace: Engine) -> None:
    if not workspace.dataset.has_products:
        raise SchemaError(_NO_PRODUCTS)


def _segment_values(workspace: Engine, segment: str | None) -> tuple[pd.Series | None, str]:
    if segment is None:
        return None, ""
    dataset = workspace.dataset
    if segment not in dataset.segment_columns:
        raise SchemaError(f"Required column {segment} missing: it is not a segment attribute of this dataset.")
    frame = workspace.query("customer_attributes", attributes=[segment])
    return frame.set_index("customer_id")[segment], dataset.segment_columns[segment]


def _fit(workspace: Engine, as_of: date, *, segment: str | None, include_repeats: bool | None, neighbours: int,
         method: str = CF, method_reason: str = "", for_check: bool = False) -> Recommender:
    """A fitted :class:`Recommender`; ``for_check``: the offline check's, which explains nothing (no product
    names) and ranks a sample of customers once (no lists kept)."""
    interactions = workspace.query("customer_product_interactions", start=_EARLIEST, end=as_of)
    names = None if for_check else workspace.query("product_names", end=as_of).set_index("product")["product_name"]
    segments, label = _segment_values(workspace, segment)
    model = Recommender(neighbours=neighbours, include_repeats=include_repeats, method=method,
                        method_reason=method_reason)
    if for_check:
        model.set_params(keep_top=0)
    return model.fit(interactions, as_of=as_of, names=names, segments=segments, segment_label=label)


def build_recommender(workspace: Engine, *, as_of: date | None = None, segment: str | None = None,
                      include_repeats: bool | None = None, neighbours: int = 50, method: str | None = None,
                      evaluation: "Evaluation | None" = None) -> Recommender:
    """A :class:`Recommender` fitted on the workspace's purchases up to ``as_of`` (inclusive; default: the last
    day of the data). ``segment`` (a segment column, e.g. ``seg_country``) makes popularity per segment.

    Its default method is ``method`` when given; else the one ``evaluation`` chose; else the one
    :func:`evaluate` chooses now on this data (a few seconds on Online Retail). When the data are too short to
    check, popularity is used and the reason says why. :class:`SchemaError` when the file has no product column.
    """
    _require_products(workspace)
    first_day, last_day = data_span(workspace)
    as_of = as_of or last_day
    if as_of < first_day:
        raise DataRangeError(f"{as_of:%d %b %Y} is before the data start ({first_day:%d %b %Y}); pick a later date.")
    if method is not None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        reason = f"{METHOD_LABELS[method]}, as asked."
    else:
        if evaluation is None:
            try:
                evaluation = evaluate(workspace, as_of=as_of, segment=segment, neighbours=neighbours)
            except DataRangeError as error:
                method, reason = POPULARITY, f"The most popular products: personalised ones cannot be checked on " \
                                             f"this data. {error}"
        if evaluation is not None:
            method, reason = evaluation.chosen, evaluation.reason
    return _fit(workspace, as_of, segment=segment, include_repeats=include_repeats, neighbours=neighbours,
                method=method, method_reason=reason)


def bought_together(workspace: Engine, product: str | None = None, *, min_orders: int = 5,
                    top: int = 10) -> pd.DataFrame:
    """Products frequently bought together, as association rules (baskets = purchase orders): per product
    (``product``: its id or exact name; None for every product) its ``top`` partners in at least ``min_orders``
    orders together, by confidence. The named query ``bought_together`` computes them in SQL (as Spark does); for
    every product of a file whose orders are large, :func:`_association_rules` computes the same rows from the
    orders' products faster.

    Columns: ``product_id, product_name, other_product_id, other_product_name, orders_both`` (orders with both),
    ``product_orders``, ``other_orders``, ``support`` (orders_both / all orders), ``confidence`` (orders_both /
    product_orders: the share of the product's orders that hold the other), ``lift`` (confidence / (other_orders /
    all orders): how many times likelier the other product is in an order with this one than in any order).
    """
    _require_products(workspace)
    if min_orders < 1 or top < 1:
        raise ValueError("min_orders and top must be at least 1")
    names = workspace.query("product_names", end=data_span(workspace)[1]).set_index("product")["product_name"]
    if product is None and _orders_are_large(workspace):
        rules = _association_rules(workspace.query("order_products"), workspace.query("purchased_products"),
                                   min_orders=int(min_orders), top=int(top))
    else:
        rules = workspace.query("bought_together", min_orders=int(min_orders), top=int(top),
                                product=None if product is None else _product_key(str(product), names))
    display = names.where(names.notna(), names.index.to_series())
    frame = pd.DataFrame({
        "product_id": rules["product"],
        "product_name": display.reindex(rules["product"]).to_numpy(),
        "other_product_id": rules["other_product"],
        "other_product_name": display.reindex(rules["other_product"]).to_numpy(),
    })
    for column in ("orders_both", "product_orders", "other_orders"):
        frame[column] = rules[column].astype(np.int64)
    for column in ("support", "confidence", "lift"):
        frame[column] = rules[column].astype(np.float64)
    return frame


def _orders_are_large(workspace: Engine) -> bool:
    """Whether purchase orders hold :data:`_LARGE_ORDER` lines or more on average: then every product's pairs are
    counted faster in Python, per pair, than by the query's self-join, which writes n x n rows for an order of n
    products."""
    size = workspace.query("purchase_order_size").iloc[0]
    return bool(size["lines"] >= _LARGE_ORDER * max(int(size["orders"]), 1))


def _association_rules(order_products: pd.DataFrame, purchased_products: pd.DataFrame, *, min_orders: int,
                       top: int) -> pd.DataFrame:
    """The named query ``bought_together``'s result for every product (its columns, rows and order), from the
    queries ``order_products`` (distinct basket and product numbers) and ``purchased_products`` (the product of each
    number): the orders holding both products of each pair are the cells of ``holds @ holds.T``, ``holds`` the
    product x basket 0/1 matrix. Exact, and several times faster than the query's self-join, whose groups of pairs
    are what DuckDB spends its time on."""
    products = purchased_products["product"].to_numpy(dtype=object)
    codes = order_products["product_key"].to_numpy(np.int64) - 1
    baskets = order_products["basket"].to_numpy(np.int64) - 1
    all_orders = int(baskets.max(initial=-1)) + 1
    orders = np.bincount(codes, minlength=len(products))
    # Two products are together in no more orders than either is in: only products in min_orders orders pair.
    frequent = np.flatnonzero(orders >= min_orders)
    row_of = np.full(len(products), -1)
    row_of[frequent] = np.arange(len(frequent))
    held = row_of[codes] >= 0
    holds = sp.csr_matrix((np.ones(int(held.sum()), dtype=np.int64), (row_of[codes[held]], baskets[held])),
                          shape=(len(frequent), all_orders))
    together = sp.csr_matrix(holds @ holds.T)
    rows = np.repeat(np.arange(len(frequent)), np.diff(together.indptr))
    paired = np.flatnonzero((together.indices != rows) & (together.data >= min_orders))
    rows, both = rows[paired], together.data[paired]
    first, second = frequent[rows], frequent[together.indices[paired]]
    # As the query computes them, in the same order of operations.
    confidence = both.astype(np.float64) / orders[first]
    # Each product's top pairs by confidence, then lift, then the other product: sorted among those at least as
    # confident as its top-th.
    best = _largest_per_row(sp.csr_matrix((confidence, together.indices[paired],
                                           np.searchsorted(paired, together.indptr)), shape=together.shape), top)
    threshold = np.full(len(frequent), -np.inf)
    threshold[best[:, -1] >= 0] = confidence[best[best[:, -1] >= 0, -1]]
    candidates = np.flatnonzero(confidence >= threshold[rows])
    first, second, both, confidence = first[candidates], second[candidates], both[candidates], confidence[candidates]
    lift = both.astype(np.float64) * all_orders / (orders[first].astype(np.float64) * orders[second])
    order = np.lexsort((second, -lift, -confidence, first))
    place = np.arange(len(order)) - np.searchsorted(first[order], first[order])
    picked = order[place < top]
    return pd.DataFrame({  # text from an object array: typed as the query's text columns are, from the values
        "product": products[first[picked]], "other_product": products[second[picked]],
        "orders_both": both[picked], "product_orders": orders[first[picked]], "other_orders": orders[second[picked]],
        "all_orders": np.full(len(picked), all_orders, dtype=np.int64),
        "support": both[picked].astype(np.float64) / all_orders, "confidence": confidence[picked],
        "lift": lift[picked],
    })


def _product_key(product: str, names: pd.Series) -> str:
    """The product key of an id or a name (exact, ignoring case); :class:`DataRangeError` naming close ones."""
    if product in names.index:
        return product
    by_name = names.dropna()
    matches = by_name.index[by_name.str.casefold() == product.casefold()]
    if len(matches):
        return str(matches[0])
    close = difflib.get_close_matches(product, list(names.index) + list(by_name), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    raise DataRangeError(f"No product {product!r} in this dataset{hint}")


# -- offline evaluation -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """How well each method would have done: recommendations from the rows up to ``cutoff`` against what
    customers bought after it, up to ``end``.

    ``table``: one row per ``method`` (cf, popularity) and ``items`` ("new items": products the customer had not
    bought or returned before the cutoff; "with repeats": all they bought after it) with ``customers`` (evaluated),
    ``precision`` (hits / top), ``recall`` (hits / products bought after the cutoff), ``hit_rate`` (share with at
    least one hit), each with ``_low`` / ``_high`` bounds of a normal ``level`` interval over customers (mean +- z
    sd / sqrt(n), clipped to [0, 1]), and
    ``coverage`` (distinct products recommended / products bought up to the cutoff). ``difference``: CF's hit rate
    minus popularity's (new items), paired over customers, with its ``difference_interval``.
    """

    cutoff: date
    end: date
    months: int
    top: int
    level: float
    eligible_customers: int
    evaluated_customers: int
    seed: int
    table: pd.DataFrame
    difference: float
    difference_interval: tuple[float, float]
    chosen: str
    reason: str
    include_repeats: bool
    repeat_share: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "cutoff": self.cutoff.isoformat(), "end": self.end.isoformat(), "months": self.months, "top": self.top,
            "level": self.level, "eligible_customers": self.eligible_customers,
            "evaluated_customers": self.evaluated_customers, "seed": self.seed,
            "chosen": self.chosen, "reason": self.reason,
            "hit_rate_difference": self.difference, "hit_rate_difference_interval": list(self.difference_interval),
            "include_repeats": self.include_repeats, "repeat_share": self.repeat_share,
            "table": [{key: (value.item() if isinstance(value, np.generic) else value) for key, value in row.items()}
                      for row in self.table.to_dict("records")],
            "notes": list(self.notes),
        }


def _interval(values: np.ndarray, z: float) -> tuple[float, float, float]:
    """Mean and its normal interval ``mean +- z sd / sqrt(n)``."""
    mean = float(values.mean()) if len(values) else math.nan
    spread = z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, mean - spread, mean + spread


def choose_method(difference: float, interval: tuple[float, float], cf_hit_rate: float, popular_hit_rate: float,
                  *, months: int, level: float) -> tuple[str, str]:
    """``(method, reason)``: CF only when its hit rate beats popularity's beyond chance (the interval of the
    paired difference lies above zero); a tie, or a loss, goes to the simpler popularity list."""
    share = f"{cf_hit_rate:.0%} of customers against {popular_hit_rate:.0%} for the most popular products"
    spread = (f"difference {difference * 100:+.1f} points, {level:.0%} interval {interval[0] * 100:+.1f} to "
              f"{interval[1] * 100:+.1f}")
    if interval[0] > 0:
        return CF, (f"Personalised recommendations: over the last {_plural(months, 'month')} they named at least "
                    f"one new product the customer then bought for {share} ({spread}).")
    return POPULARITY, (f"The most popular products: personalised recommendations did not do better beyond chance "
                        f"(at least one new product bought for {share}; {spread}), so the simpler list is used.")


def evaluate(workspace: Engine, *, months: int = 3, top: int = 10, as_of: date | None = None,
             segment: str | None = None, neighbours: int = 50, max_customers: int = 20_000, seed: int = 0,
             level: float = 0.95) -> Evaluation:
    """Hide every purchase after a cutoff ``months`` calendar months before ``as_of`` (default: the end of the
    data), fit both methods on the rows up to the cutoff only, and check their ``top`` recommendations against
    what customers who bought both before and after the cutoff then bought (up to ``max_customers`` of them, a
    fixed random draw by ``seed`` when there are more). See :class:`Evaluation` for the measures."""
    _require_products(workspace)
    if months < 1 or top < 1:
        raise ValueError("months and top must be at least 1")
    first_day, last_day = data_span(workspace)
    end = min(as_of or last_day, last_day)
    cutoff = (pd.Timestamp(end) - pd.DateOffset(months=months)).date()
    if cutoff <= first_day:
        raise DataRangeError(f"The data cover {(end - first_day).days + 1:,} days; checking recommendations hides the "
                             f"last {_plural(months, 'month')}, so it needs a longer history.")
    model = _fit(workspace, cutoff, segment=segment, include_repeats=None, neighbours=neighbours, for_check=True)
    later = workspace.query("customer_product_interactions", start=cutoff, end=end)
    returned_in_full = (later["returned"] > 0) & (later["returned"] >= later["bought"] * (1 - 1e-9))
    later = later[(later["purchase_days"] > 0) & ~returned_in_full]
    rows_of_later = model.customers_.get_indexer(later["customer_id"])
    has_history = np.diff(model.purchases_.indptr) > 0
    eligible = np.unique(rows_of_later[rows_of_later >= 0])
    eligible = eligible[has_history[eligible]]
    if len(eligible) == 0:
        raise DataRangeError(f"No customer bought both before and after {cutoff:%d %b %Y}, so there is nothing to "
                             "check recommendations against.")
    notes = []
    sample = eligible
    if len(eligible) > max_customers:
        sample = np.sort(np.random.default_rng(seed).choice(eligible, max_customers, replace=False))
        notes.append(f"Checked on a fixed random sample of {max_customers:,} of the {len(eligible):,} customers who "
                     f"bought both before and after {cutoff:%d %b %Y} (seed {seed}).")
    # What the sampled customers bought after the cutoff: a customer x product matrix (products the model knows)
    # and per customer how many products in all, and how many new ones, including products new to the catalogue.
    position = pd.Series(np.arange(len(sample)), index=sample)
    in_sample = np.isin(rows_of_later, sample)
    sample_rows = position.reindex(rows_of_later[in_sample]).to_numpy()
    later_products = model.products_.get_indexer(later["product"].to_numpy()[in_sample])
    known = later_products >= 0
    seen_before = np.zeros(len(sample_rows), dtype=bool)
    seen = model.purchases_ + model.excluded_.astype(np.float32)
    seen_before[known] = np.asarray(seen[sample[sample_rows[known]], later_products[known]]).ravel() != 0
    all_count = np.bincount(sample_rows, minlength=len(sample))
    new_count = np.bincount(sample_rows[~seen_before], minlength=len(sample))

    def truth(selected: np.ndarray) -> sp.csr_matrix:
        pick = selected & known
        return sp.csr_matrix((np.ones(int(pick.sum())), (sample_rows[pick], later_products[pick])),
                             shape=(len(sample), len(model.products_)))

    truths = {NEW_ITEMS: (truth(~seen_before), new_count), WITH_REPEATS: (truth(np.ones_like(known)), all_count)}
    catalogue = int((np.diff(model.purchases_.tocsc().indptr) > 0).sum())
    z = float(norm.ppf(0.5 + level / 2))
    records, hits_new = [], {}
    for method in METHODS:
        for items, (truth_matrix, counts) in truths.items():
            customers = np.flatnonzero(counts > 0)
            picks = [model._rank(sample[batch], top, method, items == WITH_REPEATS)["products"]
                     for batch in model._batches(customers)]
            products = np.concatenate(picks) if picks else np.empty((0, top), dtype=np.int64)
            valid = products >= 0
            rows = np.broadcast_to(customers[:, None], products.shape)
            hit = np.zeros(products.shape, dtype=bool)
            hit[valid] = np.asarray(truth_matrix[rows[valid], products[valid]]).ravel() > 0
            hits = hit.sum(axis=1)
            if items == NEW_ITEMS:
                hits_new[method] = (hits > 0).astype(np.float64)
            record = {"method": method, "items": items, "customers": len(customers)}
            for name, values in (("precision", hits / top), ("recall", hits / counts[customers]),
                                 ("hit_rate", (hits > 0).astype(np.float64))):
                mean, low, high = _interval(values, z)
                record.update({name: mean, f"{name}_low": max(low, 0.0), f"{name}_high": min(high, 1.0)})
            record["coverage"] = len(np.unique(products[valid])) / catalogue if catalogue else math.nan
            records.append(record)
    table = pd.DataFrame(records)
    if len(hits_new[CF]) == 0:
        raise DataRangeError(f"No customer bought a product after {cutoff:%d %b %Y} that they had not bought before, "
                             "so personalised recommendations cannot be checked.")
    difference, low, high = _interval(hits_new[CF] - hits_new[POPULARITY], z)
    if not math.isfinite(low):
        low, high = -math.inf, math.inf
    new_rows = table[table["items"] == NEW_ITEMS].set_index("method")["hit_rate"]
    chosen, reason = choose_method(difference, (low, high), float(new_rows[CF]), float(new_rows[POPULARITY]),
                                   months=months, level=level)
    return Evaluation(cutoff=cutoff, end=end, months=months, top=top, level=level,
                      eligible_customers=len(eligible), evaluated_customers=len(sample), seed=seed, table=table,
                      difference=difference, difference_interval=(low, high), chosen=chosen, reason=reason,
                      include_repeats=model.include_repeats_, repeat_share=model.repeat_share_, notes=tuple(notes))
