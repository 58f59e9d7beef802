"""harness.npmle: the NPMLE prior recovers a known mixing distribution, maximises the likelihood
over a family that holds the parametric ones, and its posteriors are exact Bayes on the grid."""

from __future__ import annotations

import numpy as np

from harness.npmle import GRID, failure_at_grid, fit_npmle, posterior_weights
from harness.passk import fit_success_model


def test_npmle_recovers_a_two_point_prior_and_its_pass_at_k():
    """40% never solved, 60% at p = 0.1 (a grid point), n = 200 each: the fitted mass below
    p = 10^-3 (which 200 draws cannot tell from 0) and near 0.1 are within sampling error of 0.4
    and 0.6, and pass@k at k <= 1,000 follows."""
    rng = np.random.default_rng(0)
    p = np.where(rng.random(3000) < 0.4, 0.0, 0.1)
    n = np.full(p.size, 200)
    fit = fit_npmle(n, rng.binomial(n, p))
    near = np.isclose(GRID, 0.1, rtol=0.15)
    assert abs(fit.weights[GRID < 1e-3].sum() - 0.4) < 0.03 and abs(fit.weights[near].sum() - 0.6) < 0.03
    truth = 0.6 * (1 - 0.9 ** np.array([1, 10, 1000]))
    assert np.allclose(fit.pass_at_k([1, 10, 1000]), truth, atol=0.03)


def test_npmle_likelihood_is_at_least_the_parametric_fits():
    """The grid family holds (a discretisation of) every Beta mixture: its maximum log L is no lower
    than the zero-inflated beta-binomial's, up to the grid's resolution."""
    rng = np.random.default_rng(1)
    p = np.where(rng.random(500) < 0.3, 0.0, rng.beta(0.5, 2.0, 500))
    n = rng.integers(5, 200, 500)
    c = rng.binomial(n, p)
    assert fit_npmle(n, c).loglik >= fit_success_model(n, c).loglik - 1.0


def test_posterior_is_bayes_rule_on_the_grid():
    """E[pass@k | n, c] by hand for the fitted weights: Σ_j G_j Binom(c; n, p_j) g_j / Σ_j G_j Binom."""
    rng = np.random.default_rng(2)
    n, c = np.array([10, 50, 7]), np.array([0, 3, 7])
    fit = fit_npmle(rng.integers(1, 60, 80), rng.integers(0, 2, 80))
    joint = fit.weights * GRID[None, :] ** c[:, None] * (1 - GRID[None, :]) ** (n - c)[:, None]
    g = 1 - (1 - GRID) ** 100
    want = joint @ g / joint.sum(axis=1)
    mean, var = fit.posterior(n, c, [100])
    assert np.allclose(mean[:, 0], want, atol=1e-9) and np.all(var >= 0)
    assert np.allclose(posterior_weights(fit.weights, n, c).sum(axis=1), 1)
    assert failure_at_grid(np.array(0))[-1] == 1.0 and failure_at_grid(np.array(3))[-1] == 0.0
