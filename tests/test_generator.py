"""The synthetic generator reproduces the moments of the stories it claims to follow."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from clm_core.generator import GeneratorParams, generate_transactions


def test_seeded_and_well_formed():
    first = generate_transactions(300, seed=5)
    assert first.equals(generate_transactions(300, seed=5))
    assert not first.equals(generate_transactions(300, seed=6))
    assert first["customer_id"].nunique() == 300
    assert not first.duplicated().any()
    assert (first["amount"] > 0).all() and (first["quantity"] >= 1).all()
    # unit prices carry four decimals, so quantity x unit price rebuilds the amount to within that rounding
    assert np.allclose(first["amount"], first["quantity"] * first["unit_price"], rtol=0,
                       atol=0.005 + 5e-5 * first["quantity"].max())
    per_order = first.groupby("order_id")["customer_id"].nunique()
    assert (per_order == 1).all()


def test_repeat_purchases_follow_bgnbd_expectation():
    """Mean repeat purchases equal E[X(t)] of BG/NBD (eq. 9 of Fader, Hardie and Lee 2005) averaged over t."""
    params = GeneratorParams(acquisition_days=0, end="2023-12-31")  # everyone starts 1 Jan, t = 52 weeks
    frame = generate_transactions(40_000, seed=11, params=params)
    repeats = frame.groupby("customer_id")["order_id"].nunique() - 1
    t = 365 / 7  # 1 Jan 00:00 to 31 Dec 24:00, in weeks
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + t)
    expected = (a + b - 1) / (a - 1) * (1 - ((alpha / (alpha + t)) ** r) * special.hyp2f1(r, b, a + b - 1, z))
    standard_error = repeats.std() / np.sqrt(len(repeats))
    assert abs(repeats.mean() - expected) < 4 * standard_error


def test_order_values_follow_gamma_gamma_mean():
    params = GeneratorParams(mean_extra_lines=0.0)
    frame = generate_transactions(20_000, seed=2, params=params)
    orders = frame.groupby(["customer_id", "order_id"], as_index=False)["amount"].sum()
    expected = params.p * params.gamma / (params.q - 1)
    # Orders of one customer share nu, so the standard error is taken over customers' totals (ratio estimator).
    per_customer = orders.groupby("customer_id")["amount"].agg(["sum", "size"])
    mean = per_customer["sum"].sum() / per_customer["size"].sum()
    residual = per_customer["sum"] - mean * per_customer["size"]
    standard_error = np.sqrt((residual ** 2).sum()) / per_customer["size"].sum()
    assert abs(mean - expected) < 4 * standard_error


def test_products_are_skewed_and_categories_cluster():
    frame = generate_transactions(3000, seed=1)
    shares = frame["product_id"].value_counts(normalize=True)
    assert shares.iloc[:20].sum() > 0.25  # Zipf head
    category = frame["product_name"].str.split().str[1]
    top_share = frame.assign(category=category).groupby("customer_id")["category"].agg(
        lambda values: values.value_counts(normalize=True).iloc[0])
    many = frame.groupby("customer_id").size() >= 8
    assert top_share[many].mean() > 0.5
    assert isinstance(frame["order_date"].iloc[0], pd.Timestamp)
