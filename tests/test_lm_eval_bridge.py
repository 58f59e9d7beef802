"""The lm-eval bridge: custom task YAMLs over local JSON-lines files (lm-eval's `dataset_path: json`)
and lm-eval's built-in gsm8k config pointed at the shared GSM8K file; the bridge's verifier must
agree with lm-eval's own filters + process_results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from harness.tasks import get_task  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

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


def test_builtin_gsm8k_on_the_shared_file(gsm8k_file):
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
