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
from harness.adaptive import estimate, greedy_fill, simulate
from harness.store import SampleStore


def test_greedy_fill_spends_the_total_within_caps_heaviest_first():
    caps = np.array([3, 10, 10, 0, 5])
    x = greedy_fill(np.array([5.0, 1.0, 2.0, 9.0, 0.0]), 12, caps)
    assert x.tolist() == [3, 0, 9, 0, 0]
    assert greedy_fill(np.ones(3), 100, np.array([2, 2, 2])).tolist() == [2, 2, 2]
    assert greedy_fill(np.ones(3), 3, np.full(3, 9)).tolist() == [3, 0, 0]  # ties: lower index first


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
    assert np.all(np.abs(bias) < 0.01) and np.all(np.abs(bias) < 4 * se + 0.005), (bias, se)
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
