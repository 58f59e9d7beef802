"""GSM8K: every gold solution of the real test set extracts to its answer; a table of hand-written
completion styles; prompts, few-shot, strict/flexible modes, bad input."""

from __future__ import annotations

import json

import pytest
from harness.tasks import get_task
from harness.tasks.gsm8k import extract_answer, gold_answer

# (completion, flexible answer, strict answer)
STYLES = [
    # the GSM8K solution form
    ("She sells 9 eggs.\n#### 18", "18", "18"),
    ("#### 18", "18", "18"),
    ("####18", "18", "18"),
    ("He pays 3 * 4 = 12\n#### 12\n\nQuestion: next one", "12", "12"),
    ("#### $1,200", "1200", "1200"),
    ("#### -7", "-7", "-7"),
    ("#### 3.50", "3.5", "3.5"),
    ("#### 42 apples", "42", "42"),
    # "The answer is"
    ("So the total is 5 + 6 = 11. The answer is 11.", "11", "11"),
    ("The answer is 11", "11", "11"),
    ("the answer is: 11", "11", "11"),
    ("The final answer is 11.", "11", "11"),
    ("The answer is **11**.", "11", "11"),
    ("The answer is $11.", "11", "11"),
    ("The answer is $11.00.", "11", "11"),
    ("The answer is 1,000 dollars.", "1000", "1000"),
    ("The answer is 25%.", "25", "25"),
    ("The answer is -4.", "-4", "-4"),
    ("The answer is 0.75", "0.75", "0.75"),
    ("The answer is .5", "0.5", "0.5"),
    ("The answer is 12 cm.", "12", "12"),
    ("THE ANSWER IS 9", "9", "9"),
    ("First 2 + 2 = 4. The answer is 4. Then 4 + 1 = 5. The answer is 5.", "5", "5"),
    ("The answer is 7.0", "7", "7"),
    ("The answer is −3", "-3", "-3"),
    # chat styles
    ("Sure! Let's work through it.\n\n1. Janet gets 16 eggs.\n2. She uses 7.\n3. 9 × $2 = $18.\n\n"
     "**Answer: $18**", "18", None),
    ("**Final Answer:** 18", "18", None),
    ("Final answer: 18", "18", None),
    ("Answer: 18", "18", None),
    ("She makes $18 every day.", "18", None),
    ("She makes **$18** per day at the market.", "18", None),
    ("The total cost is $1,234.50.", "1234.5", None),
    ("It is 10 - 3 = 7 bolts.", "7", None),
    ("She has 3 apples left.", "3", None),
    ("Great question! The farmer ends up with 120 sheep. Let me know if you need anything else!",
     "120", None),
    ("So, in total, it takes 3 bolts of fabric.", "3", None),
    ("- Step 1: 2 * 3 = 6\n- Step 2: 6 + 4 = 10\n\nTotal: **10**", "10", None),
    ("| item | cost |\n|---|---|\n| pens | $4 |\n| total | $14 |", "14", None),
    ("The temperature drops to -5 degrees.", "-5", None),
    ("That's 2,500,000 people.", "2500000", None),
    ("He runs 540 meters a week.\n\n", "540", None),
    ("In 2023 she earned 70000 dollars.", "70000", None),
    # reasoning / boxed styles
    ("<think>16 - 3 - 4 = 9, 9 * 2 = 18</think>\nShe makes \\boxed{18} dollars.", "18", None),
    ("Therefore the answer is $\\boxed{18}$.", "18", "18"),
    ("\\boxed{18}", "18", None),
    ("\\[\\boxed{1{,}200}\\]", "1200", None),
    ("The profit is \\(\\boxed{\\$70,000}\\).", "70000", None),
    ("\\boxed{18 \\text{ dollars}}", "18", None),
    ("We first try \\boxed{12}, but that is wrong; correct is \\boxed{15}", "15", None),
    ("\\boxed{-2.5}", "-2.5", None),
    ("Let x = 5. Then 2x = 10. \\boxed{10}\nDouble-checking: 10/2 = 5.", "10", None),
    ("<think>Maybe 7? No, 8.</think> The answer is 8.", "8", "8"),
    ("Okay, so... wait. 4 * 5 = 20, minus 2 gives 18. Hmm, yes.", "18", None),
    # mixed forms: the last accepted form wins
    ("#### 18\nThe answer is 19", "19", "19"),
    ("The answer is 19\n#### 18", "18", "18"),
    ("The answer is 4 apples. \\boxed{5}", "5", "4"),
    ("\\boxed{5} The answer is 6", "6", "6"),
    # numbers in odd formats
    ("The answer is 1 000", "1", "1"),
    ("The answer is 3,5", "3", "3"),
    ("#### 0", "0", "0"),
    ("#### -0", "0", "0"),
    ("The answer is 007", "7", "7"),
    ("#### 10.000", "10", "10"),
    # no answer
    ("", None, None),
    ("I don't know.", None, None),
    ("The answer is unknown.", None, None),
    ("####", None, None),
    ("\\boxed{}", None, None),
    ("The answer is: see above", None, None),
]


def test_style_table_is_large_enough():
    assert len(STYLES) >= 60


@pytest.mark.parametrize("completion,flexible,strict", STYLES)
def test_extraction_styles(completion, flexible, strict):
    assert extract_answer(completion, "flexible") == flexible
    assert extract_answer(completion, "strict") == strict


def test_every_gold_solution_extracts_to_its_answer(gsm8k_file):
    rows = [json.loads(line) for line in gsm8k_file.open()]
    assert len(rows) == 1319
    for row in rows:
        expected = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        assert gold_answer(row["answer"]) == expected
        assert extract_answer(row["answer"], "strict") == expected
        assert extract_answer(row["answer"], "flexible") == expected


def test_problems_prompts_and_check(gsm8k_file):
    task = get_task("gsm8k", data_files=gsm8k_file, limit=3)
    ps = task.problems()
    assert [p.id for p in ps] == ["gsm8k/0", "gsm8k/1", "gsm8k/2"]
    assert ps[0].prompt.startswith("Question: Janet") and ps[0].prompt.endswith("\nAnswer:")
    assert ps[0].answer == "18" and "<<" not in ps[0].answer_span and ps[0].answer_span.endswith("#### 18")
    assert task.check(ps[0], " She makes 9 * 2 = $18.\n#### 18").correct
    assert not task.check(ps[0], " #### 17").correct
    v = task.check(ps[0], " I am not sure")
    assert v.answer is None and not v.correct and "no answer" in v.message
    strict = get_task("gsm8k", data_files=gsm8k_file, mode="strict")
    assert not strict.check(ps[0], " She makes $18.").correct


def test_default_data_comes_from_the_environment_only(gsm8k_file, monkeypatch):
    monkeypatch.setenv("T2_DATA", str(gsm8k_file.parents[1]))
    task = get_task("gsm8k")
    assert task.data_files and task.data_files[0].resolve() == gsm8k_file.resolve()
    assert len(task.problems()) == 1319
    monkeypatch.delenv("T2_DATA")
    assert get_task("gsm8k").on_hub()  # no guess about folders beside the checkout


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def test_few_shot_examples_come_from_the_train_split_and_the_test_set_never_shrinks(gsm8k_split):
    train, test = gsm8k_split
    task = get_task("gsm8k", data_files=f"train={train},test={test}", num_fewshot=3, fewshot_seed=7)
    shot = task.problems()
    zero = get_task("gsm8k", data_files=str(test)).problems()
    assert len(shot) == len(zero) == 1319 - 40  # every test row is a problem, shots or not
    assert [p.id for p in shot] == [p.id for p in zero] and [p.answer for p in shot] == [p.answer for p in zero]
    ids = task.fewshot["ids"]
    assert task.fewshot == {"n": 3, "seed": 7, "split": "train", "source": str(train), "ids": ids}
    assert len(set(ids)) == 3 and all(0 <= i < 40 for i in ids)
    train_rows = rows_of(train)
    context = "".join(f"Question: {train_rows[i]['question']}\nAnswer: {train_rows[i]['answer']}\n\n" for i in ids)
    assert all(s.prompt == context + z.prompt for s, z in zip(shot, zero, strict=True))  # one context, lm-eval's form
    assert not any(row["question"] in context for row in rows_of(test))  # no test question is a shot
    assert set(task.data_files) == {train, test}  # both files are the run's data (task.data_sha256)
    other = get_task("gsm8k", data_files=f"train={train},test={test}", num_fewshot=3, fewshot_seed=8, limit=1)
    other.problems()
    assert other.fewshot["ids"] != ids  # another seed, another choice
    again = get_task("gsm8k", data_files=[f"train={train}", str(test)], num_fewshot=3, fewshot_seed=7, limit=2)
    assert [p.prompt for p in again.problems()] == [p.prompt for p in shot[:2]]  # seeded: the same choice


def test_few_shot_train_file_beside_the_environment_test_file(gsm8k_split, tmp_path, monkeypatch):
    train, test = gsm8k_split
    (tmp_path / "gsm8k").mkdir()
    for path in gsm8k_split:
        (tmp_path / "gsm8k" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("T2_DATA", str(tmp_path))
    task = get_task("gsm8k", num_fewshot=1, limit=1)
    (p,) = task.problems()
    assert task.fewshot["source"] == str(tmp_path / "gsm8k" / "train.jsonl")
    assert p.prompt.count("Question:") == 2 and len(get_task("gsm8k").problems()) == 1279


def test_few_shot_refusals(gsm8k_split, tmp_path):
    train, test = gsm8k_split
    with pytest.raises(ValueError, match="num_fewshot: expected 0, or a train=PATH among the data files"):
        get_task("gsm8k", data_files=str(test), num_fewshot=2)  # local test data: no hub examples
    with pytest.raises(ValueError, match="task_option: expected num_fewshot .*got 'n_shot'"):
        get_task("gsm8k", data_files=str(test), n_shot=2)
    with pytest.raises(ValueError, match="data_files: expected split names train, validation or test"):
        get_task("gsm8k", data_files=f"dev={train},test={test}")
    with pytest.raises(ValueError, match="num_fewshot: expected an integer >= 0"):
        get_task("gsm8k", data_files=str(test), num_fewshot=-1)
    two = tmp_path / "two.jsonl"
    two.write_text("".join(train.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(ValueError, match="3 few-shot examples asked but the split has 2"):
        get_task("gsm8k", data_files=f"train={two},test={test}", num_fewshot=3).problems()
    for name in ("lambada", "humaneval", "mbpp"):
        with pytest.raises(ValueError, match=f"num_fewshot: expected 0: task {name} has no training examples"):
            get_task(name, num_fewshot=1)
    assert get_task("humaneval", num_fewshot=0).num_fewshot == 0


def test_bad_input(tmp_path):
    bad = tmp_path / "gsm.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "1\n#### 1"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"gsm\.jsonl:2: missing field 'answer'"):
        get_task("gsm8k", data_files=bad).problems()
    nohash = tmp_path / "nohash.jsonl"
    nohash.write_text(json.dumps({"question": "q", "answer": "it is 4"}) + "\n")
    with pytest.raises(ValueError, match="field 'answer' has no '#### <number>'"):
        get_task("gsm8k", data_files=nohash).problems()
    with pytest.raises(ValueError, match="mode: expected 'strict' or 'flexible'"):
        get_task("gsm8k", mode="lenient")


@pytest.mark.slow
def test_t2_sample_few_shot_records_the_examples_and_they_are_the_run_identity(gsm8k_split, tmp_path, capsys,
                                                                              one_torch_thread):
    """`t2 sample --num-fewshot 2 --seed 3` with the real tiny model: run.json records the shots
    (seed = the base seed, ids in the train file), `t2 score` rebuilds the same prompts, and
    another choice of shots (same --seed) into the same run directory is refused."""
    from harness import cli, records
    from harness.rundir import RunDir

    train, test = gsm8k_split
    out = tmp_path / "run"
    argv = ["sample", "--task", "gsm8k", "--data-files", f"train={train},test={test}", "--num-fewshot", "2",
            "--seed", "3", "--model", "smollm2-135m", "--backend", "hf", "--device", "cpu", "--out", str(out),
            "--limit", "2", "-n", "2", "--max-tokens", "8"]
    assert cli.main(argv) == 0
    task = RunDir(out).manifest()["task"]
    expected = get_task("gsm8k", data_files=f"train={train},test={test}", num_fewshot=2, fewshot_seed=3)
    expected.problems()
    assert task["fewshot"] == {**expected.fewshot, "source": str(train)} and task["fewshot"]["seed"] == 3
    assert task["options"]["num_fewshot"] == 2 and task["options"]["fewshot_seed"] == 3
    assert cli.main(["score", str(out)]) == 0
    problems = records.read_table(RunDir(out).problems_file, "problems").to_pylist()
    shots = [json.loads(line) for line in train.open()]
    first = shots[task["fewshot"]["ids"][0]]
    assert [p["n"] for p in problems] == [2, 2] and problems[0]["prompt"].startswith(f"Question: {first['question']}")
    capsys.readouterr()
    assert cli.main([*argv, "--task-option", "fewshot_seed=4"]) == 2
    line = capsys.readouterr().err.strip()
    assert "fewshot" in line and "another --out" in line, line
    assert cli.main(["sample", "--task", "humaneval", "--num-fewshot", "1", "--model", "smollm2-135m",
                     "--out", str(tmp_path / "he")]) == 2
    assert "--num-fewshot: expected 0: task humaneval has no training examples" in capsys.readouterr().err
