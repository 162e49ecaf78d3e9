"""Diagnostics of a CLV fit: drop-out identification (likelihood ratio against the NBD), the Gamma-Gamma
independence assumption (Spearman) against scipy on an independently built Online Retail frame, and CDNOW."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clm_core.clv import customer_summary, fit_clv_models
from clm_core.clv_diagnostics import diagnose, dropout_test, spend_frequency_correlation
from clm_core.ingest import IngestOptions
from clm_core.workspace import Workspace


@pytest.fixture(scope="module")
def retail(online_retail_workspace):
    summary = customer_summary(online_retail_workspace[0], unit="week")
    return summary, fit_clv_models(summary, purchase_model="bgnbd")


@pytest.fixture(scope="module")
def cdnow(cdnow_sample_path, tmp_path_factory):
    with Workspace(tmp_path_factory.mktemp("cdnow_diag") / "cdnow.duckdb") as workspace:
        workspace.ingest(cdnow_sample_path, options=IngestOptions(keep_duplicates=True))
        summary = customer_summary(workspace, unit="week", calibration_end=date(1997, 9, 30))
    return summary, fit_clv_models(summary, purchase_model="bgnbd")


def _independent_retail_spend(path) -> pd.DataFrame:
    """Frequency and mean repeat purchase-day value per customer from the raw file with pandas (purchase lines
    only; returns are not netted here, so the value differs slightly from the app's netted summary)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).drop_duplicates()
    raw = raw[raw["CustomerID"] != ""]
    quantity, price = raw["Quantity"].astype(float), raw["UnitPrice"].astype(float)
    purchase = ~((quantity < 0) | (price < 0) | raw["InvoiceNo"].str.match(r"^[Cc][0-9]"))
    lines = raw.loc[purchase].assign(day=raw["InvoiceDate"].str[:10], value=quantity * price)
    days = lines.groupby(["CustomerID", "day"], as_index=False)["value"].sum().sort_values(["CustomerID", "day"])
    by_customer = days.groupby("CustomerID")["value"]
    frequency = by_customer.size() - 1
    repeat = (by_customer.sum() - by_customer.first()) / frequency.where(frequency > 0)
    frame = pd.DataFrame({"frequency": frequency, "monetary_value": repeat})
    return frame[(frame["frequency"] > 0) & (frame["monetary_value"] > 0)]


def test_spend_depends_on_frequency_on_online_retail(retail, online_retail_path):
    summary, fitted = retail
    ours = spend_frequency_correlation(summary)
    independent = _independent_retail_spend(online_retail_path)
    reference = stats.spearmanr(independent["frequency"], independent["monetary_value"])
    # Same customers up to the app's netting of returns: the correlations agree to a few hundredths.
    assert ours["spearman"] == pytest.approx(reference.statistic, abs=0.03)
    assert abs(ours["customers"] - len(independent)) < 0.03 * len(independent)
    assert ours["spearman"] > 0.15 and ours["p_value"] < 1e-20
    finding = next(f for f in diagnose(summary, fitted) if f.check == "spend_independence")
    assert not finding.ok and "spend more per order" in finding.message


def test_dropout_is_not_identified_on_online_retail(retail):
    summary, fitted = retail
    test = dropout_test(summary, fitted)
    assert test["lr_statistic"] < 2.71 and test["p_value"] > 0.05  # no better than nobody leaving
    assert test["alive_99_share"] > 0.95
    finding = next(f for f in diagnose(summary, fitted) if f.check == "dropout")
    assert not finding.ok and "cannot tell who has left" in finding.title
    assert "Treat 'probability still active' with care" in finding.message


def test_dropout_is_identified_on_cdnow(cdnow):
    summary, fitted = cdnow
    test = dropout_test(summary, fitted)
    # The NBD fitted independently by scipy on the same customers gives the same likelihood-ratio statistic.
    (x, recency, T), counts, _ = summary.compressed

    def nbd_negative_log_likelihood(log_params):
        r, alpha = np.exp(log_params)
        from scipy.special import gammaln
        return -counts @ (gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T))

    from scipy.optimize import minimize
    nbd = minimize(nbd_negative_log_likelihood, np.zeros(2), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 4000})
    assert test["lr_statistic"] == pytest.approx(2 * (fitted.purchase.log_likelihood_ + nbd.fun), abs=0.01)
    assert test["lr_statistic"] > 100 and test["dropout_relative_se"] < 0.5
    finding = next(f for f in diagnose(summary, fitted) if f.check == "dropout")
    assert finding.ok


def test_convergence_is_always_reported(cdnow):
    summary, fitted = cdnow
    checks = {finding.check: finding for finding in diagnose(summary, fitted)}
    assert checks["purchase_convergence"].ok and checks["spend_convergence"].ok
    assert "iterations" in checks["purchase_convergence"].message
