"""Adaptive allocation (harness.adaptive, ``t2 sample --adaptive``): rounds spend the budget
exactly, the likelihood estimate stays unbiased under the data-dependent n_i where the fixed-n
formula does not, and a real adaptive run holds exactly the samples of a uniform run for the keys
they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import knowledge_rung
from test_sampling_run import t2

from harness import records
from harness.adaptive import estimate, first_n, gain, greedy_fill, next_round, simulate
from harness.npmle import GRID
from harness.store import SampleStore


def test_greedy_fill_spends_the_total_within_caps_heaviest_first():
    caps = np.array([3, 10, 10, 0, 5])
    x = greedy_fill(np.array([5.0, 1.0, 2.0, 9.0, 0.0]), 12, caps)
    assert x.tolist() == [3, 0, 9, 0, 0]
    assert greedy_fill(np.ones(3), 100, np.array([2, 2, 2])).tolist() == [2, 2, 2]
    assert greedy_fill(np.ones(3), 3, np.full(3, 9)).tolist() == [3, 0, 0]  # ties: lower index first


def test_gain_is_the_variance_explained_by_whether_more_samples_succeed():
    """A two-point posterior, P(p = 0) = 0.7 and P(p = 0.01) = 0.3, g = pass@K at the grid: by hand,
    m more samples all fail with chance 0.7 + 0.3 · 0.99^m, and the gain is the variance of the
    posterior mean over that split; it never exceeds the posterior variance itself."""
    j = int(np.argmin(np.abs(GRID - 0.01)))
    post, success = np.zeros((1, GRID.size)), 1 - (1 - GRID) ** 1000
    post[0, 0], post[0, j] = 0.7, 0.3
    g, m = success[j], 50
    none = 0.7 + 0.3 * (1 - GRID[j]) ** m
    mean, mean_none = 0.3 * g, 0.3 * (1 - GRID[j]) ** m * g / none
    want = none * (mean_none - mean) ** 2 + (1 - none) * (g - mean) ** 2
    assert np.isclose(gain(post, success, np.array([m]))[0], want, rtol=1e-9)
    assert gain(post, success, np.array([10 ** 6]))[0] <= 0.3 * 0.7 * g ** 2 + 1e-12


def test_rounds_deepen_unsolved_problems_past_k_and_stop_solved_ones():
    """Ten problems at p = 0.5 and ten never solved, target K = 100, room for 2,048 each: a round
    doubles every unsolved one and no solved one; a whole run leaves the solved ones at round 0's
    samples and takes the unsolved ones past K."""
    n, c = np.full(20, 16), np.r_[np.full(10, 8), np.zeros(10, dtype=np.int64)]
    extra = next_round(n, c, target_k=100, left=10_000, max_n=2048)
    assert extra[:10].sum() == 0 and np.all(extra[10:] == 16)
    p = np.r_[np.full(10, 0.5), np.zeros(10)]
    budget = 10 * 16 + 10 * 1024
    n, c = simulate(p, budget, target_k=100, rng=np.random.default_rng(0), max_n=2048)
    assert n.sum() == budget and np.all(n[:10] == first_n(20, budget)) and np.all(n[10:] >= 4 * n[:10]), n


def test_adaptive_estimates_are_unbiased_where_the_fixed_n_formula_is_not():
    """Beta(0.3, 1.5) problems (the fitted family holds the truth): over seeds, the posterior
    estimate's mean error is ~0 at k = 1 and k = 100, while mean_i c_i / n_i (pass@1 by the fixed-n
    formula) is biased upwards: problems solved early get few samples, unsolved ones many."""
    ks, errors, naive = np.array([1, 100]), [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        p = rng.beta(0.3, 1.5, 150)
        n, c = simulate(p, budget=150 * 8, target_k=100, rng=rng, max_n=256)
        assert n.sum() == 150 * 8 and n.min() >= 2 and n.max() > 8  # budget spent, n_i differ
        truth = (1 - (1 - p[:, None]) ** ks).mean(axis=0)
        errors.append(estimate(n, c, ks).pass_at_k - truth)
        naive.append((c / n).mean() - truth[0])
    bias, se = np.mean(errors, axis=0), np.std(errors, axis=0) / np.sqrt(len(errors))
    assert np.all(np.abs(bias) < 3 * se + 0.005), (bias, se)  # 120 seeds: -0.001 ± 0.001, +0.002 ± 0.005
    assert np.mean(naive) > max(0.005, 2 * np.std(naive) / np.sqrt(len(naive)), 2 * abs(bias[0])), naive


@pytest.fixture(scope="module")
def rung(tmp_path_factory) -> Path:
    return knowledge_rung(tmp_path_factory.mktemp("ladder") / "rung", d_model=16, tokens=100_000)


def sample_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--task", "knowledge", "--task-option", "n=24", "--model", str(model), "--backend", "hf",
            "--device", "cpu", "--out", str(out), "--limit", "6", "--max-tokens", "4", *extra]


@pytest.mark.slow
def test_a_real_adaptive_run_spends_the_budget_on_uniform_run_samples(tmp_path, rung):
    adaptive, uniform = tmp_path / "adaptive", tmp_path / "uniform"
    t2(*sample_args(rung, adaptive, "--adaptive", "--budget", "200", "--target-k", "1000", "-n", "96"))
    t2(*sample_args(rung, uniform, "-n", "96"))
    columns = ["problem_id", "sample_idx", "seed", "text", "completion_tokens"]
    got = {(r["problem_id"], r["sample_idx"]): r for r in SampleStore(adaptive).read().select(columns).to_pylist()}
    want = {(r["problem_id"], r["sample_idx"]): r for r in SampleStore(uniform).read().select(columns).to_pylist()}
    assert len(got) == 200 and set(got) <= set(want) and all(got[key] == want[key] for key in got)
    per_problem = np.bincount([int(pid.rsplit("/", 1)[1]) for pid, _ in got])
    assert per_problem.sum() == 200 and len(set(per_problem.tolist())) > 1  # n_i differ
    manifest = records.read_json(adaptive / "run.json", "run")
    assert manifest["adaptive"]["budget"] == 200 and manifest["adaptive"]["rounds"][-1]["samples"] == 200
    t2("score", str(adaptive))
    t2("passk", str(adaptive), "-k", "1", "1000")
    table = records.read_table(adaptive / "passk.parquet", "passk").to_pydict()
    assert all(s.startswith("posterior:") for s in table["source"]) and all(np.isnan(table["maj_at_k"]))
    assert 0 <= table["pass_at_k"][0] <= table["pass_at_k"][1] <= 1
