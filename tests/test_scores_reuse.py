"""scores.parquet records what it judged (harness.sampling.scoring_stamp: the stored samples' keys
and the scorer settings), so ``harness.evaluate`` keeps a scores file that is up to date and
rescores when samples were added or a setting that decides verdicts changed."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

import harness
from harness import records
from harness.rundir import RunDir
from harness.sampling import load_problems, score_run, scores_current


def sample_row(task: str, problem_id: str, i: int, text: str) -> dict:
    return {"task": task, "problem_id": problem_id, "sample_idx": i, "seed": i, "text": text, "prompt_tokens": 5,
            "completion_tokens": 2, "cached_prompt_tokens": 0, "finish_reason": "stop", "cumulative_logprob": -1.0}


@pytest.fixture
def gsm8k_run(tmp_path, gsm8k_file):
    """A run of 3 real GSM8K problems, 2 samples each: the gold answer, then the gold answer in words
    that only the flexible extraction (the task's default mode) reads."""
    task, problems, record = load_problems("gsm8k", str(gsm8k_file), 3, None, {})
    run = RunDir(tmp_path / "run")
    run.write_manifest({"task": record, "sampler": {"backend": "hf", "n": 2}, "shard": None})
    run.store.append([sample_row(task.name, p.id, i, f" so {p.answer} apples." if i else f"\n#### {p.answer}")
                      for p in problems for i in range(2)])
    return run, problems


def test_scores_are_current_until_a_sample_is_added(gsm8k_run):
    run, problems = gsm8k_run
    assert not scores_current(run.path)  # never scored
    score_run(run.path)
    assert scores_current(run.path)
    run.store.append([sample_row("gsm8k", problems[0].id, 2, " no idea")])
    assert not scores_current(run.path)
    score_run(run.path)
    assert scores_current(run.path)
    assert records.read_table(run.scores_file, "scores").num_rows == 7


def test_a_changed_scorer_setting_or_an_unstamped_file_is_not_current(gsm8k_run, monkeypatch):
    run, _ = gsm8k_run
    score_run(run.path)
    flexible = records.read_table(run.scores_file, "scores")["correct"].to_pylist()
    assert flexible == [True] * 6
    assert not scores_current(run.path, {"mode": "strict"})  # another extraction mode judges otherwise
    score_run(run.path, {"mode": "strict"})
    assert scores_current(run.path, {"mode": "strict"}) and not scores_current(run.path)
    assert records.read_table(run.scores_file, "scores")["correct"].to_pylist() == [True, False] * 3
    monkeypatch.setattr(harness, "__version__", harness.__version__ + ".post1")  # another harness
    assert not scores_current(run.path, {"mode": "strict"})
    monkeypatch.undo()
    manifest = run.require()
    run.write_manifest({**manifest, "sampler": {**manifest["sampler"], "chat": True}})  # replies judged as chat
    assert not scores_current(run.path, {"mode": "strict"})
    run.write_manifest(manifest)
    table = records.read_table(run.scores_file, "scores")
    records.write_table(run.scores_file, "scores", table.replace_schema_metadata({}))  # scored before stamps
    assert not scores_current(run.path, {"mode": "strict"})
    run.scores_file.write_bytes(b"not parquet")
    assert not scores_current(run.path, {"mode": "strict"})


@pytest.mark.slow
def test_evaluate_keeps_current_scores_and_rescores_a_grown_run(tmp_path, gsm8k_file):
    kwargs = dict(task="gsm8k", model="smollm2-135m", limit=2, max_tokens=8, data_files=str(gsm8k_file),
                  device="cpu", progress=False, out=tmp_path / "run")
    run = harness.evaluate(n=2, likelihood=True, **kwargs)
    files = {name: (run.path / name).stat().st_mtime_ns for name in ("scores.parquet", "problems.parquet",
                                                                      "run.json", "cost.json", "engine.log")}
    scores = run.scores(arrow=True)
    again = harness.evaluate(n=2, likelihood=True, **kwargs)  # nothing new: no model, no scoring
    assert {name: (run.path / name).stat().st_mtime_ns for name in files} == files
    assert again.scores(arrow=True).equals(scores)
    grown = harness.evaluate(n=3, likelihood=True, **kwargs)
    assert (run.path / "scores.parquet").stat().st_mtime_ns != files["scores.parquet"]
    table = grown.scores(arrow=True)
    assert table.num_rows == 6
    order = [("problem_id", "ascending"), ("sample_idx", "ascending")]
    assert table.filter(pc.less(table["sample_idx"], 2)).sort_by(order).equals(
        scores.sort_by(order))  # the first samples' verdicts are unchanged
    problems = grown.problems()
    assert problems["n"].tolist() == [3, 3] and problems["nll"].notna().all()
