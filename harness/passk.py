"""Unbiased pass@k, maj@k, the T² task loss and the Beta model of per-question success rates.

Per problem i with n_i samples of which c_i are correct:

- pass@k (Chen et al. 2021) = 1 − C(n−c, k)/C(n, k) = 1 − ∏_{j=0}^{k−1} (1 − c/(n−j)): the chance
  that a uniformly random size-k subset of the n samples holds a correct one; 1 when n − c < k.
- maj@k: the chance that the majority answer of a uniformly random size-k subset is correct.
- likelihood mode: p_i = exp(−NLL_i) of the gold answer, pass@k_i = 1 − (1 − p_i)^k for every k.
- task loss (T² Approach 1) = mean_i −log pass@k_i.
- Beta model: p_i ~ Beta(a, b) gives E[pass@k] = 1 − B(a, b+k)/B(a, b), for any k (also k > n).
- Past n: :func:`extrapolate_pass_at_k` also fits point masses of never- and always-solved
  problems and mixtures of two Betas, picks a model by BIC and widens its interval over the
  plausible ones.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.fft
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, logsumexp, polygamma
from scipy.stats import binom, norm

from harness import records
from harness.errors import DataError

_BLOCK = 1 << 20  # float64 entries per [problems, k] block in pass_at_k (8 MiB)


def _counts(name: str, x) -> np.ndarray:
    """``x`` as a 1-D int64 array of counts; integral floats (from nullable columns) are accepted."""
    arr = np.atleast_1d(np.asarray(x))
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a scalar or a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name}: empty input, expected at least one value")
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{name}: expected integer counts, got {arr.dtype} values")
    return arr.astype(np.int64)


def _check_k(ks: np.ndarray, n: np.ndarray) -> None:
    if ks.min() < 1:
        raise DataError(f"k={ks.min()}: expected k >= 1")
    i = int(np.argmin(n))
    if ks.max() > n[i]:
        raise DataError(f"problem {i}: k={ks.max()} > n={n[i]} samples (pass@k from samples needs k <= n)")


def _sample_counts(n, c) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) as int64 [P], checked: same length, 0 <= c <= n; errors name the problem index."""
    n, c = _counts("n", n), _counts("c", c)
    if n.shape != c.shape:
        raise DataError(f"n and c: expected the same number of problems, got {n.size} and {c.size}")
    for name, arr in (("n", n), ("c", c)):
        if arr.min() < 0:
            i = int(np.argmin(arr))
            raise DataError(f"problem {i}: negative count {name}={arr[i]}")
    if np.any(c > n):
        i = int(np.argmax(c > n))
        raise DataError(f"problem {i}: c={c[i]} correct > n={n[i]} samples")
    return n, c


def _log_fail(n, c, k) -> tuple[np.ndarray, np.ndarray]:
    """(log C(n−c, k)/C(n, k) as float64 [P, K], k as int64 [K]), validated.

    Row p is the cumulative sum over j < k of log1p(−c/(n−j)), computed for all k ≤ max k at
    once on a [problems, max k] grid (in blocks of problems to bound memory); −inf once k > n − c.
    """
    n, c = _sample_counts(n, c)
    ks = _counts("k", k)
    _check_k(ks, n)
    kmax = int(ks.max())
    j = np.arange(kmax)
    out = np.empty((n.size, ks.size))
    rows = max(1, _BLOCK // kmax)
    for start in range(0, n.size, rows):
        nb, cb = n[start:start + rows, None], c[start:start + rows, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.log1p(-cb / (nb - j))
        terms[j >= nb - cb] = -np.inf  # a size-(j+1) subset of the n − c failures does not exist
        out[start:start + rows] = np.cumsum(terms, axis=1)[:, ks - 1]
    return out, ks


def pass_at_k(n, c, k) -> np.ndarray:
    """Unbiased pass@k = 1 − C(n−c, k)/C(n, k) per problem and k: float64 [P, K].

    n, c: samples and correct samples per problem (int arrays [P], or scalars); k: int or int
    array [K]. Problems may have different n; every k must be <= every n. Absolute error <= 1e-12
    in float64 for n up to 10^4 (computed as −expm1 of a cumulative sum of log1p terms).
    """
    log_fail, _ = _log_fail(n, c, k)
    return 0.0 - np.expm1(log_fail)  # 0.0 −: c = 0 gives +0.0, not −0.0


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 − e^{−x}) for x >= 0, accurate for small and large x (Mächler 2012)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(x < np.log(2), np.log(-np.expm1(-x)), np.log1p(-np.exp(-x)))


def log_pass_at_k_from_nll(nll, k) -> np.ndarray:
    """log pass@k_i = log(1 − (1 − p_i)^k) with p_i = exp(−NLL_i): float64 [P, K].

    Computed as log1mexp(−k · log1mexp(NLL)), so p near 1 (NLL → 0), tiny p and large k keep
    full relative precision. NLL in nats, >= 0; k any positive integer (no sampling limit).
    """
    nll = np.atleast_1d(np.asarray(nll, dtype=np.float64))
    if nll.ndim != 1 or nll.size == 0:
        raise DataError(f"nll: expected a non-empty 1-D array, got shape {nll.shape}")
    bad = ~(nll >= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"problem {i}: nll={nll[i]}, expected a non-negative number (nats)")
    ks = _counts("k", k)
    if ks.min() < 1:
        raise DataError(f"k={ks.min()}: expected k >= 1")
    log_fail_once = _log1mexp(nll)  # log(1 − p_i) <= 0
    with np.errstate(invalid="ignore"):  # p = 1: −inf · k
        z = -ks[None, :] * log_fail_once[:, None]
    return _log1mexp(np.where(np.isnan(z), np.inf, z))


def task_loss_from_nll(nll, k) -> np.ndarray:
    """T² task loss mean_i −log pass@k_i with p_i = exp(−NLL_i): float64 [K]."""
    return 0.0 - log_pass_at_k_from_nll(nll, k).mean(axis=0)  # 0.0 −: a zero loss is +0.0


def task_loss_from_samples(n, c, k, prior: tuple[float, float] | None = None) -> tuple[np.ndarray, int]:
    """T² task loss mean_i −log pass@k_i from sampled pass@k: (float64 [K], questions smoothed).

    A question with c_i = 0 has sampled pass@k = 0 and an infinite loss; it is smoothed instead
    with the Beta(a, b) prior over questions (default: ``fit_beta(n, c)``) updated by its n_i
    failures, i.e. its posterior Beta(a, b + n_i), giving the posterior-predictive
    pass@k_i = E[1 − (1 − p)^k] = 1 − B(a, b + n_i + k)/B(a, b + n_i) = beta_pass_at_k(a, b + n_i, k).
    """
    log_fail, ks = _log_fail(n, c, k)
    n, c = _sample_counts(n, c)
    with np.errstate(divide="ignore"):
        log_pass = np.log(-np.expm1(log_fail))
    smoothed = c == 0
    if smoothed.any():
        a, b = prior if prior is not None else fit_beta(n, c)
        log_pass[smoothed] = np.log(beta_pass_at_k(a, b + n[smoothed, None], ks[None, :]))
    return 0.0 - log_pass.mean(axis=0), int(smoothed.sum())


_STIRLING_FROM = 20.0  # where _log_beta_ratio_stirling uses Stirling's series (b below it is moved up to it)
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188)  # R(x) = Σ_j c_j x^−(2j+1), j = 0..4


def _stirling_step(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """R(x + k) − R(x) for Stirling's remainder R(x) = log Γ(x) − ((x − ½) log x − x + ½ log 2π)
    = Σ_j c_j x^−(2j+1) (truncated after x⁻⁹: error < 691/(360360 x¹¹), < 1e-17 for x >= 20), term by term
    as c_j x^−n expm1(−n log1p(k/x)), which keeps its digits when k << x."""
    steps = np.log1p(k / x)
    return sum(c * x ** -(2 * j + 1) * np.expm1(-(2 * j + 1) * steps) for j, c in enumerate(_STIRLING))


def _log_step(a: np.ndarray, x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log(x (a + x + k) / ((a + x)(x + k))) = log1p(−r), r = ak / ((a + x)(x + k)) ∈ [0, 1); for r > ½, where
    1 − r itself cancels, as log1p(k/(a + x)) − log1p(k/x)."""
    r = a * k / ((a + x) * (x + k))
    return np.where(r <= 0.5, np.log1p(-r), np.log1p(k / (a + x)) - np.log1p(k / x))


def _log_beta_ratio_stirling(a: np.ndarray, b: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log B(a, b + k) − log B(a, b) with no step cancelling more than a few digits (relative error < 1e-10
    against 50-digit arithmetic). For b >= 20, from Stirling's log Γ(x) = (x − ½) log x − x + ½ log 2π + R(x):
    δ = (b − ½) log1p(ak / (b(a + b + k))) − a log1p(k/(a + b)) − k log1p(a/(b + k))
    + R(b + k) − R(b) − R(a + b + k) + R(a + b). Below, B(a, x + 1) = B(a, x)·x/(a + x) moves b up by
    m = ⌈20 − b⌉: δ(b) = δ(b + m) + Σ_{j<m} log(x_j (a + x_j + k) / ((a + x_j)(x_j + k))), x_j = b + j."""
    steps = np.maximum(np.ceil(_STIRLING_FROM - b), 0.0)
    shift = sum(np.where(j < steps, _log_step(a, b + j, k), 0.0) for j in range(int(steps.max(initial=0.0))))
    b = b + steps
    ab = a + b
    return (shift + (b - 0.5) * np.log1p(a * k / (b * (ab + k))) - a * np.log1p(k / ab)
            - k * np.log1p(a / (b + k)) + _stirling_step(b, k) - _stirling_step(ab, k))


def _log_gamma_scale(x: np.ndarray) -> np.ndarray:
    """g(x) = (x + 1)|log x| + x + 1 >= |log Γ(x)| for x > 0, falling to x = 1 and rising after."""
    return (x + 1) * np.abs(np.log(x)) + x + 1


def log_beta_shift(a, b, c, d) -> np.ndarray:
    """log B(a + c, b + d) − log B(a, b) for a, b > 0, c, d >= 0: for c successes in c + d draws the
    Beta-binomial's log-likelihood less its binomial coefficient; with c = 0, d = k, log E[(1 − p)^k] for
    p ~ Beta(a, b). float64, broadcast.

    scipy's betaln(x, y) = log Γ(x) + log Γ(y) − log Γ(x + y) has an absolute error of ~ε·Σ|log Γ|,
    which is all of the difference when a Beta is concentrated (a = 234, b = 5·10⁷, d = 1: 5% off, and
    an optimizer on it stalled). Where that error could exceed 1e-10 of the result the difference is
    computed again in two :func:`_log_beta_ratio_stirling` steps (a by c, then b by d), which keep it.
    """
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (a, b, c, d))
    with np.errstate(invalid="ignore"):  # b = ∞ (ν overflowed): NaN, as betaln gives
        delta = np.asarray(betaln(a + c, b + d) - betaln(a, b))
        # Σ|log Γ| over betaln's six arguments <= 4 g(a + b + c + d) + g(a) + g(b)
        scale = 4 * _log_gamma_scale(a + b + c + d) + _log_gamma_scale(a) + _log_gamma_scale(b)
        redo = scale * np.finfo(np.float64).eps > 1e-10 * np.abs(delta)
        if redo.any():
            shape = delta.shape
            delta = delta.ravel()
            redo = np.flatnonzero(redo.ravel())
            a, b, c, d = (np.broadcast_to(x, shape).ravel()[redo] for x in (a, b, c, d))
            delta[redo] = _log_beta_ratio_stirling(a + c, b, d)
            moved = c > 0  # (the first step is 0 where c = 0)
            delta[redo[moved]] += _log_beta_ratio_stirling(b[moved], a[moved], c[moved])
            delta = delta.reshape(shape)
    return delta[()]


def log_beta_ratio(a, b, k) -> np.ndarray:
    """δ = log B(a, b + k) − log B(a, b) = log E[(1 − p)^k] for p ~ Beta(a, b); a, b > 0, k >= 0:
    :func:`log_beta_shift` (a, b, 0, k), accurate where scipy's betaln difference is not."""
    return log_beta_shift(a, b, 0.0, k)


def beta_pass_at_k(a, b, k) -> np.ndarray:
    """E[pass@k] = 1 − B(a, b+k)/B(a, b) = −expm1(:func:`log_beta_ratio`) for p ~ Beta(a, b).

    Broadcasts over a, b and k (any k >= 0, not limited by a sample count); float64. Where floating
    point leaves (0, ∞) its limits: 0 where a underflowed to 0, 1 where b rounded to 0 (mean within an
    ulp of 1).
    """
    a, b, k = (np.asarray(x, dtype=np.float64) for x in (a, b, k))
    ok = (a > 0) & (b > 0)
    delta = np.minimum(log_beta_ratio(np.where(ok, a, 1.0), np.where(ok, b, 1.0), k), 0.0)  # B(a, b+k) <= B(a, b)
    return np.where(ok, -np.expm1(delta), np.where(b > 0, 0.0, 1.0))[()]


@dataclass(frozen=True)
class BetaFit:
    """Maximum-likelihood Beta-binomial fit over problems.

    cov: covariance of (log a, log b), the inverse observed information at the optimum (NaN
    when the optimum sits on the search bounds, e.g. no problem was ever solved).
    """

    a: float
    b: float
    cov: np.ndarray
    loglik: float  # log-likelihood of the (n, c) counts, nats
    n_problems: int

    def pass_at_k(self, k) -> np.ndarray:
        """1 − B(a, b+k)/B(a, b)."""
        return beta_pass_at_k(self.a, self.b, k)

    def pass_at_k_interval(self, k, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) for pass@k by the delta method on log(1 − pass@k) = :func:`log_beta_ratio` (a, b, k).

        Gradient with respect to (log a, log b): a·(ψ(a+b) − ψ(a+b+k)) and
        b·(ψ(b+k) − ψ(b) + ψ(a+b) − ψ(a+b+k)); the interval maps back through −expm1, so it
        stays inside [0, 1].
        """
        a, b, k = self.a, self.b, np.asarray(k, dtype=np.float64)
        d = log_beta_ratio(a, b, k)
        grad = np.stack([a * (digamma(a + b) - digamma(a + b + k)),
                         b * (digamma(b + k) - digamma(b) + digamma(a + b) - digamma(a + b + k))])
        se = np.sqrt(np.einsum("i...,ij,j...->...", grad, self.cov, grad))
        z = norm.ppf(0.5 + level / 2)
        return -np.expm1(d + z * se), -np.expm1(d - z * se)


_LOG_BOUND = 15.0  # search |log a|, |log b| <= 15


def _trigamma(x):
    return polygamma(1, x)


def _beta_binomial_terms(a, b, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(∂/∂a, ∂/∂b) of betaln(c_i + a, n_i − c_i + b) − betaln(a, b) per problem: [2, *broadcast shape]."""
    both = digamma(a + b) - digamma(n + a + b)
    return np.stack(np.broadcast_arrays(digamma(c + a) - digamma(a) + both, digamma(n - c + b) - digamma(b) + both))


def _beta_binomial_score(a: float, b: float, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(∂/∂a, ∂/∂b) of Σ_i betaln(c_i + a, n_i − c_i + b) − betaln(a, b)."""
    return _beta_binomial_terms(a, b, n, c).sum(axis=-1)


def fit_beta_binomial(n, c) -> BetaFit:
    """Maximum-likelihood (a, b) of c_i ~ BetaBinomial(n_i, a, b), with the fit's covariance.

    log L = Σ_i log C(n_i, c_i) + log B(c_i + a, n_i − c_i + b) − log B(a, b) (:func:`log_beta_shift`), maximised over
    (log a, log b) ∈ [−15, 15]² by L-BFGS-B with the analytic gradient. Problems with n_i = 0 carry
    no information and are dropped. When no (or every) problem was ever solved the optimum runs to
    the bound and the covariance is NaN.
    """
    n, c = _sample_counts(n, c)
    keep = n > 0
    if not keep.any():
        raise DataError("fit_beta: no problem has samples (all n = 0)")
    n, c = n[keep].astype(np.float64), c[keep].astype(np.float64)

    def neg_loglik(theta):
        a, b = np.exp(theta)
        ll = np.sum(log_beta_shift(a, b, c, n - c))
        return -ll, -np.exp(theta) * _beta_binomial_score(a, b, n, c)

    mean = np.clip(c.sum() / n.sum(), 1e-3, 1 - 1e-3)
    res = minimize(neg_loglik, np.log([mean, 1 - mean]), jac=True, method="L-BFGS-B",
                   bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 2)
    a, b = np.exp(res.x)
    ga, gb = _beta_binomial_score(a, b, n, c)
    t1 = _trigamma
    haa = np.sum(t1(c + a) - t1(n + a + b) - t1(a) + t1(a + b))
    hbb = np.sum(t1(n - c + b) - t1(n + a + b) - t1(b) + t1(a + b))
    hab = np.sum(t1(a + b) - t1(n + a + b))
    # observed information in (log a, log b), by the chain rule d²/du² = a² ∂²/∂a² + a ∂/∂a
    info = -np.array([[a * a * haa + a * ga, a * b * hab], [a * b * hab, b * b * hbb + b * gb]])
    on_bound = np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6)
    cov = (np.linalg.inv(info) if not on_bound and np.all(np.linalg.eigvalsh(info) > 0)
           else np.full((2, 2), np.nan))
    loglik = float(-res.fun + np.sum(gammaln(n + 1) - gammaln(c + 1) - gammaln(n - c + 1)))
    return BetaFit(float(a), float(b), cov, loglik, int(keep.sum()))


def fit_beta(n, c) -> tuple[float, float]:
    """Maximum-likelihood Beta-binomial (a, b) over problems; see :func:`fit_beta_binomial`."""
    fit = fit_beta_binomial(n, c)
    return fit.a, fit.b


# ---- extrapolation past n -------------------------------------------------------------------------

_MODELS = {  # name: (Beta components, point mass at p = 0, point mass at p = 1)
    "beta-binomial": (1, False, False),
    "zero-inflated beta-binomial": (1, True, False),
    "zero-one-inflated beta-binomial": (1, True, True),
    "zero-inflated two-beta mixture": (2, True, False),
    "zero-one-inflated two-beta mixture": (2, True, True),
}
_PLAUSIBLE = 0.05  # BIC weight from which a model's interval joins the reported one


def _parameters(model: str) -> int:
    """Free parameters of a success model: (a, b) per Beta component and one weight per other component."""
    betas, zero, one = _MODELS[model]
    return 2 * betas + betas - 1 + zero + one


@dataclass(frozen=True)
class SuccessFit:
    """p ~ zero·δ_0 + one·δ_1 + Σ_j w_j·Beta(a_j, b_j) over problems (one or two Beta components),
    fitted by maximum likelihood.

    theta: (log a_1, log b_1[, log a_2, log b_2, η_2][, η_0][, η_1]) with (Beta_1[, Beta_2], zero,
    one) weights = softmax(0[, η_2], η_0, η_1); Beta_1 has the lower mean a/(a + b) (the labels are
    ordered so the fit is identifiable). cov: its covariance, the inverse observed information
    (pseudo-inverse when singular, e.g. a point mass at its bound); loglik in nats (with the
    binomial coefficients).
    """

    model: str
    theta: np.ndarray
    cov: np.ndarray
    loglik: float
    n_problems: int

    @property
    def bic(self) -> float:
        """Bayesian information criterion, #parameters · log #problems − 2 log L."""
        return self.theta.size * np.log(self.n_problems) - 2 * self.loglik

    @property
    def params(self) -> dict[str, float]:
        """a, b (Beta_1), [a2, b2, mix2 (Beta_2 and its weight),] zero, one (point-mass weights)."""
        a, b, log_w = _components(self.theta, self.model)
        w = np.exp(log_w)
        second = {"a2": float(a[1]), "b2": float(b[1]), "mix2": float(w[1])} if a.size == 2 else {}
        return {"a": float(a[0]), "b": float(b[0]), **second, "zero": float(w[-2]), "one": float(w[-1])}

    def pass_at_k(self, k) -> np.ndarray:
        """Population E[pass@k] = one + Σ_j w_j (1 − B(a_j, b_j + k)/B(a_j, b_j)), any k >= 0."""
        a, b, log_w = _components(self.theta, self.model)
        w, k = np.exp(log_w), np.asarray(k, dtype=np.float64)
        return w[-1] + sum(w[j] * beta_pass_at_k(a[j], b[j], k) for j in range(a.size))

    def posterior(self, n, c, k) -> tuple[np.ndarray, np.ndarray]:
        """(E, Var) of pass@k_i = 1 − (1 − p_i)^k given (n_i, c_i), at the fitted θ: float64 [P, K] each."""
        n, c = _sample_counts(n, c)
        return _posterior_pass(self, self.theta, n.astype(np.float64), c.astype(np.float64), _counts("k", k))


def _components(theta: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a [B], b [B], log weights [B + 2] of (Beta_1 .. Beta_B, zero, one)): softmax(0, η...), absent
    point masses at −inf."""
    betas, zero, one = _MODELS[model]
    rest = iter(theta[2 * betas:])
    logits = np.array([0.0] + [next(rest) for _ in range(betas - 1)]
                      + [next(rest) if zero else -np.inf, next(rest) if one else -np.inf])
    top = logits.max()
    return np.exp(theta[0:2 * betas:2]), np.exp(theta[1:2 * betas:2]), logits - top - np.log(np.exp(logits - top).sum())


def _log_joint(theta: np.ndarray, model: str, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """log P(component, c | n) per problem for (Beta_1 .. Beta_B, zero, one): float64 [B + 2, P]."""
    a, b, log_w = _components(theta, model)
    log_choose = gammaln(n + 1) - gammaln(c + 1) - gammaln(n - c + 1)
    beta_binomial = log_choose + log_beta_shift(a[:, None], b[:, None], c, n - c)
    with np.errstate(divide="ignore"):
        masses = np.stack([np.log(c == 0), np.log(c == n)])
    return log_w[:, None] + np.concatenate([beta_binomial, masses])


def _loglik(theta, model: str, n, c, weight) -> float:
    return _loglik_and_score(np.asarray(theta), model, n, c, weight)[0]


def _loglik_and_score(theta: np.ndarray, model: str, n, c, weight) -> tuple[float, np.ndarray]:
    """(log L, ∂ log L/∂θ) over counted (n, c) pairs. With r_ij the posterior share of component j:
    ∂/∂ log a_j = Σ_i r_ij a_j ∂ℓ_ij/∂a_j (likewise b_j), ∂/∂η_l = Σ_i (r_il − w_l)."""
    joint = _log_joint(theta, model, n, c)
    top = joint.max(axis=0)
    share = np.exp(joint - top)
    total = share.sum(axis=0)
    share = share / total * weight
    a, b, log_w = _components(theta, model)
    betas = a.size
    terms = _beta_binomial_terms(a[:, None], b[:, None], n, c)  # [2, B, P]
    grad = (share[:betas] * terms).sum(axis=-1) * np.stack([a, b])  # [2, B]
    free = [*range(1, betas), *[betas + j for j, kept in enumerate(_MODELS[model][1:]) if kept]]
    eta = share[free].sum(axis=1) - np.exp(log_w[free]) * weight.sum()
    return float(weight @ (top + np.log(total))), np.concatenate([grad.T.ravel(), eta])


def _hessian(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of a scalar function of a few parameters."""
    steps = np.eye(x.size) * h
    out = np.empty((x.size, x.size))
    for i, j in itertools.combinations_with_replacement(range(x.size), 2):
        out[i, j] = out[j, i] = (f(x + steps[i] + steps[j]) - f(x + steps[i] - steps[j])
                                 - f(x - steps[i] + steps[j]) + f(x - steps[i] - steps[j])) / (4 * h * h)
    return out


_SPLITS = (0.3, 0.6, 0.85)  # quantiles of c/n among solved problems that seed the two Beta components


def _starts(model: str, n: np.ndarray, c: np.ndarray, weight: np.ndarray) -> list[list[float]]:
    """Deterministic starting θs: moments for one Beta; for two, the solved problems split at each
    quantile in ``_SPLITS`` of c/n, each side a Beta of its mean rate with a + b = 2."""
    betas, zero, one = _MODELS[model]
    masses = [np.log(max(weight[c == 0].sum() / weight.sum(), 1e-3) / 2)] if zero else []
    masses += [np.log(max(weight[c == n].sum() / weight.sum(), 1e-3) / 2)] if one else []
    mean = np.clip(c @ weight / max(n @ weight, 1), 1e-3, 1 - 1e-3)
    if betas == 1:
        return [[np.log(mean), np.log1p(-mean), *masses]]
    solved = c > 0
    rate, share = (c / np.maximum(n, 1))[solved], weight[solved]
    if share.sum() == 0:
        rate, share = np.array([mean]), np.array([1.0])
    order = np.argsort(rate)
    rate, cum = rate[order], np.cumsum(share[order]) / share.sum()
    starts = []
    for q in _SPLITS:
        low = cum <= q
        m1 = np.clip(np.average(rate[low], weights=share[order][low]) if low.any() else rate[0] / 2, 1e-3, 0.999)
        m2 = np.clip(np.average(rate[~low], weights=share[order][~low]) if (~low).any() else 0.999, m1, 0.999)
        spread = [np.log(2 * m1), np.log(2 - 2 * m1), np.log(2 * m2), np.log(2 - 2 * m2)]
        starts.append([*spread, np.log((1 - q) / q), *masses])
    return starts


def _ordered(theta: np.ndarray, model: str) -> np.ndarray:
    """θ with the Beta components relabelled so Beta_1 has the lower mean (the likelihood is symmetric):
    swapping 1 and 2 maps η_2 → −η_2 and every other η → η − η_2."""
    a, b, _ = _components(theta, model)
    if a.size == 1 or a[0] / (a[0] + b[0]) <= a[1] / (a[1] + b[1]):
        return theta
    eta2 = theta[4]
    return np.concatenate([theta[2:4], theta[0:2], [-eta2], theta[5:] - eta2])


def fit_success_model(n, c, model: str = "zero-inflated beta-binomial") -> SuccessFit:
    """Maximum-likelihood :class:`SuccessFit` of c_i ~ Binomial(n_i, p_i), p_i ~ the ``model``.

    log L = Σ_i log(Σ_j w_j BetaBinomial(c_i; n_i, a_j, b_j) + w_0 [c_i = 0] + w_1 [c_i = n_i]), over
    the distinct (n, c) pairs (counted), by L-BFGS-B within |log a_j|, |log b_j| <= 12, η in [−25, 10],
    from the deterministic starts of :func:`_starts` (the best optimum kept).
    """
    if model not in _MODELS:
        raise ValueError(f"model: expected one of {', '.join(_MODELS)}, got {model!r}")
    n, c = _sample_counts(n, c)
    pairs, weight = np.unique(np.stack([n, c]), axis=1, return_counts=True)
    n, c = pairs.astype(np.float64)
    betas, zero, one = _MODELS[model]

    def neg(theta):
        return -_loglik(theta, model, n, c, weight)

    def neg_and_grad(theta):
        value, score = _loglik_and_score(theta, model, n, c, weight)
        return -value, -score

    bounds = [(-12, 12)] * (2 * betas) + [(-25, 10)] * (_parameters(model) - 2 * betas)
    res = min((minimize(neg_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds)
               for start in _starts(model, n, c, weight)), key=lambda r: r.fun)
    theta = _ordered(res.x, model)
    cov = np.linalg.pinv(_hessian(neg, theta), hermitian=True)
    return SuccessFit(model, theta, cov, float(-neg(theta)), int(weight.sum()))


def _posterior_pass(fit: SuccessFit, theta: np.ndarray, n: np.ndarray, c: np.ndarray, ks: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(E, Var) of pass@k_i = 1 − (1 − p_i)^k given (n_i, c_i) under ``fit``'s model at ``theta``:
    float64 [P, K] each. Components weigh by their posterior; Beta_j's is Beta(a_j + c, b_j + n − c),
    with E[(1 − p)^m] = B(a_j + c, b_j + n − c + m)/B(a_j + c, b_j + n − c) for m = k, 2k."""
    joint = _log_joint(theta, fit.model, n, c)
    w = np.exp(joint - logsumexp(joint, axis=0))[:, :, None]
    a0, b0, _ = _components(theta, fit.model)
    mean = second = np.broadcast_to(w[-1], (n.size, ks.size))
    for j in range(a0.size):
        a, b = a0[j] + c[:, None], b0[j] + (n - c)[:, None]
        fail, fail2 = (np.exp(log_beta_ratio(a, b, m * ks[None, :])) for m in (1, 2))
        mean = mean + w[j] * (1 - fail)
        second = second + w[j] * (1 - 2 * fail + fail2)
    mean = np.clip(mean, 0.0, 1.0)  # (1 − fail can round below 0 when fail ≈ 1)
    return mean, np.maximum(second - mean ** 2, 0.0)  # >= 0 up to rounding


@dataclass(frozen=True)
class Extrapolation:
    """pass@k over problems for any k (:func:`extrapolate_pass_at_k`): float64 [K] each.

    per_problem [P, K]: the unbiased estimate where k <= n_i, the posterior mean beyond;
    posterior [P, K]: the posterior mean E[pass@k_i | n_i, c_i] under the chosen model everywhere.
    fits: every candidate model; weights: their BIC weights exp(−BIC/2), normalised; model: the
    chosen one's name (least BIC).
    """

    k: np.ndarray
    pass_at_k: np.ndarray
    low: np.ndarray
    high: np.ndarray
    model: str
    per_problem: np.ndarray
    posterior: np.ndarray
    fits: tuple[SuccessFit, ...]
    weights: np.ndarray


def _sampled_pass(n: np.ndarray, c: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Unbiased pass@k per problem where k <= n_i, NaN elsewhere: float64 [P, K]."""
    out = np.full((n.size, ks.size), np.nan)
    for i, k in enumerate(ks.tolist()):
        enough = n >= k
        if enough.any():
            out[enough, i] = pass_at_k(n[enough], c[enough], k)[:, 0]
    return out


def _model_interval(fit: SuccessFit, n, c, ks, sampled: np.ndarray, level: float
                    ) -> tuple[np.ndarray, ...]:
    """(estimate, low, high, per problem, posterior means) under one fitted model. Estimate = mean_i of the sampled
    pass@k_i, or the posterior mean where k > n_i. Its variance: the delta method over θ (central
    differences, the fit's covariance) plus Σ_i Var(pass@k_i | data)/P² (the problems' own
    randomness: the target is this benchmark's pass@k). The interval: see :func:`_interval`."""
    def per_problem(theta):
        return np.where(np.isnan(sampled), _posterior_pass(fit, theta, n, c, ks)[0], sampled)

    posterior, var = _posterior_pass(fit, fit.theta, n, c, ks)
    values, h = np.where(np.isnan(sampled), posterior, sampled), 1e-5
    estimate = values.mean(axis=0)
    grad = np.stack([(per_problem(fit.theta + h * e) - per_problem(fit.theta - h * e)).mean(axis=0) / (2 * h)
                     for e in np.eye(fit.theta.size)])
    se = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", grad, fit.cov, grad), 0) + var.sum(axis=0) / n.size ** 2)
    return estimate, *_interval(estimate, se, level), values, posterior


def _interval(estimate: np.ndarray, se: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a proportion with standard error ``se``: normal on the logit scale, whose
    half-width z·se/(p(1 − p)) is the delta method's, while that is <= 1 (so the interval stays
    inside (0, 1)); past it, where the estimate sits closer to 0 or 1 than its own spread (or on
    0 or 1), the logit's linearisation fails (e.g. p = 1 − 3e-5, se = 1.5e-4 gave [0.39, 1]), so
    the normal interval on the probability scale, clipped to [0, 1]."""
    z = norm.ppf(0.5 + level / 2) * se
    p = np.clip(estimate, 1e-12, 1 - 1e-12)
    logit, half = np.log(p) - np.log1p(-p), z / (p * (1 - p))
    near_edge = (half > 1) | (estimate <= 0) | (estimate >= 1)
    low = np.where(near_edge, np.clip(estimate - z, 0, 1), expit(logit - half))
    high = np.where(near_edge, np.clip(estimate + z, 0, 1), expit(logit + half))
    return np.minimum(low, estimate), np.maximum(high, estimate)  # p's clip can cut off the estimate


def extrapolate_pass_at_k(n, c, k, level: float = 0.95, use_samples: bool = True) -> Extrapolation:
    """pass@k of a set of problems at any k >= 1, also past the samples (k > n_i).

    Fits p ~ Beta (beta-binomial), Beta + a point mass of never-solvable problems (zero-inflated),
    + a point mass of always-solved ones (zero-one-inflated), and the two inflated forms with two
    Beta components (a hard and an easy population) by maximum likelihood, and picks the least BIC
    (AIC picked the zero-inflated form for some all-Beta populations, off by 0.1). A model joins only
    when there are at least as many problems (with samples) as it has parameters (the beta-binomial
    always does): with fewer, BIC's penalty p·log P cannot hold a mixture back (at P = 1 it is 0).
    pass@k = mean_i of the unbiased estimate where k <= n_i and of the posterior
    mean E[1 − (1 − p_i)^k | n_i, c_i] under the chosen model where k > n_i (n_i may differ). The
    interval spans the intervals of every model with BIC weight >= 0.05 (model uncertainty);
    each covers parameter uncertainty and the problems' own randomness (:func:`_model_interval`).
    What n samples per problem cannot see, they cannot tell: mass at p << 1/n_max is told apart
    from p = 0 only by the family's shape (``results/bench/extrapolate.md`` measures where it fails).
    ``use_samples=False``: the posterior mean for every problem and k (an adaptively allocated run,
    whose n_i depend on the outcomes: the likelihood, unlike the fixed-n formula, ignores the
    stopping rule).
    """
    n, c = _sample_counts(n, c)
    ks = _counts("k", k)
    if ks.min() < 1:
        raise ValueError(f"k={ks.min()}: expected k >= 1")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected 0 < level < 1")
    if not np.any(n > 0):
        raise ValueError("extrapolate_pass_at_k: no problem has samples (all n = 0)")
    problems = int((n > 0).sum())
    fits = tuple(fit_success_model(n, c, model) for model in _MODELS
                 if model == "beta-binomial" or _parameters(model) <= problems)
    bic = np.array([f.bic for f in fits])
    weights = np.exp(-(bic - bic.min()) / 2)
    weights /= weights.sum()
    sampled = _sampled_pass(n, c, ks) if use_samples else np.full((n.size, ks.size), np.nan)
    nf, cf = n.astype(np.float64), c.astype(np.float64)
    results = [_model_interval(f, nf, cf, ks, sampled, level) for f in fits]
    best = int(np.argmin(bic))
    plausible = [r for r, w in zip(results, weights) if w >= _PLAUSIBLE]
    return Extrapolation(ks, results[best][0], np.min([r[1] for r in plausible], axis=0),
                         np.max([r[2] for r in plausible], axis=0), fits[best].model, *results[best][3:],
                         fits, weights)


class _LogComb:
    """log C(a, b) for integers 0 <= a <= n from one table of log-factorials (scipy's gammaln);
    −inf outside 0 <= b <= a. Each value carries an absolute error of a few ulp of log n!
    (ulp(log 1000!) ≈ 9e-13), hence a relative error <~ 1e-12 in the hypergeometric ratios exp(...)
    built from it at n ~ 1000 (as in the previous gammaln-based DP)."""

    def __init__(self, n: int):
        self.lf = gammaln(np.arange(n + 2, dtype=np.float64))  # lf[i] = log (i − 1)!

    def __call__(self, a, b) -> np.ndarray:
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
        ok = (b >= 0) & (b <= a)
        a, b = np.where(ok, a, 0), np.where(ok, b, 0)
        return np.where(ok, self.lf[a + 1] - self.lf[b + 1] - self.lf[a - b + 1], -np.inf)


def _vote_groups(answers: Sequence[str | None], correct: Sequence[float], k, name: str
                 ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, int]:
    """(n, k as int64 [K], answer-group sizes [G] largest first, their scores [G], abstentions),
    validated. An answer's score is the mean verdict of its samples; None answers abstain."""
    answers = list(answers)
    flags = np.asarray(correct, dtype=np.float64)
    n = len(answers)
    if n == 0 or flags.shape != (n,):
        raise DataError(f"{name}: expected one verdict per answer and n >= 1, got {n} answers "
                         f"and {flags.size} verdicts")
    ks = _counts("k", k)
    _check_k(ks, np.array([n]))
    groups: dict[str, list[float]] = defaultdict(list)
    for answer, flag in zip(answers, flags):
        if answer is not None:
            groups[answer].append(flag)
    sizes = np.array([len(v) for v in groups.values()], dtype=np.int64)
    scores = np.array([np.mean(v) for v in groups.values()], dtype=np.float64)
    order = np.argsort(-sizes, kind="stable")
    return n, ks, sizes[order], scores[order], n - int(sizes.sum())


def _majority_band(n: int, ks: np.ndarray, sizes: np.ndarray, weights: np.ndarray, lo: int, hi: int,
                   nodes: int, log_comb: _LogComb) -> np.ndarray:
    """Σ_g weights[s, g] P(answer g wins with v votes) for v = lo..hi: float64 [S, K, hi − lo + 1].

    The DP adds the answer groups largest first (so the rivals of v, the groups with >= v samples,
    are always a prefix) to a state Y[c, q, v, j] = (count of size-j subsets of the samples added
    so far, weighted as below) / C(added, j), every v at once. Each added group draws u < v of
    the subset, or exactly v and ties (a factor x); channel 0 is A(x) = Σ_{configurations}
    x^{#groups at v}, channel 1 + s is B_s(x) = Σ weight_s(tied set) x^{#groups at v}, the
    derivative of A with respect to the weights. A tie of t answers splits the win evenly, and
    Σ_t [x^t] B / t = ∫_0^1 B(x)/x dx, a polynomial of degree < ``2 nodes``: Gauss–Legendre with
    ``nodes`` points is exact. When the prefix of rivals of a v is complete, the remaining samples
    (smaller answers and abstentions) join unconstrained by one hypergeometric step to each k.
    """
    x, gl_w = np.polynomial.legendre.leggauss(nodes)
    x, gl_w = (x + 1) / 2, gl_w / 2  # on [0, 1]
    kmax = int(ks.max())
    n_w = weights.shape[0]
    out = np.zeros((n_w, ks.size, hi - lo + 1))
    y = np.zeros((1 + n_w, nodes, hi - lo + 1, kmax + 1))
    y[0, :, :, 0] = 1.0
    seen = support = 0  # samples added; largest j with y != 0

    def finish(first: int, last: int) -> None:  # slices lo + first .. lo + last − 1 are complete
        j = np.arange(support + 1)
        log_h = log_comb(seen, j)[None, :] + log_comb(n - seen, ks[:, None] - j) - log_comb(n, ks)[:, None]
        h = np.exp(log_h)  # [K, j]: C(seen, j) C(n − seen, k − j) / C(n, k)
        out[:, :, first:last] = np.einsum("sqvj,kj,q->skv", y[1:, :, first:last, : support + 1], h, gl_w / x)

    for r, m in enumerate(sizes):
        active = min(hi, int(m)) - lo + 1  # slices v <= m keep group r as a rival
        if active < y.shape[2]:
            finish(max(active, 0), y.shape[2])
            if active <= 0:
                return out
            y = y[:, :, :active]
        top = lo + active - 1  # largest v in play
        new_support = min(kmax, support + top, (r + 1) * top)  # each group draws <= top
        j, u = np.arange(new_support + 1)[:, None], np.arange(top + 1)[None, :]
        with np.errstate(invalid="ignore"):
            log_h = log_comb(seen, j - u) + log_comb(m, u) - log_comb(seen + m, j)
        h = np.exp(log_h)  # [j, u]: C(seen, j − u) C(m, u) / C(seen + m, j)
        y_new = np.zeros_like(y)
        for u in range(top + 1):
            length = min(support, new_support - u) + 1  # sources j' = 0 .. length − 1
            if length <= 0:
                break
            hu = h[u:u + length, u]
            i0 = max(0, u + 1 - lo)  # slices with v > u: group r draws fewer than v
            if i0 < active:
                y_new[:, :, i0:, u:u + length] += hu * y[:, :, i0:, :length]
            if u >= lo:  # slice v = u: group r draws exactly v, one more answer at v
                src = y[:, :, u - lo, :length]
                xh = x[:, None] * hu
                y_new[0, :, u - lo, u:u + length] += xh * src[0]
                y_new[1:, :, u - lo, u:u + length] += xh * (src[1:] + weights[:, r, None, None] * src[0])
        y, seen, support = y_new, seen + int(m), new_support
    finish(0, y.shape[2])
    return out


def _majority_counts(n: int, ks: np.ndarray, sizes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_g weights[s, g] P(answer g wins a uniformly random size-k subset with v votes), ties among
    t + 1 answers split evenly: float64 [S, K, max k + 1] (column v; column 0 stays 0).

    sizes: answer-group sizes, largest first; weights: [S, G] non-negative, e.g. the groups'
    scores (Σ_v gives maj@k) or ones (gives P(v)). Exact counting over all C(n, k) subsets,
    vectorised over v and subset sizes; v runs up to the largest group with a non-zero weight. The
    v range is cut into bands of v within a factor 2 needing about the same number of quadrature
    nodes (ceil(d/2) for at most d answers tied at v, d <= min(#groups with >= v samples, k // v)),
    so memory stays ~ (1 + S) · n · (max k + 1) floats. Cost ~ (1 + S) Σ_g Σ_{v <= size_g} nodes · v
    · min(max k, r_g · v) for the r_g-th largest group g.
    """
    kmax = int(ks.max())
    out = np.zeros((weights.shape[0], ks.size, kmax + 1))
    weighted = sizes[np.any(weights > 0, axis=0)]
    if weighted.size == 0:
        return out
    v = np.arange(1, min(int(weighted.max()), kmax) + 1)
    degree = np.minimum((sizes[None, :] >= v[:, None]).sum(axis=1), kmax // v)
    nodes = np.maximum(1, (degree + 1) // 2)  # non-increasing in v
    # a band: the same power of two of nodes and of v (a slice's support after r groups is r·v)
    band = np.ceil(np.log2(nodes)).astype(np.int64) * 64 + np.floor(np.log2(v)).astype(np.int64)
    starts = np.flatnonzero(np.diff(band, prepend=-1))
    log_comb = _LogComb(n)
    for first, last in zip(starts, list(starts[1:]) + [v.size]):
        lo, hi = int(v[first]), int(v[last - 1])
        out[:, :, lo:hi + 1] = _majority_band(n, ks, sizes, weights, lo, hi, int(nodes[first]), log_comb)
    return out


_TAIL = 1e-17  # mass left out on each side of each binomial, and below the lowest top count, in the fast maj@k
_TIE_TOL = 1e-13  # bound on the error of the tie split's quadrature in the fast maj@k
_BLOCK_SPECTRA = 1 << 20  # complex entries per [answers, J, v] block of spectra in the fast maj@k (16 MiB)


def _binomial_support(m, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] per Binomial(m, θ) with P(X < lo), P(X > hi) < _TAIL (both from the lower quantile,
    of X and of m − X: scipy's upper quantile is unreliable this far out)."""
    m = np.asarray(m, dtype=np.int64)
    lo = binom.ppf(_TAIL, m, theta).astype(np.int64)
    return lo, m - binom.ppf(_TAIL, m, 1.0 - theta).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _roots_of_unity(points: int) -> np.ndarray:
    """e^{2πi r/L} for r = 0..L − 1 (complex128 [L])."""
    return np.exp(2j * np.pi * np.arange(points) / points)


def _fourier_sums(sizes, theta: float, start, stop, points: int) -> np.ndarray:
    """Σ_{start_g <= x < stop_g} pmf_g(x) z^x of Binomial(m_g, θ) at z = e^{2πij/L}, j = 0..(L − 1)/2:
    complex [G, J]. One real FFT per answer of its pmf folded modulo L (z^L = 1), times z^{start_g}
    with the phase from (j·start_g) mod L in integers, so no rounding grows with x."""
    start, stop = np.asarray(start, dtype=np.int64), np.asarray(stop, dtype=np.int64)
    width = max(int((stop - start).max()), 1)
    x = start[:, None] + np.arange(width)
    pmf = np.where(x < stop[:, None], binom.pmf(x, np.asarray(sizes)[:, None], theta), 0.0)
    folds = -(-width // points)
    pmf = np.pad(pmf, ((0, 0), (0, folds * points - width))).reshape(start.size, folds, points).sum(axis=1)
    j = np.arange(points // 2 + 1)
    return np.conj(scipy.fft.rfft(pmf, axis=1)) * _roots_of_unity(points)[(j * start[:, None]) % points]


def _fourier_points(n: int, k: int, span: int) -> int:
    """Odd L such that L roots of unity recover the coefficient of z^k: L > span (no aliasing), or
    L > |j − k| wherever Binomial(n, k/n), which bounds every coefficient, has mass >= _TAIL."""
    lo, hi = _binomial_support([n], k / n)
    points = min(span, max(int(hi[0]) - k, k - int(lo[0]))) + 1
    return points + 1 - points % 2


def _coefficient(values: np.ndarray, k: int, points: int) -> np.ndarray:
    """Coefficient of z^k of real polynomials from their values F_j at z = e^{2πij/L} (axis −2,
    j <= (L − 1)/2): (F_0 + 2 Re Σ_{j>=1} F_j e^{−2πijk/L}) / L."""
    j = np.arange(values.shape[-2])
    twiddle = np.conj(_roots_of_unity(points)[(j * k) % points]) * np.where(j > 0, 2.0, 1.0)
    return np.real(np.einsum("j,...jv->...v", twiddle, values)) / points


def _lowest_top(sizes: np.ndarray, theta: float, lo: np.ndarray, hi: np.ndarray, tol: float) -> int:
    """The largest v in [max lo, max hi] with P(every X_g < v) = Π_g P(X_g < v) <= tol for independent
    X_g ~ Binomial(m_g, θ) (max lo when none is), by bisection: the top count is below v with
    probability <= tol (many answers rarely all stay low)."""
    first, last = int(lo.max()), int(hi.max())
    while first < last:
        mid = (first + last + 1) // 2
        if binom.logcdf(mid - 1, sizes, theta).sum() <= np.log(tol):
            first = mid
        else:
            last = mid - 1
    return first


def _tie_nodes(at: np.ndarray, below: np.ndarray, v: np.ndarray, k: int, tol: float) -> int:
    """Gauss–Legendre nodes N for the tie split of :func:`_majority_fast_k` from P(X_g = v) ``at`` and
    P(X_g < v) ``below`` [G, V] (independent counts, not conditioned on their sum): the fewest with
    Σ_{t > 2N, t·v <= k} t·P(exactly t answers at v, the others below) <= tol at every v, which bounds
    the quadrature's error there (it is exact for ties of <= 2N answers, and a size-k subset holds
    no tie of more than k // v answers at v); N = ceil(G/2) is exact."""
    ties = np.zeros((at.shape[0] + 1, at.shape[1]))  # [t, v]: exactly t answers at v, the rest below
    ties[0] = 1.0
    for f, b in zip(at, below):
        ties[1:] = ties[1:] * b + ties[:-1] * f
        ties[0] *= b
    t = np.arange(ties.shape[0])[:, None]
    weighted = np.where(t * v <= k, t * ties, 0.0)
    beyond = np.cumsum(weighted[::-1], axis=0)[::-1].max(axis=1)  # [t] max over v of Σ_{t' >= t}
    fine = np.append(beyond, 0.0)[np.minimum(2 * np.arange(1, at.shape[0] // 2 + 2) + 1, at.shape[0] + 1)] <= tol
    return int(np.argmax(fine)) + 1


@functools.lru_cache(maxsize=256)
def _gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``nodes``-point Gauss–Legendre rule on [0, 1] (exact for degree < 2·nodes)."""
    x, w = np.polynomial.legendre.leggauss(nodes) if nodes else (np.zeros(0), np.zeros(0))
    return (x + 1) / 2, w / 2


def _top_vote_products(sizes: np.ndarray, theta: float, lo: np.ndarray, hi: np.ndarray, v: np.ndarray, k: int,
                       points: int, rest: np.ndarray, weights: np.ndarray, tol: float, ends: bool
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For the answers ``sizes`` (Binomial(m_h, θ) on [lo_h, hi_h], weights [S, G]; weighted ones
    last) and the ``rest`` [J], at z = e^{2πij/L} and every top count v: (ends [2, J, V] = rest ·
    Π_h below_h at x = 0, 1; split [S, J, V] = rest · ∫_0^1 Σ_g w_g at_g Π_{h≠g} (below_h + x·at_h) dx),
    where below_h = Σ_{x < v} pmf_h(x) z^x and at_h = pmf_h(v) z^v. In the integral a tie of answer
    g with t others at v scores ∫ x^t = 1/(t + 1), the even split; Gauss–Legendre with
    :func:`_tie_nodes` nodes, error <= tol. ``ends``: whether to compute ``ends`` (else zeros)."""
    j = np.arange(points // 2 + 1)
    pmf = np.where((v >= lo[:, None]) & (v <= hi[:, None]), binom.pmf(v, sizes[:, None], theta), 0.0)
    at = pmf[:, None, :] * _roots_of_unity(points)[(j[:, None] * v) % points]  # [G, J, V]
    head = _fourier_sums(sizes, theta, lo, np.minimum(v[0], hi + 1), points)  # x < v[0]
    below = np.empty_like(at)  # below[..., i] = head + Σ_{i' < i} at[..., i']
    below[:, :, 0] = head
    np.cumsum(at[:, :, :-1], axis=2, out=below[:, :, 1:])
    below[:, :, 1:] += head[:, :, None]
    nodes = _tie_nodes(pmf, below[:, 0].real, v, k, tol) if weights.shape[0] else 0
    x, gl_w = _gauss_legendre(nodes)
    x = np.concatenate([x] + ([np.array([0.0, 1.0])] if ends else []))
    prod = np.empty((x.size,) + at.shape[1:], dtype=complex)
    prod[...] = rest[:, None]
    split = np.zeros((weights.shape[0], nodes) + at.shape[1:], dtype=complex)
    first = np.flatnonzero(np.any(weights > 0, axis=0))
    for g in range(sizes.size):
        factor = x[:, None, None] * at[g]
        factor += below[g]
        if first.size and g >= first[0]:  # split <- split·factor + w_g at_g prod (answer g at v)
            split *= factor[:nodes]
            split += weights[:, g, None, None, None] * (at[g] * prod[:nodes])
        prod *= factor
    return prod[nodes:], np.einsum("i,sijv->sjv", gl_w, split)


def _majority_fast_k(n: int, k: int, sizes: np.ndarray, weights: np.ndarray, abstain: int) -> np.ndarray:
    """Σ_g weights[s, g] P(answer g wins a random size-k subset with v votes): float64 [S, k + 1].

    The vote counts of a uniformly random size-k subset are multivariate hypergeometric: the law of
    independent X_g ~ Binomial(m_g, θ) given Σ X = k, for any θ (θ = k/n). So P(event, Σ X = k) is
    the coefficient of z^k of a product of per-answer generating functions, read off at L roots of
    unity, over P(Σ X = k) got the same way; every top count v at once, "X_h < v" being a prefix
    sum of answer h's terms (:func:`_top_vote_products`). A tie of t + 1 answers at v splits the
    win: ∫_0^1 x^t dx by Gauss–Legendre over x (weight rows that differ between answers; constant
    rows need no split: Π (below + at) − Π below). Answers that cannot reach the top count (mass <
    _TAIL) join the abstentions as one binomial; top counts v with P(all X_g < v) <= _TAIL·P(Σ X = k)
    are left out. Absolute error <~ 2(G + 1)·_TAIL / P(Σ X = k) + _TAIL + _TIE_TOL + rounding of the
    L-term sums (<~1e-12 at n = 10^4). Time ~ L·V·G·(nodes + 2), in blocks of _BLOCK_SPECTRA.
    """
    out = np.zeros((weights.shape[0], k + 1))
    if sizes.size == 0:  # nobody votes
        return out
    theta, p_sum = k / n, float(binom.pmf(k, n, k / n))  # P(Σ X = k)
    lo, hi = _binomial_support(sizes, theta)
    v_lo = max(_lowest_top(sizes, theta, lo, hi, _TAIL * p_sum), 1)  # P(top count < v_lo) <= _TAIL·p_sum
    rival = hi >= v_lo
    scored = rival & np.any(weights > 0, axis=0)
    if not scored.any() or v_lo > k:
        return out
    v = np.arange(v_lo, min(int(hi[scored].max()), k) + 1)
    constant = np.all(weights == weights[:, :1], axis=1)
    split = weights[~constant]  # weight rows that need the tie split
    order = np.flatnonzero(rival)[np.argsort(np.any(split[:, rival] > 0, axis=0), kind="stable")]  # weighted last
    rest = abstain + int(sizes[~rival].sum())
    rest_lo, rest_hi = (int(x[0]) for x in _binomial_support([rest], theta))
    points = _fourier_points(n, k, rest_hi - rest_lo + int((hi - lo)[rival].sum()))
    sizes, lo, hi = sizes[order], lo[order], hi[order]
    rest_all = _fourier_sums([rest], theta, [rest_lo], [rest_hi + 1], points)[0]
    total = rest_all * np.prod(_fourier_sums(sizes, theta, lo, hi + 1, points), axis=0)
    norm = _coefficient(total[:, None], k, points)[0]
    tol = _TIE_TOL * p_sum / max(float(split.max(initial=0.0)), 1e-300) / v.size  # per v
    step = max(1, _BLOCK_SPECTRA // (sizes.size * (points // 2 + 1)))
    for block in (v[i:i + step] for i in range(0, v.size, step)):
        ends, tied = _top_vote_products(sizes, theta, lo, hi, block, k, points, rest_all, split[:, order], tol,
                                        bool(constant.any()))
        if constant.any():
            out[np.flatnonzero(constant)[:, None], block] = weights[constant, :1] * (
                _coefficient(ends[1] - ends[0], k, points) / norm)
        out[np.flatnonzero(~constant)[:, None], block] = _coefficient(tied, k, points) / norm
    return out


_EXACT_MAX_N = 200  # maj@k by exact subset counting for n up to this


def _majority(n: int, ks: np.ndarray, sizes: np.ndarray, weights: np.ndarray, abstain: int) -> np.ndarray:
    """:func:`_majority_counts` (exact) for n <= _EXACT_MAX_N, else :func:`_majority_fast_k` per k
    (faster at every k there, and closer to exact rationals at n = 10^4: its counts need no
    log-factorials): float64 [S, K, max k + 1]."""
    if n <= _EXACT_MAX_N:
        return _majority_counts(n, ks, sizes, weights)
    out = np.zeros((weights.shape[0], ks.size, int(ks.max()) + 1))
    for i, k in enumerate(ks.tolist()):
        out[:, i, : k + 1] = _majority_fast_k(n, k, sizes, weights, abstain)
    return out


def majority_distribution(answers: Sequence[str | None], correct: Sequence[float], k
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(P(v), P(v, correct)) of one problem: float64 [K, max k + 1], row per k, column v = votes of
    the majority answer of a uniformly random size-k subset of its n samples (v = 0: nobody votes;
    entries v > k are 0). Rows of P(v) sum to 1; Σ_v P(v, correct) is :func:`maj_at_k`.

    Same rule as :func:`maj_at_k` (ties split evenly, None abstains, an answer's correctness is
    the mean verdict of its samples), over all C(n, k) subsets in float64, by :func:`_majority`:
    exact subset counting for n <= 200 (relative error <~ 1e-13 per entry; ties by a Gauss–Legendre
    rule exact for their polynomial), else the hypergeometric law as independent binomials given
    their sum, read off at roots of unity (:func:`_majority_fast_k`: absolute error <~ 1e-12 per
    entry, tails and ties left out with a computed bound). P(0) is C(abstentions, k)/C(n, k) as a
    product (:func:`_log_fail`). Time ~0.05 s at n = 1000 and ~0.1–0.2 s at n = 10^4 with 60
    answers, every default k (``tests/test_passk.py`` checks enumeration for small n, the previous
    per-answer DP to 1e-12 for n ~ 100, the two paths against each other, and exact rationals at
    n = 10^4).
    """
    _, ks, sizes, scores, abstain = _vote_groups(answers, correct, k, "majority_distribution")
    return group_majority_distribution(sizes, scores, abstain, ks)


def group_majority_distribution(sizes: np.ndarray, scores: np.ndarray, abstain: int, k
                                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`majority_distribution` of one problem from its answer groups (the values of
    :func:`answer_groups`: group sizes largest first, their scores, abstentions), n = Σ sizes +
    abstentions; k <= n."""
    n, ks = int(np.sum(sizes)) + int(abstain), _counts("k", k)
    _check_k(ks, np.array([n]))
    p_ok, p_v = _majority(n, ks, sizes, np.stack([scores, np.ones_like(scores)]), abstain)
    p_v[:, 0] = np.exp(_log_fail([n], [n - abstain], ks)[0][0])  # C(abstentions, k) / C(n, k)
    return p_v, p_ok


def maj_at_k(answers: Sequence[str | None], correct: Sequence[float], k) -> np.ndarray:
    """Unbiased maj@k of one problem from its n samples: float64 [K], the mean over all C(n, k) subsets.

    answers: the extracted answer of each sample (None: nothing extracted; it does not vote).
    correct: per-sample verdicts; an answer's correctness is the fraction of its samples judged
    correct (0 or 1 whenever the verifier is consistent). Rule for one subset: the answer with
    the most votes wins; a tie among t + 1 answers is broken uniformly at random (the correct one
    wins with probability 1/(t + 1)); a subset with no votes scores 0.

    Σ_v P(v, correct) of :func:`majority_distribution`, by the same computation with the P(v)
    channel left out and v capped at the largest answer with a non-zero score.
    """
    n, ks, sizes, scores, abstain = _vote_groups(answers, correct, k, "maj_at_k")
    return _majority(n, ks, sizes, scores[None, :], abstain)[0].sum(axis=1)


def bootstrap_mean(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over problems (axis 0) with a percentile bootstrap interval.

    Problems are resampled with replacement ``n_boot`` times (seeded); each resample's mean is a
    multinomial-weighted mean, all resamples at once as one matrix product. n_boot = 0 gives NaN
    bounds.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise DataError("bootstrap_mean: expected at least one problem")
    if n_boot < 0 or not 0 < level < 1:
        raise DataError(f"bootstrap: expected n_boot >= 0 and 0 < level < 1, got {n_boot}, {level}")
    mean = values.mean(axis=0)
    if n_boot == 0:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    p = values.shape[0]
    counts = np.random.default_rng(seed).multinomial(p, np.full(p, 1 / p), size=n_boot)
    means = np.tensordot(counts, values, axes=1) / p
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2], axis=0)
    return mean, low, high


def default_ks(n_min: int | None) -> list[int]:
    """Powers of two up to n_min, plus n_min itself; up to 1024 when there are no samples."""
    top = 1024 if n_min is None else n_min
    ks = [1 << i for i in range(top.bit_length()) if 1 << i <= top]
    return ks + ([top] if ks[-1] != top else [])


_PASS_COLUMNS = ("pass_at_k", "pass_at_k_low", "pass_at_k_high")


def passk_table(problems: pa.Table, scores: pa.Table | Iterable[pa.Table] | None = None,
                ks: Sequence[int] | None = None, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                adaptive: bool = False) -> pa.Table:
    """The passk table: one row per task and k (columns of records.COLUMNS["passk"] plus the sources).

    problems: a records "problems" table (task, problem_id, n, c, nll, answer_tokens).
    scores: optionally a records "scores" table, or an iterable of its batches (:func:`vote_batches`:
    columns :data:`VOTE_COLUMNS`, streamed), used for maj@k (NaN without it, and at k above some
    problem's scored samples), read by arrow group-bys into per-answer vote counts (no per-sample
    Python objects).
    Column ``source`` names where pass@k comes from, per task and k: ``samples`` (unbiased, every
    problem has k <= n_i; bootstrap interval), ``extrapolated:<model>`` (some problem has
    k > n_i: :func:`extrapolate_pass_at_k`, which keeps the unbiased estimate where k <= n_i), or
    ``likelihood`` (a problem has no samples: p_i = exp(−NLL_i)). The task loss comes from the
    likelihoods when every problem has an NLL (exact, what T² measures), else from samples with
    Beta smoothing of c = 0 questions (n_smoothed); in extrapolated rows, questions with k > n_i
    or c_i = 0 take the extrapolation's posterior mean (n_smoothed counts them). Default k: :func:`default_ks` of the
    task's largest n. ``adaptive``: the run's n_i were chosen from its outcomes (``t2 sample
    --adaptive``), so pass@k and the task loss come from the likelihood fit at every k (source
    ``posterior:<model>``, :func:`extrapolate_pass_at_k` with ``use_samples=False``) and maj@k is NaN
    (its fixed-n formula is biased under data-dependent n).
    """
    cols = problems.select(["task", "problem_id", "n", "c", "nll"]).to_pydict()
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(cols["task"]):
        by_task[task].append(i)
    groups = answer_groups(scores) if scores is not None else {}
    rows: dict[str, list] = defaultdict(list)
    for task, idx in by_task.items():
        n = np.array([cols["n"][i] or 0 for i in idx], dtype=np.int64)
        c = np.array([cols["c"][i] or 0 for i in idx], dtype=np.int64)
        nll = np.array([np.nan if cols["nll"][i] is None else cols["nll"][i] for i in idx], dtype=np.float64)
        ids = [cols["problem_id"][i] for i in idx]
        sampled, has_nll = bool(np.all(n > 0)), bool(np.all(~np.isnan(nll)))
        if not (sampled or has_nll):
            i = int(np.argmax((n == 0) & np.isnan(nll)))
            raise DataError(f"problems table: task {task} problem {ids[i]} has neither samples (n = 0) nor an nll")
        task_ks = np.array(ks if ks is not None else default_ks(int(n.max()) if sampled else None), dtype=np.int64)
        if sampled:
            table = _sampled_rows(n, c, task_ks, n_boot, level, seed, adaptive)
        else:
            stats = bootstrap_mean(np.exp(log_pass_at_k_from_nll(nll, task_ks)), n_boot, level, seed)
            table = {**dict(zip(_PASS_COLUMNS, stats)), "source": ["likelihood"] * task_ks.size}
        if has_nll:
            table["task_loss"], table["n_smoothed"] = task_loss_from_nll(nll, task_ks), [0] * task_ks.size
        table["maj_at_k"] = np.full(task_ks.size, np.nan) if adaptive else _task_maj_at_k(groups, task, ids, task_ks)
        for col in ("pass_at_k", "pass_at_k_low", "pass_at_k_high", "maj_at_k", "task_loss", "n_smoothed", "source"):
            rows[col] += list(np.asarray(table[col]).tolist())
        rows["task"] += [task] * task_ks.size
        rows["k"] += task_ks.tolist()
        rows["n_problems"] += [len(idx)] * task_ks.size
        rows["loss_source"] += ["likelihood" if has_nll else "samples"] * task_ks.size
    order = ["task", "k", "pass_at_k", "pass_at_k_low", "pass_at_k_high", "maj_at_k", "task_loss",
             "n_problems", "n_smoothed", "source", "loss_source"]
    return pa.table({col: rows[col] for col in order})


def _sampled_rows(n: np.ndarray, c: np.ndarray, ks: np.ndarray, n_boot: int, level: float, seed: int,
                  adaptive: bool = False) -> dict:
    """pass@k [low, high], source, task loss and n_smoothed per k of a sampled task: the unbiased
    estimate with a bootstrap interval for k <= min n, :func:`extrapolate_pass_at_k` above it (at
    every k for an ``adaptive`` run: its posterior means)."""
    inside = (ks <= n.min()) & (not adaptive)
    out = {col: np.full(ks.size, np.nan) for col in _PASS_COLUMNS + ("task_loss",)}
    out["n_smoothed"], out["source"] = np.zeros(ks.size, dtype=np.int64), np.full(ks.size, "samples", dtype=object)
    if inside.any():
        stats = bootstrap_mean(pass_at_k(n, c, ks[inside]), n_boot, level, seed)
        for col, value in zip(_PASS_COLUMNS, stats):
            out[col][inside] = value
        out["task_loss"][inside], out["n_smoothed"][inside] = task_loss_from_samples(n, c, ks[inside])
    if not inside.all():
        ex = extrapolate_pass_at_k(n, c, ks[~inside], level, use_samples=not adaptive)
        for col, value in zip(_PASS_COLUMNS, (ex.pass_at_k, ex.low, ex.high)):
            out[col][~inside] = value
        smoothed = (ks[~inside][None, :] > n[:, None]) | (c[:, None] == 0) | adaptive  # posterior mean, not 0
        out["task_loss"][~inside] = -np.log(np.where(smoothed, ex.posterior, ex.per_problem)).mean(axis=0)
        out["n_smoothed"][~inside] = smoothed.sum(axis=0)
        out["source"][~inside] = f"{'posterior' if adaptive else 'extrapolated'}:{ex.model}"
    return out


VOTE_COLUMNS = ("task", "problem_id", "answer", "correct")  # what maj@k reads of scores.parquet
VOTE_ROWS = 1 << 16  # scores.parquet rows read at a time for maj@k (t2 score writes row groups of 65,536)
_VOTE_KEYS = ["task", "problem_id", "answer"]
_FOLD_AT = 8  # partial vote tables held before they are summed into one


def vote_batches(scores_file: str | os.PathLike, rows: int = VOTE_ROWS) -> Iterator[pa.Table]:
    """scores.parquet's :data:`VOTE_COLUMNS` in tables of at most ``rows`` rows, read one at a time
    (for :func:`passk_table`: memory is one batch plus the distinct answers, not the file)."""
    return records.iter_table(scores_file, "scores", VOTE_COLUMNS, rows)


def answer_groups(scores: pa.Table | Iterable[pa.Table]
                  ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]]:
    """(task, problem_id) -> (answer-group sizes largest first, their scores = mean verdict,
    abstentions = samples with no answer), by arrow group-bys over (task, problem_id, answer): per
    batch of ``scores`` (one table, or an iterable of them), then summed, at most _FOLD_AT partial
    tables held at once."""
    parts: list[pa.Table] = []
    for batch in [scores] if isinstance(scores, pa.Table) else scores:
        table = batch.select(list(VOTE_COLUMNS))
        table = table.set_column(3, "correct", table.column("correct").cast(pa.int64()))
        parts.append(table.group_by(_VOTE_KEYS).aggregate([("correct", "sum"), ([], "count_all")]))
        if len(parts) == _FOLD_AT:
            parts = [_sum_votes(parts)]
    cols = _sum_votes(parts).to_pydict() if parts else {k: [] for k in (*_VOTE_KEYS, "correct_sum", "count_all")}
    found: dict[tuple[str, str], list] = defaultdict(lambda: [[], [], 0])
    for task, pid, answer, right, size in zip(cols["task"], cols["problem_id"], cols["answer"],
                                              cols["correct_sum"], cols["count_all"]):
        entry = found[(task, pid)]
        if answer is None:
            entry[2] += size
        else:
            entry[0].append(size)
            entry[1].append((right or 0) / size)
    out = {}
    for key, (sizes, right, abstain) in found.items():
        order = np.argsort(-np.array(sizes, dtype=np.int64), kind="stable")
        out[key] = (np.array(sizes, dtype=np.int64)[order], np.array(right, dtype=np.float64)[order], abstain)
    return out


def _sum_votes(parts: list[pa.Table]) -> pa.Table:
    """One row per (task, problem_id, answer): correct_sum and count_all summed over ``parts``."""
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts).group_by(_VOTE_KEYS).aggregate([("correct_sum", "sum"), ("count_all", "sum")])
    return pa.table({**{k: table[k] for k in _VOTE_KEYS}, "correct_sum": table["correct_sum_sum"],
                     "count_all": table["count_all_sum"]})


def _task_maj_at_k(groups: dict, task: str, ids: list, ks: np.ndarray) -> np.ndarray:
    """mean over the task's problems of maj@k (:func:`_majority`): float64 [K]; NaN for every k
    when the task has no scores, and for k above some problem's scored samples (maj@k is not
    extrapolated)."""
    found = [groups.get((task, pid)) for pid in ids]
    maj = np.full(ks.size, np.nan)
    if all(g is None for g in found):
        return maj
    if any(g is None for g in found):
        pid = ids[[g is None for g in found].index(True)]
        raise DataError(f"scores table: task {task} problem {pid} has no scored samples (others have)")
    scored = np.array([sizes.sum() + abstain for sizes, _, abstain in found])
    ok = ks <= scored.min()
    if ok.any():
        maj[ok] = np.mean([_majority(int(m), ks[ok], sizes, right[None, :], abstain)[0].sum(axis=1)
                           for m, (sizes, right, abstain) in zip(scored, found)], axis=0)
    return maj
