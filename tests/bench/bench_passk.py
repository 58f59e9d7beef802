"""Benchmark: harness.passk.pass_at_k for every k = 1..n on 1,000 problems with n = 10,000 samples
each (10^7 estimates in one call) against the reference loop of Chen et al. 2021,
``1 − prod(1 − k/arange(n−c+1, n+1))`` (numpy), called once per problem and per k.

The full reference is 10^7 calls, too slow to run: it is timed on a random subset of
(problem, k) pairs and its per-call time extrapolated. The max absolute difference is checked on
that subset and on every k of a few whole problems; a few hundred entries are also checked against
exact rational arithmetic (math.comb) to show which side any difference comes from.

Run by hand: python tests/bench/bench_passk.py  (writes results/bench/passk.md)
"""

from __future__ import annotations

import time
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np

from harness.passk import pass_at_k

P, N, SUBSET, EXACT = 1_000, 10_000, 20_000, 300


def reference(n: int, c: int, k: int) -> float:
    """Chen et al.'s numerically stable estimator for one problem and one k."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def main() -> None:
    rng = np.random.default_rng(0)
    n = np.full(P, N)
    c = rng.binomial(n, rng.beta(0.5, 2.0, size=P))  # a realistic spread of per-problem success rates
    c[:3] = [0, 1, N]  # boundaries: never, once, always solved
    ks = np.arange(1, N + 1)

    times = []
    for _ in range(3):
        start = time.perf_counter()
        fast = pass_at_k(n, c, ks)
        times.append(time.perf_counter() - start)
    t_fast = min(times)

    rows, cols = rng.integers(0, P, size=SUBSET), rng.integers(0, N, size=SUBSET)
    start = time.perf_counter()
    ref = np.array([reference(N, int(c[i]), int(ks[j])) for i, j in zip(rows, cols)])
    per_call = (time.perf_counter() - start) / SUBSET
    t_ref = per_call * P * N
    diff_subset = np.max(np.abs(fast[rows, cols] - ref))

    dense = [0, 1, 2] + list(rng.integers(3, P, size=3))  # the three boundary problems and three more
    diff_dense = max(np.max(np.abs(fast[i] - [reference(N, int(c[i]), int(k)) for k in ks])) for i in dense)

    er, ec = rng.integers(0, P, size=EXACT), rng.integers(0, N, size=EXACT)
    exact = np.array([float(1 - Fraction(comb(N - int(c[i]), int(ks[j])), comb(N, int(ks[j]))))
                      for i, j in zip(er, ec)])
    err_fast = np.max(np.abs(fast[er, ec] - exact))
    err_ref = np.max(np.abs([reference(N, int(c[i]), int(ks[j])) for i, j in zip(er, ec)] - exact))

    table = "\n".join([
        "| quantity | value |",
        "|---|---:|",
        f"| estimates (problems × k) | {P:,} × {N:,} = {P * N:,} |",
        f"| pass_at_k, one vectorised call, best of 3 (s) | {t_fast:.3f} |",
        f"| reference loop, per call, mean over {SUBSET:,} random (problem, k) pairs (µs) | {per_call * 1e6:.1f} |",
        f"| reference loop, all {P * N:,} calls, **extrapolated** from that per-call time (s) | {t_ref:.0f} |",
        f"| speed-up (extrapolated reference / pass_at_k) | **{t_ref / t_fast:.0f}×** |",
        f"| max abs difference vs reference, {SUBSET:,} random entries | {diff_subset:.1e} |",
        f"| max abs difference vs reference, every k of {len(dense)} whole problems (c = {', '.join(str(int(c[i])) for i in dense)}) | {diff_dense:.1e} |",
        f"| max abs error vs exact rationals (math.comb), {EXACT} random entries: pass_at_k | {err_fast:.1e} |",
        f"| same {EXACT} entries: reference loop | {err_ref:.1e} |",
    ])
    print(table)
    ok = max(diff_subset, diff_dense) <= 1e-12
    print(f"max abs difference <= 1e-12: {ok}; speed-up >= 100x: {t_ref / t_fast >= 100}")
    out = Path(__file__).resolve().parents[2] / "results" / "bench" / "passk.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# pass@k: vectorised `pass_at_k` vs the per-problem, per-k reference loop\n\n"
        "Run by hand with `python tests/bench/bench_passk.py` on the 2-core development CPU "
        "(shared with other jobs, so timings are noisy). The reference's total time is extrapolated "
        "from its measured per-call time; the full 10^7-call loop was not run.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
