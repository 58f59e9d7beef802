"""The lm-eval bridge: custom task YAMLs over local JSON-lines files (lm-eval's `dataset_path: json`)
and lm-eval's built-in gsm8k config pointed at the shared GSM8K file; the bridge's verifier must
agree with lm-eval's own filters + process_results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from harness.tasks import get_task  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from harness import cli  # noqa: E402

ROWS = [{"q": f"What is {a} plus {b}?", "a": str(a + b)} for a, b in [(2, 3), (10, 4), (7, 7), (1, 8), (6, 0)]]
TRAIN = [{"q": f"What is {a} plus {b}?", "a": str(a + b)} for a, b in [(4, 4), (9, 1), (3, 5)]]

GEN_YAML = """\
task: toy_add
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
    train: {train}
output_type: generate_until
test_split: test
fewshot_split: train
doc_to_text: "Q: {{{{q}}}}\\nA:"
doc_to_target: "{{{{a}}}}"
target_delimiter: " "
fewshot_delimiter: "\\n\\n"
num_fewshot: 2
generation_kwargs:
  until: ["\\n\\n", "Q:"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
filter_list:
  - name: last-number
    filter:
      - function: regex
        regex_pattern: "(-?[0-9]+)"
        group_select: -1
      - function: take_first
metadata:
  version: 2.0
"""

CODE_YAML = """\
task: toy_code
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
unsafe_code: true
output_type: generate_until
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{test}}}}"
metric_list:
  - metric: exact_match
generation_kwargs:
  until: ["\\ndef"]
num_fewshot: 0
"""


MC_YAML = """\
task: toy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
num_fewshot: 0
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("lm_eval_tasks")
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (tmp_path / "toy_add.yaml").write_text(GEN_YAML.format(data=data, train=train))
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"prompt": "def add(a, b):\n", "test": "assert add(2, 3) == 5"}) + "\n")
    (tmp_path / "toy_code.yaml").write_text(CODE_YAML.format(data=code))
    mc = tmp_path / "mc.jsonl"
    mc.write_text(json.dumps({"question": "Which is a metal?", "choices": ["wood", "iron nail"], "gold": 1}) + "\n")
    (tmp_path / "toy_mc.yaml").write_text(MC_YAML.format(data=mc))
    return tmp_path


def lm_eval_verdict(bridge, doc: dict, completion: str) -> dict:
    """lm-eval's own scoring of one completion: its filter ensemble, then process_results."""
    inst = Instance("generate_until", doc, ("", {}), 0, resps=[completion])
    ensemble = bridge._task._filters[0]
    ensemble.apply([inst])
    return bridge._task.process_results(doc, [inst.filtered_resps[ensemble.name]])


def test_custom_task_problems_prompts_and_fewshot(task_dir):
    task = get_task("lm-eval:toy_add", include_path=str(task_dir))
    assert task.name == "lm-eval:toy_add" and task.version == "2.0"
    assert task.stop == ("\n\n", "Q:") and "json" in task.source
    ps = task.problems()
    assert len(ps) == 5 and ps[0].answer == "5" and ps[0].answer_span == " 5"
    assert ps[0].prompt.endswith("Q: What is 2 plus 3?\nA:")
    assert ps[0].prompt.count("Q: ") == 3 and ps[0].prompt.count("\n\n") == 2  # two shots
    shots = ps[0].prompt.split("\n\n")[:2]
    for shot in shots:  # each shot is a training row with its own answer
        q, a = shot[3:].split("\nA: ")
        assert {"q": q, "a": a} in TRAIN
    zero = get_task("lm-eval:toy_add", include_path=str(task_dir), num_fewshot=0, limit=2).problems()
    assert [p.prompt for p in zero] == ["Q: What is 2 plus 3?\nA:", "Q: What is 10 plus 4?\nA:"]


def test_verifier_agrees_with_lm_eval(task_dir):
    task = get_task("lm-eval:toy_add", include_path=str(task_dir), num_fewshot=0)
    ps = task.problems()
    completions = [" 5", " The sum is 5.", " 6", " 2 + 3 = 5", "", " five", " 5\n\nQ: 3", " -5"]
    for p, doc in zip(ps[:1], task._docs[:1]):
        for c in completions:
            verdict = task.check(p, c)
            expected = lm_eval_verdict(task, doc, c)["exact_match"]
            assert verdict.correct == (expected == 1.0), c
    assert task.check(ps[0], " 5").correct and not task.check(ps[0], " 6").correct
    assert task.check(ps[1], " that makes 14").correct


def test_code_tasks_run_in_our_sandbox(task_dir):
    task = get_task("lm-eval:toy_code", include_path=str(task_dir))
    assert task.code
    (p,) = task.problems()
    assert task.check(p, "def add(a, b):\n    return a + b\n").correct
    v = task.check(p, "def add(a, b):\n    return a * b\n")
    assert not v.correct and "failed" in v.message


def test_multiple_choice_tasks_give_the_gold_span(task_dir):
    task = get_task("lm-eval:toy_mc", include_path=str(task_dir))
    (p,) = task.problems()
    assert p.prompt == "Question: Which is a metal?\nAnswer:" and p.answer_span == " iron nail"
    assert task.check(p, " An iron nail.\n").correct and not task.check(p, " wood").correct


def test_bad_names_and_filters(task_dir):
    with pytest.raises(ValueError, match="unknown filter 'nope'"):
        get_task("lm-eval:toy_add", include_path=str(task_dir), filter="nope")
    with pytest.raises(ValueError, match="unknown task 'toy_adds'; did you mean toy_add"):
        get_task("lm-eval:toy_adds", include_path=str(task_dir))


def test_builtin_gsm8k_through_overrides(gsm8k_file):
    overrides = {"dataset_path": "json", "dataset_name": None,
                 "dataset_kwargs": {"data_files": {"test": str(gsm8k_file), "train": str(gsm8k_file)}}}
    task = get_task("lm-eval:gsm8k", overrides=overrides, limit=3)
    assert task.stop == ("Question:", "</s>", "<|im_end|>") and task.num_fewshot == 5
    ps = task.problems()
    assert ps[0].prompt.count("Question:") == 6 and ps[0].prompt.endswith("eggs per day. She eats three "
                                                                          "for breakfast every morning and "
                                                                          "bakes muffins for her friends "
                                                                          "every day with four. She sells "
                                                                          "the remainder at the farmers' "
                                                                          "market daily for $2 per fresh "
                                                                          "duck egg. How much in dollars "
                                                                          "does she make every day at the "
                                                                          "farmers' market?\nAnswer:")
    doc = task._docs[0]
    for c in [" 16 - 3 - 4 = 9, 9 * 2 = 18\n#### 18", " #### 17", " She makes $18.", " The answer is 18."]:
        assert task.check(ps[0], c).correct == (lm_eval_verdict(task, doc, c)["exact_match"] == 1.0)
    assert task.check(ps[0], " so\n#### 18").correct and not task.check(ps[0], " #### 17").correct
    flexible = get_task("lm-eval:gsm8k", overrides=overrides, limit=1, filter="flexible-extract")
    fp = flexible.problems()[0]
    assert flexible.check(fp, " She makes $18.").correct


def lm_eval_prompt(bridge, shot_ids: list[int], doc: dict) -> str:
    """The prompt lm-eval's gsm8k config gives ``doc`` after the few-shot docs ``shot_ids``: for
    each, doc_to_text + target_delimiter + doc_to_target + fewshot_delimiter; then doc_to_text."""
    task = bridge._task
    pool = list(task.fewshot_docs())
    blocks = [task.doc_to_text(pool[i]) + task.config.target_delimiter + task.doc_to_target(pool[i])
              + task.config.fewshot_delimiter for i in shot_ids]
    return "".join(blocks) + task.doc_to_text(doc)


def test_gsm8k_from_local_train_and_test_files(gsm8k_split):
    """lm-eval:gsm8k reads --data-files train=...,test=... (no hub); its 5 shots per doc come from
    the train file by lm-eval's own seeded sampler, and run.json's ids name them; our gsm8k task's
    few-shot prompt is lm-eval's format exactly."""
    train, test = gsm8k_split
    files = f"train={train},test={test}"
    bridge = get_task("lm-eval:gsm8k", data_files=files, limit=4)
    ps = bridge.problems()
    assert bridge.num_fewshot == 5 and str(test) in bridge.source and bridge.data_files == [train, test]
    record = bridge.fewshot
    assert (record["n"], record["seed"], record["split"], record["sampler"]) == (5, 1234, "train", "ContextSampler")
    assert record["source"] == str(train)
    by_problem = record["ids_by_problem"]  # lm-eval's default sampler: 5 random train docs per doc
    assert len({tuple(v) for v in by_problem.values()}) == 4
    for p, doc in zip(ps, bridge._docs, strict=True):
        assert p.prompt == lm_eval_prompt(bridge, by_problem[p.id], doc)
        assert p.prompt.count("Question:") == 6 and doc["question"] in p.prompt
    train_questions = [json.loads(line)["question"] for line in train.open()]
    assert ps[0].prompt.split("Question: ")[1].split("\nAnswer:")[0] in train_questions
    ours = get_task("gsm8k", data_files=files, num_fewshot=5, fewshot_seed=3, limit=4)
    for p, doc in zip(ours.problems(), bridge._docs, strict=True):
        assert p.prompt == lm_eval_prompt(bridge, ours.fewshot["ids"], doc)
    reseeded = get_task("lm-eval:gsm8k", data_files=files, limit=4, seed=99)
    assert [p.prompt for p in reseeded.problems()] != [p.prompt for p in ps]
    assert reseeded.fewshot["seed"] == 99
    zero = get_task("lm-eval:gsm8k", data_files=str(test), num_fewshot=0, limit=2)  # a bare path: the test split
    assert [p.prompt for p in zero.problems()] == [f"Question: {d['question']}\nAnswer:" for d in zero._docs]
    assert zero.fewshot is None


NO_NETWORK = """
import json, socket, sys, time
attempts = []
def refuse(kind):
    def trip(*args, **kwargs):
        attempts.append(f"{kind}{args[1:2] if kind == 'connect' else args[:1]}")
        raise OSError("network disabled by the test")
    return trip
real_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        return refuse("connect")(self, address)
    return real_connect(self, address)
socket.socket.connect = connect
socket.getaddrinfo = refuse("getaddrinfo")
name = sys.argv[2]
if name.startswith("lm-eval:"):
    from harness.tasks.lm_eval_bridge import _manager
    _manager(())  # lm-eval's task index (seconds of YAML parsing): not what is timed
t0 = time.perf_counter()
from harness.tasks import get_task
task = get_task(name, data_files=sys.argv[1], limit=3, num_fewshot=5)
prompts = [p.prompt for p in task.problems()]
print(json.dumps({"seconds": time.perf_counter() - t0, "attempts": attempts, "problems": len(prompts)}))
"""


@pytest.mark.parametrize("task,offline", [("lm-eval:gsm8k", True), ("lm-eval:gsm8k", False), ("gsm8k", False)],
                         ids=["lm-eval-hf-offline", "lm-eval-no-offline-env", "gsm8k-no-offline-env"])
def test_local_files_never_touch_the_network(gsm8k_split, task, offline):
    """With local files the hub is never asked: nothing opens a socket or resolves a name (with
    and without HF_HUB_OFFLINE / HF_DATASETS_OFFLINE; `datasets` pings S3 with a download count
    unless told not to), and loading takes well under a few seconds (the old bridge spent 42 s in
    hub retries)."""
    train, test = gsm8k_split
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if offline else {})
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, f"train={train},test={test}", task], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{task} from local files: {result['seconds']:.2f} s")
    assert result["attempts"] == [] and result["problems"] == 3
    assert result["seconds"] < 5.0
    assert "Retrying" not in proc.stderr and "huggingface.co" not in proc.stderr


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("t2 sample: error: "), lines
    return lines[0]


def test_bad_names_and_files_are_one_line(gsm8k_split, tmp_path, capsys):
    train, test = gsm8k_split
    base = ["sample", "--model", "smollm2-135m", "--out", str(tmp_path / "run"), "--limit", "1"]
    assert cli.main([*base, "--task", "lm-eval:gsm8kk", "--data-files", str(test)]) == 2
    assert "lm-eval: unknown task 'gsm8kk'; did you mean gsm8k" in one_line(capsys)
    missing = tmp_path / "nowhere.jsonl"
    assert cli.main([*base, "--task", "lm-eval:gsm8k", "--data-files", f"train={train},test={missing}"]) == 2
    assert f"{missing}: data file not found (split test of lm-eval:gsm8k)" in one_line(capsys)
    assert cli.main([*base, "--task", "lm-eval:gsm8k", "--data-files", str(test)]) == 2
    line = one_line(capsys)
    assert "--num-fewshot: expected 0, or a train=PATH among the data files" in line and "got 5" in line
    assert cli.main([*base, "--task", "lm-eval:gsm8k", "--data-files", f"dev={train},test={test}"]) == 2
    assert "--data-files: expected split names of lm-eval:gsm8k (test, train)" in one_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_t2_sample_lm_eval_gsm8k_from_the_shared_file(gsm8k_file, tmp_path, one_torch_thread):
    """`t2 sample --task lm-eval:gsm8k --data-files test.jsonl --num-fewshot 0` with the real tiny
    model, then `t2 score`: the samples, run.json and verdicts of lm-eval's gsm8k from local data."""
    from harness import records
    from harness.rundir import RunDir

    out = tmp_path / "run"
    argv = ["sample", "--task", "lm-eval:gsm8k", "--data-files", str(gsm8k_file), "--num-fewshot", "0",
            "--model", "smollm2-135m", "--backend", "hf", "--device", "cpu", "--out", str(out), "--limit", "2",
            "-n", "2", "--max-tokens", "24", "--temperature", "0.7"]
    assert cli.main(argv) == 0
    run = RunDir(out).manifest()
    assert run["task"]["name"] == "lm-eval:gsm8k" and run["task"]["options"]["num_fewshot"] == 0
    assert run["task"]["fewshot"] is None and str(gsm8k_file) in run["task"]["source"]
    assert run["sampler"]["stop"] == ["Question:", "</s>", "<|im_end|>"]
    samples = RunDir(out).store.read()
    assert samples.num_rows == 4 and all(t.strip() for t in samples.column("text").to_pylist())
    assert cli.main(["score", str(out)]) == 0
    problems = records.read_table(RunDir(out).problems_file, "problems").to_pylist()
    assert [p["n"] for p in problems] == [2, 2] and problems[0]["gold"].endswith("#### 18")
    assert problems[0]["prompt"].startswith("Question: Janet") and problems[0]["prompt"].count("Question:") == 1
