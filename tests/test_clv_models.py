"""BG/NBD, Pareto/NBD and Gamma-Gamma: likelihoods against hand computations and numerical integration,
analytic gradients against finite differences, identities between predictions, and bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, stats

from clm_core.clv_models import BetaGeoModel, GammaGammaModel, ParetoNBDModel, compress_rows
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


def test_bgnbd_likelihood_by_hand():
    model = BetaGeoModel().set_params(**BG)
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
    model = BetaGeoModel().set_params(**params)
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
    model = ParetoNBDModel().set_params(**params)
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
    model = BetaGeoModel().set_params(**BG)
    data = (x, t_x, T)
    assert_allclose(model._row_gradient(model.params_.to_numpy(), data), _finite_difference(model, data),
                    rtol=1e-5, atol=1e-7)


def test_gamma_gamma_gradient_and_likelihood():
    model = GammaGammaModel().set_params(p=6.0, q=3.5, gamma=15.0)
    x = np.array([1.0, 2.0, 5.0])
    m = np.array([20.0, 35.5, 12.0])
    assert_allclose(model._row_gradient(model.params_.to_numpy(), (x, m)), _finite_difference(model, (x, m)),
                    rtol=1e-5, atol=1e-7)
    # x = 1: m is one Gamma(p, nu) draw with nu ~ Gamma(q, gamma), a scaled beta-prime density.
    p, q, gamma = 6.0, 3.5, 15.0
    by_hand = math.exp(math.lgamma(p + q) - math.lgamma(p) - math.lgamma(q)) * gamma ** q * 20.0 ** (p - 1) \
        / (gamma + 20.0) ** (p + q)
    assert_allclose(model.log_likelihood([1.0], [20.0])[0], math.log(by_hand), rtol=1e-12)


@pytest.mark.parametrize("model", [BetaGeoModel().set_params(**BG),
                                   ParetoNBDModel().set_params(r=0.55, alpha=10.6, s=0.6, beta=11.7)])
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
    model = BetaGeoModel().set_params(**BG)
    standard_error = np.minimum(events, alive_for).std() / math.sqrt(n)
    assert abs(simulated - model.expected_purchases_new_customer(t)) < 4 * standard_error


def test_gamma_gamma_population_mean_for_new_customers():
    model = GammaGammaModel().set_params(p=6.0, q=4.0, gamma=15.0)
    assert_allclose(model.expected_spend([0], [np.nan])[0], 6.0 * 15.0 / 3.0)
    assert_allclose(model.expected_spend([4], [50.0])[0], (15.0 + 200.0) * 6.0 / (24.0 + 3.0))


def test_unfitted_model_says_so():
    with pytest.raises(ValueError, match="not fitted"):
        BetaGeoModel().probability_alive([1], [1], [2])


def test_no_repeat_customers_is_a_data_error():
    with pytest.raises(DataRangeError, match="No customer bought more than once"):
        BetaGeoModel().fit([0, 0, 0], [0, 0, 0], [5, 6, 7])
    with pytest.raises(DataRangeError, match="Fewer than two customers"):
        GammaGammaModel().fit([0, 1], [np.nan, 10.0])


def test_parameters_running_off_are_reported():
    steady = np.array([10.0, 20.0, 30.0, 5.0])  # everyone bought every week until today: nobody drops out
    with pytest.raises(ConvergenceError, match="ran off"):
        BetaGeoModel().fit(steady, steady, steady)


def test_absurd_amounts_are_reported_not_returned_as_nan():
    with pytest.raises(ConvergenceError):
        GammaGammaModel().fit(np.array([1.0, 2.0, 3.0]), np.array([1e300, 1e301, 1e302]))
