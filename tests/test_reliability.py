"""Reliability metrics: exact subset counting, ECE / Brier / AURC by hand, calibration, the CLI."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import cli, passk, records
from harness import reliability as R


def brute_force(answers, correct, k):
    """(P(v), P(v, correct)) over every size-k subset, by enumeration (ties split evenly)."""
    n = len(answers)
    p_v, p_ok = np.zeros(n + 1), np.zeros(n + 1)
    subsets = list(itertools.combinations(range(n), k))
    for s in subsets:
        votes: dict[str, list[int]] = {}
        for j in s:
            if answers[j] is not None:
                votes.setdefault(answers[j], []).append(j)
        if not votes:
            p_v[0] += 1
            continue
        top = max(len(v) for v in votes.values())
        winners = [a for a, v in votes.items() if len(v) == top]
        p_v[top] += 1
        p_ok[top] += np.mean([np.mean([correct[i] for i, a in enumerate(answers) if a == w]) for w in winners])
    return p_v / len(subsets), p_ok / len(subsets)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=8))
def test_majority_distribution_equals_enumeration(answers):
    correct = [a == "a" for a in answers]
    ks = list(range(1, len(answers) + 1))
    p_v, p_ok = passk.majority_distribution(answers, correct, ks)
    for i, k in enumerate(ks):
        want_v, want_ok = brute_force(answers, correct, k)
        np.testing.assert_allclose(p_v[i, : len(answers) + 1], want_v, atol=1e-12)
        np.testing.assert_allclose(p_ok[i, : len(answers) + 1], want_ok, atol=1e-12)
    np.testing.assert_allclose(p_ok.sum(axis=1), passk.maj_at_k(answers, correct, ks), atol=1e-12)


def test_majority_distribution_rejects_k_above_n():
    with pytest.raises(ValueError, match="k=4"):
        passk.majority_distribution(["a", "b", "a"], [1, 0, 1], [1, 4])


def test_reliability_uses_the_one_subset_counter_of_passk():
    """One exact subset-counting DP in the package: reliability counts with passk's."""
    assert R.group_majority_distribution is passk.group_majority_distribution
    assert not hasattr(passk, "_add_group")


def test_task_metrics_equal_enumeration_over_subsets(tmp_path):
    """Every metric of a task at k equals the metric of all (question, subset) pairs enumerated,
    each question weighing 1/P spread evenly over its C(n, k) subsets."""
    rng = random.Random(3)
    votes = {}
    for q in range(4):
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(6)]
        votes[f"q{q}"] = (answers, [a == "1" for a in answers])
    table = pa.table({"task": ["toy"] * 24, "problem_id": [q for q in votes for _ in range(6)],
                      "answer": [a for answers, _ in votes.values() for a in answers],
                      "correct": [c for _, correct in votes.values() for c in correct]})
    groups = {pid: g for (_, pid), g in passk.answer_groups(table).items()}
    run = R.Run(tmp_path, "ckpt", 0, float("nan"), float("nan"), {"toy": groups})
    rows, _ = R.task_reliability(run, "toy", [2, 3, 5])
    for row in rows:
        k = row["k"]
        conf, ok, weight = [], [], []
        for answers, correct in votes.values():
            subsets = list(itertools.combinations(range(6), k))
            for s in subsets:
                p_v, p_ok = brute_force([answers[j] for j in s], [correct[j] for j in s], k)
                v = int(np.argmax(p_v))  # one subset: a single vote count
                conf.append(v / k)
                ok.append(p_ok[v])
                weight.append(1 / (len(votes) * len(subsets)))
        assert row["accuracy"] == pytest.approx(np.dot(weight, ok), abs=1e-12)
        assert row["confidence"] == pytest.approx(np.dot(weight, conf), abs=1e-12)
        assert row["brier"] == pytest.approx(R.brier(conf, ok, weight), abs=1e-12)
        assert row["ece"] == pytest.approx(R.ece(conf, ok, weight), abs=1e-12)
        assert row["aurc"] == pytest.approx(R.aurc(conf, ok, weight), abs=1e-12)


def test_ece_by_hand():
    # 10 points, 5 equal-mass bins of 2: |0.1-0| + |0.3-0.5| + |0.5-0.5| + |0.7-1| + |0.9-1|, / 5
    conf = np.arange(0.05, 1.0, 0.1)
    correct = [0, 0, 0, 1, 0, 1, 1, 1, 1, 1]
    assert R.ece(conf, correct, n_bins=5) == pytest.approx((0.1 + 0.2 + 0.0 + 0.3 + 0.1) / 5)
    # 3 points, 2 bins: the middle point is split by mass.
    # bin 1 = {0.2: 1/3, 0.5: 1/6}: confidence 0.3, accuracy 1/3; bin 2 = {0.5: 1/6, 0.8: 1/3}: 0.7 vs 1
    assert R.ece([0.2, 0.5, 0.8], [0, 1, 1], n_bins=2) == pytest.approx(0.5 * (1 / 3 - 0.3) + 0.5 * 0.3)
    # equal confidences are pooled: the result does not depend on the order of ties
    assert R.ece([0.5, 0.5], [1, 0], n_bins=2) == pytest.approx(0.0)
    assert R.ece([0.5, 0.5], [0, 1], n_bins=2) == pytest.approx(0.0)


def test_brier_by_hand():
    assert R.brier([1.0, 0.5, 0.0], [1, 0, 0]) == pytest.approx(0.25 / 3)
    # a fractional verdict is P(correct): 0.5 · (1 − 0.8)² + 0.5 · 0.8²
    assert R.brier([0.8], [0.5]) == pytest.approx(0.5 * 0.04 + 0.5 * 0.64)


def test_aurc_by_hand():
    # confidence order: correct, wrong, correct, wrong; each point a quarter of the mass.
    # E(u) = 0 on [0, 1/4], u − 1/4 on [1/4, 1/2], 1/4 on [1/2, 3/4], u − 1/2 on [3/4, 1]
    want = ((0.25 - 0.25 * math.log(2))        # ∫_{1/4}^{1/2} (u − 1/4)/u du
            + 0.25 * math.log(1.5)              # ∫_{1/2}^{3/4} (1/4)/u du
            + (0.25 - 0.5 * math.log(4 / 3)))   # ∫_{3/4}^{1} (u − 1/2)/u du
    assert R.aurc([0.9, 0.7, 0.5, 0.3], [1, 0, 1, 0]) == pytest.approx(want, abs=1e-12)
    assert R.aurc([0.9, 0.7], [1, 1]) == 0.0
    assert R.aurc([0.9, 0.7], [0, 0]) == pytest.approx(1.0)
    correct = [1, 0, 1, 0]
    oracle, rand = R.aurc_baselines(correct)
    assert oracle == pytest.approx(0.5 + 0.5 * math.log(0.5))  # 1 − A + A ln A, A = 1/2
    assert R.aurc(correct, correct) == pytest.approx(oracle)  # sorted by correctness
    assert R.aurc([0.5] * 4, correct) == pytest.approx(rand) == pytest.approx(0.5)  # one pooled atom


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.01, 1.0)), min_size=1, max_size=30), st.randoms())
def test_oracle_ordering_minimises_aurc(points, rnd):
    correct = np.array([c for c, _ in points], dtype=float)
    weight = np.array([w for _, w in points])
    order = list(range(len(points)))
    rnd.shuffle(order)  # any permutation, as distinct confidences
    conf = np.array(order, dtype=float) / len(points)
    oracle, rand = R.aurc_baselines(correct, weight)
    assert R.aurc(correct, correct, weight) == pytest.approx(oracle, abs=1e-12)
    assert R.aurc(conf, correct, weight) >= oracle - 1e-12
    assert R.aurc(np.zeros_like(conf), correct, weight) == pytest.approx(rand, abs=1e-12)


def test_calibrated_model_has_ece_within_noise():
    """confidence c ~ U(0, 1), correct ~ Bernoulli(c), M = 20,000 points, 10 bins of 2,000: each
    bin's accuracy − confidence has standard deviation <= 0.5/sqrt(2000) = 0.0112, so ECE, a mean
    of 10 absolute gaps (expected about 0.8 · 0.0112 for a calibrated model), stays below
    3 · 0.5 · sqrt(10/M) = 0.034 except with negligible probability. A miscalibrated model
    (correct ~ Bernoulli(c²), mean gap 1/6) is far above that bound."""
    rng = np.random.default_rng(11)
    m, bins = 20_000, 10
    bound = 3 * 0.5 * math.sqrt(bins / m)
    conf = rng.uniform(size=m)
    assert R.ece(conf, rng.uniform(size=m) < conf, n_bins=bins) < bound
    assert R.ece(conf, rng.uniform(size=m) < conf ** 2, n_bins=bins) > 3 * bound


def test_nll_scores():
    assert R.nll_scores([1.0, 3.0], [1, 3]) == pytest.approx((2.0, 1.0))
    assert all(math.isnan(x) for x in R.nll_scores([1.0, float("nan")], [1, 1]))


def test_run_scale_and_shift_from_run_json(tmp_path):
    run = {"model": {"id": "m", "params_non_embedding": 2e6, "params_total": 3e6, "tokens_trained": 4e7},
           "task": {"name": "arithmetic", "source": "synthetic:arithmetic seed=0 n=8 shift=2"}}
    records.write_json(tmp_path / "run.json", "run", run)
    assert R.run_scale(tmp_path, run) == ("m", 2e6, 4e7)
    assert R._shift(run) == 2
    assert R._shift({"task": {"name": "gsm8k", "source": "openai/gsm8k"}}) == 0
    hub = {"model": {"id": "some/hub-id"}, "task": {"name": "gsm8k"}}
    records.write_json(tmp_path / "run.json", "run", hub)
    checkpoint, n, d = R.run_scale(tmp_path, hub)
    assert checkpoint == "some/hub-id" and math.isnan(n) and math.isnan(d)


# ---------------------------------------------------------------- the CLI on real run directories


def make_run(path, n_params, tokens, shift, p_right, n=6, problems=5, seed=0, with_scores=True):
    """A run directory in the real record format: run.json, scores.parquet, problems.parquet."""
    rng = random.Random(seed)
    records.write_json(path / "run.json", "run", {
        "model": {"id": f"ladder-{n_params:g}", "params_non_embedding": n_params, "params_total": 2 * n_params,
                  "tokens_trained": tokens},
        "task": {"name": "arithmetic", "source": f"synthetic:arithmetic seed=0 n={problems} shift={shift}"},
    })
    cols = {c: [] for c in records.COLUMNS["scores"]}
    for q in range(problems):
        for i in range(n):
            draw = rng.random()
            answer = "7" if draw < p_right else (None if draw > 0.9 else rng.choice(["5", "6"]))
            for col, value in (("task", "arithmetic"), ("problem_id", f"arithmetic/{q}"), ("sample_idx", i),
                               ("answer", answer), ("correct", answer == "7"), ("verifier_message", "")):
                cols[col].append(value)
    if with_scores:
        records.write_table(path / "scores.parquet", "scores", cols)
    records.write_table(path / "problems.parquet", "problems", {
        "task": ["arithmetic"] * problems, "problem_id": [f"arithmetic/{q}" for q in range(problems)],
        "n": [n] * problems, "c": [cols["correct"][q * n:(q + 1) * n].count(True) for q in range(problems)],
        "nll": [0.5 + q for q in range(problems)], "answer_tokens": [2] * problems})
    return path


def test_cli_reliability_end_to_end(tmp_path, capsys):
    runs = [make_run(tmp_path / "small", 1e6, 2e7, 0, 0.4, seed=1),
            make_run(tmp_path / "small-shift", 1e6, 2e7, 1, 0.2, seed=2),
            make_run(tmp_path / "big", 4e6, 8e7, 0, 0.7, seed=3)]
    out = tmp_path / "report"
    assert cli.main(["reliability", *map(str, runs), "-k", "1", "3", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "aurc_oracle" in printed and "wrote" in printed
    table = records.read_table(out / "reliability.parquet", "reliability")
    rows = table.to_pylist()
    assert len(rows) == 3 * 3  # runs × tasks × k
    want, _ = R.reliability_table([R.load_run(p) for p in runs], [1, 3, 5])
    assert rows == want.to_pylist()
    for r in rows:
        assert r["N"] in (1e6, 4e6)  # non-embedding parameters, as in the fitting dataset
        assert r["C_train"] == pytest.approx(6 * r["N"] * r["D"])
        assert r["nll_mean"] == pytest.approx(2.5) and r["nll_per_token"] == pytest.approx(1.25)
        assert r["aurc_oracle"] <= r["aurc"] + 1e-12
    assert {(r["checkpoint"], r["shift"]) for r in rows} == {("ladder-1e+06", 0), ("ladder-1e+06", 1),
                                                           ("ladder-4e+06", 0)}
    md = (out / "reliability.md").read_text()
    assert "Distribution shift" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3 + 1  # one per run × task, one metrics-vs-C_train per task
    assert all((out / p).stat().st_size > 1000 for p in pngs)


def test_cli_reliability_bad_input(tmp_path, capsys):
    unscored = make_run(tmp_path / "unscored", 1e6, 2e7, 0, 0.5, with_scores=False)
    assert cli.main(["reliability", str(unscored), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(unscored) in err and "scores.parquet" in err

    scored = make_run(tmp_path / "scored", 1e6, 2e7, 0, 0.5, n=4)
    assert cli.main(["reliability", str(scored), "-k", "8", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(scored) in err and "k=8" in err and "4 scored samples" in err


def test_cli_reliability_writes_beside_its_first_run(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run", 1e6, 2e7, 0, 0.5, n=4)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["reliability", str(run), "-k", "1", "2"]) == 0
    assert (run / "reliability" / "reliability.parquet").is_file() and (run / "reliability" / "reliability.md").is_file()
    assert not (tmp_path / "results").exists()



def test_load_run_counts_answer_groups_batch_by_batch_into_the_per_sample_report(tmp_path, monkeypatch):
    """load_run streams scores.parquet's vote columns (never a whole read, verifier messages
    unread), 7 rows at a time from a file in shuffled order, into answer groups: each problem's
    (P(v), P(v, correct)) equals majority_distribution of its per-sample answers, and so does the
    report."""
    path = make_run(tmp_path / "run", 1e6, 2e7, 0, 0.5, n=9, problems=4, seed=4)
    scores = records.read_table(path / "scores.parquet", "scores")
    shuffled = scores.take(np.random.default_rng(0).permutation(scores.num_rows))
    records.write_table(path / "scores.parquet", "scores", shuffled)
    reads, read_whole, batched = [], records.read_table, records.iter_table
    monkeypatch.setattr(records, "read_table", lambda path, kind, columns=None: pytest.fail(
        "scores.parquet was read whole") if kind == "scores" else read_whole(path, kind, columns))
    monkeypatch.setattr(records, "iter_table", lambda path, kind, columns, rows: reads.append((columns, rows))
                        or batched(path, kind, columns, rows))
    monkeypatch.setattr(R, "VOTE_ROWS", 7)
    run = R.load_run(path)
    assert reads == [(passk.VOTE_COLUMNS, 7)] and "verifier_message" not in reads[0][0]
    cols, ks = scores.to_pydict(), [1, 4, 9]
    assert sorted(run.votes["arithmetic"]) == sorted(set(cols["problem_id"]))
    for pid, groups in run.votes["arithmetic"].items():
        rows = [i for i, p in enumerate(cols["problem_id"]) if p == pid]
        want = passk.majority_distribution([cols["answer"][i] for i in rows], [cols["correct"][i] for i in rows], ks)
        for got, expected in zip(passk.group_majority_distribution(*groups, ks), want):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    report = R.reliability_table([run], ks)[0].to_pylist()
    accuracy = np.mean([passk.maj_at_k([cols["answer"][i] for i, p in enumerate(cols["problem_id"]) if p == pid],
                                       [cols["correct"][i] for i, p in enumerate(cols["problem_id"]) if p == pid], ks)
                        for pid in run.votes["arithmetic"]], axis=0)
    assert len(report) == 3
    np.testing.assert_allclose([r["accuracy"] for r in report], accuracy, rtol=0, atol=1e-12)
