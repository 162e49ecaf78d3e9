"""Buy-till-you-die models of repeat purchasing and spend, fitted by maximum likelihood.

* :class:`BetaGeoModel`: BG/NBD (Fader, Hardie and Lee 2005, "Counting your
  customers the easy way"). While alive a customer buys at Poisson rate
  ``lambda ~ Gamma(r, alpha)``; after each purchase they drop out with
  probability ``p ~ Beta(a, b)``.
* :class:`ParetoNBDModel`: Pareto/NBD (Schmittlein, Morrison and Colombo 1987;
  likelihood as in Fader and Hardie 2005, "A note on deriving the Pareto/NBD
  model"). Lifetimes are exponential with rate ``mu ~ Gamma(s, beta)``.
* :class:`GammaGammaModel`: spend per transaction (Fader and Hardie 2013,
  "The Gamma-Gamma model of monetary value"). Spend is ``Gamma(p, nu)`` with
  ``nu ~ Gamma(q, gamma)``.

Inputs are customer-level arrays: ``frequency`` (repeat purchases, an integer
>= 0), ``recency`` (time of the last purchase since the first, ``t_x``) and
``T`` (time from the first purchase to the end of observation), in one time
unit, plus optional ``weights`` (how many customers share that row, so that
identical customers are evaluated once). Everything is vectorised over
customers; the log-likelihoods are computed in log space with a log-sum-exp
guard and optimised over log-parameters (so they stay positive) with L-BFGS-B.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import betaln, digamma, gammaln, hyp2f1

from clm_core.errors import ConvergenceError, DataRangeError

__all__ = ["BetaGeoModel", "ParetoNBDModel", "GammaGammaModel", "compress_rows"]

# Log-parameters are kept within +-18 (about 1e-8 to 1e8); an estimate on that bound has run off.
_LOG_BOUND = 18.0


def compress_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of the given columns, how often each occurs, and the map back.

    Returns ``(unique_columns, counts, inverse)`` so that
    ``unique_columns[j][inverse]`` rebuilds column ``j``.
    """
    frame = pd.DataFrame({f"c{j}": np.asarray(column) for j, column in enumerate(columns)})
    codes, uniques = pd.MultiIndex.from_frame(frame).factorize()
    counts = np.bincount(codes, minlength=len(uniques))
    unique_columns = [np.asarray(uniques.get_level_values(j)) for j in range(len(columns))]
    return unique_columns, counts.astype(float), codes


def _as_arrays(*values) -> list[np.ndarray]:
    return [np.asarray(value, dtype=float) for value in values]


class _Model:
    """Shared fitting machinery: settings in ``__init__``, ``fit`` returns self, fitted attributes end in ``_``."""

    param_names: tuple[str, ...] = ()
    label = ""

    def __init__(self, *, penalizer: float = 0.0, max_iter: int = 2000, tol: float = 1e-12) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.tol = tol

    # Subclasses give the per-row log-likelihood and, where they can, its gradient in the natural parameters.
    def _row_log_likelihood(self, params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        raise NotImplementedError

    def _row_gradient(self, params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray | None:
        return None

    def _start(self, data: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        return [np.zeros(len(self.param_names))]

    @property
    def _has_gradient(self) -> bool:
        return type(self)._row_gradient is not _Model._row_gradient

    def _penalised_loss(self, log_params: np.ndarray, data, weights: np.ndarray, total: float) -> float:
        """Mean negative log-likelihood (plus the L2 penalty) at ``exp(log_params)``."""
        params = np.exp(log_params)
        with np.errstate(all="ignore"):
            rows = self._row_log_likelihood(params, data)
            return float(-(weights @ rows) / total + self.penalizer * float(params @ params))

    def _objective(self, log_params: np.ndarray, data, weights: np.ndarray, total: float):
        value = self._penalised_loss(log_params, data, weights, total)
        if not self._has_gradient:
            return value
        if not np.isfinite(value):
            return np.inf, np.zeros_like(log_params)
        params = np.exp(log_params)
        gradient = self._row_gradient(params, data)
        with np.errstate(all="ignore"):
            natural = -(gradient @ weights) / total + 2 * self.penalizer * params
        return value, natural * params  # chain rule: d/dlog(theta) = theta * d/dtheta

    def _fit(self, data: tuple[np.ndarray, ...], weights: np.ndarray | None) -> None:
        size = len(data[0])
        weights = np.ones(size) if weights is None else np.asarray(weights, dtype=float)
        total = float(weights.sum())
        starts = [start for start in self._start(data)
                  if np.isfinite(self._penalised_loss(start, data, weights, total))]
        if not starts:
            raise ConvergenceError(
                f"The {self.label} model cannot be computed on these numbers: its likelihood overflows. "
                "Check for absurdly large amounts or durations in the data."
            )
        best = None
        for start in starts:
            result = optimize.minimize(
                self._objective, start, args=(data, weights, total), jac=self._has_gradient or None,
                method="L-BFGS-B", bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
                options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-9, "maxcor": 30},
            )
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
            if result.success and np.all(np.abs(result.x) < _LOG_BOUND - 0.1):
                break  # the next start is only a fallback
        if best is None or not np.all(np.isfinite(best.x)):
            raise ConvergenceError(
                f"The {self.label} model could not be fitted to this data (the optimiser found no finite "
                "likelihood). Try a longer calibration period or the other purchase model."
            )
        if np.any(np.abs(best.x) >= _LOG_BOUND - 0.1):
            worst = int(np.argmax(np.abs(best.x)))
            raise ConvergenceError(
                f"The {self.label} model did not converge: parameter {self.param_names[worst]} ran off to an extreme "
                f"value ({np.exp(best.x[worst]):.3g}), so the estimate is not reliable. This happens "
                "with very few customers or repeat purchases, or when nobody seems to stop buying. Try a longer "
                "calibration period or the other model."
            )
        params = np.exp(best.x)
        with np.errstate(all="ignore"):
            log_likelihood = float(weights @ self._row_log_likelihood(params, data))
        if not np.isfinite(log_likelihood):
            raise ConvergenceError(f"The {self.label} model's likelihood is not finite at its estimate.")
        self.params_ = pd.Series(params, index=list(self.param_names), name="value")
        self.log_likelihood_ = log_likelihood
        self.n_customers_ = int(round(total))
        self.iterations_ = int(best.nit)

    def _check_fitted(self) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise ValueError(f"This {type(self).__name__} is not fitted yet; call fit first.")
        return self.params_.to_numpy()

    def set_params(self, **params: float) -> "_Model":
        """Use given parameter values (a published estimate, say) instead of fitting."""
        missing = [name for name in self.param_names if name not in params]
        if missing:
            raise ValueError(f"Required parameter {missing[0]} missing")
        self.params_ = pd.Series([float(params[name]) for name in self.param_names], index=list(self.param_names),
                                 name="value")
        return self

    @property
    def summary(self) -> pd.DataFrame:
        """Parameters with their values, and the fit's log-likelihood."""
        values = self._check_fitted()
        frame = pd.DataFrame({"parameter": list(self.param_names), "value": values})
        frame.attrs["log_likelihood"] = getattr(self, "log_likelihood_", np.nan)
        return frame


def _check_purchase_data(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frequency, recency, T = _as_arrays(frequency, recency, T)
    if not (len(frequency) == len(recency) == len(T)):
        raise ValueError("frequency, recency and T must have the same length")
    if len(frequency) == 0:
        raise DataRangeError("There are no customers to fit the model to.")
    if np.any(frequency < 0) or np.any(frequency != np.round(frequency)):
        raise ValueError("frequency must be whole numbers >= 0")
    if np.any(recency < 0) or np.any(recency > T + 1e-9):
        raise ValueError("recency must lie between 0 and T")
    if not np.any(frequency > 0):
        raise DataRangeError(
            "No customer bought more than once in the calibration period, so repeat buying cannot be "
            "modelled. Use a longer calibration period or a dataset with repeat customers."
        )
    return frequency, recency, T


class _PurchaseModel(_Model):
    """A model of how many purchases customers make and whether they are still alive."""

    def fit(self, frequency, recency, T, *, weights=None) -> "_PurchaseModel":
        """Fit by maximum likelihood; returns self with ``params_`` and ``log_likelihood_``."""
        data = _check_purchase_data(frequency, recency, T)
        self._fit(data, weights)
        return self

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood at the fitted (or set) parameters."""
        params = self._check_fitted()
        return self._row_log_likelihood(params, tuple(_as_arrays(frequency, recency, T)))

    def expected_purchases_new_customer(self, t) -> np.ndarray:
        """E[X(t)]: expected repeat purchases in ``t`` units after a customer's first purchase."""
        raise NotImplementedError

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` units for each customer."""
        raise NotImplementedError

    def probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive | x, t_x, T) at the end of observation."""
        raise NotImplementedError


class BetaGeoModel(_PurchaseModel):
    """BG/NBD: parameters ``r, alpha`` (purchase rate) and ``a, b`` (drop-out after each purchase)."""

    param_names = ("r", "alpha", "a", "b")
    label = "BG/NBD"

    @staticmethod
    def _terms(params, data):
        r, alpha, a, b = params
        x, t_x, T = data
        repeat = x > 0
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
                      -np.inf)
        return a1, a2, a3, a4

    def _row_log_likelihood(self, params, data):
        """Equation (6) of Fader, Hardie and Lee (2005), in logs: A1 + A2 + log(e^A3 + [x>0] e^A4)."""
        a1, a2, a3, a4 = self._terms(params, data)
        return a1 + a2 + np.logaddexp(a3, a4)

    def _row_gradient(self, params, data):
        r, alpha, a, b = params
        x, t_x, T = data
        _, _, a3, a4 = self._terms(params, data)
        w4 = np.exp(a4 - np.logaddexp(a3, a4))  # weight of the "dropped out after the last purchase" branch
        w3 = 1.0 - w4
        safe = np.where(x > 0, b + x - 1, 1.0)
        d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
        d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
        d_a = digamma(a + b) - digamma(a + b + x) + w4 / a
        d_b = digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x) - w4 / safe
        return np.vstack([d_r, d_alpha, d_a, d_b])

    def _start(self, data):
        return [np.zeros(4), np.log([0.5, 5.0, 0.8, 2.5])]

    def expected_purchases_new_customer(self, t):
        """Equation (7) of Fader, Hardie and Lee (2005)."""
        r, alpha, a, b = self._check_fitted()
        t = np.asarray(t, dtype=float)
        z = t / (alpha + t)
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))

    def probability_alive(self, frequency, recency, T):
        """Equation (A10) of Fader, Hardie and Lee (2005 note): 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
        r, alpha, a, b = self._check_fitted()
        x, t_x, T = _as_arrays(frequency, recency, T)
        log_odds = np.log(a) - np.log(np.where(x > 0, b + x - 1, 1.0)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_odds, 700))), 1.0)

    def expected_purchases(self, t, frequency, recency, T):
        """Equation (10) of Fader, Hardie and Lee (2005)."""
        r, alpha, a, b = self._check_fitted()
        x, t_x, T = _as_arrays(frequency, recency, T)
        t = np.asarray(t, dtype=float)
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * body * self.probability_alive(x, t_x, T)


class ParetoNBDModel(_PurchaseModel):
    """Pareto/NBD: parameters ``r, alpha`` (purchase rate) and ``s, beta`` (lifetime)."""

    param_names = ("r", "alpha", "s", "beta")
    label = "Pareto/NBD"

    @staticmethod
    def _log_a0(params, data):
        """log A0 of equation (19)-(20) in Fader and Hardie (2005), choosing the convergent hypergeometric series."""
        r, alpha, s, beta = params
        x, t_x, T = data
        if alpha >= beta:
            high, low, second = alpha, beta, s + 1
        else:
            high, low, second = beta, alpha, r + x
        rsx = r + s + x
        gap = high - low
        p1 = hyp2f1(rsx, second, rsx + 1, gap / (high + t_x))
        p2 = hyp2f1(rsx, second, rsx + 1, gap / (high + T))
        q1, q2 = high + t_x, high + T
        # log(p1 / q1^rsx - p2 / q2^rsx), the difference taken in log space.
        first, last = np.log(p1) + rsx * np.log(q2), np.log(p2) + rsx * np.log(q1)
        return first + np.log1p(-np.exp(np.minimum(last - first, 0.0))) - rsx * (np.log(q1) + np.log(q2))

    def _row_log_likelihood(self, params, data):
        """Equation (18) of Fader and Hardie (2005), in logs."""
        r, alpha, s, beta = params
        x, t_x, T = data
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dead = np.log(s) - np.log(r + s + x) + self._log_a0(params, data)
        # When t_x == T the "dead" branch is exactly zero (its A0 vanishes).
        return head + np.where(np.isfinite(dead), np.logaddexp(alive, dead), alive)

    def _start(self, data):
        return [np.zeros(4), np.log([0.5, 10.0, 0.5, 10.0])]

    def expected_purchases_new_customer(self, t):
        """E[X(t)] = r beta / (alpha (s - 1)) [1 - (beta / (beta + t))^(s-1)]; the log form at s = 1."""
        r, alpha, s, beta = self._check_fitted()
        t = np.asarray(t, dtype=float)
        return r * beta / alpha * self._lifetime_factor(s, beta, t)

    @staticmethod
    def _lifetime_factor(s, base, t):
        """[1 - (base / (base + t))^(s-1)] / (s - 1), which tends to log((base + t) / base) as s -> 1."""
        if abs(s - 1) < 1e-8:
            return np.log((base + t) / base)
        return (1 - (base / (base + t)) ** (s - 1)) / (s - 1)

    def _log_alive_numerator(self, params, data):
        r, alpha, s, beta = params
        x, _, T = data
        return (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
                - (r + x) * np.log(alpha + T) - s * np.log(beta + T))

    def probability_alive(self, frequency, recency, T):
        """Equation (11) of Fader and Hardie (2005): the "still alive" share of the likelihood."""
        params = self._check_fitted()
        data = tuple(_as_arrays(frequency, recency, T))
        with np.errstate(all="ignore"):
            return np.exp(self._log_alive_numerator(params, data) - self._row_log_likelihood(params, data))

    def expected_purchases(self, t, frequency, recency, T):
        """Equation (22) of Fader and Hardie (2005): (r+x)(beta+T)/(alpha+T) * factor * P(alive)."""
        r, alpha, s, beta = self._check_fitted()
        x, t_x, T = _as_arrays(frequency, recency, T)
        t = np.asarray(t, dtype=float)
        rate = (r + x) * (beta + T) / (alpha + T)
        factor = self._lifetime_factor(s, beta + T, t)
        return rate * factor * self.probability_alive(x, t_x, T)


class GammaGammaModel(_Model):
    """Gamma-Gamma spend: ``p`` (shape of order values), ``q`` and ``gamma`` (spread of customers' mean spend)."""

    param_names = ("p", "q", "gamma")
    label = "Gamma-Gamma"

    def fit(self, frequency, monetary_value, *, weights=None) -> "GammaGammaModel":
        """Fit on repeat customers (frequency > 0) with a positive mean repeat spend; returns self."""
        frequency, monetary_value = _as_arrays(frequency, monetary_value)
        usable = (frequency > 0) & (monetary_value > 0)
        if usable.sum() < 2:
            raise DataRangeError(
                "Fewer than two customers made a repeat purchase with a positive amount, so spend per order "
                "cannot be modelled."
            )
        if weights is not None:
            weights = np.asarray(weights, dtype=float)[usable]
        self._fit((frequency[usable], monetary_value[usable]), weights)
        p, q, _ = self.params_
        if q <= 1:
            raise ConvergenceError(
                f"Spend per order is too uneven for the Gamma-Gamma model (q = {q:.2f} <= 1 means the expected "
                "spend is infinite). Exclude very large (wholesale) orders or use a longer period."
            )
        return self

    def _row_log_likelihood(self, params, data):
        """Equation (3) of Fader and Hardie (2013), the density of a customer's mean spend m over x purchases."""
        p, q, gamma = params
        x, m = data
        px = p * x
        return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma) + (px - 1) * np.log(m)
                + px * np.log(x) - (px + q) * np.log(gamma + m * x))

    def _row_gradient(self, params, data):
        p, q, gamma = params
        x, m = data
        px = p * x
        d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - np.log(gamma + m * x))
        d_q = digamma(px + q) - digamma(q) + np.log(gamma) - np.log(gamma + m * x)
        d_gamma = q / gamma - (px + q) / (gamma + m * x)
        return np.vstack([d_p, d_q, d_gamma])

    def _start(self, data):
        x, m = data
        return [np.zeros(3), np.log([1.0, 2.0, float(np.median(m))])]

    def expected_spend(self, frequency, monetary_value) -> np.ndarray:
        """Equation (5) of Fader and Hardie (2013): E[M | m, x] = (gamma + m x) p / (p x + q - 1).

        With ``frequency`` 0 this is the population mean ``p gamma / (q - 1)``.
        """
        p, q, gamma = self._check_fitted()
        x, m = _as_arrays(frequency, monetary_value)
        m = np.where(x > 0, np.nan_to_num(m), 0.0)
        return (gamma + m * x) * p / (p * x + q - 1)

    def log_likelihood(self, frequency, monetary_value) -> np.ndarray:
        """Per-customer log-likelihood at the fitted (or set) parameters."""
        params = self._check_fitted()
        return self._row_log_likelihood(params, tuple(_as_arrays(frequency, monetary_value)))
