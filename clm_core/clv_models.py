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

The fitters follow scikit-learn's conventions: settings (``penalizer``,
``max_iter``, ``tol``) are keyword-only ``__init__`` arguments read and changed
with ``get_params`` / ``set_params``; what ``fit`` estimates ends in ``_``
(``params_``, ``params_se_``, ``covariance_``, ``log_likelihood_``,
``converged_``, ``at_bound_``); using a model before ``fit`` raises
:class:`NotFittedError`. A published estimate is used through
``Model.from_params(...)``, never by overwriting settings.

Standard errors come from the Hessian of the log-likelihood at the optimum over
the log-parameters (central differences of the analytic gradient, or of the
likelihood itself for Pareto/NBD); ``covariance_`` is the inverse of minus that
Hessian, ``params_se_`` its delta-method translation to the parameters.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import betaln, digamma, gammaln, hyp2f1, xlogy
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from clm_core.errors import ConvergenceError, DataRangeError

__all__ = ["BetaGeoModel", "ParetoNBDModel", "GammaGammaModel", "NBDModel", "NotFittedError", "compress_rows",
           "log_hyp2f1_c_minus_one"]

# Log-parameters are kept within +-18 (about 1e-8 to 1e8); an estimate on that bound has run off.
_LOG_BOUND = 18.0
_AT_BOUND = _LOG_BOUND - 0.1


class NotFittedError(_SklearnNotFittedError):
    """A model was used before ``fit`` (or ``from_params``): a bug in the calling code, not in the user's data.

    It is scikit-learn's ``NotFittedError`` (so also a ``ValueError`` and an ``AttributeError``)."""


def compress_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of the given (numeric) columns, how often each occurs, and the map back.

    Returns ``(unique_columns, counts, inverse)`` so that
    ``unique_columns[j][inverse]`` rebuilds column ``j``. Each column is coded (whole numbers in a short range by
    their offset from the minimum, others by ``np.unique``) and the codes combined into one integer key, sorted
    once (no Python-level hashing of row tuples).
    """
    columns = [np.asarray(column) for column in columns]
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        values, codes = _codes(column)
        if key.max(initial=0) + 1 > 2 ** 62 // max(len(values), 1):
            key = np.unique(key, return_inverse=True)[1].ravel()  # keep the mixed-radix key inside int64
        key = key * len(values) + codes.ravel()
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    unique_columns = [column[first] for column in columns]
    return unique_columns, counts.astype(float), inverse.ravel()


def _codes(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, codes) with ``values[codes] == column``: the column less its minimum for whole numbers in a
    range no wider than the column is long (days, counts: no sort needed), else ``np.unique``'s."""
    if column.size and column.dtype.kind in "iu":
        low, high = int(column.min()), int(column.max())
        if high - low <= max(column.size, 1 << 16):
            codes = (column - low).astype(np.int64)
            return np.arange(low, high + 1), codes
    return np.unique(column, return_inverse=True)


def _as_arrays(*values) -> list[np.ndarray]:
    return [np.asarray(value, dtype=float) for value in values]


def _gauss_continued_fraction(b: np.ndarray, c: np.ndarray, z: np.ndarray, depth: int) -> np.ndarray:
    """2F1(1, b; c; z) by Gauss's continued fraction for F(a+1, b; c'+1; z) / F(a, b; c'; z) with a = 0, c' = c - 1,
    evaluated bottom-up from ``depth`` levels (it converges on the whole cut plane, also near z = 1)."""
    c0 = c - 1.0
    value = np.ones_like(z)
    for level in range(depth, 0, -1):
        i, odd = divmod(level - 1, 2)
        if odd == 0:   # d_{2i+1} = (a - c' - i)(b + i) / ((c' + 2i)(c' + 2i + 1))
            d = (-c0 - i) * (b + i) / ((c0 + 2 * i) * (c0 + 2 * i + 1))
        else:          # d_{2i+2} = (b - c' - i - 1)(a + i + 1) / ((c' + 2i + 1)(c' + 2i + 2))
            d = (b - c0 - i - 1) * (i + 1) / ((c0 + 2 * i + 1) * (c0 + 2 * i + 2))
        value = 1.0 + d * z / value
    return 1.0 / value


def log_hyp2f1_c_minus_one(c, b, z) -> np.ndarray:
    """log 2F1(c - 1, b; c; z) for c > 1, b > 0 and 0 <= z < 1, without overflow.

    Euler's transformation gives 2F1(c-1, b; c; z) = (1 - z)^(1-b) 2F1(1, c-b; c; z); the second factor lies
    between 1 and 1/(1 - z) when c - b < c, so it never overflows. It is taken from scipy's ``hyp2f1`` and,
    where that returns NaN or leaves those bounds (hundreds of repeat purchases, z near 1), from Gauss's
    continued fraction, deepened until two depths agree to 1e-13.
    """
    c, b, z = np.broadcast_arrays(*(np.asarray(value, dtype=float) for value in (c, b, z)))
    c, b, z = c.astype(float), b.astype(float), z.astype(float)
    with np.errstate(all="ignore"):
        bounded = hyp2f1(1.0, c - b, c, z)
        upper = np.where(c - b > 0, 1.0 / (1.0 - z), np.inf)
        lower = np.where(c - b > 0, 1.0, 0.0)
        bad = ~np.isfinite(bounded) | (bounded < lower * (1 - 1e-12)) | (bounded > upper * (1 + 1e-12))
        if bad.any():
            bounded = np.array(bounded, dtype=float, copy=True)
            cb, cc, zz = c[bad] - b[bad], c[bad], z[bad]
            depth, previous = 64, _gauss_continued_fraction(cb, cc, zz, 32)
            while True:
                current = _gauss_continued_fraction(cb, cc, zz, depth)
                if np.all(np.abs(current - previous) <= 1e-13 * np.abs(current)) or depth >= 1 << 17:
                    break
                previous, depth = current, depth * 2
            bounded[bad] = current
        return (1.0 - b) * np.log1p(-z) + np.log(bounded)


def _per_count(function, x: np.ndarray) -> np.ndarray:
    """``function(x)`` for a count column: evaluated once per distinct count 0..max and looked up, which is what
    makes the gamma-function terms cheap on a million customers; directly when ``x`` is not whole counts."""
    if x.size > 1000:
        top = float(x.max(initial=0.0))
        if top < 1e6 and float(x.min(initial=0.0)) >= 0:
            index = x.astype(np.intp)
            if np.array_equal(index, x):
                return function(np.arange(int(top) + 1, dtype=float))[index]
    return function(x)


class _Rows(tuple):
    """A model's data columns (a tuple, as the row functions unpack them) that remember what a fit derives from
    the columns and weights alone, so the optimiser's evaluations derive it once."""

    def memo(self, weights: np.ndarray, build):
        store = self.__dict__.setdefault("_memo", {})
        if id(weights) not in store:
            store[id(weights)] = (weights, build())  # the weights are kept, so their id stays theirs
        return store[id(weights)][1]


def _memo(data, weights: np.ndarray, build):
    """``build()``, remembered on ``data`` when it is a :class:`_Rows` (during a fit)."""
    return data.memo(weights, build) if isinstance(data, _Rows) else build()


class _CountSums:
    """Weighted sums over the rows of a function of a whole-number column ``x``, as sum over the counts n present
    of (summed weight of rows with x = n) * f(n): the gamma-function terms once per count, not per row."""

    def __init__(self, x: np.ndarray, weights: np.ndarray) -> None:
        self.index = x.astype(np.intp)
        totals = np.bincount(self.index, weights=weights)
        self.present = np.flatnonzero(totals)
        self.n = self.present.astype(float)
        self.weights = totals[self.present]

    def total(self, function) -> float:
        """sum_i w_i f(x_i)."""
        return float(self.weights @ function(self.n))

    def weighted(self, row_weights: np.ndarray, function) -> float:
        """sum_i row_weights_i f(x_i)."""
        totals = np.bincount(self.index, weights=row_weights, minlength=len(self.present) and self.present[-1] + 1)
        return float(totals[self.present] @ function(self.n))


def _whole_counts(x: np.ndarray) -> bool:
    """True when ``x`` holds whole numbers from 0 to a million (per-count sums apply)."""
    return x.size > 0 and float(x.min()) >= 0 and float(x.max()) < 1e6 and bool(np.all(x == np.round(x)))


class _Model(BaseEstimator):
    """Shared fitting machinery: settings in ``__init__``, ``fit`` returns self, fitted attributes end in ``_``."""

    param_names: tuple[str, ...] = ()
    label = ""
    # Parameters that, at their lower bound, mean "nobody drops out": the model then reduces to the NBD and the
    # fit is kept, with the drop-out reported as not identified (see ``at_bound_``).
    dropout_shape: str | None = None

    def __init__(self, *, penalizer: float = 0.0, max_iter: int = 2000, tol: float = 1e-12) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.tol = tol

    # Subclasses give the per-row log-likelihood and, where they can, its gradient in the natural parameters.
    def _row_log_likelihood(self, params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray:
        raise NotImplementedError

    def _row_gradient(self, params: np.ndarray, data: tuple[np.ndarray, ...]) -> np.ndarray | None:
        return None

    def _weighted_sums(self, params: np.ndarray, data: tuple[np.ndarray, ...],
                       weights: np.ndarray) -> tuple[float, np.ndarray]:
        """The weighted log-likelihood and its gradient in the natural parameters, which the optimiser asks for at
        every step. Models override it to share work between the two and sum count terms per count: on a
        million customers every pass over the rows counts."""
        return float(weights @ self._row_log_likelihood(params, data)), self._row_gradient(params, data) @ weights

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
        if not self._has_gradient:
            return self._penalised_loss(log_params, data, weights, total)
        params = np.exp(log_params)
        with np.errstate(all="ignore"):  # a table entry for a count no row has may be inf (log 0); never used
            log_likelihood, gradient = self._weighted_sums(params, data, weights)
            value = -log_likelihood / total + self.penalizer * float(params @ params)
            if not np.isfinite(value):
                return np.inf, np.zeros_like(log_params)
            natural = -gradient / total + 2 * self.penalizer * params
        return value, natural * params  # chain rule: d/dlog(theta) = theta * d/dtheta

    def _fit(self, data: tuple[np.ndarray, ...], weights: np.ndarray | None) -> None:
        data = _Rows(data)
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
        at_bound = np.abs(best.x) >= _AT_BOUND
        if self._dropout_degenerate(best.x):
            # Nobody seems to drop out: the fit is the nested no-drop-out model, kept and reported.
            at_bound = self._dropout_parameters_mask()
        elif np.any(at_bound):
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
        self.converged_ = bool(best.success)
        self.convergence_message_ = str(best.message)
        self.at_bound_ = tuple(name for name, bound in zip(self.param_names, at_bound) if bound)
        self.covariance_ = self._covariance(best.x, data, weights, total, ~at_bound)
        self.params_se_ = pd.Series(params * np.sqrt(np.diag(self.covariance_.to_numpy())),
                                    index=list(self.param_names), name="se")

    def _dropout_parameters_mask(self) -> np.ndarray:
        return np.array([name in self._dropout_parameters for name in self.param_names])

    _dropout_parameters: tuple[str, ...] = ()

    def _dropout_degenerate(self, log_params: np.ndarray) -> bool:
        """True when the drop-out shape sits on its lower bound (and only drop-out parameters are on a bound)."""
        if self.dropout_shape is None:
            return False
        shape = log_params[self.param_names.index(self.dropout_shape)]
        others = np.abs(log_params[~self._dropout_parameters_mask()]) >= _AT_BOUND
        return bool(shape <= -_AT_BOUND and not others.any())

    def _total_log_likelihood(self, log_params: np.ndarray, data, weights: np.ndarray, total: float) -> float:
        return -total * self._penalised_loss(log_params, data, weights, total)

    def _log_space_hessian(self, log_params: np.ndarray, data, weights: np.ndarray, total: float) -> np.ndarray:
        """Hessian of the (penalised) total log-likelihood over the log-parameters, by central differences:
        of the analytic gradient where the model has one (step 1e-5), else of the likelihood (step 1e-4)."""
        k = len(log_params)
        if self._has_gradient:
            step = 1e-5
            columns = []
            for j in range(k):
                up, down = log_params.copy(), log_params.copy()
                up[j] += step
                down[j] -= step
                g_up = self._objective(up, data, weights, total)[1]
                g_down = self._objective(down, data, weights, total)[1]
                columns.append(-total * (g_up - g_down) / (2 * step))
            hessian = np.column_stack(columns)
            return (hessian + hessian.T) / 2
        step = 1e-4
        f = lambda point: self._total_log_likelihood(point, data, weights, total)  # noqa: E731
        centre = f(log_params)
        hessian = np.empty((k, k))
        for i in range(k):
            for j in range(i, k):
                e_i, e_j = np.eye(k)[i] * step, np.eye(k)[j] * step
                if i == j:
                    value = (f(log_params + e_i) - 2 * centre + f(log_params - e_i)) / step ** 2
                else:
                    value = (f(log_params + e_i + e_j) - f(log_params + e_i - e_j) - f(log_params - e_i + e_j)
                             + f(log_params - e_i - e_j)) / (4 * step ** 2)
                hessian[i, j] = hessian[j, i] = value
        return hessian

    def _covariance(self, log_params, data, weights, total, free: np.ndarray) -> pd.DataFrame:
        """Asymptotic covariance of the log-parameters: the inverse of minus the Hessian over the parameters that
        are not on a bound; NaN rows for those on a bound or without curvature (not identified)."""
        k = len(log_params)
        covariance = np.full((k, k), np.nan)
        with np.errstate(all="ignore"):
            information = -self._log_space_hessian(log_params, data, weights, total)
        free = free & np.isfinite(np.diag(information)) & (np.diag(information) > 1e-9 * total)
        index = np.flatnonzero(free)
        if len(index):
            block = information[np.ix_(index, index)]
            if np.all(np.isfinite(block)) and np.all(np.linalg.eigvalsh(block) > 0):
                covariance[np.ix_(index, index)] = np.linalg.inv(block)
        return pd.DataFrame(covariance, index=list(self.param_names), columns=list(self.param_names))

    def _check_fitted(self) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit (or from_params) first.")
        return self.params_.to_numpy()

    @classmethod
    def from_params(cls, values: dict | pd.Series | None = None, /, **named: float) -> "_Model":
        """A model using given parameter values (a published estimate, say) instead of fitted ones.

        It predicts like a fitted model but has no standard errors or likelihood of its own."""
        values = {**(dict(values) if values is not None else {}), **named}
        missing = [name for name in cls.param_names if name not in values]
        if missing:
            raise ValueError(f"Required parameter {missing[0]} missing")
        unknown = sorted(set(values) - set(cls.param_names))
        if unknown:
            raise ValueError(f"Unknown parameter {unknown[0]} for {cls.__name__}")
        model = cls()
        model.params_ = pd.Series([float(values[name]) for name in cls.param_names], index=list(cls.param_names),
                                  name="value")
        return model

    @property
    def summary(self) -> pd.DataFrame:
        """Parameters with their values, standard errors and 95 % intervals (exp(log estimate +- 1.96 se of the
        log)); NaN where there is no standard error (set parameters, or a parameter on its bound)."""
        values = self._check_fitted()
        se = getattr(self, "params_se_", pd.Series(np.nan, index=list(self.param_names))).to_numpy()
        with np.errstate(all="ignore"):  # a parameter known only to within orders of magnitude: an infinite bound
            spread = 1.959963984540054 * se / values
            lower, upper = values * np.exp(-spread), values * np.exp(spread)
        frame = pd.DataFrame({"parameter": list(self.param_names), "value": values, "se": se,
                              "lower_95": lower, "upper_95": upper})
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

    # The parameters measured in time units (rate scales): the others are pure numbers.
    time_scales: tuple[str, ...] = ("alpha",)

    def fit(self, frequency, recency, T, *, weights=None) -> "_PurchaseModel":
        """Fit by maximum likelihood; returns self with ``params_`` and ``log_likelihood_``."""
        data = _check_purchase_data(frequency, recency, T)
        self._fit(data, weights)
        return self

    def in_time_unit(self, factor: float, frequency, recency, T, *, weights=None) -> "_PurchaseModel":
        """This fit with time counted in a unit ``factor`` times shorter (weeks to days: 7), on ``frequency,
        recency, T`` in that unit (this fit's data, times ``factor``): a new fitted model.

        Multiplying every duration by ``factor`` multiplies each customer's likelihood by ``factor ** -x`` at the
        parameters whose time scales (:attr:`time_scales`) are multiplied by ``factor``, a constant, so the maximum
        likelihood estimate in the new unit is this one with its time scales multiplied by ``factor``: what a
        fit in that unit finds, without the search (which for Pareto/NBD in days takes seconds). The standard
        errors scale with their parameters (the covariance, of the log-parameters, is unchanged); the
        log-likelihood is that of the data in the new unit. Only without a penalty, which is not invariant."""
        self._check_fitted()
        if self.penalizer:
            raise ValueError("A penalised fit depends on the time unit: fit it in the new unit instead.")
        data = _check_purchase_data(frequency, recency, T)
        scale = pd.Series([factor if name in self.time_scales else 1.0 for name in self.param_names],
                          index=list(self.param_names))
        moved = copy.deepcopy(self)
        moved.params_ = (self.params_ * scale).rename("value")
        moved.params_se_ = (self.params_se_ * scale).rename("se")
        weights = np.ones(len(data[0])) if weights is None else np.asarray(weights, dtype=float)
        with np.errstate(all="ignore"):
            moved.log_likelihood_ = float(weights @ moved.log_likelihood(*data))
        return moved

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood at the fitted (or set) parameters."""
        params = self._check_fitted()
        return self._row_log_likelihood(params, tuple(_as_arrays(frequency, recency, T)))

    def expected_purchases_new_customer(self, t) -> np.ndarray:
        """E[X(t)]: expected repeat purchases in ``t`` units after a customer's first purchase."""
        raise NotImplementedError

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` units for each customer, which is
        P(alive | x, t_x, T) times the purchases expected of a customer still alive (who depends on x and T only)."""
        x, t_x, T = _as_arrays(frequency, recency, T)
        return self.expected_purchases_if_alive(t, x, T) * self.probability_alive(x, t_x, T)

    def expected_purchases_if_alive(self, t, frequency, T) -> np.ndarray:
        """E[Y(t) | alive at T, x, T]: expected purchases in the next ``t`` units of a customer still active."""
        raise NotImplementedError

    def probability_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive | x, t_x, T) at the end of observation."""
        raise NotImplementedError


class BetaGeoModel(_PurchaseModel):
    """BG/NBD: parameters ``r, alpha`` (purchase rate) and ``a, b`` (drop-out after each purchase)."""

    param_names = ("r", "alpha", "a", "b")
    label = "BG/NBD"
    dropout_shape = "a"
    _dropout_parameters = ("a", "b")

    def _row_log_likelihood(self, params, data):
        """Equation (6) of Fader, Hardie and Lee (2005), in logs: A1 + A2 + log(e^A3 + [x>0] e^A4)."""
        return self._row_value_and_gradient(params, data, gradient=False)[0]

    def _row_gradient(self, params, data):
        return self._row_value_and_gradient(params, data)[1]

    def _row_value_and_gradient(self, params, data, *, gradient: bool = True):
        r, alpha, a, b = params
        x, t_x, T = data
        repeat = x > 0
        safe = np.where(repeat, b + x - 1, 1.0)
        log_alpha_T, log_alpha_t_x = np.log(alpha + T), np.log(alpha + t_x)
        a1 = _per_count(lambda n: gammaln(r + n) - gammaln(r) + r * np.log(alpha) + betaln(a, b + n) - betaln(a, b), x)
        a3 = -(r + x) * log_alpha_T
        a4 = np.where(repeat, np.log(a) - np.log(safe) - (r + x) * log_alpha_t_x, -np.inf)
        branches = np.logaddexp(a3, a4)
        rows = a1 + branches
        if not gradient:
            return rows, None
        w4 = np.exp(a4 - branches)  # weight of the "dropped out after the last purchase" branch
        w3 = 1.0 - w4
        d_r = (_per_count(lambda n: digamma(r + n), x) - digamma(r) + np.log(alpha) - w3 * log_alpha_T
               - w4 * log_alpha_t_x)
        d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
        ab_x = _per_count(lambda n: digamma(a + b + n), x)
        d_a = digamma(a + b) - ab_x + w4 / a
        d_b = digamma(a + b) + _per_count(lambda n: digamma(b + n), x) - digamma(b) - ab_x - w4 / safe
        return rows, np.vstack([d_r, d_alpha, d_a, d_b])

    def _weighted_sums(self, params, data, weights):
        """:meth:`_row_log_likelihood` and :meth:`_row_gradient` summed with ``weights``, the count terms once per
        count: the same sums with about half the passes over the rows."""
        x, t_x, T = data
        counts = _memo(data, weights, lambda: _CountSums(x, weights) if _whole_counts(x) else None)
        if counts is None:
            return super()._weighted_sums(params, data, weights)
        r, alpha, a, b = params
        total = counts.weights.sum()
        log_alpha_T, log_alpha_t_x = np.log(alpha + T), np.log(alpha + t_x)
        r_x = r + x
        log_repeat = np.zeros(counts.present[-1] + 1)  # log(b + x - 1) by count, for the repeat buyers
        log_repeat[counts.present] = np.log(np.where(counts.n > 0, b + counts.n - 1, 1.0))
        a3 = -r_x * log_alpha_T
        a4 = np.where(x > 0, np.log(a) - log_repeat[counts.index] - r_x * log_alpha_t_x, -np.inf)
        branches = np.logaddexp(a3, a4)
        dropped = weights * np.exp(a4 - branches)  # weight times that of the "dropped out after the last purchase" branch
        value = counts.total(lambda n: gammaln(r + n) - gammaln(r) + r * np.log(alpha) + betaln(a, b + n)
                             - betaln(a, b)) + float(weights @ branches)
        d_r = (counts.total(lambda n: digamma(r + n)) - total * (digamma(r) - np.log(alpha)) - weights @ log_alpha_T
               + dropped @ (log_alpha_T - log_alpha_t_x))
        inverse_T = 1.0 / (alpha + T)
        d_alpha = (total * r / alpha - (weights * r_x) @ inverse_T
                   - (dropped * r_x) @ (1.0 / (alpha + t_x) - inverse_T))
        ab_x = counts.total(lambda n: digamma(a + b + n))
        d_a = total * digamma(a + b) - ab_x + dropped.sum() / a
        d_b = (total * (digamma(a + b) - digamma(b)) + counts.total(lambda n: digamma(b + n)) - ab_x
               - counts.weighted(dropped, lambda n: 1.0 / np.where(n > 0, b + n - 1, 1.0)))
        return value, np.array([d_r, d_alpha, d_a, d_b])

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

    def expected_purchases_if_alive(self, t, frequency, T):
        """Equation (10) of Fader, Hardie and Lee (2005) without its P(alive) factor."""
        r, alpha, a, b = self._check_fitted()
        x, T = _as_arrays(frequency, T)
        t = np.asarray(t, dtype=float)
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        return head * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z))


class ParetoNBDModel(_PurchaseModel):
    """Pareto/NBD: parameters ``r, alpha`` (purchase rate) and ``s, beta`` (lifetime)."""

    param_names = ("r", "alpha", "s", "beta")
    time_scales = ("alpha", "beta")
    label = "Pareto/NBD"
    dropout_shape = "s"
    _dropout_parameters = ("s", "beta")

    @staticmethod
    def _log_a0(params, data):
        """log A0 of equation (19)-(20) in Fader and Hardie (2005), choosing the convergent hypergeometric series.

        A0 = (r+s+x) * integral from t_x to T of (alpha+u)^-(r+x) (beta+u)^-(s+1) du, written as F(t_x) - F(T)
        with log F(u) = -(r+s+x) log(high+u) + log 2F1(r+s+x, b; r+s+x+1; (high-low)/(high+u)), each evaluated
        by :func:`log_hyp2f1_c_minus_one` (no overflow for hundreds of purchases).
        """
        r, alpha, s, beta = params
        x, t_x, T = data
        if alpha >= beta:
            high, low, second = alpha, beta, s + 1
        else:
            high, low, second = beta, alpha, r + x
        rsx = r + s + x
        gap = high - low
        q1, q2 = high + t_x, high + T
        first = log_hyp2f1_c_minus_one(rsx + 1, second, gap / q1) - rsx * np.log(q1)
        last = log_hyp2f1_c_minus_one(rsx + 1, second, gap / q2) - rsx * np.log(q2)
        # log(F(t_x) - F(T)), the difference taken in log space; -inf when t_x == T.
        return first + np.log1p(-np.exp(np.minimum(last - first, 0.0)))

    def _row_log_likelihood(self, params, data):
        """Equation (18) of Fader and Hardie (2005), in logs."""
        r, alpha, s, beta = params
        x, t_x, T = data
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dead = np.log(s) - np.log(r + s + x) + self._log_a0(params, data)
        # When t_x == T the "dead" branch is exactly zero (log A0 = -inf); a NaN would propagate, never be dropped.
        return head + np.logaddexp(alive, dead)

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

    def expected_purchases_if_alive(self, t, frequency, T):
        """Equation (22) of Fader and Hardie (2005) without its P(alive) factor: (r+x)(beta+T)/(alpha+T) * factor."""
        r, alpha, s, beta = self._check_fitted()
        x, T = _as_arrays(frequency, T)
        t = np.asarray(t, dtype=float)
        return (r + x) * (beta + T) / (alpha + T) * self._lifetime_factor(s, beta + T, t)


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
        return self._row_value_and_gradient(params, data, gradient=False)[0]

    def _row_gradient(self, params, data):
        return self._row_value_and_gradient(params, data)[1]

    def _row_value_and_gradient(self, params, data, *, gradient: bool = True):
        p, q, gamma = params
        x, m = data
        px = p * x
        log_m, log_total = np.log(m), np.log(gamma + m * x)
        by_count = _per_count(lambda n: gammaln(p * n + q) - gammaln(p * n) + xlogy(p * n, n), x)
        rows = by_count - gammaln(q) + q * np.log(gamma) + (px - 1) * log_m - (px + q) * log_total
        if not gradient:
            return rows, None
        spend_digamma = _per_count(lambda n: digamma(p * n + q), x)
        d_p = x * (spend_digamma - _per_count(lambda n: digamma(p * n) - np.log(n), x) + log_m - log_total)
        d_q = spend_digamma - digamma(q) + np.log(gamma) - log_total
        d_gamma = q / gamma - (px + q) / (gamma + m * x)
        return rows, np.vstack([d_p, d_q, d_gamma])

    def _weighted_sums(self, params, data, weights):
        """:meth:`_row_log_likelihood` and :meth:`_row_gradient` summed with ``weights``: the terms of m alone
        summed once per fit, the count terms once per count, two logs and a division per row and step."""
        x, m = data

        def build():
            if not _whole_counts(x):
                return None
            log_m, weighted_x = np.log(m), weights * x
            return _CountSums(x, weights), m * x, weighted_x, float(weights @ log_m), float(weighted_x @ log_m)

        prepared = _memo(data, weights, build)
        if prepared is None:
            return super()._weighted_sums(params, data, weights)
        counts, mx, weighted_x, sum_log_m, sum_x_log_m = prepared
        p, q, gamma = params
        total = counts.weights.sum()
        log_total = np.log(gamma + mx)
        inverse_total = 1.0 / (gamma + mx)
        sum_log_total, sum_x_log_total = float(weights @ log_total), float(weighted_x @ log_total)
        value = (counts.total(lambda n: gammaln(p * n + q) - gammaln(p * n) + xlogy(p * n, n))
                 + total * (q * np.log(gamma) - gammaln(q)) + p * sum_x_log_m - sum_log_m
                 - p * sum_x_log_total - q * sum_log_total)
        d_p = (counts.total(lambda n: n * (digamma(p * n + q) - digamma(p * n) + np.log(n)))
               + sum_x_log_m - sum_x_log_total)
        d_q = counts.total(lambda n: digamma(p * n + q)) - total * (digamma(q) - np.log(gamma)) - sum_log_total
        d_gamma = total * q / gamma - p * float(weighted_x @ inverse_total) - q * float(weights @ inverse_total)
        return value, np.array([d_p, d_q, d_gamma])

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


class NBDModel(_PurchaseModel):
    """NBD: purchases at rate ``lambda ~ Gamma(r, alpha)`` and nobody ever drops out.

    It is BG/NBD with ``a -> 0`` and Pareto/NBD with ``s -> 0``, the nested model of the drop-out test."""

    param_names = ("r", "alpha")
    label = "NBD"

    def _row_log_likelihood(self, params, data):
        """log [Gamma(r+x) / Gamma(r) alpha^r / (alpha+T)^(r+x)] (the purchase times given x add no parameter)."""
        r, alpha = params
        x, _, T = data
        return gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)

    def _row_gradient(self, params, data):
        r, alpha = params
        x, _, T = data
        d_r = digamma(r + x) - digamma(r) + np.log(alpha) - np.log(alpha + T)
        d_alpha = r / alpha - (r + x) / (alpha + T)
        return np.vstack([d_r, d_alpha])

    def _start(self, data):
        return [np.zeros(2), np.log([0.5, 5.0])]

    def expected_purchases_new_customer(self, t):
        r, alpha = self._check_fitted()
        return r * np.asarray(t, dtype=float) / alpha

    def probability_alive(self, frequency, recency, T):
        self._check_fitted()
        return np.ones_like(np.asarray(frequency, dtype=float))

    def expected_purchases_if_alive(self, t, frequency, T):
        """(r + x) t / (alpha + T): the posterior mean purchase rate times t."""
        r, alpha = self._check_fitted()
        x, T = _as_arrays(frequency, T)
        return (r + x) * np.asarray(t, dtype=float) / (alpha + T)
