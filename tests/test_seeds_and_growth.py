"""Seeds per problem and growing n: sample i of problem p uses problem_seed(base, task, p) + i, so
two problems draw independent streams, and a run grown from n to n' (even across a kill) holds
exactly the rows of a run made at n' from the start."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_sampling_run import ENV, t2

from harness import records
from harness.samplers import SEED_SPAN, SamplingSettings, get_backend, problem_seed, sample_seeds
from harness.store import SampleStore

COLUMNS = ["problem_id", "sample_idx", "seed", "text", "completion_tokens", "finish_reason"]


def grow_args(gsm8k_file: Path, out: Path, n: int) -> list[str]:
    return ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--backend", "hf", "--device", "cpu", "--out", str(out), "--limit", "2", "-n", str(n),
            "--max-tokens", "8", "--chunk", "1"]


def rows(run: Path) -> dict[tuple[str, int], tuple]:
    """(problem_id, sample_idx) → (seed, text, completion_tokens, finish_reason) of every stored sample."""
    table = SampleStore(run).read().select(COLUMNS).to_pylist()
    return {(r["problem_id"], r["sample_idx"]): tuple(r[c] for c in COLUMNS[2:]) for r in table}


def test_problem_seed_is_the_stated_hash():
    key = json.dumps([7, "gsm8k", "gsm8k/3"]).encode()
    assert problem_seed(7, "gsm8k", "gsm8k/3") == int(hashlib.sha256(key).hexdigest()[:16], 16) % (2**63 - 2**32)
    seeds = sample_seeds("problem-hash", 0, "gsm8k", [f"gsm8k/{i}" for i in range(1000)])
    assert len(set(seeds)) == 1000 and all(0 <= s < SEED_SPAN for s in seeds)
    assert len({problem_seed(0, "math", "gsm8k/3"), problem_seed(0, "gsm8k", "gsm8k/3"),
                problem_seed(1, "gsm8k", "gsm8k/3")}) == 3
    assert sample_seeds("base+i", 5, "gsm8k", ["a", "b"]) == [5, 5]


@pytest.mark.slow
def test_two_problems_with_one_prompt_draw_different_texts_and_start_draws_the_tail():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = get_backend("hf", "smollm2-135m", device="cpu")
        prompt = "Question: Name a colour and an animal.\nAnswer:"
        s = SamplingSettings(n=2, temperature=1.0, max_tokens=12)
        old = backend.sample([prompt, prompt], s)  # the v1 rule: seed base + i for both problems
        assert [c.text for c in old[0]] == [c.text for c in old[1]]
        seeds = sample_seeds("problem-hash", 0, "gsm8k", ["p0", "p1"])
        new = backend.sample([prompt, prompt], s, seeds)
        assert [c.seed for c in new[1]] == [seeds[1], seeds[1] + 1]
        assert new[0][0].text != new[1][0].text and new[0][1].text != new[1][1].text
        tail = backend.sample([prompt, prompt], SamplingSettings(n=4, temperature=1.0, max_tokens=12), seeds, start=2)
        whole = backend.sample([prompt, prompt], SamplingSettings(n=4, temperature=1.0, max_tokens=12), seeds)
        assert [[(c.sample_idx, c.seed, c.text) for c in x] for x in tail] == \
               [[(c.sample_idx, c.seed, c.text) for c in x[2:]] for x in whole]
        backend.close()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_at_4(tmp_path_factory, gsm8k_file) -> Path:
    out = tmp_path_factory.mktemp("n4") / "run"
    t2(*grow_args(gsm8k_file, out, 4))
    return out


@pytest.mark.slow
def test_stored_seeds_follow_the_problem_hash(run_at_4):
    manifest = records.read_json(run_at_4 / "run.json", "run")
    assert manifest["sampler"]["seed_rule"] == "problem-hash" and manifest["sampler"]["n"] == 4
    stored = rows(run_at_4)
    assert sorted(stored) == [(f"gsm8k/{p}", i) for p in range(2) for i in range(4)]
    for (pid, i), (seed, *_) in stored.items():
        assert seed == problem_seed(0, "gsm8k", pid) + i


@pytest.mark.slow
def test_grown_run_equals_the_run_made_at_n4_and_scores(tmp_path, gsm8k_file, run_at_4):
    out = tmp_path / "run"
    t2(*grow_args(gsm8k_file, out, 2))
    assert len(rows(out)) == 4
    t2(*grow_args(gsm8k_file, out, 4))
    assert rows(out) == rows(run_at_4)
    assert records.read_json(out / "run.json", "run")["sampler"]["n"] == 4
    shards = SampleStore(out).shards()
    t2(*grow_args(gsm8k_file, out, 2))  # a smaller n samples nothing and keeps the largest n
    assert SampleStore(out).shards() == shards and records.read_json(out / "run.json", "run")["sampler"]["n"] == 4
    t2("score", str(out))
    problems = records.read_table(out / "problems.parquet", "problems").to_pylist()
    assert [r["n"] for r in problems] == [4, 4]
    proc = t2("passk", str(out), "-k", "1", "2", "4")
    assert proc.returncode == 0 and (out / "passk.parquet").is_file()


@pytest.mark.slow
def test_a_kill_while_growing_stays_exactly_once(tmp_path, gsm8k_file, run_at_4):
    out = tmp_path / "run"
    t2(*grow_args(gsm8k_file, out, 2))
    before = len(SampleStore(out).shards())
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *grow_args(gsm8k_file, out, 4)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(SampleStore(out).shards()) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    per_problem = {}
    for pid, _ in rows(out):
        per_problem[pid] = per_problem.get(pid, 0) + 1
    assert sorted(per_problem.values()) == [2, 4]  # one problem grown whole, the other untouched
    t2(*grow_args(gsm8k_file, out, 4))
    assert rows(out) == rows(run_at_4)


@pytest.mark.slow
def test_a_run_made_with_the_v1_rule_resumes_and_grows_with_it(tmp_path, gsm8k_file):
    out = tmp_path / "run"
    t2(*grow_args(gsm8k_file, out, 1))
    manifest = records.read_json(out / "run.json", "run")
    sampler = {k: v for k, v in manifest["sampler"].items() if k != "seed_rule"}
    records.write_json(out / "run.json", "run", {**manifest, "sampler": sampler})  # as written before the rule
    for shard in SampleStore(out).shards():
        shard.unlink()  # (its rows used the new rule; a v1 run's rows would use seed 0 for sample 0)
    t2(*grow_args(gsm8k_file, out, 2))
    assert {key: row[0] for key, row in rows(out).items()} == {(f"gsm8k/{p}", i): i for p in range(2) for i in range(2)}
    assert records.read_json(out / "run.json", "run")["sampler"]["seed_rule"] == "base+i"
