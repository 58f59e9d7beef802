"""Adaptive sample allocation for pass@K at large K (``t2 sample --adaptive --budget S --target-k K``).

pass@K at K >> n is decided by the problems not yet solved: a problem with c_i >= 1 has
pass@K_i ≈ 1 once K >> n_i / c_i, while an unsolved one is either unsolvable (pass@K_i = 0) or
solvable with p_i ~ 1/K, and only more samples of *it* tell which. Sampling runs in rounds:

- round 0: every problem gets ``first_n`` samples (default ⌊S / (4 P)⌋, at least 1);
- round r >= 1: fit the nonparametric prior of p (:func:`harness.npmle.fit_npmle`, which assumes
  no family's shape) and give the round min(samples left, Σ_i n_i) samples (the total at most
  doubles) to the problems in order of decreasing expected reduction, per sample, of the posterior
  variance of pass@K_i from m_i = min(GROWTH · n_i, max_n − n_i) more samples (:func:`gain`; GROWTH = 1:
  n_i doubles), each taking its m_i, among the problems whose gain per sample is at least
  1/GAIN_RATIO of the best one's: solved problems (variance ≈ 0) wait until the unsolved ones,
  deepening about equally (what their pass@K needs: its posterior variance falls ~ n_i^−a, convex),
  gain as little per sample as they do;
- stop when S samples are stored, or no problem has room to grow.

Sample i of a problem is always the same draw (the run's seed rule), so an adaptive run's rows are
rows of a uniform run with the same seed. Estimates are the parametric fit's posterior means
(``extrapolate_pass_at_k(..., use_samples=False)``): the likelihood of (n_i, c_i) does not depend on
how n_i was chosen from earlier outcomes, whereas the fixed-n unbiased formula is biased under such
stopping. (The NPMLE's own posterior means cannot see mass at p << 1/max n_i, which decides pass@K at
K >> max n_i: ``results/bench/adaptive.md`` compares both.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import InvalidSetting
from harness.npmle import failure_at_grid, fit_npmle, posterior_weights, success_at_grid
from harness.passk import Extrapolation, extrapolate_pass_at_k
from harness.sampling import _judge

FIRST_SHARE = 4  # round 0 spends about 1/FIRST_SHARE of the budget, uniformly
GROWTH = 1  # a round adds at most GROWTH · n_i samples to problem i (doubles it)
GAIN_RATIO = 8  # a round serves problems whose gain per sample is >= 1/GAIN_RATIO of the best one's


def first_n(problems: int, budget: int) -> int:
    """Round 0's samples per problem: ⌊budget / (FIRST_SHARE · problems)⌋, at least 1."""
    return max(1, budget // (FIRST_SHARE * problems))


def greedy_fill(weights: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
    """Integers x_i <= caps_i with Σ x_i = min(total, Σ caps_i): problems in order of
    decreasing weight (ties: lower index first) each take their cap until the total is spent, so a
    round deepens a few problems rather than spreading thin: int64 [P]."""
    weights, caps = np.asarray(weights, np.float64), np.asarray(caps, np.int64)
    order = np.argsort(-weights, kind="stable")
    take = np.minimum(caps[order], np.maximum(int(total) - (np.cumsum(caps[order]) - caps[order]), 0))
    out = np.zeros(caps.size, dtype=np.int64)
    out[order] = take
    return out


def gain(post: np.ndarray, success: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Expected drop of Var(pass@K_i) from ``extra`` more samples of problem i, counting only
    whether they hold a success: Var(E[g_i | S_i]) = P(S_i)(E[g_i | S_i] − E g_i)² + (same for not
    S_i), g_i = pass@K_i, with grid posterior ``post`` [P, J] and ``success`` = g at the grid [J]
    (a lower bound on the drop given their exact count): float64 [P]."""
    stay = post * failure_at_grid(extra)  # P(p_i = p_j, no success in ``extra`` draws)
    mean, none = post @ success, stay.sum(axis=1)
    mean_none = stay @ success / np.maximum(none, 1e-300)
    mean_some = (mean - none * mean_none) / np.maximum(1 - none, 1e-300)
    return none * (mean_none - mean) ** 2 + (1 - none) * (mean_some - mean) ** 2


def next_round(n: np.ndarray, c: np.ndarray, target_k: int, left: int, max_n: int) -> np.ndarray:
    """Extra samples per problem for one round (see the module docstring): int64 [P]."""
    n, c = np.asarray(n, np.int64), np.asarray(c, np.int64)
    caps = np.minimum(GROWTH * np.maximum(n, 1), max_n - n)
    prior = fit_npmle(n, c).weights
    success = success_at_grid(target_k)
    per_sample = gain(posterior_weights(prior, n, c), success, caps) / np.maximum(caps, 1)
    worth = per_sample >= per_sample[caps > 0].max(initial=0.0) / GAIN_RATIO
    return greedy_fill(per_sample, min(left, int(n.sum())), np.where(worth, caps, 0))


def estimate(n, c, k, level: float = 0.95) -> Extrapolation:
    """pass@k of an adaptively sampled set of problems: the likelihood fit's posterior means."""
    return extrapolate_pass_at_k(n, c, k, level, use_samples=False)


def check_plan(budget: int, target_k: int, max_n: int, problems: int) -> None:
    """Refuse a budget or K outside their domain (the flags they come from named)."""
    if target_k < 1:
        raise InvalidSetting("target_k", target_k, "an integer >= 1")
    if budget < problems:
        raise InvalidSetting("budget", budget, f"at least one sample per problem ({problems} problems)")
    if budget > problems * max_n:
        raise InvalidSetting("budget", budget, f"at most n × problems = {max_n} × {problems} (raise -n)")


def simulate(p: np.ndarray, budget: int, target_k: int, rng: np.random.Generator, max_n: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) of an adaptive run on problems with success rates ``p``, drawing Binomial outcomes."""
    n = np.full(p.size, min(first_n(p.size, budget), max_n), dtype=np.int64)
    c = rng.binomial(n, p)
    while (left := budget - int(n.sum())) > 0:
        extra = next_round(n, c, target_k, left, max_n)
        if extra.sum() == 0:
            break
        n, c = n + extra, c + rng.binomial(extra, p)
    return n, c


Draw = Callable[[list[tuple[Any, int]], int], tuple[int, int]]


@dataclass
class Allocator:
    """The round loop of a real run (``run_sample(..., allocator=)``): it judges the stored samples
    with the task's verifier, picks each round's targets, and draws them through ``draw(todo, n)``
    (the run's growing-n path: samples start..n-1 of each (problem, start) in ``todo``)."""

    budget: int
    target_k: int
    max_n: int
    rounds: list[dict[str, int]] = field(default_factory=list)

    def run(self, draw: Draw, task, store, problems: Sequence) -> tuple[int, int]:
        """Sample rounds until the budget is spent; returns (samples, completion tokens) drawn."""
        check_plan(self.budget, self.target_k, self.max_n, len(problems))
        n, c = np.zeros(len(problems), dtype=np.int64), np.zeros(len(problems), dtype=np.int64)
        target, samples, tokens = np.full(len(problems), first_n(len(problems), self.budget)), 0, 0
        while True:
            stored = store.stored_counts(task.name, self.max_n)
            todo = [(p, stored.get(p.id, 0), int(t)) for p, t in zip(problems, target, strict=True)
                    if stored.get(p.id, 0) < t]
            for size in sorted({t for _, _, t in todo}):
                drawn = draw([(p, s) for p, s, t in todo if t == size], size)
                samples, tokens = samples + drawn[0], tokens + drawn[1]
            n, c = _judge_new(task, store, problems, n, c, self.max_n)
            self.rounds.append({"round": len(self.rounds), "samples": int(n.sum()), "solved": int((c > 0).sum())})
            left = self.budget - int(n.sum())
            extra = next_round(n, c, self.target_k, left, self.max_n) if left > 0 else np.zeros_like(n)
            if extra.sum() == 0:
                return samples, tokens
            target = n + extra

    def record(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        """run.json's ``adaptive`` entry: budget, target_k, max_n and every session's rounds."""
        rounds = (previous or {}).get("rounds", []) + self.rounds
        return {"budget": self.budget, "target_k": self.target_k, "max_n": self.max_n, "rounds": rounds}


def _judge_new(task, store, problems: Sequence, n: np.ndarray, c: np.ndarray, max_n: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) after judging the stored samples n_i..max_n-1 of each problem with the task's verifier
    (stored samples are always 0..count-1). The store streams (:meth:`SampleStore.batches`): only
    the fresh samples' texts are held."""
    index = {p.id: i for i, p in enumerate(problems)}
    parts, texts = [np.zeros(0, dtype=np.int64)], []
    for table in store.batches(["task", "problem_id", "sample_idx", "text"]):
        table = table.filter(pc.equal(table["task"], task.name))
        row = np.array([index.get(pid, -1) for pid in table["problem_id"].to_pylist()], dtype=np.int64)
        idx = table["sample_idx"].to_numpy()
        fresh = (row >= 0) & (idx < max_n) & (idx >= np.where(row >= 0, n[row], 0))
        parts.append(row[fresh])
        texts += table["text"].filter(pa.array(fresh)).to_pylist()
    rows = np.concatenate(parts)
    verdicts = _judge(task, [(problems[i], t) for i, t in zip(rows.tolist(), texts, strict=True)])
    n, c = n.copy(), c.copy()
    np.add.at(n, rows, 1)
    np.add.at(c, rows, np.array([v[1] for v in verdicts], dtype=np.int64))
    return n, c
