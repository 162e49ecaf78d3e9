"""BG/NBD, Pareto/NBD and Gamma-Gamma: likelihoods against hand computations and numerical integration,
analytic gradients against finite differences, identities between predictions, and bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, stats

import mpmath
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from clm_core.clv_models import (
    BetaGeoModel,
    GammaGammaModel,
    NBDModel,
    NotFittedError,
    ParetoNBDModel,
    _Rows,
    compress_rows,
    log_hyp2f1_c_minus_one,
)
from clm_core.errors import ConvergenceError, DataRangeError

BG = dict(r=0.5, alpha=2.0, a=0.8, b=2.5)


def test_compress_rows_rebuilds_the_input():
    x = np.array([0, 1, 0, 1, 2])
    t = np.array([5.0, 3.0, 5.0, 3.0, 1.0])
    (ux, ut), counts, inverse = compress_rows(x, t)
    assert len(ux) == 3 and counts.sum() == 5
    assert_allclose(ux[inverse], x)
    assert_allclose(ut[inverse], t)
    assert sorted(counts.tolist()) == [1.0, 2.0, 2.0]


def test_compress_rows_codes_whole_numbers_and_decimals_alike():
    rng = np.random.default_rng(3)
    days = rng.integers(-5, 400, 2000)
    counts = rng.integers(0, 30, 2000)
    weeks = days / 7
    (ud, uc), n, inverse = compress_rows(days, counts)
    (uw, uc2), n2, inverse2 = compress_rows(weeks, counts.astype(float))
    assert_allclose(ud[inverse], days)
    assert_allclose(uc[inverse], counts)
    assert len(ud) == len(set(zip(days.tolist(), counts.tolist())))
    assert_allclose(np.sort(n), np.sort(n2))
    assert_allclose(uw[inverse2] * 7, days)


@pytest.mark.parametrize(("cls", "params", "data"), [
    (BetaGeoModel, BG, lambda x, t_x, T, m: (x, t_x, T)),
    (GammaGammaModel, dict(p=6.0, q=3.5, gamma=15.0), lambda x, t_x, T, m: (x + 1, m)),
    (NBDModel, dict(r=0.5, alpha=2.0), lambda x, t_x, T, m: (x, t_x, T)),
])
@pytest.mark.parametrize("whole_counts", [True, False])
def test_weighted_sums_equal_the_weighted_rows(cls, params, data, whole_counts):
    """The optimiser's sums (per count, with derived terms remembered during a fit) equal the per-row
    likelihood and gradient summed with the weights, on repeat counts up to 60 and on non-whole counts alike."""
    rng = np.random.default_rng(1)
    T = rng.uniform(1, 80, 3000)
    x = rng.poisson(rng.gamma(0.6, 4.0, 3000)).astype(float)
    x = x if whole_counts else x + 0.25
    t_x = np.where(x > 0, rng.uniform(0, 1, 3000) * T, 0.0)
    m = rng.gamma(3.0, 12.0, 3000)
    weights = rng.integers(1, 9, 3000).astype(float)
    model = cls.from_params(**params)
    columns = data(x, t_x, T, m)
    theta = model.params_.to_numpy()
    with np.errstate(all="ignore"):  # the per-row gradient's table has an unused entry for count 0
        expected_value = weights @ model._row_log_likelihood(theta, columns)
        expected_gradient = model._row_gradient(theta, columns) @ weights
    for rows in (columns, _Rows(columns)):
        for _ in range(2):  # the second time from what a fit remembers
            value, gradient = model._weighted_sums(theta, rows, weights)
            assert_allclose(value, expected_value, rtol=1e-12)
            assert_allclose(gradient, expected_gradient, rtol=1e-10, atol=1e-8)


def test_bgnbd_likelihood_by_hand():
    model = BetaGeoModel.from_params(**BG)
    r, alpha, a, b = BG.values()
    # x = 0: the customer bought nothing more, L = (alpha / (alpha + T))^r
    assert_allclose(model.log_likelihood([0], [0], [10])[0], r * math.log(alpha / (alpha + 10)), rtol=1e-12)
    # x = 1, t_x = 3, T = 10: L = r alpha^r [b/(a+b) (alpha+T)^-(r+1) + a/(a+b) (alpha+t_x)^-(r+1)]
    by_hand = r * alpha ** r * (b / (a + b) * (alpha + 10) ** -(r + 1) + a / (a + b) * (alpha + 3) ** -(r + 1))
    assert_allclose(model.log_likelihood([1], [3], [10])[0], math.log(by_hand), rtol=1e-12)


def _integrated_bgnbd(x, t_x, T, r, alpha, a, b):
    """Individual BG/NBD likelihood integrated over lambda ~ Gamma(r, alpha) and p ~ Beta(a, b)."""
    def individual(p, lam):
        alive = (1 - p) ** x * lam ** x * math.exp(-lam * T)
        dead = p * (1 - p) ** (x - 1) * lam ** x * math.exp(-lam * t_x) if x > 0 else 0.0
        return stats.gamma.pdf(lam, r, scale=1 / alpha) * stats.beta.pdf(p, a, b) * (alive + dead)
    return integrate.dblquad(individual, 0, np.inf, 0, 1, epsabs=1e-13, epsrel=1e-9)[0]


def test_bgnbd_likelihood_matches_numerical_integration():
    params = dict(r=1.3, alpha=3.0, a=1.6, b=2.5)  # a, b > 1 keep the Beta density bounded for quadrature
    model = BetaGeoModel.from_params(**params)
    for x, t_x, T in [(2, 6.0, 12.0), (4, 11.5, 12.0)]:
        assert_allclose(model.log_likelihood([x], [t_x], [T])[0],
                        math.log(_integrated_bgnbd(x, t_x, T, **params)), rtol=1e-6)


def _integrated_pareto(x, t_x, T, r, alpha, s, beta):
    """Individual Pareto/NBD likelihood lambda^x/(lambda+mu) [mu e^-(l+m)t_x + lambda e^-(l+m)T], integrated."""
    def individual(mu, lam):
        total = lam + mu
        value = lam ** x / total * (mu * math.exp(-total * t_x) + lam * math.exp(-total * T))
        return stats.gamma.pdf(lam, r, scale=1 / alpha) * stats.gamma.pdf(mu, s, scale=1 / beta) * value
    return integrate.dblquad(individual, 0, np.inf, 0, np.inf, epsabs=1e-13, epsrel=1e-9)[0]


@pytest.mark.parametrize("alpha, beta", [(6.0, 9.0), (9.0, 6.0)])  # both branches of A0
def test_pareto_likelihood_matches_numerical_integration(alpha, beta):
    params = dict(r=1.5, alpha=alpha, s=1.4, beta=beta)
    model = ParetoNBDModel.from_params(**params)
    for x, t_x, T in [(0, 0.0, 20.0), (3, 12.0, 20.0)]:
        assert_allclose(model.log_likelihood([x], [t_x], [T])[0],
                        math.log(_integrated_pareto(x, t_x, T, **params)), rtol=1e-6)


def _finite_difference(model, data, step=1e-6):
    params = model.params_.to_numpy()
    gradient = []
    for k in range(len(params)):
        up, down = params.copy(), params.copy()
        up[k] += step
        down[k] -= step
        gradient.append((model._row_log_likelihood(up, data) - model._row_log_likelihood(down, data)) / (2 * step))
    return np.vstack(gradient)


def test_bgnbd_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    T = rng.uniform(5, 40, 50)
    x = rng.integers(0, 8, 50).astype(float)
    t_x = np.where(x > 0, rng.uniform(0, 1, 50) * T, 0.0)
    model = BetaGeoModel.from_params(**BG)
    data = (x, t_x, T)
    assert_allclose(model._row_gradient(model.params_.to_numpy(), data), _finite_difference(model, data),
                    rtol=1e-5, atol=1e-7)


def test_gamma_gamma_gradient_and_likelihood():
    model = GammaGammaModel.from_params(p=6.0, q=3.5, gamma=15.0)
    x = np.array([1.0, 2.0, 5.0])
    m = np.array([20.0, 35.5, 12.0])
    assert_allclose(model._row_gradient(model.params_.to_numpy(), (x, m)), _finite_difference(model, (x, m)),
                    rtol=1e-5, atol=1e-7)
    # x = 1: m is one Gamma(p, nu) draw with nu ~ Gamma(q, gamma), a scaled beta-prime density.
    p, q, gamma = 6.0, 3.5, 15.0
    by_hand = math.exp(math.lgamma(p + q) - math.lgamma(p) - math.lgamma(q)) * gamma ** q * 20.0 ** (p - 1) \
        / (gamma + 20.0) ** (p + q)
    assert_allclose(model.log_likelihood([1.0], [20.0])[0], math.log(by_hand), rtol=1e-12)


@pytest.mark.parametrize("model", [BetaGeoModel.from_params(**BG),
                                   ParetoNBDModel.from_params(r=0.55, alpha=10.6, s=0.6, beta=11.7)])
def test_new_customer_expectation_equals_conditional_at_zero(model):
    t = np.array([1.0, 10.0, 52.0])
    assert_allclose(model.expected_purchases(t, 0, 0, 0), model.expected_purchases_new_customer(t), rtol=1e-10)
    alive = model.probability_alive([0, 3, 3], [0, 2.0, 29.0], [30, 30, 30])
    assert np.all((alive > 0) & (alive <= 1))
    assert alive[2] > alive[1]  # a recent last purchase means more likely alive


def test_bgnbd_new_customer_expectation_matches_simulation():
    r, alpha, a, b = BG.values()
    rng = np.random.default_rng(1)
    n, t = 200_000, 20.0
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    # Purchases while alive within t: min(Poisson(lambda t), Geometric(p) - 1 dropout point), as in the story.
    events = rng.poisson(lam * t)
    alive_for = rng.geometric(p)
    simulated = np.minimum(events, alive_for).mean()
    model = BetaGeoModel.from_params(**BG)
    standard_error = np.minimum(events, alive_for).std() / math.sqrt(n)
    assert abs(simulated - model.expected_purchases_new_customer(t)) < 4 * standard_error


def test_gamma_gamma_population_mean_for_new_customers():
    model = GammaGammaModel.from_params(p=6.0, q=4.0, gamma=15.0)
    assert_allclose(model.expected_spend([0], [np.nan])[0], 6.0 * 15.0 / 3.0)
    assert_allclose(model.expected_spend([4], [50.0])[0], (15.0 + 200.0) * 6.0 / (24.0 + 3.0))


def test_unfitted_model_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        BetaGeoModel().probability_alive([1], [1], [2])
    with pytest.raises(SklearnNotFittedError):
        GammaGammaModel().expected_spend([1], [10.0])


def test_settings_follow_scikit_learn():
    model = BetaGeoModel(penalizer=0.01)
    assert model.get_params() == {"penalizer": 0.01, "max_iter": 2000, "tol": 1e-12}
    assert model.set_params(max_iter=50) is model and model.max_iter == 50
    assert not hasattr(model, "params_")  # settings are not fitted values
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(r=0.3)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    published = BetaGeoModel.from_params(**BG)
    assert published.params_.to_dict() == BG and published.get_params()["penalizer"] == 0.0
    with pytest.raises(ValueError, match="Required parameter b missing"):
        BetaGeoModel.from_params(r=1, alpha=1, a=1)


def _simulated_bgnbd(n, seed, r=0.6, alpha=6.0, a=0.9, b=3.0, weeks=52.0):
    """Customers drawn from the BG/NBD story: (x, t_x, T) with purchases while alive in (0, T]."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(10, weeks, n)
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        clock, count = 0.0, 0
        while True:
            clock += rng.exponential(1 / lam[i])
            if clock > T[i]:
                break
            count, last = count + 1, clock
            if rng.random() < p[i]:
                break
        x[i], t_x[i] = count, (last if count else 0.0)
    return x, t_x, T


def _natural_hessian_se(model, data, step=1e-4):
    """Standard errors from an independent Hessian: second differences of the total log-likelihood in the
    natural parameters (relative steps), inverted; no log transform, no analytic gradient."""
    theta = model.params_.to_numpy()
    cls = type(model)

    def total(values):
        return float(cls.from_params(dict(zip(cls.param_names, values))).log_likelihood(*data).sum())

    k = len(theta)
    h = step * theta
    hessian = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            e_i, e_j = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            hessian[i, j] = (total(theta + e_i + e_j) - total(theta + e_i - e_j) - total(theta - e_i + e_j)
                             + total(theta - e_i - e_j)) / (4 * h[i] * h[j])
    return np.sqrt(np.diag(np.linalg.inv(-hessian)))


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_standard_errors_match_an_independent_hessian(cls):
    x, t_x, T = _simulated_bgnbd(3000, seed=4)
    model = cls().fit(x, t_x, T)
    assert model.converged_ and model.at_bound_ == ()
    assert_allclose(model.params_se_.to_numpy(), _natural_hessian_se(model, (x, t_x, T)), rtol=2e-3)
    summary = model.summary
    assert (summary["lower_95"] < summary["value"]).all() and (summary["value"] < summary["upper_95"]).all()


def test_gamma_gamma_standard_errors_match_an_independent_hessian():
    rng = np.random.default_rng(5)
    x = rng.integers(1, 12, 2000).astype(float)
    nu = rng.gamma(4.0, 1 / 15.0, 2000)
    m = rng.gamma(6.0 * x, 1 / nu) / x  # mean of x Gamma(6, nu) orders
    model = GammaGammaModel().fit(x, m)
    assert_allclose(model.params_se_.to_numpy(), _natural_hessian_se(model, (x, m)), rtol=2e-3)


def test_standard_errors_shrink_like_one_over_root_n():
    small = BetaGeoModel().fit(*_simulated_bgnbd(1000, seed=6))
    large = BetaGeoModel().fit(*_simulated_bgnbd(4000, seed=7))
    ratio = (small.params_se_ / small.params_) / (large.params_se_ / large.params_)
    assert ratio.between(1.5, 2.7).all()  # sqrt(4) = 2, give or take sampling noise


def test_nbd_is_the_no_dropout_limit():
    x, t_x, T = _simulated_bgnbd(500, seed=8)
    nbd = NBDModel.from_params(r=0.6, alpha=6.0)
    limit = BetaGeoModel.from_params(r=0.6, alpha=6.0, a=1e-12, b=3.0)
    assert_allclose(limit.log_likelihood(x, t_x, T), nbd.log_likelihood(x, t_x, T), rtol=1e-9)
    assert_allclose(limit.expected_purchases(10.0, x, t_x, T), nbd.expected_purchases(10.0, x, t_x, T), rtol=1e-6)


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_data_with_no_dropout_keep_a_fit_whose_dropout_has_no_usable_error(cls):
    # Everyone buys steadily at their own rate until today: nobody appears to leave.
    rng = np.random.default_rng(9)
    T = rng.uniform(20, 52, 3000)
    x = rng.poisson(rng.gamma(1.0, 1 / 5.0, 3000) * T).astype(float)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)  # the last of x uniform purchase times
    model = cls().fit(x, t_x, T)
    shape = model.dropout_shape
    relative = model.params_se_[shape] / model.params_[shape]
    assert shape in model.at_bound_ or not relative <= 1  # NaN (no curvature) or wider than the estimate
    assert (model.params_se_[["r", "alpha"]] / model.params_[["r", "alpha"]] < 0.1).all()
    assert np.quantile(model.probability_alive(x, t_x, T), 0.01) > 0.98


def _reference_log_2f1(c, b, z):
    """log 2F1(c-1, b; c; z) = log[(c-1) integral_0^1 t^(c-2) (1 - z t)^(-b) dt], by mpmath quadrature."""
    c, b, z = (mpmath.mpf(value) for value in (c, b, z))
    with mpmath.workdps(40):
        integral = mpmath.quad(lambda t: t ** (c - 2) * (1 - z * t) ** (-b),
                               [0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1])
        return float(mpmath.log((c - 1) * integral))


@pytest.mark.parametrize("c, b, z", [
    (401.5, 1.0000004, 0.9999),      # scipy's hyp2f1 returns NaN here
    (401.5, 41.0, 0.99),             # ... and here
    (401.5, 401.0, 0.999),           # 2F1 itself is about 1e1200: only its log exists in floats
    (2001.0, 3.0, 0.9999999),
    (3.0, 2.5, 0.5), (1.6, 1.1, 0.01),  # ordinary values, where scipy is used
])
def test_log_hypergeometric_matches_mpmath_at_extreme_values(c, b, z):
    assert_allclose(log_hyp2f1_c_minus_one(c, b, z), _reference_log_2f1(c, b, z), rtol=1e-8, atol=1e-8)


def _reference_pareto_log_likelihood(x, t_x, T, r, alpha, s, beta):
    """Equation (18)-(20) of Fader and Hardie (2005) with A0 as its defining integral, by mpmath quadrature:
    A0 = (r+s+x) int_{t_x}^T (alpha+u)^-(r+x) (beta+u)^-(s+1) du."""
    with mpmath.workdps(40):
        r, alpha, s, beta, x, t_x, T = (mpmath.mpf(v) for v in (r, alpha, s, beta, x, t_x, T))
        points = [t_x + (T - t_x) * f for f in (0, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1)]
        dead = s * mpmath.quad(lambda u: (alpha + u) ** (-(r + x)) * (beta + u) ** (-(s + 1)), points)
        alive = (alpha + T) ** (-(r + x)) * (beta + T) ** (-s)
        head = mpmath.loggamma(r + x) - mpmath.loggamma(r) + r * mpmath.log(alpha) + s * mpmath.log(beta)
        return float(head + mpmath.log(alive + dead))


@pytest.mark.parametrize("params", [dict(r=0.553, alpha=10.578, s=0.606, beta=11.669),
                                    dict(r=0.1, alpha=10.0, s=1e-8, beta=1e5),
                                    dict(r=5.0, alpha=1000.0, s=20.0, beta=0.01)])
def test_pareto_likelihood_of_extreme_customers_matches_mpmath(params):
    # 400 repeat purchases over 520 weeks, at the end and early on; 1,000 purchases; and the same in days.
    x = np.array([400.0, 400.0, 1000.0, 400.0, 400.0])
    t_x = np.array([500.0, 3.0, 519.0, 3500.0, 21.0])
    T = np.array([520.0, 520.0, 520.0, 3640.0, 3640.0])
    model = ParetoNBDModel.from_params(**params)
    ours = model.log_likelihood(x, t_x, T)
    reference = [_reference_pareto_log_likelihood(*row, **params) for row in zip(x, t_x, T)]
    assert_allclose(ours, reference, rtol=1e-6)
    alive = model.probability_alive(x, t_x, T)
    assert np.all(np.isfinite(alive) & (alive >= 0) & (alive <= 1))


def test_no_repeat_customers_is_a_data_error():
    with pytest.raises(DataRangeError, match="No customer bought more than once"):
        BetaGeoModel().fit([0, 0, 0], [0, 0, 0], [5, 6, 7])
    with pytest.raises(DataRangeError, match="Fewer than two customers"):
        GammaGammaModel().fit([0, 1], [np.nan, 10.0])


def test_parameters_running_off_are_reported():
    steady = np.array([10.0, 20.0, 30.0, 5.0])  # everyone bought every week until today: r runs off
    with pytest.raises(ConvergenceError, match="ran off"):
        BetaGeoModel().fit(steady, steady, steady)


def test_an_unconverged_fit_is_reported():
    model = BetaGeoModel(max_iter=2).fit(*_simulated_bgnbd(500, seed=10))
    assert not model.converged_ and "ITERATIONS" in model.convergence_message_.upper()


def test_absurd_amounts_are_reported_not_returned_as_nan():
    with pytest.raises(ConvergenceError):
        GammaGammaModel().fit(np.array([1.0, 2.0, 3.0]), np.array([1e300, 1e301, 1e302]))
