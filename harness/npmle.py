"""The nonparametric maximum-likelihood prior of per-problem success rates (Kiefer-Wolfowitz NPMLE).

c_i ~ Binomial(n_i, p_i), p_i ~ G with G any distribution on a fixed grid of p (an atom at 0,
log-spaced points 10^-7 .. 1 and a linear grid on [0, 1]). G maximises
log L(G) = Σ_i log Σ_j G_j Binom(c_i; n_i, p_j), a concave problem solved by EM
(G_j ← G_j · mean_i [Binom(c_i; n_i, p_j) / Σ_l G_l Binom(c_i; n_i, p_l)]).

The likelihood of (n_i, c_i) is the same whatever rule chose n_i from earlier outcomes, so the fit
and its posteriors stay valid for adaptively allocated runs. Unlike a parametric family, G puts
mass wherever the data see it: samples deep enough on unsolved problems (n_i ~ K) measure the mass
at p ~ 1/K that decides pass@K, and where no problem is that deep, G knows nothing of it: the
likelihood is flat over p << 1/max n_i, so EM keeps its uniform start's shape there (equal weights
on 0 and on the log-spaced points below ~1/max n_i), and pass@K at K >> max n_i leans on that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, chi2

GRID = np.unique(np.concatenate([[0.0], np.logspace(-7, 0, 71), np.linspace(0, 1, 101)]))
ITERATIONS = 3000  # EM steps at most
TOLERANCE = 1e-9  # stop when log L (nats per problem) rises less than this in a step


@dataclass(frozen=True)
class MixingFit:
    """G over ``GRID`` fitted to counted (n, c) pairs: ``weights`` [J] sum to 1; ``loglik`` in nats."""

    weights: np.ndarray
    loglik: float

    def pass_at_k(self, k) -> np.ndarray:
        """Population E_G[pass@k] = Σ_j G_j (1 − (1 − p_j)^k): float64 [K]."""
        return success_at_grid(np.atleast_1d(k)) @ self.weights

    def posterior(self, n, c, k) -> tuple[np.ndarray, np.ndarray]:
        """(E, Var) of pass@k_i = 1 − (1 − p_i)^k given (n_i, c_i) under G: float64 [P, K] each."""
        post = posterior_weights(self.weights, np.asarray(n), np.asarray(c))
        g = success_at_grid(np.atleast_1d(k))
        mean = post @ g.T
        return mean, np.maximum(post @ (g ** 2).T - mean ** 2, 0.0)


def failure_at_grid(draws: np.ndarray) -> np.ndarray:
    """(1 − p_j)^m for each m in ``draws`` (any shape) and grid point: float64 [*draws.shape, J]."""
    with np.errstate(divide="ignore"):
        log_fail = np.log1p(-GRID)  # −inf at p = 1
    with np.errstate(invalid="ignore"):
        out = np.exp(np.asarray(draws, np.float64)[..., None] * log_fail)
    return np.where(np.asarray(draws)[..., None] == 0, 1.0, out)  # 0 · −inf: (1 − 1)^0 = 1


def success_at_grid(k) -> np.ndarray:
    """pass@k at each grid point, 1 − (1 − p_j)^k: float64 [*k.shape, J]."""
    return 1.0 - failure_at_grid(np.asarray(k))


def _log_likelihoods(n: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Binom(c_i; n_i, p_j) / its row maximum [P, J], log of the row maxima [P]): rows peak at 1."""
    log = binom.logpmf(np.asarray(c)[:, None], np.asarray(n)[:, None], GRID[None, :])
    scale = log.max(axis=1)
    return np.exp(log - scale[:, None]), scale


def posterior_weights(weights: np.ndarray, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """P(p_i = p_j | n_i, c_i) ∝ G_j Binom(c_i; n_i, p_j): float64 [P, J]."""
    joint = _log_likelihoods(n, c)[0] * weights[None, :]
    return joint / joint.sum(axis=1, keepdims=True)


def em(lik: np.ndarray, counts: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """EM for G from ``start`` (default uniform), given scaled likelihoods [U, J] of U distinct (n, c)
    pairs seen ``counts`` [U] times: stops after ITERATIONS steps or when log L per problem rises less
    than TOLERANCE: float64 [J]."""
    weights = np.full(GRID.size, 1.0 / GRID.size) if start is None else start
    share, last = counts / counts.sum(), -np.inf
    for _ in range(ITERATIONS):
        mix = np.maximum(lik @ weights, 1e-300)
        weights = weights * ((share / mix) @ lik)
        weights /= weights.sum()
        value = float(share @ np.log(mix))
        if value - last < TOLERANCE:
            break
        last = value
    return weights


def fit_npmle(n, c) -> MixingFit:
    """The NPMLE of G (module docstring) from per-problem counts n_i >= 0, 0 <= c_i <= n_i."""
    pairs, counts = np.unique(np.stack([np.asarray(n, np.int64), np.asarray(c, np.int64)]), axis=1,
                              return_counts=True)
    lik, scale = _log_likelihoods(*pairs)
    weights = em(lik, counts.astype(np.float64))
    return MixingFit(weights, float(counts @ (np.log(lik @ weights) + scale)))


def _frontier_end(lik: np.ndarray, counts: np.ndarray, target: np.ndarray, start: np.ndarray, floor: float) -> float:
    """max E_G[target] over priors G with log L(G) >= ``floor``: the concave (E_G[target], log L)
    frontier is traced by maximising log L(G) + m log E_G[target] (EM with ``target`` as a pseudo-
    observation seen m times) for m doubling from 2^-10 × the problems; linear between the last two
    frontier points where log L crosses ``floor`` (a point inside the set, so never past its end).
    Each EM starts from the last point mixed with 10^-3 of the uniform prior: EM cannot revive a
    grid point whose weight has reached 0."""
    rows, weights = np.vstack([lik, target]), start
    value, last = float(start @ target), float(counts @ np.log(lik @ start))
    for m in counts.sum() * 2.0 ** np.arange(-10, 21):
        weights = em(rows, np.append(counts, m), (1 - 1e-3) * weights + 1e-3 / GRID.size)
        now, loglik = float(weights @ target), float(counts @ np.log(np.maximum(lik @ weights, 1e-300)))
        if loglik < floor:
            return value + (now - value) * (last - floor) / (last - loglik)
        value, last = now, loglik
    return value


def pass_at_k_bounds(n, c, k, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the population pass@k = E_G[1 − (1 − p)^k] over every prior G on ``GRID``
    whose log-likelihood is within χ²_1(level)/2 nats of the NPMLE's (the profile-likelihood
    interval with no shape assumed): float64 [K] each. Where k >> max n_i it spans every placement of
    the c = 0 problems' mass below ~1/n_i that the counts allow (the identified set, widened for
    sampling), so it covers whatever the left tail is, and is as wide as the data leave it."""
    pairs, counts = np.unique(np.stack([np.asarray(n, np.int64), np.asarray(c, np.int64)]), axis=1,
                              return_counts=True)
    lik, counts = _log_likelihoods(*pairs)[0], counts.astype(np.float64)
    best = em(lik, counts)
    floor = float(counts @ np.log(lik @ best)) - chi2.ppf(level, 1) / 2
    success = success_at_grid(np.atleast_1d(np.asarray(k)))
    high = [_frontier_end(lik, counts, s, best, floor) for s in success]
    low = [1 - _frontier_end(lik, counts, 1 - s, best, floor) for s in success]
    return np.array(low), np.array(high)
