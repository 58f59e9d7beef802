"""Benchmark: harness.passk.extrapolate_pass_at_k on simulated populations (500 problems, n = 100
samples each), against each seed's own truth, mean_i 1 − (1 − p_i)^k over its 500 drawn problems, at
k = 10^3 and 10^4; baseline: the plain Beta-binomial fit (``fit_beta_binomial``, the previous
extrapolation) on the same data, with its delta-method interval.

Goal (issue 15): mean absolute error <= 0.02 and >= 90% coverage of the 95% interval.

Run by hand: python tests/bench/bench_extrapolate.py [--seeds 100]  (writes results/bench/extrapolate.md)
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from harness.passk import extrapolate_pass_at_k, fit_beta_binomial

PROBLEMS, N, KS = 500, 100, np.array([1_000, 10_000])


def population(name: str, rng: np.random.Generator) -> np.ndarray:
    """Per-problem success rates p_i of one simulated benchmark."""
    u = rng.random(PROBLEMS)
    if name == "beta":  # Beta(0.3, 1.5): a power-law left tail p^-0.7 that the family has
        return rng.beta(0.3, 1.5, PROBLEMS)
    if name == "half-unsolvable":  # the case: the Beta fit said 0.77 against 0.50
        return np.where(u < 0.5, 0.0, rng.beta(0.5, 2.0, PROBLEMS))
    if name == "three-part: never / Beta / always":  # 20% never, 20% always, 60% Beta(0.5, 2)
        return np.where(u < 0.2, 0.0, np.where(u < 0.4, 1.0, rng.beta(0.5, 2.0, PROBLEMS)))
    if name == "three-part: never / hard Beta / easy Beta":  # 25% never, 45% Beta(0.4, 4), 30% Beta(8, 1)
        return np.where(u < 0.25, 0.0, np.where(u < 0.7, rng.beta(0.4, 4.0, PROBLEMS), rng.beta(8.0, 1.0, PROBLEMS)))
    if name == "power-law left tail: log-uniform p in [1e-5, 1]":  # density ∝ 1/p, not a Beta
        return 10 ** rng.uniform(-5, 0, PROBLEMS)
    raise ValueError(name)


POPULATIONS = ["beta", "half-unsolvable", "three-part: never / Beta / always",
               "three-part: never / hard Beta / easy Beta", "power-law left tail: log-uniform p in [1e-5, 1]"]


def run(name: str, seeds: int) -> dict:
    errors, covered, base_errors, base_covered, models, seconds = [], [], [], [], Counter(), 0.0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        p = population(name, rng)
        n = np.full(PROBLEMS, N)
        c = rng.binomial(n, p)
        truth = (1 - (1 - p[:, None]) ** KS).mean(axis=0)
        start = time.perf_counter()
        result = extrapolate_pass_at_k(n, c, KS)
        seconds += time.perf_counter() - start
        errors.append(result.pass_at_k - truth)
        covered.append((result.low <= truth) & (truth <= result.high))
        models[result.model] += 1
        base = fit_beta_binomial(n, c)
        low, high = base.pass_at_k_interval(KS)
        base_errors.append(base.pass_at_k(KS) - truth)
        base_covered.append((low <= truth) & (truth <= high))
    return {"mae": np.abs(errors).mean(axis=0), "bias": np.mean(errors, axis=0), "cover": np.mean(covered, axis=0),
            "base_mae": np.abs(base_errors).mean(axis=0), "base_cover": np.mean(base_covered, axis=0),
            "models": models, "seconds": seconds / seeds}


NOTES = """
What n = 100 samples can identify: a problem's c is informative about p only down to p ~ 1/n; a
problem with p = 10^-3 shows c = 0 in 90% of draws, exactly like an unsolvable one. pass@k at
k = 10^4 depends on the mass in p ∈ [10^-4, 10^-2], which the data see only through the count of
c = 0 problems and the shape of the distribution just above 1/n. So the extrapolation is as good as
the family's shape near 0:

- beta, half-unsolvable, three-part never / Beta / always: the family contains the truth; the goal
  is met (MAE <= 0.02, coverage >= 0.9).
- three-part never / hard Beta / easy Beta: a 25% point mass at 0 next to Beta(0.4, 4), which puts
  ~20% of its own mass below 0.01; the fit cannot split the c = 0 problems between them, and with
  the easy Beta(8, 1) the single Beta of the fit is U-shaped with the wrong left-tail exponent. The
  estimate is biased high (it extrapolates the Beta's p^(a−1) tail into the unsolvable mass); the
  intervals, which cover parameter and model-choice uncertainty but not misspecification, miss.
- power-law left tail (log-uniform p, density ∝ 1/p down to 10^-5): not a Beta at 0; both fits put
  the c = 0 mass at p = 0 or in a Beta tail that falls too steeply, so they are biased low. Nothing in
  n = 100 samples tells this population from a zero-inflated Beta; only more samples on the c = 0
  problems (adaptive allocation, issue 15 item 3) can.
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=100)
    seeds = parser.parse_args().seeds
    lines = ["| population | k | MAE | bias | coverage of 95% interval | goal met | Beta-binomial MAE | "
             "Beta-binomial coverage | MAE ratio (Beta-binomial / new) | chosen models | s per call |",
             "|---|---:|---:|---:|---:|:---:|---:|---:|---:|---|---:|"]
    for name in POPULATIONS:
        r = run(name, seeds)
        chosen = ", ".join(f"{m} {count}" for m, count in r["models"].most_common())
        for i, k in enumerate(KS):
            met = "yes" if r["mae"][i] <= 0.02 and r["cover"][i] >= 0.9 else "**no**"
            lines.append(f"| {name} | {k:,} | {r['mae'][i]:.4f} | {r['bias'][i]:+.4f} | {r['cover'][i]:.2f} | {met} | "
                         f"{r['base_mae'][i]:.4f} | {r['base_cover'][i]:.2f} | {r['base_mae'][i] / r['mae'][i]:.1f}× | "
                         f"{chosen if i == 0 else ''} | {r['seconds']:.2f} |")
        print("\n".join(lines[-2:]), flush=True)
    table = "\n".join(lines)
    out = Path(__file__).resolve().parents[2] / "results" / "bench" / "extrapolate.md"
    out.write_text(
        f"# Extrapolating pass@k past n: `extrapolate_pass_at_k` vs the plain Beta-binomial fit\n\n"
        f"{PROBLEMS} problems × n = {N} samples, {seeds} seeds per population; truth = each seed's own "
        f"mean_i 1 − (1 − p_i)^k over its drawn problems. Run by hand with "
        f"`python tests/bench/bench_extrapolate.py --seeds {seeds}` (2-core development CPU, shared).\n\n"
        + table + "\n" + NOTES)
    print(table)


if __name__ == "__main__":
    main()
