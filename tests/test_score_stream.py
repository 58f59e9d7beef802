"""`t2 score` streams the store in batches (harness.sampling.SCORE_BATCH rows of texts at a time):
the verdicts and counts are those of judging every stored sample once, across batch and shard
boundaries, and a store holding a key twice (a compaction killed midway) is still scored once per key."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from harness import cli, records, sampling
from harness.passk import passk_table
from harness.rundir import RunDir
from harness.sampling import load_problems, score_run
from harness.store import SampleStore, _repeated, _spans


def texts_run(path, copies: int = 1):
    """A run directory of the synthetic arithmetic task (5 questions, 7 samples each) whose texts are
    the gold answer on every third sample and a wrong word otherwise; the second problem's rows are
    stored ``copies`` times."""
    task, problems, record = load_problems("arithmetic", None, None, None, {"n": 5, "seed": 0})
    RunDir(path).write_manifest({"task": record, "sampler": None, "shard": None})
    store = SampleStore(path)
    for j, p in enumerate(problems):
        rows = [{"task": task.name, "problem_id": p.id, "sample_idx": i, "seed": i,
                 "text": f" {p.answer}." if i % 3 == 0 else " banana.", "prompt_tokens": 5,
                 "completion_tokens": 2, "cached_prompt_tokens": 0, "finish_reason": "stop",
                 "cumulative_logprob": -1.0} for i in range(7)]
        for _ in range(copies if j == 1 else 1):
            store.append(rows)
    return problems


@pytest.mark.parametrize("copies", [1, 2])
def test_streamed_scores_judge_each_stored_sample_once(tmp_path, monkeypatch, copies):
    monkeypatch.setattr(sampling, "SCORE_BATCH", 3)  # batches cross problem and shard boundaries
    problems = texts_run(tmp_path, copies)
    scores_file, problems_file = score_run(tmp_path)
    scores = records.read_table(scores_file, "scores").to_pylist()
    assert sorted((s["problem_id"], s["sample_idx"]) for s in scores) == \
        sorted((p.id, i) for p in problems for i in range(7))
    assert all(s["correct"] == (s["sample_idx"] % 3 == 0) for s in scores)
    assert all(s["answer"] == "banana" or s["correct"] for s in scores)
    table = records.read_table(problems_file, "problems").to_pylist()
    assert [(r["n"], r["c"]) for r in table] == [(7, 3)] * len(problems)


def test_a_grown_store_streams_without_a_whole_read_and_a_repeated_key_is_read_once(tmp_path):
    """Shards holding disjoint sample ranges of one problem (a grown run) stream as they are; a
    key stored in two shards sends its problem through the deduplicating group read (store._repeated)."""
    grown, repeated = SampleStore(tmp_path / "grown"), SampleStore(tmp_path / "repeated")
    texts_run(tmp_path / "base")
    rows = SampleStore(tmp_path / "base").read()
    grown.append(rows.filter(pc.less(rows["sample_idx"], 4)))
    grown.append(rows.filter(pc.greater_equal(rows["sample_idx"], 4)))
    repeated.append(rows)
    repeated.append(rows.filter(pc.equal(rows["sample_idx"], 6)))
    for store in (grown, repeated):
        keys = [(r["problem_id"], r["sample_idx"]) for b in store.batches(["problem_id", "sample_idx"], 4)
                for r in b.to_pylist()]
        assert sorted(keys) == sorted((r["problem_id"], r["sample_idx"]) for r in rows.to_pylist())
    assert _repeated(_spans(grown.shards())).num_rows == 0 and _repeated(_spans(repeated.shards())).num_rows == 5  # sample 6 of each


def test_t2_passk_streams_the_scores_into_the_table_of_a_whole_read(tmp_path, capsys):
    """`t2 passk RUN` reads scores.parquet's vote columns batch by batch (passk.vote_batches); its
    table equals passk_table over the whole scores table (maj@k included, NaN where NaN)."""
    texts_run(tmp_path)
    scores_file, problems_file = score_run(tmp_path)
    assert cli.main(["passk", str(tmp_path), "--bootstrap", "50"]) == 0
    whole = passk_table(records.read_table(problems_file, "problems"), records.read_table(scores_file, "scores"),
                        n_boot=50)
    assert not np.isnan(whole["maj_at_k"].to_numpy()).any()
    np.testing.assert_equal(records.read_table(tmp_path / "passk.parquet", "passk").to_pylist(), whole.to_pylist())
