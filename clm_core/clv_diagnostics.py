"""Checks of a CLV fit, each ending in a sentence a marketer can act on.

* :func:`dropout_test`: can the data tell who has left? A likelihood-ratio test
  of the purchase model against the nested NBD, in which nobody ever drops out
  (BG/NBD with ``a -> 0``, Pareto/NBD with ``s -> 0``). The nested value lies on
  the boundary of the parameter space, so the statistic is referred to an equal
  mixture of chi-square(0) and chi-square(1) (Self and Liang 1987): p = P(chi2_1 > LR) / 2.
* :func:`spend_frequency_correlation`: Gamma-Gamma assumes a customer's order
  value does not depend on how often they buy; Spearman's rank correlation of
  repeat purchases and mean repeat order value over the customers it is fitted on.
* :func:`diagnose`: those two, the optimiser's convergence and parameters on a
  bound, as :class:`Finding` rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from clm_core.clv import CustomerSummary, FittedCLV
from clm_core.clv_models import NBDModel

__all__ = ["Finding", "DROPOUT_P_VALUE", "DROPOUT_RELATIVE_SE", "SPEND_CORRELATION_LIMIT", "dropout_test",
           "spend_frequency_correlation", "diagnose"]

# Drop-out counts as not identified when the no-drop-out model is not rejected at 5 %, or when the drop-out
# shape's standard error exceeds its estimate (its 95 % interval spans more than a factor of 50).
DROPOUT_P_VALUE = 0.05
DROPOUT_RELATIVE_SE = 1.0
# |Spearman| above 0.1 with p < 0.01: order value visibly rises (or falls) with frequency.
SPEND_CORRELATION_LIMIT = 0.1


@dataclass(frozen=True)
class Finding:
    """One check: ``ok`` (no warning needed), a short ``title``, the plain-words ``message`` and its statistic."""

    check: str
    ok: bool
    title: str
    message: str
    statistic: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def dropout_test(summary: CustomerSummary, fitted: FittedCLV) -> dict[str, float]:
    """Likelihood ratio of the purchase model against the no-drop-out NBD on the same customers.

    Returns ``lr_statistic`` (2 x the log-likelihood gain, >= 0), ``p_value`` (boundary mixture),
    ``nbd_log_likelihood``, ``dropout_parameter`` (its name), ``dropout_value``, ``dropout_relative_se``
    (standard error over estimate; inf on a bound) and ``alive_99_share`` (share of customers with
    P(alive) >= 0.99).
    """
    (x, recency, T), counts, _ = summary.compressed
    model = fitted.purchase
    nested = NBDModel().fit(x, recency, T, weights=counts)
    statistic = max(0.0, 2.0 * (model.log_likelihood_ - nested.log_likelihood_))
    name = model.dropout_shape
    value = float(model.params_[name])
    se = float(model.params_se_[name]) if hasattr(model, "params_se_") else np.nan
    relative = np.inf if name in getattr(model, "at_bound_", ()) or not np.isfinite(se) else se / value
    with np.errstate(all="ignore"):
        alive = model.probability_alive(x, recency, T)
    return {
        "lr_statistic": statistic,
        "p_value": 0.5 * float(stats.chi2.sf(statistic, 1)) if statistic > 0 else 0.5,
        "nbd_log_likelihood": nested.log_likelihood_,
        "dropout_parameter": name,
        "dropout_value": value,
        "dropout_relative_se": float(relative),
        "alive_99_share": float(counts @ (alive >= 0.99) / counts.sum()),
    }


def spend_frequency_correlation(summary: CustomerSummary) -> dict[str, float]:
    """Spearman's rho (and its p-value) of frequency and mean repeat order value over the customers the spend
    model is fitted on (frequency > 0 and a positive repeat value); ``customers`` is how many."""
    frame = summary.frame
    used = (frame["spend_frequency"] > 0) & (frame["monetary_value"] > 0)
    if used.sum() < 3:
        return {"spearman": np.nan, "p_value": np.nan, "customers": int(used.sum())}
    result = stats.spearmanr(frame.loc[used, "spend_frequency"], frame.loc[used, "monetary_value"])
    return {"spearman": float(result.statistic), "p_value": float(result.pvalue), "customers": int(used.sum())}


def _dropout_finding(summary: CustomerSummary, fitted: FittedCLV) -> Finding:
    test = dropout_test(summary, fitted)
    name, value = test["dropout_parameter"], test["dropout_value"]
    lr = f"likelihood-ratio statistic {test['lr_statistic']:.2f}, p = {test['p_value']:.2g}"
    relative = test["dropout_relative_se"]
    if name in getattr(fitted.purchase, "at_bound_", ()):
        spread = "it sits on the edge of its range"
    elif not np.isfinite(relative):
        spread = "the data carry no information about it, so it has no standard error"
    else:
        spread = f"its standard error is {relative:.1f} times the estimate"
    if test["p_value"] > DROPOUT_P_VALUE or relative > DROPOUT_RELATIVE_SE:
        return Finding(
            "dropout", False, "This data cannot tell who has left",
            f"A model in which nobody ever stops buying fits your data just as well ({lr}); the drop-out parameter "
            f"{name} = {value:.3g} is not pinned down ({spread}). Treat 'probability still active' with care: it is "
            f"99 % or more for {test['alive_99_share']:.0%} of customers because the model sees no evidence of anyone "
            "leaving, not because they are all loyal. Purchase and CLV predictions assume today's buyers keep buying.",
            test["lr_statistic"])
    return Finding(
        "dropout", True, "Customers who left can be told apart",
        f"The model with drop-out fits clearly better than one in which nobody leaves ({lr}), so the probability "
        "that a customer is still active carries information.", test["lr_statistic"])


def _spend_finding(summary: CustomerSummary) -> Finding:
    result = spend_frequency_correlation(summary)
    rho, p_value = result["spearman"], result["p_value"]
    if not np.isfinite(rho):
        return Finding("spend_independence", True, "Order value and frequency",
                       "Too few repeat customers with a positive repeat value to test.", None)
    measured = f"Spearman correlation {rho:.2f} over {result['customers']:,} repeat customers, p = {p_value:.1g}"
    if abs(rho) > SPEND_CORRELATION_LIMIT and p_value < 0.01:
        direction = "more" if rho > 0 else "less"
        return Finding(
            "spend_independence", False, "Order value depends on how often customers buy",
            f"Customers who buy more often spend {direction} per order ({measured}). The spend model assumes the two "
            f"are unrelated, so its expected order values are {'too low' if rho > 0 else 'too high'} for frequent "
            f"buyers and {'too high' if rho > 0 else 'too low'} for occasional ones; rankings by CLV are less affected "
            "than the amounts.", rho)
    return Finding("spend_independence", True, "Order value does not depend on frequency",
                   f"As the spend model assumes ({measured}; warning above {SPEND_CORRELATION_LIMIT}).", rho)


def _fit_findings(model, role: str) -> list[Finding]:
    findings = []
    if getattr(model, "converged_", True):
        findings.append(Finding(f"{role}_convergence", True, f"{model.label} fit converged",
                                f"The optimiser converged in {model.iterations_} iterations.", None))
    else:
        findings.append(Finding(
            f"{role}_convergence", False, f"{model.label} fit did not fully converge",
            f"The optimiser stopped after {model.iterations_} iterations without meeting its tolerance "
            f"({model.convergence_message_}). The estimates may still move; treat the predictions as rough.", None))
    for name in getattr(model, "at_bound_", ()):
        findings.append(Finding(
            f"{role}_bound", False, f"{model.label}: {name} at its limit",
            f"Parameter {name} reached the edge of its range ({model.params_[name]:.3g}): nobody seems to stop buying, "
            "so this model treats every customer as still active and has no standard error for it.", None))
    return findings


def diagnose(summary: CustomerSummary, fitted: FittedCLV) -> list[Finding]:
    """Every check of a fit: purchase-model convergence and bounds, drop-out identification, and (with a spend
    model) its convergence and the order-value / frequency independence."""
    findings = _fit_findings(fitted.purchase, "purchase")
    findings.append(_dropout_finding(summary, fitted))
    if fitted.spend is not None:
        findings += _fit_findings(fitted.spend, "spend")
        findings.append(_spend_finding(summary))
    return findings
