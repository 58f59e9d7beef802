"""The run driver end to end on the real hf backend and GSM8K: kill-and-resume, refusal to mix
runs, shards and merge, score, and one-line errors for bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.tasks.gsm8k import GSM8K

from harness import cli, records
from harness.cli import parse_shard
from harness.report import cell
from harness.sampling import select_problems, shard_of
from harness.store import SampleStore

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def t2(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], env=ENV, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def sample_args(gsm8k_file: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--backend", "hf", "--device", "cpu", "--out", str(out), "--limit", "3", "-n", "3",
            "--max-tokens", "12", "--chunk", "1", *extra]


def keys_and_texts(run: Path) -> dict[tuple[str, int], str]:
    table = SampleStore(run).read()
    return dict(zip(zip(table["problem_id"].to_pylist(), table["sample_idx"].to_pylist(), strict=True),
                    table["text"].to_pylist(), strict=True))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, gsm8k_file) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    t2(*sample_args(gsm8k_file, out))
    return out


@pytest.mark.slow
def test_clean_run_records(clean_run, gsm8k_file):
    run = records.read_json(clean_run / "run.json", "run")
    assert run["model"]["id"] == "smollm2-135m" and run["model"]["params_total"] > 1e8
    assert run["sampler"]["n"] == 3 and run["sampler"]["seed"] == 0 and run["sampler"]["backend"] == "hf"
    assert run["task"]["name"] == "gsm8k" and run["task"]["n_problems"] == 3
    assert run["end_time"] and run["versions"]["torch"]
    # provenance: library versions, the harness's commit, the model's fingerprint, the exact prompt
    import numpy

    assert run["versions"]["numpy"] == numpy.__version__ and run["versions"]["datasets"]
    assert {"lm_eval", "vllm", "transformers"} <= run["versions"].keys()
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # tested from a checkout
        assert run["harness"]["git_commit"] == head.stdout.strip() and isinstance(run["harness"]["git_dirty"], bool)
    assert run["harness"]["version"]
    assert run["model"]["commit"].startswith("folder-sha256:") and len(run["model"]["commit"]) == 14 + 64
    problem = GSM8K(data_files=str(gsm8k_file)).problems()[0]
    assert run["prompt"] == {"chat": False, "system_prompt": None, "template": GSM8K.template,
                             "chat_template_sha256": None, "chat_template_source": None,
                             "example": problem.prompt}
    texts = keys_and_texts(clean_run)
    assert sorted(texts) == [(f"gsm8k/{i}", j) for i in range(3) for j in range(3)]
    cost = records.read_json(clean_run / "cost.json", "cost")
    table = SampleStore(clean_run).read()
    assert cost["completions"] == 9 and cost["completion_tokens"] == sum(table["completion_tokens"].to_pylist())
    assert cost["total_flops"] > 0 and cost["wall_s"] > 0


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_samples(tmp_path, gsm8k_file, clean_run):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *sample_args(gsm8k_file, out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not SampleStore(out).shards() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    stored = keys_and_texts(out)
    per_problem = {pid: sum(1 for p, _ in stored if p == pid) for pid, _ in stored}
    assert 1 <= len(per_problem) < 3 and set(per_problem.values()) == {3}  # whole problems only
    t2(*sample_args(gsm8k_file, out))
    assert keys_and_texts(out) == keys_and_texts(clean_run)
    table = SampleStore(out).read()
    assert table.num_rows == 9
    # the same command again has nothing left to do and writes no shard
    shards = SampleStore(out).shards()
    t2(*sample_args(gsm8k_file, out))
    assert SampleStore(out).shards() == shards


@pytest.mark.slow
@pytest.mark.parametrize("change, field", [(("--seed", "1"), "sampler.seed"),
                                           (("--temperature", "0.5"), "sampler.temperature"),
                                           (("--top-p", "0.9"), "sampler.top_p")])
def test_rerun_with_other_settings_refuses(clean_run, gsm8k_file, change, field):
    before = SampleStore(clean_run).shards()
    args = sample_args(gsm8k_file, clean_run)
    i = args.index(change[0]) if change[0] in args else None
    if i is not None:
        args[i + 1] = change[1]
    else:
        args += list(change)
    proc = t2(*args, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and field in proc.stderr and "another --out" in proc.stderr
    assert SampleStore(clean_run).shards() == before


@pytest.mark.slow
@pytest.mark.parametrize("change, field, flag", [(("--limit", "2"), "task.options.limit", "--limit"),
                                                 (("--dtype", "bfloat16"), "model.dtype", "--dtype"),
                                                 (("--data-files", "OTHER"), "task.data_sha256", "--data-files")])
def test_rerun_with_other_data_or_dtype_refuses_and_writes_nothing(clean_run, gsm8k_file, tmp_path, change,
                                                                   field, flag):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(gsm8k_file.read_text().splitlines(keepends=True)[3:9]))
    before = {p: p.read_bytes() for p in clean_run.rglob("*") if p.is_file()}
    args = sample_args(gsm8k_file, clean_run)
    if change[0] in args:
        args[args.index(change[0]) + 1] = str(other) if change[1] == "OTHER" else change[1]
    else:
        args += list(change)
    proc = t2(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and field in errors[0] and f"(set by {flag})" in errors[0], proc.stderr
    assert {p: p.read_bytes() for p in clean_run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_same_data_at_another_path_resumes(clean_run, gsm8k_file, tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(gsm8k_file.read_bytes())
    shards = SampleStore(clean_run).shards()
    t2(*sample_args(copy, clean_run))  # the data's content, not its path, is the run's identity
    assert SampleStore(clean_run).shards() == shards


@pytest.mark.slow
def test_a_second_sample_on_the_same_out_refuses_at_once(tmp_path, gsm8k_file):
    out = tmp_path / "run"
    args = sample_args(gsm8k_file, out)
    args[args.index("--max-tokens") + 1] = "64"  # long enough to still be running when the second starts
    first = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / ".t2-lock").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        t0 = time.time()
        second = t2(*args, check=False)
        waited = time.time() - t0  # start-up and task loading only: it does not wait for the lock
        assert first.poll() is None, "the first run ended before the second tried"
    finally:
        _, err = first.communicate(timeout=600)
    assert second.returncode == 2 and waited < 60
    errors = [line for line in second.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(out) in errors[0] and "another t2 process" in errors[0], second.stderr
    assert first.returncode == 0, err[-2000:]
    assert len(keys_and_texts(out)) == 9  # the first run alone wrote, once


@pytest.mark.slow
def test_default_chunk_flushes_each_problem_and_a_write_failure_is_one_line(tmp_path, gsm8k_file):
    base = ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--device", "cpu", "--limit", "2", "-n", "2", "--max-tokens", "8"]
    out = tmp_path / "run"
    t2(*base, "--out", str(out))  # default chunk: both problems in one backend call
    shards = [records.read_table(p, "samples") for p in SampleStore(out).shards()]
    assert sorted(s["problem_id"].to_pylist() for s in shards) == [["gsm8k/0"] * 2, ["gsm8k/1"] * 2]
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "samples").write_text("")  # the store cannot be created once sampling is done
    proc = t2(*base, "--out", str(blocked), check=False)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 2 and len(errors) == 1 and str(blocked / "samples") in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and (blocked / "run.json").is_file()


@pytest.mark.slow
def test_shards_merge_idempotently_into_the_unsharded_run(tmp_path, gsm8k_file, clean_run):
    parts = [tmp_path / f"shard{i}" for i in range(2)]
    for i, part in enumerate(parts):
        t2(*sample_args(gsm8k_file, part, "--shard", f"{i}/2"))
    assert sum(len(keys_and_texts(p)) for p in parts) == 9
    out = tmp_path / "merged"
    t2("merge", *map(str, parts), "--out", str(out))
    once = keys_and_texts(out)
    assert once == keys_and_texts(clean_run)
    t2("merge", *map(str, parts), "--out", str(out))
    assert keys_and_texts(out) == once and len(SampleStore(out).read()) == 9
    assert records.read_json(out / "run.json", "run")["shard"] is None
    other = tmp_path / "other-seed"  # a shard of another run: same files, manifest with another seed
    shutil.copytree(parts[1], other)
    manifest = records.read_json(other / "run.json", "run")
    records.write_json(other / "run.json", "run", {**manifest, "sampler": {**manifest["sampler"], "seed": 1}})
    refused = t2("merge", str(parts[0]), str(other), "--out", str(tmp_path / "bad"), check=False)
    assert refused.returncode == 2 and "sampler.seed" in refused.stderr and "only shards of one run" in refused.stderr


@pytest.mark.slow
def test_score_and_likelihood_fill_problems_table(tmp_path, clean_run, gsm8k_file):
    run = shutil.copytree(clean_run, tmp_path / "run")  # the module's clean run stays as sampled
    printed = t2("score", str(run)).stdout
    scores = records.read_table(run / "scores.parquet", "scores")
    accuracy = sum(scores["correct"].to_pylist()) / 9
    assert "pass@1 (mean correct)" in printed and cell(accuracy) in printed
    assert scores.num_rows == 9
    assert all(m for m in scores["verifier_message"].to_pylist())
    # on an existing run, likelihood takes the task, --limit and --data-files from run.json
    t2("likelihood", "--model", "smollm2-135m", "--device", "cpu", "--out", str(run))
    problems = records.read_table(run / "problems.parquet", "problems").to_pylist()
    before = (run / "problems.parquet").read_bytes()
    refused = t2("likelihood", "--model", "smollm2-135m", "--device", "cpu", "--limit", "2",
                 "--out", str(run), check=False)
    assert refused.returncode == 2 and "task.options.limit" in refused.stderr and "--limit" in refused.stderr
    assert (run / "problems.parquet").read_bytes() == before
    assert [p["problem_id"] for p in problems] == ["gsm8k/0", "gsm8k/1", "gsm8k/2"]
    assert all(p["n"] == 3 and 0 <= p["c"] <= 3 and p["nll"] > 0 and p["answer_tokens"] > 10 for p in problems)
    assert sum(p["c"] for p in problems) == sum(scores["correct"].to_pylist())
    gold = GSM8K(data_files=str(gsm8k_file)).problems()[:3]
    assert [(p["prompt"], p["gold"]) for p in problems] == [(g.prompt, g.answer) for g in gold]
    shown = t2("cost", str(run)).stdout
    assert "total_flops" in shown and "completions" in shown


def test_shard_split_covers_every_problem_once(gsm8k_file):
    problems = GSM8K(data_files=str(gsm8k_file)).problems()
    parts = [select_problems(problems, 300, (i, 4)) for i in range(4)]
    ids = [p.id for part in parts for p in part]
    assert sorted(ids) == sorted(p.id for p in problems[:300]) and len(ids) == len(set(ids))
    assert min(map(len, parts)) > 40  # the hash spreads problems evenly
    assert all(shard_of(p.id, 4) == i for i, part in enumerate(parts) for p in part)
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/3"):
        with pytest.raises(cli.UsageError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize("args, flag", [
    (["--model", "./no/such/model"], "--model"),
    (["-n", "0"], "-n"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--top-p", "0"], "--top-p"),
    (["--shard", "3/2"], "--shard"),
    (["--data-files", "ONE", "--shard", "OTHER"], "no problems"),  # its only problem is in the other shard
    (["--out", "UNWRITABLE"], "file/run"),
])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, gsm8k_file, capsys, args, flag):
    one = tmp_path / "one.jsonl"
    one.write_text(gsm8k_file.read_text().splitlines()[0] + "\n")
    other = f"{1 - shard_of('gsm8k/0', 2)}/2"
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--out", str(tmp_path / "run"), "--limit", "2"]
    for i in range(0, len(args), 2):
        value = {"ONE": str(one), "OTHER": other, "UNWRITABLE": str(blocker / "run")}.get(args[i + 1], args[i + 1])
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = value
        else:
            argv += [args[i], value]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()  # (a datasets progress bar may precede the error)
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("t2 sample: error:") and flag in errors[0], err
    assert not (tmp_path / "run" / "samples").exists()


def test_score_needs_a_run_directory(tmp_path, capsys):
    assert cli.main(["score", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_chat_humaneval_replies_are_not_cut_and_are_judged_as_chat(tmp_path):
    """A real chat run: no completion-mode stop applies (replies keep their fence and what follows
    it), the system prompt and the chat template are recorded and part of the run's identity, and
    `t2 score` judges the replies' fenced code."""
    from harness.tasks.code import HumanEval

    out = tmp_path / "chat"
    args = ["sample", "--task", "humaneval", "--chat", "--model", "smollm2-135m", "--backend", "hf",
            "--device", "cpu", "--limit", "2", "-n", "2", "--max-tokens", "64", "--out", str(out),
            "--system-prompt", "You write Python."]
    t2(*args)
    run = records.read_json(out / "run.json", "run")
    assert run["sampler"]["chat"] is True and run["sampler"]["stop"] == []
    assert run["sampler"]["system_prompt"] == "You write Python."
    prompt = run["prompt"]
    assert prompt["chat"] and prompt["template"] == HumanEval.chat_message and len(prompt["chat_template_sha256"]) == 64
    assert prompt["example"].startswith("<|im_start|>system\nYou write Python.<|im_end|>")
    assert prompt["example"].endswith("<|im_start|>assistant\n") and "def has_close_elements(" in prompt["example"]
    rows = SampleStore(out).read().to_pylist()
    assert len(rows) == 4
    for r in rows:  # never cut at the opening fence: code follows it, or the reply ran out of tokens
        if "```" in r["text"]:
            assert r["text"].split("```", 1)[1].strip() or r["finish_reason"] == "length", r["text"]
        assert r["finish_reason"] in ("stop", "length")
    assert any("```" in r["text"] and r["text"].split("```", 1)[1].strip() for r in rows)
    refused = t2(*args[:-1], "Another system prompt.", check=False)
    assert refused.returncode == 2 and "sampler.system_prompt" in refused.stderr and "--system-prompt" in refused.stderr
    printed = t2("score", str(out)).stdout
    assert "humaneval" in printed and "pass@1" in printed
    messages = records.read_table(out / "scores.parquet", "scores")["verifier_message"].to_pylist()
    assert len(messages) == 4 and all(messages)


def test_system_prompt_needs_chat(tmp_path, capsys):
    assert cli.main(["sample", "--task", "humaneval", "--model", "smollm2-135m", "--out", str(tmp_path / "r"),
                     "--system-prompt", "Be brief."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--system-prompt" in err and "chat" in err
    assert not (tmp_path / "r").exists()
