"""LAMBADA, ARC-Easy, SciQ, OpenBookQA from local JSON-lines files in each dataset's real field
layout (read line by line, as every local data file is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness.tasks import get_task
from harness.tasks.base import Task, provenance

ROWS = {
    "lambada": [
        {"text": "In my palm is a clear stone, and inside it is a small ivory statuette. A guardian "
                 "angel.\n\n\"Figured if you're going to be out at night getting hit by cars, you "
                 "might as well have some backup.\"\n\nI look at him, feeling stunned. Like this is "
                 "some sort of sign. But as I stare at Harlin, his mouth curved in a confident grin, "
                 "I don't care about signs"},
        {"text": "Give me a minute to change and I'll meet you at the docks.\" She'd forced those "
                 "words through her teeth.\n\n\"No need to change. We won't be that long.\"\n\nShane "
                 "gripped her arm and started leading her to the dock.\n\n\"I can make it there on "
                 "my own, Shane"},
    ],
    "arc_easy": [
        {"id": "Mercury_7175875", "question": "An astronomer observes that a planet rotates faster "
         "after a meteorite impact. Which is the most likely effect of this increase in rotation?",
         "choices": {"text": ["Planetary density will decrease.", "Planetary years will become longer.",
                              "Planetary days will become shorter.", "Planetary gravity will become stronger."],
                     "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
        {"id": "NYSEDREGENTS_2015_4_8", "question": "Which object is the best conductor of electricity?",
         "choices": {"text": ["a wax crayon", "a plastic spoon", "a rubber eraser", "an iron nail"],
                     "label": ["1", "2", "3", "4"]}, "answerKey": "4"},
    ],
    "openbookqa": [
        {"id": "8-343", "question_stem": "A person wants to start saving money so that they can "
         "afford a nice vacation at the end of the year. After looking over their budget and "
         "expenses, they decide the best way to save money is to",
         "choices": {"text": ["make more phone calls", "quit eating lunch out", "buy less with "
                              "monopoly money", "have lunch with friends"], "label": ["A", "B", "C", "D"]},
         "answerKey": "B"},
        {"id": "1129", "question_stem": "There is most likely going to be fog around:",
         "choices": {"text": ["a marsh", "a tundra", "the plains", "a desert"],
                     "label": ["A", "B", "C", "D"]}, "answerKey": "A"},
    ],
    "sciq": [
        {"question": "What type of organism is commonly used in preparation of foods such as cheese "
         "and yogurt?", "distractor3": "viruses", "distractor1": "protozoa", "distractor2": "gymnosperms",
         "correct_answer": "mesophilic organisms",
         "support": "Mesophiles grow best in moderate temperature, typically between 25°C and 40°C."},
        {"question": "What is the least dangerous radioactive decay?", "distractor3": "zeta decay",
         "distractor1": "beta decay", "distractor2": "gamma decay", "correct_answer": "alpha decay",
         "support": ""},
    ],
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {name: write_jsonl(tmp_path / f"{name}.jsonl", rows) for name, rows in ROWS.items()}


def test_prompt_formats_and_gold_spans(files):
    arc = get_task("arc_easy", data_files=str(files["arc_easy"])).problems()
    assert arc[0].prompt == ("Question: An astronomer observes that a planet rotates faster after a "
                             "meteorite impact. Which is the most likely effect of this increase in "
                             "rotation?\nAnswer:")
    assert arc[0].answer_span == " Planetary days will become shorter."
    assert arc[1].answer == "an iron nail" and arc[1].meta["gold"] == 3  # numeric answer keys
    assert arc[0].id == "arc_easy/Mercury_7175875"

    obqa = get_task("openbookqa", data_files=files["openbookqa"]).problems()
    assert obqa[1].prompt == "There is most likely going to be fog around:"
    assert obqa[1].answer_span == " a marsh" and obqa[0].answer == "quit eating lunch out"

    sciq = get_task("sciq", data_files=[files["sciq"]]).problems()
    assert sciq[0].prompt == ("Mesophiles grow best in moderate temperature, typically between 25°C "
                              "and 40°C.\nQuestion: What type of organism is commonly used in "
                              "preparation of foods such as cheese and yogurt?\nAnswer:")
    assert sciq[0].answer_span == " mesophilic organisms"
    assert sciq[1].prompt.startswith("\nQuestion: What is the least")

    lam = get_task("lambada", data_files=files["lambada"]).problems()
    assert lam[0].prompt.endswith("I don't care about") and lam[0].answer_span == " signs"
    assert lam[1].answer == "Shane" and ROWS["lambada"][1]["text"] == lam[1].prompt + lam[1].answer_span


def test_sampling_mode_check(files):
    arc = get_task("arc_easy", data_files=files["arc_easy"])
    p = arc.problems()[1]
    assert arc.check(p, " An iron nail.\nQuestion: next").correct
    assert arc.check(p, "iron nail").correct  # articles and case do not matter
    assert not arc.check(p, " a wax crayon").correct
    assert not arc.check(p, " an iron nail and a crayon").correct
    lam = get_task("lambada", data_files=files["lambada"])
    q = lam.problems()[1]
    assert lam.check(q, ' Shane."\n\n"Fine').correct
    assert not lam.check(q, " Shan").correct
    assert lam.check(q, "   ").answer is None


def test_limit_protocol_and_provenance(files):
    for name, path in files.items():
        task = get_task(name, data_files=path, limit=1)
        assert isinstance(task, Task)
        ps = task.problems()
        assert len(ps) == 1 and str(path) in task.source
        assert provenance(task, ps)["template"] == task.template
    hub = get_task("arc_easy")
    assert hub.source == "hf:allenai/ai2_arc/ARC-Easy:test"  # nothing is downloaded until problems()


def test_malformed_file_names_line_and_field(tmp_path):
    rows = [dict(ROWS["sciq"][0]), {k: v for k, v in ROWS["sciq"][1].items() if k != "correct_answer"}]
    bad = write_jsonl(tmp_path / "sciq.jsonl", rows)
    with pytest.raises(ValueError, match=r"sciq\.jsonl:2: missing field 'correct_answer'"):
        get_task("sciq", data_files=bad).problems()
    broken = tmp_path / "arc.jsonl"
    broken.write_text(json.dumps(ROWS["arc_easy"][0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"arc\.jsonl:2: not valid JSON"):
        get_task("arc_easy", data_files=broken).problems()
    nested = write_jsonl(tmp_path / "obqa.jsonl", [{**ROWS["openbookqa"][0], "choices": {"text": ["x"]}}])
    with pytest.raises(ValueError, match=r"obqa\.jsonl:1: missing field 'choices.label'"):
        get_task("openbookqa", data_files=nested).problems()
    key = write_jsonl(tmp_path / "key.jsonl", [{**ROWS["arc_easy"][0], "answerKey": "E"}])
    with pytest.raises(ValueError, match=r"arc_easy row 0: field 'answerKey' = 'E'"):
        get_task("arc_easy", data_files=key).problems()
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        get_task("lambada", data_files=tmp_path / "nowhere.jsonl").problems()


def test_t2_tasks_lists_sizes_versions_and_sources(files, capsys):
    from harness.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["arc_easy"][1:3] == ["hub", "1"] and lines["knowledge"][1] == "1000"
    assert "synthetic:spatial" in lines["spatial"][3] and "lm-eval:<task>" in lines
    assert main(["tasks", "sciq", "--data-files", str(files["sciq"])]) == 0
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert row.split()[:3] == ["sciq", "2", "1"] and row.endswith("sciq.jsonl")
    assert main(["tasks", "sciqq"]) == 2
    assert "did you mean sciq" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["arc_easy", "openbookqa", "sciq"])
def test_few_shot_example_from_the_train_split(tmp_path, name):
    first, second = ROWS[name]
    train, test = write_jsonl(tmp_path / "train.jsonl", [first]), write_jsonl(tmp_path / "test.jsonl", [second])
    task = get_task(name, data_files=f"train={train},test={test}", num_fewshot=1)
    (p,) = task.problems()
    (shot,) = get_task(name, data_files=str(train)).problems()
    (zero,) = get_task(name, data_files=str(test)).problems()
    assert p.prompt == shot.prompt + shot.answer_span + "\n\n" + zero.prompt  # lm-eval's layout
    assert (p.answer, p.answer_span) == (zero.answer, zero.answer_span)
    assert task.fewshot == {"n": 1, "seed": 0, "split": "train", "source": str(train), "ids": [0]}
    validation = get_task(name, data_files=f"validation={train},test={test}", num_fewshot=1)
    assert validation.problems()[0].prompt == p.prompt and validation.fewshot["split"] == "validation"
