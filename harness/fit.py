"""Train-to-Test (T²) scaling laws and the (N, D, k) optimizer. numpy/scipy only.

N: parameters, D: training tokens, k: samples per query; L: task loss (nats), Acc: pass@k.

- Chinchilla   L(N, D)    = E + A/N^α + B/D^β
- Approach 1   L(N, D, k) = E + A/N^α + B/D^β + G/k^γ, fitted to the task loss (mean −log pass@k)
- Approach 2   Acc(N, D, k) = 1 − B(a, b + k)/B(a, b), a = μν, b = (1 − μ)ν,
               μ = θ2 / (1 + exp(θ1 (L̂ − θ0))), ν = exp(θ3 + θ4 L̂),
               L̂(N, D) a Chinchilla law fitted to the task NLL (the k = 1 task loss).

At k = 1 both reduce to Chinchilla: G/k^γ = G is a constant, so L(N, D, 1) is the Chinchilla law with
E' = E + G (:meth:`T2LossLaw.at_k1`), and Acc(N, D, 1) = a/(a + b) = μ, a logistic of the Chinchilla L̂.

Costs: C_train = 6ND FLOPs; C_inf = 2Nk FLOPs per served token. With both budgets binding,
D = C_train/(6N) and k = C_inf/(2N), so the optimum is a one-dimensional search over N (k >= 1).
Bootstrap refits resample checkpoints (unique (N, D) pairs, with all their k rows) with replacement.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import digamma, expit
from threadpoolctl import threadpool_limits

from harness import records
from harness.errors import DataError, InvalidSetting, RecordError
from harness.passk import beta_pass_at_k, log_beta_ratio


class FitWarning(UserWarning):
    """A fit stopped without converging, or an optimum sits on a search bound."""


def _single_thread_blas(fn: Callable) -> Callable:
    """Run ``fn`` with BLAS limited to one thread (threadpoolctl; the libraries loaded at call time).

    scipy's L-BFGS-B (the C port since scipy 1.15) calls BLAS on its tiny 5- to 10-variable
    problems; a multi-threaded OpenBLAS then spends milliseconds per iteration waking and syncing
    threads, far more on a busy machine (measured: ~5 ms per setulb call with 2 threads on a loaded
    2-core box, ~40x slower than one thread). The batched numpy work here is too small to gain from
    BLAS threads either, so fits run single-threaded.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- input checks


def _rows(**columns) -> dict[str, np.ndarray]:
    """Columns as float64 1-D arrays of one length; non-finite values and non-positive N, D, k raise
    ValueError naming the column and the first offending rows."""
    out = {name: np.atleast_1d(np.asarray(v, dtype=np.float64)) for name, v in columns.items()}
    sizes = {name: v.shape for name, v in out.items()}
    if len(set(sizes.values())) != 1 or next(iter(sizes.values()))[0] == 0:
        raise DataError(f"expected non-empty 1-D columns of one length, got shapes {sizes}")
    for name, v in out.items():
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise DataError(f"{name}: NaN or infinite value in row(s) {_list(bad)}")
        if name in ("N", "D", "k"):
            bad = np.flatnonzero(v <= 0)
            if bad.size:
                raise DataError(f"{name}: expected values > 0, got {v[bad[0]]:g} in row(s) {_list(bad)}")
    if "accuracy" in out:
        bad = np.flatnonzero((out["accuracy"] < 0) | (out["accuracy"] > 1))
        if bad.size:
            raise DataError(f"accuracy: expected values in [0, 1], row(s) {_list(bad)}")
    return out


def _list(rows: np.ndarray, limit: int = 8) -> str:
    more = f", … ({rows.size} rows)" if rows.size > limit else ""
    return ", ".join(str(int(r)) for r in rows[:limit]) + more


def _checkpoints(N: np.ndarray, D: np.ndarray, need: int, law: str) -> np.ndarray:
    """Checkpoint index of each row (unique (N, D) pairs); at least ``need`` checkpoints."""
    _, idx = np.unique(np.stack([N, D], axis=1), axis=0, return_inverse=True)
    idx = idx.ravel()
    if idx.max() + 1 < need:
        raise DataError(f"{law}: {idx.max() + 1} distinct checkpoints (N, D), expected at least {need} "
                         f"for its {need} parameters")
    return idx


def _best_of(objective: Callable, starts: np.ndarray, bounds: list[tuple[float, float]], law: str,
             polish: int = 0, names: tuple[str, ...] = ()) -> tuple[np.ndarray, float, bool]:
    """Minimise ``objective`` (returns (f, grad), analytic) from every start, keep the best.

    polish = 0: scipy L-BFGS-B from each start. polish > 0: ``objective`` must accept a batch
    [S, P]; all starts run at once through :func:`batched_lbfgs`, then scipy L-BFGS-B polishes the
    ``polish`` best end points. A FitWarning names the parameters (``names``) that end on a bound.
    """
    if polish:
        x, f = batched_lbfgs(objective, starts, bounds)
        starts = x[np.argsort(f)[:polish]]
    best = None
    for x0 in starts:
        res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 5000, "ftol": 1e-13, "gtol": 1e-9})
        if best is None or res.fun < best.fun:
            best = res
    on_bound = at_bounds(best.x, bounds, names)
    free = [i for i, n in enumerate(names or range(len(bounds))) if n not in on_bound]
    # an "abnormal" line-search stop at a point already stationary to machine precision is a success
    converged = bool(best.success) or float(np.abs(best.jac[free]).max(initial=0.0)) <= 1e-4 * max(abs(best.fun), 1.0)
    if not converged:
        warnings.warn(f"{law}: best of {len(starts)} starts did not converge ({best.message})", FitWarning,
                      stacklevel=2)
    if on_bound:
        warnings.warn(f"{law}: parameter(s) {', '.join(map(str, on_bound))} at a search bound", FitWarning,
                      stacklevel=2)
    return best.x, float(best.fun), converged


# Box ends that are limits of the formulas themselves, not search bounds: (name, 0 = lower | 1 = upper)
# -> what the parameter there means. E >= 0: a loss cannot fall below 0, and E = 0 is the truth where
# pass@k -> 1 for every question (log E at LOG_E_ZERO: E = e^-50 ≈ 2e-22 nats, which adds nothing in
# float64 to any loss above 1e-6 nats). θ1 >= 0, ρ <= 1, π >= 0, u >= U_TAIL: see :func:`_stage2_bounds`.
LOG_E_ZERO = -50.0
# u = θ1 (θ0 − E) <= −37: for every L̂ >= E the logistic μ = θ2 σ(u − θ1 (L̂ − E)) equals its exponential limit
# θ0 → −∞, μ = ρ exp(−θ1 (L̂ − E)), to float64 (relative difference <= e^-37 ≈ 8.5e-17 < 2^-53)
U_TAIL = -37.0
FORMULA_LIMITS = {("log_E", 0): "E = 0", ("theta1", 0): "theta1 = 0", ("rho", 1): "rho = 1", ("pi", 0): "pi = 0",
                  ("u", 0): "theta0 = -inf"}


def _box_ends(x: np.ndarray, bounds: list[tuple[float, float]], names: tuple[str, ...]) -> list[tuple[Any, int]]:
    """(name or index, 0 | 1) of every coordinate of ``x`` on the lower (0) or upper (1) end of its range."""
    return [(names[i] if names else i, side) for i, (lo, hi) in enumerate(bounds)
            for side, end in ((0, lo), (1, hi)) if np.isclose(x[i], end)]


def at_bounds(x: np.ndarray, bounds: list[tuple[float, float]], names: tuple[str, ...] = ()) -> list:
    """Names (or indices, without ``names``) of the coordinates of ``x`` that sit on a search bound of the
    box (the formulas' own limits, :data:`FORMULA_LIMITS`, are not search bounds: see :func:`at_limits`)."""
    return [name for name, side in _box_ends(x, bounds, names) if (name, side) not in FORMULA_LIMITS]


def at_limits(x: np.ndarray, bounds: list[tuple[float, float]], names: tuple[str, ...]) -> list[str]:
    """The formula limits (:data:`FORMULA_LIMITS`, e.g. "E = 0") that coordinates of ``x`` sit on."""
    return [FORMULA_LIMITS[end] for end in _box_ends(x, bounds, names) if end in FORMULA_LIMITS]


def batched_lbfgs(objective: Callable, x0: np.ndarray, bounds: list[tuple[float, float]], iters: int = 400,
                  memory: int = 10, ftol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Projected L-BFGS on S independent problems at once: x0 [S, P] -> (x [S, P], f [S]).

    Each row keeps its own curvature pairs; directions skip variables held at a bound by their
    gradient; Armijo backtracking along the projected path, batched over the rows still searching.
    A row stops when its relative decrease falls below ``ftol`` or its line search fails.
    """
    lo, hi = np.array(bounds, dtype=np.float64).T
    x = np.clip(np.array(x0, dtype=np.float64), lo, hi)
    S, P = x.shape
    f, g = objective(x)
    s_hist, y_hist, rho = np.zeros((memory, S, P)), np.zeros((memory, S, P)), np.zeros((memory, S))
    active = np.isfinite(f)
    for it in range(iters):
        if not active.any():
            break
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        q = g * free
        alpha = np.zeros((memory, S))
        order = [(it - 1 - j) % memory for j in range(min(it, memory))]  # newest first
        for j in order:
            alpha[j] = rho[j] * (s_hist[j] * q).sum(1)
            q -= alpha[j][:, None] * y_hist[j]
        if order:
            sy, yy = (s_hist[order[0]] * y_hist[order[0]]).sum(1), (y_hist[order[0]] ** 2).sum(1)
            scale = np.where(yy > 0, sy / np.where(yy > 0, yy, 1), 1.0)
        else:
            scale = 1 / np.maximum(np.abs(g).max(1), 1.0)
        r = q * scale[:, None]
        for j in reversed(order):
            beta = rho[j] * (y_hist[j] * r).sum(1)
            r += s_hist[j] * (alpha[j] - beta)[:, None]
        d = -r * free
        uphill = (g * d).sum(1) >= 0
        d[uphill] = -(g * free)[uphill] * scale[uphill, None]
        t = np.ones(S)
        x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
        pending = active.copy()
        for _ in range(40):
            idx = np.flatnonzero(pending)
            if idx.size == 0:
                break
            xt = np.clip(x[idx] + t[idx, None] * d[idx], lo, hi)
            ft, gt = objective(xt)
            ok = np.isfinite(ft) & (ft <= f[idx] + 1e-4 * (g[idx] * (xt - x[idx])).sum(1))
            x_new[idx[ok]], f_new[idx[ok]], g_new[idx[ok]] = xt[ok], ft[ok], gt[ok]
            pending[idx[ok]] = False
            t[idx[~ok]] *= 0.5
        slot = it % memory
        s_hist[slot], y_hist[slot] = x_new - x, g_new - g
        sy = (s_hist[slot] * y_hist[slot]).sum(1)
        rho[slot] = np.where(sy > 1e-12, 1 / np.where(sy > 1e-12, sy, 1), 0.0)
        done = pending | (f - f_new <= ftol * np.maximum(np.abs(f), 1.0))
        x, f, g = x_new, f_new, g_new
        active &= ~done
    return x, f


# ---------------------------------------------------------------- law objects


N_KINDS = ("total", "non_embedding")  # which parameter count N is (dataset.PARAM_KINDS)
N_FACTOR, K_FACTOR = 4.0, 16.0  # default search box: N in [N_min/4, 4·N_max], k <= 16·k_max of the fitted data


@dataclass(frozen=True)
class SearchBox:
    """Where the optimizer may put N and k (besides the budgets' own limits k >= 1 and D >= 1)."""

    n_lo: float = 1.0
    n_hi: float = np.inf
    k_hi: float = np.inf


def data_ranges(N: np.ndarray, D: np.ndarray, k: np.ndarray | None = None) -> dict[str, list[float]]:
    """[min, max] over the fitted rows of N, D, k, tokens per parameter D/N and C_train = 6ND."""
    cols = {"N": N, "D": D, "tokens_per_param": D / N, "C_train": 6 * N * D} | ({} if k is None else {"k": k})
    return {name: [float(v.min()), float(v.max())] for name, v in cols.items()}


@dataclass
class Law:
    """A fitted law: ``x`` its fitting vector (names in ``NAMES``), ``samples`` bootstrap refits [B, P],
    ``ranges`` the [min, max] of the data it was fitted on (:func:`data_ranges`; None when unknown),
    ``N_kind`` which parameter count N is ("total" | "non_embedding"; None when not stated)."""

    x: np.ndarray
    samples: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, list[float]] | None = None
    N_kind: str | None = None

    KIND: ClassVar[str]
    METRIC: ClassVar[str]  # "loss" (lower is better) or "accuracy" (higher is better)
    NAMES: ClassVar[tuple[str, ...]]

    @property
    def params(self) -> dict[str, float]:
        """Readable parameters (A, B, E, G as values, not logs)."""
        return {n.removeprefix("log_") if n.startswith("log_") else n: float(np.exp(v) if n.startswith("log_") else v)
                for n, v in zip(self.NAMES, self.x)}

    def intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of every readable parameter (needs ``samples``)."""
        draws = [type(self)(s).params for s in self._bootstrap_samples()]
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        return {n: tuple(np.percentile([d[n] for d in draws], q)) for n in self.params}

    def _bootstrap_samples(self) -> np.ndarray:
        if self.samples is None or len(self.samples) == 0:
            raise DataError(f"{self.KIND} law: no bootstrap samples; fit with bootstrap > 0")
        return self.samples

    def predict(self, N, D, k=1) -> np.ndarray:
        raise NotImplementedError

    def objective(self, N, D, k) -> np.ndarray:
        """The quantity the optimizer minimises: loss, or −accuracy."""
        v = self.predict(N, D, k)
        return v if self.METRIC == "loss" else -v

    @property
    def chinchilla_law(self) -> ChinchillaLaw:
        """The law's (N, D) part as a Chinchilla law of the loss: what :meth:`chinchilla_choice` minimises
        under C_train alone (Approach 1: the k = 1 slice; Approach 2: stage 1's L̂)."""
        raise NotImplementedError

    def chinchilla_n(self, C_train: float) -> float:
        """Compute-optimal N of the law's (N, D) part alone (ignores inference)."""
        return self.chinchilla_law.chinchilla_n(C_train)

    def search_box(self, n_factor: float = N_FACTOR, k_factor: float = K_FACTOR) -> SearchBox:
        """N in [N_min/n_factor, N_max·n_factor] and k <= k_max·k_factor of the fitted data; a law
        without ``ranges`` (built by hand, or read from a file written before ranges were stored)
        is bounded by the budgets alone."""
        if n_factor < 1 or k_factor < 1:
            raise InvalidSetting("n_factor" if n_factor < 1 else "k_factor", min(n_factor, k_factor), "a factor >= 1")
        if not self.ranges:
            return SearchBox()
        (n_lo, n_hi), k_hi = self.ranges["N"], self.ranges.get("k", [1.0, np.inf])[1]
        return SearchBox(max(1.0, n_lo / n_factor), n_hi * n_factor, k_hi * k_factor)

    def _n_limits(self, C_train: float, C_inf: float, box: SearchBox, k: float | None = None):
        """((lo, name), (hi, name)): the feasible N on the budget line and the limit that binds at each
        end: "N" (the box), "k" (k = 1 or k = box.k_hi), "D" (D = 1). ``k`` given: k is fixed and
        C_inf only caps N <= C_inf/(2k)."""
        if not 6 <= C_train < np.inf:
            raise InvalidSetting("c_train", C_train, "a finite training budget >= 6 FLOPs (N >= 1, D >= 1)")
        if not 2 <= C_inf < np.inf:
            raise InvalidSetting("c_inf", C_inf, "a finite inference budget >= 2 FLOPs per token (N >= 1, k >= 1)")
        lows = [(box.n_lo, "N")] + ([(C_inf / (2 * box.k_hi), "k")] if k is None else [])
        # with k fixed, N = C_inf/(2k) is the inference budget binding, not a bound ("")
        lo, hi = max(lows), min((box.n_hi, "N"), (C_train / 6, "D"), (C_inf / (2 * (k or 1.0)), "" if k else "k"))
        if lo[0] > hi[0] or (k is not None and k > box.k_hi):
            raise DataError(f"C_train={C_train:g}, C_inf={C_inf:g}: no (N, k) inside the search box N in "
                             f"[{box.n_lo:.3g}, {box.n_hi:.3g}], k <= {box.k_hi:.3g} spends these budgets; "
                             "widen it (n_factor, k_factor)")
        return lo, hi

    def optimum(self, C_train: float, C_inf: float, integer_k: bool = False,
                box: SearchBox | None = None) -> dict[str, Any]:
        """Best (N, D, k) with D = C_train/(6N), k = C_inf/(2N) >= 1 (continuous k), N and k inside
        ``box`` (default :meth:`search_box`); with ``integer_k`` the best integer k >= 1 and
        N <= C_inf/(2k) (candidates: k = 1 and integers within 3 of the continuous k*). Keys: N, D, k,
        value, the metric name, tokens_per_param, at_bound (names of the limits the optimum sits on;
        non-empty also issues a FitWarning)."""
        C_train, C_inf, box = float(C_train), float(C_inf), box or self.search_box()
        lo, hi = self._n_limits(C_train, C_inf, box)
        N = _argmin_log(lambda n: self.objective(n, C_train / (6 * n), C_inf / (2 * n)), hi[0], lo[0])
        limits, k = (lo, hi), C_inf / (2 * N)
        if integer_k:
            cands = np.unique(np.r_[1, np.arange(max(1, np.floor(k) - 3), np.ceil(k) + 4)])
            best = None
            for kk in cands[(C_inf / (2 * cands) >= 1) & (cands <= box.k_hi)]:
                try:
                    lo_k, hi_k = self._n_limits(C_train, C_inf, box, float(kk))
                except ValueError:  # no N in the box spends C_train with this k
                    continue
                n = _argmin_log(lambda n, kk=kk: self.objective(n, C_train / (6 * n), kk), hi_k[0], lo_k[0])
                v = float(self.objective(n, C_train / (6 * n), kk))
                if best is None or v < best[0]:
                    best = (v, n, float(kk), (lo_k, hi_k))
            _, N, k, limits = best
        return self._point(N, C_train / (6 * N), k, limits, f"optimum at C_train={C_train:.3g}, C_inf={C_inf:.3g}")

    def _point(self, N: float, D: float, k: float, limits=(), what: str = "") -> dict[str, Any]:
        """The result dict; ``limits`` ((value, name) pairs): those N sits on (0.1% in log N) go in at_bound."""
        value = float(self.predict(N, D, k))
        at_bound = sorted({name for v, name in limits if name and abs(np.log(N / v)) < 1e-3})
        if at_bound and what:
            warnings.warn(f"{self.KIND} {what}: on the search bound of {', '.join(at_bound)} "
                          f"(N = {N:.3g}, k = {k:.3g})", FitWarning, stacklevel=2)
        return {"N": float(N), "D": float(D), "k": float(k), "value": value, self.METRIC: value,
                "tokens_per_param": float(D / N), "at_bound": at_bound}

    def chinchilla_choice(self, C_train: float, C_inf: float, box: SearchBox | None = None) -> dict[str, Any]:
        """The Chinchilla-only choice: N minimising the (N, D) part under C_train alone, kept inside
        the search box and k = C_inf/(2N) >= 1, then k = C_inf/(2N), scored by this law."""
        lo, hi = self._n_limits(float(C_train), float(C_inf), box or self.search_box())
        N = float(np.clip(self.chinchilla_n(C_train), lo[0], hi[0]))
        return self._point(N, C_train / (6 * N), C_inf / (2 * N), (lo, hi),
                           f"Chinchilla choice at C_train={C_train:.3g}, C_inf={C_inf:.3g}")

    def optimum_interval(self, C_train: float, C_inf: float, level: float = 0.9,
                         box: SearchBox | None = None) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of the optimum's N, D, k, value and tokens_per_param; every
        refit searches the same box as :meth:`optimum`. A FitWarning gives the share of refits whose
        optimum sits on a bound."""
        box = box or self.search_box()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            opts = [type(self)(s).optimum(C_train, C_inf, box=box) for s in self._bootstrap_samples()]
        share = np.mean([bool(o["at_bound"]) for o in opts])
        if share:
            warnings.warn(f"{self.KIND} optimum at C_train={C_train:.3g}, C_inf={C_inf:.3g}: {share:.0%} of "
                          f"{len(opts)} bootstrap refits end on a search bound", FitWarning, stacklevel=2)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        keys = ("N", "D", "k", "value", "tokens_per_param")
        return {key: tuple(np.percentile([o[key] for o in opts], q)) for key in keys}

    def frontier(self, C_train, C_inf: float, box: SearchBox | None = None) -> dict[str, np.ndarray]:
        """Optimum and Chinchilla-only choice for each training budget: arrays N, D, k, value,
        tokens_per_param, at_bound (bool), chinchilla_N, chinchilla_value, C_train. One FitWarning
        counts the budgets whose optimum sits on a bound."""
        box = box or self.search_box()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            rows = [(self.optimum(c, C_inf, box=box), self.chinchilla_choice(c, C_inf, box=box))
                    for c in np.atleast_1d(C_train)]
        out = {key: np.array([o[key] for o, _ in rows]) for key in ("N", "D", "k", "value", "tokens_per_param")}
        out["at_bound"] = np.array([bool(o["at_bound"]) for o, _ in rows])
        if out["at_bound"].any():
            warnings.warn(f"{self.KIND} frontier: the optimum sits on a search bound at {out['at_bound'].sum()} "
                          f"of {len(rows)} training budgets", FitWarning, stacklevel=2)
        out["chinchilla_N"] = np.array([c["N"] for _, c in rows])
        out["chinchilla_value"] = np.array([c["value"] for _, c in rows])
        out["C_train"] = np.atleast_1d(np.asarray(C_train, dtype=np.float64))
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {"law": self.KIND, "metric": self.METRIC, "params": self.params,
               "x": dict(zip(self.NAMES, self.x.tolist())), "info": self.info,
               "ranges": self.ranges, "N_kind": self.N_kind}
        if self.samples is not None:
            out["bootstrap_x"] = self.samples.tolist()
        return out


def _argmin_log(value: Callable[[np.ndarray], np.ndarray], n_hi: float, n_lo: float = 1.0) -> float:
    """argmin of value(N) over N in [n_lo, n_hi]: a 2,001-point grid in log N, then bounded Brent
    on the bracket around the best grid point."""
    t = np.linspace(np.log(n_lo), np.log(n_hi), 2001)
    v = value(np.exp(t))
    i = int(np.nanargmin(v))
    lo, hi = t[max(i - 1, 0)], t[min(i + 1, t.size - 1)]
    if hi <= lo:
        return float(np.exp(t[i]))
    res = minimize_scalar(lambda s: float(value(np.exp(s))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-9})
    return float(np.exp(res.x if res.fun <= v[i] else t[i]))


# ---------------------------------------------------------------- Chinchilla (robust form)


class ChinchillaLaw(Law):
    """L(N, D) = E + A/N^α + B/D^β, stored as (log A, log B, log E, α, β)."""

    KIND, METRIC = "chinchilla", "loss"
    NAMES = ("log_A", "log_B", "log_E", "alpha", "beta")

    def predict(self, N, D, k=1) -> np.ndarray:
        a, b, e, al, be = self.x
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return np.exp(e) + np.exp(a - al * np.log(N)) + np.exp(b - be * np.log(D))

    @property
    def chinchilla_law(self) -> ChinchillaLaw:
        return self

    def chinchilla_n(self, C_train: float) -> float:
        """N_opt = (αA/(βB))^{1/(α+β)} (C/6)^{β/(α+β)}: the stationary point of A/N^α + B/(C/6N)^β."""
        a, b, _, al, be = self.x
        return float(np.exp((np.log(al / be) + a - b + be * np.log(C_train / 6)) / (al + be)))


_HUBER_DELTA = 1e-3
_CHIN_BOUNDS = [(-10.0, 50.0), (-10.0, 50.0), (LOG_E_ZERO, 5.0), (0.0, 5.0), (0.0, 5.0)]
# Hoffmann et al. (2022) grid of starts: α, β ∈ {0, .5, …, 2}, log E ∈ {−1, −.5, …, 1}, log A, log B ∈ {0, 5, …, 25}.
_CHIN_GRID = np.array(np.meshgrid(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(-1, 1.01, 0.5),
                                  np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5), indexing="ij")).reshape(5, -1).T


def _huber_objective(x: np.ndarray, logN, logD, logL, delta: float = _HUBER_DELTA) -> tuple[np.ndarray, np.ndarray]:
    """Σ Huber_δ(LSE(a − α log N, b − β log D, e) − log L) and its gradient; x is [..., 5]."""
    a, b, e, al, be = np.moveaxis(np.asarray(x), -1, 0)
    z = np.stack(np.broadcast_arrays(a[..., None] - al[..., None] * logN, b[..., None] - be[..., None] * logD,
                                     e[..., None] + 0 * logN))
    zmax = z.max(0)
    lse = zmax + np.log(np.exp(z - zmax).sum(0))
    w = np.exp(z - lse)  # softmax weights: ∂lse/∂(a, b, e)
    r = lse - logL
    ar = np.abs(r)
    f = np.where(ar <= delta, 0.5 * r**2, delta * (ar - 0.5 * delta)).sum(-1)
    dr = np.clip(r, -delta, delta)
    grad = np.stack([(dr * w[0]).sum(-1), (dr * w[1]).sum(-1), (dr * w[2]).sum(-1),
                     -(dr * w[0] * logN).sum(-1), -(dr * w[1] * logD).sum(-1)], axis=-1)
    return f, grad


@_single_thread_blas
def fit_chinchilla(N, D, loss, starts: int = 64, bootstrap: int = 0, seed: int = 0) -> ChinchillaLaw:
    """Robust Chinchilla fit: Huber (δ = 1e-3) on log L against LSE(a − α log N, b − β log D, e).

    The objective is evaluated on the whole Hoffmann grid of 4,500 starts at once; L-BFGS-B then
    runs (batched) from the ``starts`` best of them. ``bootstrap`` refits (from the optimum) on checkpoint
    resamples give intervals for every parameter (:meth:`Law.intervals`).
    """
    c = _rows(N=N, D=D, loss=loss)
    if np.any(c["loss"] <= 0):
        bad = _list(np.flatnonzero(c["loss"] <= 0))
        raise DataError(f"loss: expected values > 0 for a log-space fit, row(s) {bad}")
    ckpt = _checkpoints(c["N"], c["D"], 5, "chinchilla")
    logs = np.log(c["N"]), np.log(c["D"]), np.log(c["loss"])
    x, f, ok = _huber_fit(*logs, starts=starts)
    samples = _bootstrap(ckpt, bootstrap, seed, lambda rows: _huber_fit(*(v[rows] for v in logs), x0=x)[0])
    return ChinchillaLaw(x, samples, {"objective": f, "converged": ok, "rows": int(ckpt.size),
                                      "checkpoints": int(ckpt.max() + 1),
                                      "at_bound": at_bounds(x, _CHIN_BOUNDS, ChinchillaLaw.NAMES),
                                      "at_limit": at_limits(x, _CHIN_BOUNDS, ChinchillaLaw.NAMES)},
                         data_ranges(c["N"], c["D"]))


def _huber_fit(logN, logD, logL, starts: int = 64, x0: np.ndarray | None = None,
               law: str = "chinchilla", delta: float = _HUBER_DELTA) -> tuple[np.ndarray, float, bool]:
    """The robust fit's optimum (Huber ``delta`` on log L): from the ``starts`` best points of the
    Hoffmann grid (batched, 2 polished), or from ``x0`` alone (bootstrap refits)."""
    def objective(v):
        return _huber_objective(v, logN, logD, logL, delta)
    if x0 is not None:
        return _best_of(objective, np.asarray(x0)[None], _CHIN_BOUNDS, law, names=ChinchillaLaw.NAMES)
    grid_f, _ = objective(_CHIN_GRID)
    return _best_of(objective, _CHIN_GRID[np.argsort(grid_f)[:starts]], _CHIN_BOUNDS, law, polish=2,
                    names=ChinchillaLaw.NAMES)


@_single_thread_blas
def chinchilla_alpha_profile(N, D, loss, alphas: Sequence[float], delta: float = _HUBER_DELTA) -> list[dict[str, Any]]:
    """The robust Chinchilla fit (:func:`fit_chinchilla`, Huber ``delta`` on log L) with α held at each of
    ``alphas`` and the other four parameters refitted from the Hoffmann grid: [{"alpha", "objective",
    "law"}]. How firmly the data choose α, i.e. how much of L is put in A/N^α (a floor for each N) rather
    than in B/D^β, which decides how L̂ extrapolates in D (Approach 2's stage 1)."""
    c = _rows(N=N, D=D, loss=loss)
    logs = np.log(c["N"]), np.log(c["D"]), np.log(c["loss"])
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # α on its one-point box
        for alpha in alphas:
            bounds = [*_CHIN_BOUNDS[:3], (alpha, alpha), _CHIN_BOUNDS[4]]
            grid = _CHIN_GRID.copy()
            grid[:, 3] = alpha
            objective = functools.partial(_huber_objective, logN=logs[0], logD=logs[1], logL=logs[2], delta=delta)
            starts = grid[np.argsort(objective(grid)[0])[:64]]
            x, f, _ = _best_of(objective, starts, bounds, "chinchilla (alpha profile)", polish=2,
                               names=ChinchillaLaw.NAMES)
            out.append({"alpha": float(alpha), "objective": f, "law": ChinchillaLaw(x)})
    return out


def _bootstrap(ckpt: np.ndarray, n: int, seed: int, refit: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """``n`` refits on resamples of the checkpoints (all k rows of a drawn checkpoint come along). A
    resample the law cannot be fitted on (fewer distinct checkpoints than it needs: DataError) is drawn
    again, so the refits are those of the fittable resamples (with ≥ 20 checkpoints a draw of fewer than
    5 distinct ones has probability < 1e-9; with 6 most draws)."""
    if n <= 0:
        return None
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(ckpt == i) for i in range(ckpt.max() + 1)]
    out, unfittable = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        while len(out) < n:
            pick = rng.integers(0, len(members), len(members))
            try:
                out.append(refit(np.concatenate([members[i] for i in pick])))
            except DataError:
                unfittable += 1
                if unfittable > 100 * n:
                    raise
    return np.array(out)


# ---------------------------------------------------------------- Approach 1: loss law


class T2LossLaw(Law):
    """L(N, D, k) = E + A/N^α + B/D^β + G/k^γ, stored as (log A, log B, log E, α, β, log G, γ)."""

    KIND, METRIC = "t2_loss", "loss"
    NAMES = ("log_A", "log_B", "log_E", "alpha", "beta", "log_G", "gamma")

    def predict(self, N, D, k=1) -> np.ndarray:
        a, b, e, al, be, g, ga = self.x
        N, D, k = (np.asarray(v, dtype=np.float64) for v in (N, D, k))
        return np.exp(e) + np.exp(a - al * np.log(N)) + np.exp(b - be * np.log(D)) + np.exp(g - ga * np.log(k))

    def at_k1(self) -> ChinchillaLaw:
        """The k = 1 slice: a Chinchilla law with E' = E + G."""
        a, b, e, al, be, g, _ = self.x
        return ChinchillaLaw(np.array([a, b, np.logaddexp(e, g), al, be]))

    @property
    def chinchilla_law(self) -> ChinchillaLaw:
        return self.at_k1()


_T2_BOUNDS = [(-10.0, 50.0), (-10.0, 50.0), (LOG_E_ZERO, 5.0), (0.0, 5.0), (0.0, 5.0), (-20.0, 10.0), (0.0, 5.0)]
_T2_STARTS = np.array([(0, 25), (0, 25), (-2, 1), (0.05, 1.5), (0.05, 1.5), (-2, 2), (0.05, 1.5)])


@dataclass(frozen=True)
class LossDesign:
    """Sufficient statistics of the Approach 1 SSE: rows grouped by checkpoint c and by k.

    pred = E + f_c + h_k with f_c = A/N_c^α + B/D_c^β and h_k = G/k^γ, so
    SSE = Σ (pred − y)² needs only W[c, k] (row counts), Y_c = Σ_{rows of c} y, Y_k, Σ y, Σ y².
    """

    logN: np.ndarray  # [C]
    logD: np.ndarray  # [C]
    logk: np.ndarray  # [K]
    W: np.ndarray  # [C, K]
    Yc: np.ndarray
    Yk: np.ndarray
    Sy: float
    Syy: float

    @classmethod
    def build(cls, ckpt: np.ndarray, N: np.ndarray, D: np.ndarray, k: np.ndarray, y: np.ndarray) -> LossDesign:
        ks, kidx = np.unique(k, return_inverse=True)
        ckpt = np.unique(ckpt, return_inverse=True)[1].ravel()  # compact ids (a resample may skip some)
        C, K = ckpt.max() + 1, ks.size
        W = np.zeros((C, K))
        np.add.at(W, (ckpt, kidx), 1.0)
        first = np.unique(ckpt, return_index=True)[1]
        return cls(np.log(N[first]), np.log(D[first]), np.log(ks), W, np.bincount(ckpt, y, C),
                   np.bincount(kidx, y, K), float(y.sum()), float(y @ y))

    def sse(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SSE and its analytic gradient for parameter vectors x of shape [..., 7]."""
        a, b, e, al, be, g, ga = (v[..., None] for v in np.moveaxis(np.asarray(x), -1, 0))
        tA, tB = np.exp(a - al * self.logN), np.exp(b - be * self.logD)
        f, h, E = tA + tB, np.exp(g - ga * self.logk), np.exp(e[..., 0])
        nc, nk = self.W.sum(1), self.W.sum(0)
        Rc = nc * (E[..., None] + f) + h @ self.W.T - self.Yc  # Σ residuals over each checkpoint's rows
        Rk = nk * (E[..., None] + h) + f @ self.W - self.Yk  # … over each k's rows
        RE = Rc.sum(-1)
        sse = E * (RE - self.Sy) + ((Rc - self.Yc) * f).sum(-1) + ((Rk - self.Yk) * h).sum(-1) + self.Syy
        grad = 2 * np.stack([(Rc * tA).sum(-1), (Rc * tB).sum(-1), RE * E, -(Rc * tA * self.logN).sum(-1),
                             -(Rc * tB * self.logD).sum(-1), (Rk * h).sum(-1), -(Rk * h * self.logk).sum(-1)], -1)
        return sse, grad


@_single_thread_blas
def fit_t2_loss(N, D, k, loss, starts: int = 500, bootstrap: int = 0, seed: int = 0,
                polish: int = 5) -> T2LossLaw:
    """T² Approach 1: SSE of E + A/N^α + B/D^β + G/k^γ against the task loss over all rows;
    L-BFGS-B with analytic gradients from ``starts`` random starts, keep the best.

    ``bootstrap`` refits on checkpoint resamples (each from the full-data optimum) give intervals.
    """
    c = _rows(N=N, D=D, k=k, loss=loss)
    ckpt = _checkpoints(c["N"], c["D"], 7, "t2 approach 1")
    if np.unique(c["k"]).size < 3:
        raise DataError(f"k: {np.unique(c['k']).size} distinct value(s), approach 1 needs at least 3 to fit G, γ")
    design = LossDesign.build(ckpt, c["N"], c["D"], c["k"], c["loss"])
    lo, hi = _T2_STARTS.T
    x0 = np.random.default_rng(seed).uniform(lo, hi, size=(starts, 7))
    x, f, ok = _best_of(design.sse, x0, _T2_BOUNDS, "t2 approach 1", polish=polish, names=T2LossLaw.NAMES)

    def refit(rows: np.ndarray) -> np.ndarray:
        sub = LossDesign.build(ckpt[rows], c["N"][rows], c["D"][rows], c["k"][rows], c["loss"][rows])
        return _best_of(sub.sse, x[None], _T2_BOUNDS, "t2 approach 1")[0]

    return T2LossLaw(x, _bootstrap(ckpt, bootstrap, seed + 1, refit),
                     {"sse": f, "converged": ok, "starts": starts, "rows": int(ckpt.size),
                      "checkpoints": int(ckpt.max() + 1), "at_bound": at_bounds(x, _T2_BOUNDS, T2LossLaw.NAMES),
                      "at_limit": at_limits(x, _T2_BOUNDS, T2LossLaw.NAMES)},
                     data_ranges(c["N"], c["D"], c["k"]))


# ---------------------------------------------------------------- Approach 2: Beta accuracy law


class T2AccuracyLaw(Law):
    """Acc(N, D, k) = 1 − B(a, b + k)/B(a, b) over L̂(N, D) = Chinchilla (E, A, α, B, β);
    stored as (log A, log B, log E, α, β, θ0, θ1, θ2, θ3, θ4).

    μ = θ2/(1 + exp(θ1 (L̂ − θ0))) must lie in (0, 1) for a, b > 0. On the law's whole domain L̂ > E
    that holds iff θ2 > 0, θ1 >= 0 and ρ = μ(E) = θ2/(1 + exp(θ1 (E − θ0))) <= 1 (μ falls with L̂, so
    its supremum is ρ, the k = 1 accuracy in the infinite-compute limit). The fit searches ρ ∈ (0, 1]
    and u = θ1 (θ0 − E) instead of θ0 (:func:`theta_from_search`), so θ2 itself may exceed 1; μ is never
    clipped. When the data lie in the logistic's exponential tail only θ2 exp(θ1 θ0) is identified; u then
    reaches :data:`U_TAIL`, where μ = ρ exp(−θ1 (L̂ − E)) to float64: the formula limit θ0 → −∞.
    """

    KIND, METRIC = "t2_accuracy", "accuracy"
    FORM: ClassVar[str] = "beta"
    NAMES = ChinchillaLaw.NAMES + ("theta0", "theta1", "theta2", "theta3", "theta4")

    @property
    def loss_law(self) -> ChinchillaLaw:
        return ChinchillaLaw(self.x[:5])

    def beta_ab(self, L) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of the Beta distribution of per-question success at task NLL L̂."""
        t0, t1, t2, t3, t4 = self.x[5:10]
        mu = t2 * expit(-t1 * (L - t0))
        nu = np.exp(t3 + t4 * L)
        return mu * nu, (1 - mu) * nu

    def predict(self, N, D, k=1) -> np.ndarray:
        """Acc(N, D, k) = :meth:`accuracy_at` (L̂(N, D), k)."""
        return self.accuracy_at(self.loss_law.predict(N, D), k)

    def accuracy_at(self, L, k=1) -> np.ndarray:
        """Stage 2 alone: pass@k at task NLL ``L`` (nats), whether L̂ or a measured NLL; NaN where
        ν = exp(θ3 + θ4 L) overflows (L far outside the data, as on the optimizer's search grid, which
        skips NaN)."""
        with np.errstate(over="ignore", invalid="ignore"):
            a, b = self.beta_ab(np.asarray(L, dtype=np.float64))
            return beta_pass_at_k(a, b, np.asarray(k, dtype=np.float64))

    @property
    def chinchilla_law(self) -> ChinchillaLaw:
        return self.loss_law


class T2ZeroInflatedAccuracyLaw(T2AccuracyLaw):
    """Acc(N, D, k) = (1 − π)(1 − B(a, b + k)/B(a, b)): a share π of questions that no draw solves
    (a point mass at p = 0 beside the Beta). Stored as :class:`T2AccuracyLaw`'s vector, then π."""

    KIND, FORM = "t2_accuracy_zi", "zero_inflated_beta"
    NAMES = T2AccuracyLaw.NAMES + ("pi",)

    def accuracy_at(self, L, k=1) -> np.ndarray:
        return (1 - self.x[10]) * super().accuracy_at(L, k)


def theta_from_search(y: np.ndarray, E: float) -> np.ndarray:
    """Stage-2 search vector (u, θ1, ρ, θ3, θ4[, π]) [..., P] -> the law's (θ0, θ1, θ2, θ3, θ4[, π]):
    θ0 = E + u/θ1, θ2 = ρ (1 + exp(−u)), so that μ = θ2 σ(−θ1 (L̂ − θ0)) = ρ (1 + e^−u) σ(u − θ1 (L̂ − E))."""
    y = np.asarray(y, dtype=np.float64)
    theta = y.copy()
    theta[..., 0] = E + y[..., 0] / y[..., 1]
    theta[..., 2] = y[..., 2] * (1 + np.exp(-y[..., 0]))
    return theta


def search_from_theta(theta: np.ndarray, E: float) -> np.ndarray:
    """Inverse of :func:`theta_from_search`: u = θ1 (θ0 − E), ρ = θ2/(1 + exp(−u)) = μ(E)."""
    y = np.array(theta, dtype=np.float64)
    y[..., 0] = y[..., 1] * (y[..., 0] - E)
    y[..., 2] = y[..., 2] / (1 + np.exp(-y[..., 0]))
    return y


def _stage2_bounds(E: float, zero_inflated: bool) -> list[tuple[float, float]]:
    """Search box of (u, θ1, ρ, θ3, θ4[, π]): ρ ∈ (0, 1], θ1 >= 0 (1e-9: θ0 = E + u/θ1 stays finite),
    π ∈ [0, 1) and u >= :data:`U_TAIL` (θ0 → −∞) are the formula's own limits; the others only keep
    exp(−u) and ν = exp(θ3 + θ4 L̂) finite."""
    box = [(U_TAIL, 2500.0), (1e-9, 50.0), (1e-12, 1.0), (-20.0, 20.0), (-20.0, 20.0)]
    return box + [(0.0, 1 - 1e-9)] * zero_inflated




@dataclass(frozen=True)
class AccuracyDesign:
    """The Approach 2 stage-2 SSE, batched over θ vectors, with the per-checkpoint work shared.

    a, b depend on the row only through its checkpoint's L̂, so μ, ν, a, b, ψ(b) and ψ(a + b) are
    computed once per checkpoint [S, C]; only log B(a, b + k) − log B(a, b) (:func:`log_beta_ratio`),
    ψ(b + k) and ψ(a + b + k) are per row [S, R]. Per-row gradient terms are summed back to checkpoints by one
    matrix product with the row→checkpoint indicator.
    """

    L: np.ndarray  # [C] L̂ of each checkpoint
    row: np.ndarray  # [R] checkpoint of each row
    k: np.ndarray  # [R]
    acc: np.ndarray  # [R]
    onehot: np.ndarray  # [R, C]

    @classmethod
    def build(cls, ckpt: np.ndarray, Lhat: np.ndarray, k: np.ndarray, acc: np.ndarray) -> AccuracyDesign:
        """Rows with checkpoint ids ``ckpt`` (any labels), L̂, k and accuracy per row."""
        uniq, row = np.unique(ckpt, return_inverse=True)
        row = row.ravel()
        first = np.unique(row, return_index=True)[1]
        onehot = np.zeros((row.size, uniq.size))
        onehot[np.arange(row.size), row] = 1.0
        return cls(np.asarray(Lhat, dtype=np.float64)[first], row, np.asarray(k, dtype=np.float64),
                   np.asarray(acc, dtype=np.float64), onehot)

    def sse(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Σ (Acc − acc)² over rows and its analytic gradient, for θ of shape [..., 5] (Beta) or
        [..., 6] (zero-inflated: θ then π, Acc scaled by 1 − π).

        At the corner of the θ box (ν = exp(θ3 + θ4 L̂) near overflow) log B is ±inf and the SSE
        NaN; the line searches reject such steps, so that is returned quietly."""
        with np.errstate(invalid="ignore", over="ignore"):
            return self._sse(np.asarray(theta, dtype=np.float64))

    def sse_search(self, y: np.ndarray, E: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sse` over the search vector (u, θ1, ρ, θ3, θ4[, π]) of :func:`theta_from_search`, by the
        chain rule through θ0 = E + u/θ1 and θ2 = ρ (1 + e^−u)."""
        y = np.asarray(y, dtype=np.float64)
        f, g = self.sse(theta_from_search(y, E))
        u, t1, rho = y[..., 0], y[..., 1], y[..., 2]
        g0, g1, g2 = g[..., 0], g[..., 1], g[..., 2]
        g = g.copy()
        g[..., 0] = g0 / t1 - g2 * rho * np.exp(-u)
        g[..., 1] = g1 - g0 * u / t1**2
        g[..., 2] = g2 * (1 + np.exp(-u))
        return f, g

    def _sse(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t0, t1, t2, t3, t4 = (v[..., None] for v in np.moveaxis(theta[..., :5], -1, 0))
        keep = 1 - theta[..., 5:6] if theta.shape[-1] == 6 else 1.0  # 1 − π
        L = self.L
        s = expit(-t1 * (L - t0))  # [..., C]
        mu, nu = t2 * s, np.exp(t3 + t4 * L)
        a, b = mu * nu, (1 - mu) * nu
        ok = (a > 0) & (b > 0)  # else the limits of beta_pass_at_k: constant in θ
        limit = np.where(b > 0, 0.0, 1.0)[..., self.row]
        a, b = np.where(ok, a, 1.0), np.where(ok, b, 1.0)
        ab = a + b
        psi_ab, psi_b = digamma(ab), digamma(b)
        ar, br, abr, okr = a[..., self.row], b[..., self.row], ab[..., self.row], ok[..., self.row]  # [..., R]
        bk = br + self.k
        delta = np.minimum(log_beta_ratio(ar, br, self.k), 0.0)  # B(a, b + k) <= B(a, b); clip rounding
        P = np.where(okr, -np.expm1(delta), limit)
        r = keep * P - self.acc
        dd = np.where(okr, -2 * r * keep * np.exp(delta), 0.0)  # ∂SSE/∂delta
        # per row: ∂delta/∂a = ψ(a+b) − ψ(a+b+k), ∂delta/∂b = ψ(b+k) − ψ(b) + ∂delta/∂a; summed per checkpoint
        d_a = psi_ab[..., self.row] - digamma(abr + self.k)
        d_b = digamma(bk) - psi_b[..., self.row] + d_a
        G_a, G_b = (dd * d_a) @ self.onehot, (dd * d_b) @ self.onehot
        g_mu = nu * (G_a - G_b)
        g_nu = (mu * G_a + (1 - mu) * G_b) * nu  # ∂/∂(θ3 + θ4 L̂)
        g_s = g_mu * t2 * (-s * (1 - s))  # ∂/∂z, z = θ1 (L̂ − θ0)
        grad = [(g_s * -t1).sum(-1), (g_s * (L - t0)).sum(-1), (g_mu * s).sum(-1), g_nu.sum(-1), (g_nu * L).sum(-1)]
        if theta.shape[-1] == 6:
            grad.append(-2 * (r * P).sum(-1))
        return (r * r).sum(-1), np.stack(grad, -1)


def isoflop_weights(C_train: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Inverse-variance weight of each checkpoint: 1/Var(loss) within its isoFLOP group (C_train
    rounded to the nearest power of 2); groups of one, or without spread, take the median weight.
    Normalised to mean 1."""
    group = np.round(np.log2(C_train)).astype(np.int64)
    w = np.full(loss.size, np.nan)
    for g in np.unique(group):
        m = group == g
        if m.sum() > 1 and loss[m].var() > 0:
            w[m] = 1 / loss[m].var()
    w[np.isnan(w)] = np.nanmedian(w) if np.isfinite(w).any() else 1.0
    return w / w.mean()


def _profiled_chinchilla(N: np.ndarray, D: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, float]:
    """Stage 1 of Approach 2: weighted SSE of E + A/N^α + B/D^β against the NLL, E profiled over
    40 values in [0.01, 0.95]·min NLL, (log A, log B, α, β) from 4 starts at each E.

    All 160 (E, start) problems run as one batch: E rides along as a frozen coordinate (its
    gradient is reported as 0, so L-BFGS never moves it); the best is polished by L-BFGS-B.
    """
    logN, logD, w = np.log(N), np.log(D), isoflop_weights(6 * N * D, L)

    def objective(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, al, be, E = (v[..., None] for v in np.moveaxis(p, -1, 0))
        tA, tB = np.exp(a - al * logN), np.exp(b - be * logD)
        r = E + tA + tB - L
        wr = 2 * w * r
        grad = np.stack([(wr * tA).sum(-1), (wr * tB).sum(-1), -(wr * tA * logN).sum(-1),
                         -(wr * tB * logD).sum(-1), np.zeros(r.shape[:-1])], -1)
        return (w * r**2).sum(-1), grad

    Es = np.linspace(0.01, 0.95, 40) * L.min()
    starts = np.array([[5.0, 5.0, 0.3, 0.3], [10.0, 10.0, 0.5, 0.5], [20.0, 20.0, 1.0, 1.0], [0.0, 0.0, 0.1, 0.1]])
    x0 = np.hstack([np.repeat(starts, Es.size, 0), np.tile(Es, len(starts))[:, None]])
    bounds = [(-10.0, 50.0), (-10.0, 50.0), (0.0, 5.0), (0.0, 5.0), (Es[0], Es[-1])]
    with warnings.catch_warnings():  # E at its grid end is a bound by construction
        warnings.simplefilter("ignore", FitWarning)
        (a, b, al, be, E), f, _ = _best_of(objective, x0, bounds, "t2 approach 2 (stage 1, isoflop)", polish=1,
                                           names=("log_A", "log_B", "alpha", "beta", "E"))
    return np.array([a, b, np.log(E), al, be]), f


STAGE1 = ("huber", "isoflop")
FORMS = ("auto", "beta", "zero_inflated_beta")


def _stage1(N: np.ndarray, D: np.ndarray, L: np.ndarray, how: str, x0: np.ndarray | None = None,
            huber_delta: float = _HUBER_DELTA) -> np.ndarray:
    """Chinchilla L̂(N, D) on the task NLL: "huber" = :func:`fit_chinchilla`'s robust log-space fit
    (Huber ``huber_delta`` on log L; from ``x0`` in bootstrap refits), "isoflop" =
    :func:`_profiled_chinchilla` (linear-space SSE with isoFLOP inverse-variance weights, E profiled in
    [0.01, 0.95]·min NLL). Fits from scratch are memoised (with their warnings, issued again on each
    call): :func:`select_options` fits each stage 1 once per fold for every stage-2 form."""
    if x0 is not None:
        return _huber_fit(np.log(N), np.log(D), np.log(L), x0=x0, law="t2 approach 2 (stage 1)", delta=huber_delta)[0]
    x, caught = _stage1_memo(*(np.ascontiguousarray(v, dtype=np.float64).tobytes() for v in (N, D, L)), how,
                             huber_delta)
    for message, category in caught:
        warnings.warn(message, category, stacklevel=2)
    return x.copy()


@functools.lru_cache(maxsize=64)
def _stage1_memo(N: bytes, D: bytes, L: bytes, how: str, huber_delta: float) -> tuple[np.ndarray, tuple]:
    """:func:`_stage1` from scratch on float64 buffers: (x, the (message, category) of its warnings)."""
    N, D, L = (np.frombuffer(b) for b in (N, D, L))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "isoflop":
            x = _profiled_chinchilla(N, D, L)[0]
        else:
            x = _huber_fit(np.log(N), np.log(D), np.log(L), law="t2 approach 2 (stage 1)", delta=huber_delta)[0]
    return x, tuple((w.message, w.category) for w in caught)


def _stage2(design: AccuracyDesign, E: float, zero_inflated: bool, x0: np.ndarray,
            polish: int) -> tuple[np.ndarray, float, bool]:
    """Best (θ0..θ4[, π]) of the Beta (or zero-inflated Beta) SSE from the search-vector starts ``x0``
    (:func:`theta_from_search`); returns the law's θ."""
    names = ("u", "theta1", "rho", "theta3", "theta4", "pi")[:5 + zero_inflated]
    y, f, ok = _best_of(lambda v: design.sse_search(v, E), x0, _stage2_bounds(E, zero_inflated),
                        "t2 approach 2 (stage 2)", polish=polish, names=names)
    return theta_from_search(y, E), f, ok


def _stage2_starts(Lhat: np.ndarray, acc: np.ndarray, acc1: np.ndarray, starts: int, seed: int,
                   best_beta: np.ndarray | None, E: float) -> np.ndarray:
    """Starts (u, θ1, ρ, θ3, θ4): one guess, then uniform draws around the data (θ0 within the L̂
    range, u = θ1 (θ0 − E)); with ``best_beta``
    (the Beta fit's θ) zero-inflated starts: it with π ∈ {0.02, 0.1, 0.3}, and the draws with
    π ~ U(0, max(1 − max acc, 0.05))."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array([Lhat.min(), 0.5, acc1.max(), -1.0, -1.0]), np.array([Lhat.max(), 10.0, 1.0, 3.0, 1.0])
    x0 = np.vstack([[np.median(Lhat), 3.0, min(1.0, 1.2 * acc1.max()), 1.0, 0.0],
                    rng.uniform(lo, hi, (starts - 1, 5))])
    x0[:, 0] = x0[:, 1] * (x0[:, 0] - E)
    if best_beta is None:
        return x0
    pis = rng.uniform(0, max(1 - acc.max(), 0.05), (starts, 1))
    best = search_from_theta(best_beta, E)
    return np.vstack([np.c_[np.tile(best, (3, 1)), [0.02, 0.1, 0.3]], np.c_[x0, pis]])


def _aic(sse: float, rows: int, n_params: int) -> float:
    """Akaike criterion of a least-squares fit (Gaussian residuals, variance profiled): R log(SSE/R) + 2p."""
    return rows * np.log(max(sse, 1e-300) / rows) + 2 * n_params


@_single_thread_blas
def fit_t2_accuracy(N, D, k, accuracy, loss, starts: int = 8, bootstrap: int = 0, seed: int = 0,
                    stage1: str = "huber", form: str = "auto", huber_delta: float = _HUBER_DELTA) -> T2AccuracyLaw:
    """T² Approach 2, two stages: (1) Chinchilla L̂(N, D) on the task NLL = the task loss of the k = 1
    rows (:func:`_stage1`, ``huber_delta`` for "huber"); (2) the Beta regression's θ by SSE of
    1 − B(a, b + k)/B(a, b) against pass@k accuracy over all rows (:class:`AccuracyDesign`; ``starts``
    batched, 2 best polished).
    ``form`` "auto" also fits the zero-inflated Beta (:class:`T2ZeroInflatedAccuracyLaw`) and keeps it
    where its AIC is lower; info["form"], info["aic"] say which. Bootstrap refits start from the optimum."""
    if stage1 not in STAGE1:
        raise InvalidSetting("stage1", stage1, f"one of {STAGE1}")
    if form not in FORMS:
        raise InvalidSetting("form", form, f"one of {FORMS}")
    if not 0 < huber_delta < np.inf:
        raise InvalidSetting("huber_delta", huber_delta, "a Huber threshold > 0 (on log NLL)")
    c = _rows(N=N, D=D, k=k, accuracy=accuracy, loss=loss)
    ckpt = _checkpoints(c["N"], c["D"], 5, "t2 approach 2")

    def fit(rows: np.ndarray, x_init: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
        one = rows[c["k"][rows] == 1]
        first = one[np.unique(ckpt[one], return_index=True)[1]]
        if first.size < 5 or np.unique(ckpt[rows]).size != first.size:
            raise DataError("t2 approach 2: every checkpoint needs a k = 1 row (its task NLL) and at least "
                             f"5 checkpoints have one; found {first.size} of {np.unique(ckpt[rows]).size}")
        if np.any(c["loss"][first] <= 0):
            raise DataError(f"loss: expected task NLL > 0 at k = 1, row(s) {_list(first[c['loss'][first] <= 0])}")
        chin = _stage1(c["N"][first], c["D"][first], c["loss"][first], stage1, None if x_init is None else x_init[:5],
                       huber_delta)
        E, Lhat = float(np.exp(chin[2])), ChinchillaLaw(chin).predict(c["N"][rows], c["D"][rows])
        design = AccuracyDesign.build(ckpt[rows], Lhat, c["k"][rows], c["accuracy"][rows])
        if x_init is not None:
            theta, _, _ = _stage2(design, E, x_init.size == 11, search_from_theta(x_init[5:], E)[None], 0)
            return np.r_[chin, theta], {}
        fits, caught = {}, {}
        for name in (("beta", "zero_inflated_beta") if form == "auto" else (form,)):
            zi = name == "zero_inflated_beta"
            x0 = _stage2_starts(Lhat, c["accuracy"][rows], c["accuracy"][one], starts, seed,
                                fits["beta"][0] if zi and "beta" in fits else None, E)
            if zi and x0.shape[1] == 5:
                x0 = np.c_[x0, np.full(len(x0), 0.05)]
            with warnings.catch_warnings(record=True) as caught[name]:  # only the chosen form's warnings count
                warnings.simplefilter("always")
                fits[name] = _stage2(design, E, zi, x0, 2)
        aic = {name: _aic(f, rows.size, 10 + (name != "beta")) for name, (_, f, _) in fits.items()}
        chosen = min(aic, key=aic.get)
        for w in caught[chosen]:
            warnings.warn(w.message, w.category, stacklevel=2)
        theta, f, ok = fits[chosen]
        return np.r_[chin, theta], {"sse": f, "converged": ok, "form": chosen, "aic": aic}

    x, info = fit(np.arange(ckpt.size), None)
    cls = T2ZeroInflatedAccuracyLaw if info["form"] == "zero_inflated_beta" else T2AccuracyLaw
    samples = _bootstrap(ckpt, bootstrap, seed + 1, lambda rows: fit(rows, x)[0])
    names = ChinchillaLaw.NAMES + ("u", "theta1", "rho", "theta3", "theta4", "pi")
    bounds = _CHIN_BOUNDS + _stage2_bounds(float(np.exp(x[2])), x.size == 11)
    y = np.r_[x[:5], search_from_theta(x[5:], float(np.exp(x[2])))]
    info |= {"starts": starts, "stage1": stage1, "huber_delta": huber_delta, "rows": int(ckpt.size),
             "checkpoints": int(ckpt.max() + 1),
             "at_bound": at_bounds(y, bounds, names[:x.size]), "at_limit": at_limits(y, bounds, names[:x.size])}
    return cls(x, samples, info, data_ranges(c["N"], c["D"], c["k"]))


# ---------------------------------------------------------------- save / load

LAWS: dict[str, type[Law]] = {cls.KIND: cls for cls in (ChinchillaLaw, T2LossLaw, T2AccuracyLaw,
                                                          T2ZeroInflatedAccuracyLaw)}


def law_from_dict(d: dict[str, Any], where: str = "law") -> Law:
    """Inverse of :meth:`Law.to_dict`."""
    kind = d.get("law")
    if kind not in LAWS:
        raise DataError(f"{where}: field 'law' must be one of {sorted(LAWS)}, got {kind!r}")
    cls = LAWS[kind]
    x = d.get("x", {})
    missing = [n for n in cls.NAMES if n not in x]
    if missing:
        raise DataError(f"{where}: field 'x' lacks {', '.join(missing)}")
    samples = np.array(d["bootstrap_x"], dtype=np.float64) if d.get("bootstrap_x") else None
    ranges = d.get("ranges")  # absent in files written before ranges were stored
    if ranges is not None and not (isinstance(ranges, dict) and "N" in ranges and
                                   all(isinstance(v, list) and len(v) == 2 for v in ranges.values())):
        raise RecordError(f"{where}: field 'ranges' must map N, D, … to [min, max], got {ranges!r}")
    if d.get("N_kind") not in (None, *N_KINDS):
        raise RecordError(f"{where}: field 'N_kind' must be one of {N_KINDS}, got {d['N_kind']!r}")
    return cls(np.array([x[n] for n in cls.NAMES], dtype=np.float64), samples, d.get("info", {}), ranges,
               d.get("N_kind"))


def save_laws(path, laws: dict[str, Law]) -> None:
    """Write ``{task: law}`` as one JSON record of kind "law"."""
    records.write_json(path, "law", {"laws": {task: law.to_dict() for task, law in laws.items()}})


def load_laws(path) -> dict[str, Law]:
    """Read the ``{task: law}`` record written by :func:`save_laws`."""
    body = records.read_json(path, "law")
    if not isinstance(body.get("laws"), dict) or not body["laws"]:
        raise DataError(f"{path}: field 'laws' must map task names to laws")
    return {task: law_from_dict(d, f"{path}: laws.{task}") for task, d in body["laws"].items()}


# ---------------------------------------------------------------- datasets: fit per task, held-out validation


def fit_columns(cols: dict[str, np.ndarray], approach: int, starts: int | None = None, bootstrap: int = 0,
                seed: int = 0, **options: Any) -> Law:
    """Approach 1 (loss law) or 2 (Beta accuracy law) on one task's columns (see dataset.task_columns);
    ``options`` (stage1, form, huber_delta) go to :func:`fit_t2_accuracy`, Approach 1 takes none. The
    law's ``N_kind`` comes from the column of that name when the dataset has one."""
    if approach == 1:
        if options:
            raise InvalidSetting("options", sorted(options), "none for approach 1 (stage1, form, huber_delta: 2's)")
        law = fit_t2_loss(cols["N"], cols["D"], cols["k"], cols["task_loss"], starts=starts or 500,
                          bootstrap=bootstrap, seed=seed)
    elif approach == 2:
        law = fit_t2_accuracy(cols["N"], cols["D"], cols["k"], cols["accuracy"], cols["task_loss"],
                              starts=starts or 8, bootstrap=bootstrap, seed=seed, **options)
    else:
        raise InvalidSetting("approach", approach, "1 or 2")
    kinds = set(cols["N_kind"]) if "N_kind" in cols else set()
    if len(kinds) > 1:
        raise DataError(f"N_kind: the rows mix parameter counts {sorted(kinds)}; fit one kind at a time")
    law.N_kind = kinds.pop() if kinds else None
    return law


# Approach 2's options that :func:`validate` chooses among by leave-one-checkpoint-out error on the training
# checkpoints (:func:`select_options`), fixed before any of their test errors was computed: stage 1 the robust
# fit (Huber δ = 1e-3 on log NLL: nearly L1), the same near least squares in log space (δ = 0.1: residuals
# under 10% weigh quadratically) or the isoFLOP-weighted linear fit; stage 2 the Beta or the zero-inflated Beta.
ACCURACY_CANDIDATES: tuple[dict[str, Any], ...] = tuple(
    {**stage1, "form": form} for stage1 in ({"stage1": "huber", "huber_delta": 1e-3},
                                            {"stage1": "huber", "huber_delta": 0.1}, {"stage1": "isoflop"})
    for form in ("beta", "zero_inflated_beta"))


def _subset(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: v[mask] for name, v in cols.items()}


def _checkpoint_ids(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's checkpoint: the "checkpoint" column, or the index of its (N, D) pair."""
    if "checkpoint" in cols:
        return cols["checkpoint"]
    return np.unique(np.stack([cols["N"], cols["D"]], 1), axis=0, return_inverse=True)[1].ravel()


def _target(cols: dict[str, np.ndarray], approach: int) -> np.ndarray:
    """The fitted metric: the task loss (nats, Approach 1) or the pass@k accuracy (Approach 2)."""
    return cols["task_loss" if approach == 1 else "accuracy"]


def _relative(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(pred - y) / np.maximum(np.abs(y), 1e-12)


def loo_error(cols: dict[str, np.ndarray], approach: int, starts: int | None = None, **options: Any) -> float:
    """Leave-one-checkpoint-out error: each checkpoint's rows predicted by the law fitted (``options``)
    to the other checkpoints; the mean over all rows of |pred − y|/|y|. NaN when a fold cannot be fitted."""
    ck, y = _checkpoint_ids(cols), _target(cols, approach)
    rel = np.empty(y.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        for c in np.unique(ck):
            out = ck == c
            try:
                law = fit_columns(_subset(cols, ~out), approach, starts, **options)
            except DataError:  # too few checkpoints left, or one without a k = 1 row
                return float("nan")
            rel[out] = _relative(law.predict(cols["N"][out], cols["D"][out], cols["k"][out]), y[out])
    return float(rel.mean())


def select_options(cols: dict[str, np.ndarray], approach: int, candidates: Sequence[dict[str, Any]],
                   starts: int | None = None, rtol: float = 1e-3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first candidate whose :func:`loo_error` on ``cols`` is within ``rtol`` (relative) of the smallest
    (candidates listed simplest first: a zero-inflated Beta whose π → 0 ties with the Beta it contains),
    the first when none can be scored; and every candidate with its "loo_mean_rel_error" and "chosen"."""
    loo = [loo_error(cols, approach, starts, **c) for c in candidates]
    scored = [i for i, e in enumerate(loo) if np.isfinite(e)]
    best = next((i for i in scored if loo[i] <= min(loo[j] for j in scored) * (1 + rtol)), 0)
    return dict(candidates[best]), [{**c, "loo_mean_rel_error": e, "chosen": i == best}
                                    for i, (c, e) in enumerate(zip(candidates, loo))]


def validate(cols: dict[str, np.ndarray], approach: int, holdout_ratio: float | None = None,
             starts: int | None = None, floor: float = 0.05,
             candidates: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Held-out validation: fit on checkpoints with D/N <= ``holdout_ratio`` (default: the 75th
    percentile of checkpoint D/N, so the most overtrained quarter is held out), predict the rest.

    The test set is the held-out checkpoints whose N lies inside the fitted N range: extrapolation in
    D/N, as the paper's overtrained checkpoints are. Held-out checkpoints of an N outside that range
    (on an isoFLOP ladder the smallest width is only ever overtrained) test extrapolation in N as
    well; they are reported apart, as ``outside_*``, never mixed in nor left out silently.

    Returns, for the train, test and outside rows, the relative error |pred − y|/|y| of the fitted
    metric y (task loss in nats, or pass@k accuracy) over every row (mean, median, max), the absolute
    error |pred − y| (mean, max; nats or accuracy), the number of rows whose |y| < ``floor`` (where
    the relative error measures the nearness of y to 0 more than the law: e.g. a task loss of 0.001
    nats at large k) and the mean relative error of the other rows; ``test_points``: every held-out
    row (checkpoint, k, measured, predicted, relative error, whether its N is inside the fitted range).

    Measured limits, the same statistics on the test rows: ``form_limit_*`` of the law fitted to every
    checkpoint (train, test and outside), what the functional form itself achieves on the test rows
    (in practice a lower bound on any held-out error of that form); for Approach 2 ``stage1_free_*``,
    the held-out law's stage 2 at the test checkpoints' measured task NLL (their k = 1 task loss)
    instead of L̂: the error that remains without stage 1's. With ``candidates`` (Approach 2 options),
    the options come from :func:`select_options` on the training checkpoints alone ("options"), and
    "candidates" lists each with its training LOO error and, for the record, its test mean error.
    """
    cut, held, inside = _holdout(cols, holdout_ratio)
    train, test = _subset(cols, ~held), held & inside
    options, table = select_options(train, approach, candidates, starts) if candidates else ({}, [])
    law = fit_columns(train, approach, starts, **options)
    y, ck = _target(cols, approach), _checkpoint_ids(cols)
    pred = law.predict(cols["N"], cols["D"], cols["k"])
    out: dict[str, Any] = {"holdout_ratio": cut, "floor": floor}
    for name, m in (("train", ~held), ("test", test), ("outside", held & ~inside)):
        out |= _errors(name, ck[m], pred[m], y[m], floor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        full = fit_columns(cols, approach, starts, **options)
        for candidate, row in zip(candidates, table):
            fitted = fit_columns(train, approach, starts, **candidate)
            row["test_mean_rel_error"] = float(_relative(fitted.predict(*_points(cols, test)), y[test]).mean())
    out |= _errors("form_limit", ck[test], full.predict(cols["N"], cols["D"], cols["k"])[test], y[test], floor)
    if approach == 2:
        nll = _measured_nll(cols, ck)
        out |= _errors("stage1_free", ck[test], law.accuracy_at(nll, cols["k"])[test], y[test], floor)
    if candidates:
        out |= {"options": options, "candidates": table}
    out["test_points"] = [{"checkpoint": str(ck[i]), "k": float(cols["k"][i]), "measured": float(y[i]),
                           "predicted": float(pred[i]), "rel_error": float(_relative(pred[i], y[i])),
                           "N_inside": bool(inside[i])} for i in np.flatnonzero(held)]
    return out


def _holdout(cols: dict[str, np.ndarray], holdout_ratio: float | None) -> tuple[float, np.ndarray, np.ndarray]:
    """(D/N cut, held-out rows, rows whose N lies inside the fitted N range) of :func:`validate`."""
    ratio = cols["D"] / cols["N"]
    cut = float(np.percentile(np.unique(ratio), 75)) if holdout_ratio is None else float(holdout_ratio)
    held = ratio > cut
    if not held.any() or held.all():
        raise DataError(f"holdout ratio {cut:g}: needs checkpoints on both sides (D/N spans "
                         f"{ratio.min():g}..{ratio.max():g})")
    fitted_N = cols["N"][~held]
    inside = (cols["N"] >= fitted_N.min()) & (cols["N"] <= fitted_N.max())
    if not (held & inside).any():
        raise DataError(f"holdout ratio {cut:g}: every checkpoint above it has an N outside the fitted range "
                         f"{fitted_N.min():g}..{fitted_N.max():g}")
    return cut, held, inside


def _points(cols: dict[str, np.ndarray], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, k) of the rows in ``mask``."""
    return cols["N"][mask], cols["D"][mask], cols["k"][mask]


def _measured_nll(cols: dict[str, np.ndarray], ck: np.ndarray) -> np.ndarray:
    """Each row's checkpoint's measured task NLL (its k = 1 task loss, nats); NaN without a k = 1 row."""
    one = cols["k"] == 1
    nll = dict(zip(ck[one].tolist(), cols["task_loss"][one].tolist()))
    return np.array([nll.get(c, np.nan) for c in ck.tolist()])


def _errors(name: str, ck: np.ndarray, pred: np.ndarray, y: np.ndarray, floor: float) -> dict[str, Any]:
    """``name``_checkpoints and the error statistics of :func:`validate` over one set of rows (checkpoint
    ids ``ck``, predictions, measured values; NaN: no rows)."""
    def stat(f: Callable[[np.ndarray], Any], v: np.ndarray) -> float:
        return float(f(v)) if v.size else float("nan")

    rel, err, small = _relative(pred, y), np.abs(pred - y), np.abs(y) < floor
    return {f"{name}_checkpoints": len(set(ck.tolist())), f"{name}_mean": stat(np.mean, rel),
            f"{name}_median": stat(np.median, rel), f"{name}_max": stat(np.max, rel),
            f"{name}_mean_abs": stat(np.mean, err), f"{name}_max_abs": stat(np.max, err),
            f"{name}_below_floor": int(small.sum()), f"{name}_mean_above_floor": stat(np.mean, rel[~small])}


ALPHA_GRID = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)


@_single_thread_blas
def alpha_profile(N, D, k, loss, alphas: Sequence[float] = ALPHA_GRID, starts: int = 100,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Approach 1's profile in α: the SSE with α held at each of ``alphas`` and the other six parameters
    refitted, from ``starts`` of :func:`fit_t2_loss`'s random starts (100: on the demo ladder the same SSE
    to 5 digits as 500) and from the optima at the neighbouring α (a sweep up the grid, then one down),
    each moved to that α with A/N̄^α unchanged (N̄ the geometric mean of the checkpoints' sizes) and
    log A unbounded, so the term stays expressible at any α; the neighbours' optima keep a profile from
    dropping into another local minimum at one α (on the demo's causal task 3 of 10 points did). An
    interior minimum is where α would settle in a wider box; an SSE that keeps falling
    past α's search bound (5) to a plateau means these data do not identify α (the term then only
    separates the smallest N from the rest). Returns [{"alpha", "sse", "x"}], x the refitted vector."""
    c = _rows(N=N, D=D, k=k, loss=loss)
    ckpt = _checkpoints(c["N"], c["D"], 7, "t2 approach 1")
    design = LossDesign.build(ckpt, c["N"], c["D"], c["k"], c["loss"])
    lo, hi = _T2_STARTS.T
    x0 = np.random.default_rng(seed).uniform(lo, hi, size=(starts, 7))
    log_nbar = float(np.log(np.unique(c["N"])).mean())

    def moved(x: np.ndarray, alpha: float) -> np.ndarray:  # the same A/N̄^α at α
        x = np.array(x, dtype=np.float64, ndmin=2)
        x[:, 0] += (alpha - x[:, 3]) * log_nbar
        x[:, 3] = alpha
        return x

    def refit(alpha: float, start: np.ndarray) -> tuple[np.ndarray, float]:
        bounds = [(-np.inf, np.inf), *_T2_BOUNDS[1:3], (alpha, alpha), *_T2_BOUNDS[4:]]
        x, f, _ = _best_of(design.sse, moved(start, alpha), bounds, "t2 approach 1 (alpha profile)",
                           polish=min(5, len(start)), names=T2LossLaw.NAMES)
        return x, f

    best: dict[float, tuple[np.ndarray, float]] = {}
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):  # unbounded log A: steps
        warnings.simplefilter("ignore", FitWarning)  # that overflow are rejected; α on its one-point box
        previous = None
        for alpha in alphas:  # up: random starts and the optimum at the α below
            best[alpha] = previous = refit(alpha, x0 if previous is None else np.vstack([x0, previous[0]]))
        for alpha, above in zip(alphas[-2::-1], alphas[:0:-1]):  # down: the optimum at the α above
            x, f = refit(alpha, best[above][0])
            if f < best[alpha][1]:
                best[alpha] = x, f
    return [{"alpha": float(a), "sse": best[a][1], "x": best[a][0].tolist()} for a in alphas]
