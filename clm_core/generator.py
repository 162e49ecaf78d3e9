"""Seeded synthetic transactions with known parameters, for the demo, tests and benchmarks.

The story (all vectorised, no loop over customers):

* Acquisition: first purchases spread uniformly over ``acquisition_days``
  from ``start``; observation ends at ``end``.
* Purchases: BG/NBD (Fader, Hardie and Lee 2005). While alive a customer buys
  as a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` per week; after
  each repeat purchase they drop out with probability ``p ~ Beta(a, b)``.
* Spend: Gamma-Gamma (Fader and Hardie 2013). A customer's typical order value
  has ``nu ~ Gamma(q, gamma)``; each order is worth ``Gamma(p, nu)``.
* Baskets: 1 + Poisson(1.2) lines. Products have Zipf popularity inside
  categories; each customer has a favourite category that most lines come
  from, which gives co-purchase structure.
* A ``country`` attribute with skewed shares and an ``email`` contact column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["GeneratorParams", "generate_transactions", "write_demo_file"]

_COUNTRIES = np.array(["United Kingdom", "Germany", "France", "Netherlands", "Spain", "Ireland", "Belgium",
                       "Sweden", "Italy", "United States"])
_COUNTRY_SHARES = np.array([0.55, 0.1, 0.09, 0.06, 0.05, 0.045, 0.035, 0.03, 0.025, 0.015])
_CATEGORIES = ["Candles", "Mugs", "Bags", "Stationery", "Garden", "Kitchen", "Toys", "Lights", "Cards",
               "Frames", "Textiles", "Clocks"]
_ADJECTIVES = ["Vintage", "Red", "Blue", "Spotty", "Floral", "Retro", "White", "Pastel", "Gold", "Rustic",
               "Striped", "Glass", "Wooden", "Pink", "Green", "Silver", "Heart", "Star", "Paisley", "Woodland"]


@dataclass(frozen=True)
class GeneratorParams:
    """The true parameters behind a generated dataset (rates per week)."""

    r: float = 0.75
    alpha: float = 8.0
    a: float = 0.8
    b: float = 2.5
    p: float = 6.0
    q: float = 4.0
    gamma: float = 15.0
    start: str = "2023-01-01"
    acquisition_days: int = 365
    end: str = "2024-12-31"
    n_products: int = 400
    mean_extra_lines: float = 1.2

    def to_dict(self) -> dict:
        return asdict(self)


def _products(rng: np.random.Generator, n_products: int) -> pd.DataFrame:
    category = rng.integers(0, len(_CATEGORIES), n_products)
    adjective = rng.integers(0, len(_ADJECTIVES), n_products)
    popularity = 1.0 / np.arange(1, n_products + 1) ** 1.1
    rng.shuffle(popularity)
    names = [f"{_ADJECTIVES[adj]} {_CATEGORIES[cat].rstrip('s')} No {i + 1}"
             for i, (adj, cat) in enumerate(zip(adjective, category))]
    return pd.DataFrame({
        "product_id": [f"P{i + 1:05d}" for i in range(n_products)],
        "product_name": names,
        "category": category,
        "price": np.round(np.exp(rng.normal(1.4, 0.7, n_products)), 2).clip(0.39, 120.0),
        "popularity": popularity,
    })


def _draw_products(rng: np.random.Generator, products: pd.DataFrame, favourite: np.ndarray) -> np.ndarray:
    """One product index per line: 70 % from the customer's favourite category, by popularity."""
    n_lines = len(favourite)
    overall = products["popularity"].to_numpy() / products["popularity"].sum()
    chosen = rng.choice(len(products), size=n_lines, p=overall)
    from_favourite = rng.random(n_lines) < 0.7
    categories = products["category"].to_numpy()
    for category in np.unique(favourite[from_favourite]):
        members = np.flatnonzero(categories == category)
        if len(members) == 0:
            continue
        weights = overall[members] / overall[members].sum()
        lines = np.flatnonzero(from_favourite & (favourite == category))
        chosen[lines] = members[rng.choice(len(members), size=len(lines), p=weights)]
    return chosen


def generate_transactions(n_customers: int, *, seed: int = 0, params: GeneratorParams = GeneratorParams()) -> pd.DataFrame:
    """Order lines of ``n_customers`` customers: one row per line, sorted by time.

    Columns: ``customer_id, order_id, order_date, product_id, product_name,
    quantity, unit_price, amount, country, email``.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp(params.start), pd.Timestamp(params.end)
    span_days = (end - start).days + 1
    first_day = rng.uniform(0, min(params.acquisition_days, span_days - 1), n_customers)
    horizon_weeks = (span_days - first_day) / 7.0

    rate = rng.gamma(params.r, 1.0 / params.alpha, n_customers)
    dropout = rng.beta(params.a, params.b, n_customers)
    # Repeat purchases while alive: the first J events of the Poisson process,
    # J ~ Geometric(p); those inside the horizon: min(J, N), N ~ Poisson(rate * H).
    alive_repeats = rng.geometric(np.clip(dropout, 1e-9, 1.0))
    events_in_horizon = rng.poisson(rate * horizon_weeks)
    repeats = np.minimum(alive_repeats, events_in_horizon)

    # Event times of a Poisson process given N events are N sorted uniforms; keep the first `repeats`.
    owners = np.repeat(np.arange(n_customers), events_in_horizon)
    uniforms = rng.random(len(owners)) * np.repeat(horizon_weeks, events_in_horizon)
    order = np.lexsort((uniforms, owners))
    owners, uniforms = owners[order], uniforms[order]
    position = np.arange(len(owners)) - np.repeat(np.cumsum(events_in_horizon) - events_in_horizon, events_in_horizon)
    keep = position < np.repeat(repeats, events_in_horizon)
    repeat_owner, repeat_weeks = owners[keep], uniforms[keep]

    order_owner = np.concatenate([np.arange(n_customers), repeat_owner])
    order_day = np.concatenate([first_day, first_day[repeat_owner] + repeat_weeks * 7.0])
    n_orders = len(order_owner)

    nu = rng.gamma(params.q, 1.0 / params.gamma, n_customers)
    order_value = rng.gamma(params.p, 1.0 / nu[order_owner])

    lines_per_order = 1 + rng.poisson(params.mean_extra_lines, n_orders)
    line_order = np.repeat(np.arange(n_orders), lines_per_order)
    shares = rng.gamma(1.0, 1.0, len(line_order))
    shares /= np.bincount(line_order, weights=shares)[line_order]
    line_value = order_value[line_order] * shares

    products = _products(np.random.default_rng(seed + 1), params.n_products)
    favourite = rng.integers(0, len(_CATEGORIES), n_customers)
    line_owner = order_owner[line_order]
    product_index = _draw_products(rng, products, favourite[line_owner])
    list_price = products["price"].to_numpy()[product_index]
    quantity = np.maximum(1, np.round(line_value / list_price)).astype(np.int64)
    # A product drawn twice for one order becomes one line with the summed quantity and value.
    line_key, first_line, inverse = np.unique(
        line_order * params.n_products + product_index, return_index=True, return_inverse=True
    )
    quantity = np.bincount(inverse, weights=quantity).astype(np.int64)
    line_value = np.bincount(inverse, weights=line_value)
    line_order, product_index, line_owner = line_order[first_line], product_index[first_line], line_owner[first_line]
    # The line carries its drawn value, so an order is worth its Gamma(p, nu) draw (to the cent); the unit
    # price is that value per unit, near the list price, as if discounted or marked up.
    amount = np.maximum(0.01, np.round(line_value, 2))
    unit_price = np.round(amount / quantity, 4)

    order_ts = start + pd.to_timedelta(np.floor(order_day[line_order] * 86400), unit="s")
    country = _COUNTRIES[rng.choice(len(_COUNTRIES), n_customers, p=_COUNTRY_SHARES)]
    order_sequence = np.argsort(order_day, kind="stable")
    order_number = np.empty(n_orders, dtype=np.int64)
    order_number[order_sequence] = np.arange(n_orders) + 100001

    frame = pd.DataFrame({
        "customer_id": (line_owner + 10001).astype(str),
        "order_id": pd.Series(order_number[line_order]).map("SO{}".format),
        "order_date": order_ts,
        "product_id": products["product_id"].to_numpy()[product_index],
        "product_name": products["product_name"].to_numpy()[product_index],
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": amount,
        "country": country[line_owner],
        "email": pd.Series(line_owner + 10001).map("customer{}@example.com".format),
    })
    return frame.sort_values(["order_date", "order_id"], kind="stable").reset_index(drop=True)


def write_demo_file(n_customers: int, path: str | Path, *, seed: int = 0,
                    params: GeneratorParams = GeneratorParams()) -> int:
    """Write generated transactions to CSV (gzip if the name ends in .gz) or Parquet; return the row count."""
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    frame = generate_transactions(n_customers, seed=seed, params=params)
    path = Path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
        return len(frame)
    table = pa.Table.from_pandas(
        frame.assign(order_date=frame["order_date"].dt.strftime("%Y-%m-%d %H:%M:%S")), preserve_index=False
    )
    options = pa_csv.WriteOptions(quoting_style="needed")
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=6) as handle:
            pa_csv.write_csv(table, handle, write_options=options)
    else:
        pa_csv.write_csv(table, path, write_options=options)
    return len(frame)
