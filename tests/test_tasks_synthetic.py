"""Synthetic tasks: determinism, distinct seeds, answers checked by independent solvers, corpora
disjoint from held-out questions, shift knob, verifier."""

from __future__ import annotations

import re

import pytest
from harness.tasks import get_task
from harness.tasks.base import Task, provenance

NAMES = ["knowledge", "arithmetic", "causal", "spatial"]


def solve_arithmetic(prompt: str) -> str:
    steps = re.findall(r"(Start at|Add|Subtract|Multiply by) (\d+)\.", prompt)
    value = 0
    for op, x in steps:
        x = int(x)
        value = {"Start at": x, "Add": value + x, "Subtract": value - x, "Multiply by": value * x}[op]
        assert value >= 0
    return str(value)


def solve_spatial(prompt: str) -> str:
    right_of: dict[str, str] = {}
    for a, rel, b in re.findall(r"The (\w+) is (left|right) of the (\w+)\.", prompt):
        left, right = (a, b) if rel == "left" else (b, a)
        right_of[left] = right
    (start,) = set(right_of) - set(right_of.values())
    row = [start]
    while row[-1] in right_of:
        row.append(right_of[row[-1]])
    if m := re.search(r"far (left|right) is the$", prompt):
        return row[0] if m.group(1) == "left" else row[-1]
    m = re.search(r"The object (just|(\d+) places) (left|right) of the (\w+) is the$", prompt)
    distance = 1 if m.group(1) == "just" else int(m.group(2))
    i = row.index(m.group(4)) + (distance if m.group(3) == "right" else -distance)
    assert 0 <= i < len(row)
    return row[i]


def causal_rules(task) -> dict[str, str]:
    """cause event -> effect event, read from the task's own training corpus."""
    rules = {}
    for doc in task.corpus(200):
        for cause, effect in re.findall(r"^When (.+?), (.+?)\.$", doc, flags=re.M):
            rules[cause] = effect
    return rules


def solve_causal(prompt: str, rules: dict[str, str]) -> str:
    cause, subject = re.fullmatch(r"\w+ \w+ that (.+)\. So (.+)", prompt).groups()
    event = cause
    while event in rules:
        event = rules[event]
        if event.startswith(subject + " "):
            return event[len(subject) + 1:]
    raise AssertionError(f"no effect for {prompt!r}")


def test_same_seed_same_questions_distinct_seeds_distinct():
    for name in NAMES:
        a, b, c = (get_task(name, seed=s, n=200).problems() for s in (0, 0, 1))
        assert [p.prompt for p in a] == [p.prompt for p in b]
        assert [p.answer for p in a] == [p.answer for p in b]
        assert len({p.prompt for p in a} & {p.prompt for p in c}) < len(a) // 2, name


def test_default_size_ids_and_spans():
    for name in NAMES:
        task = get_task(name)
        assert isinstance(task, Task)
        ps = task.problems()
        assert len(ps) == 1000 and len({p.prompt for p in ps}) == 1000
        assert len({p.id for p in ps}) == 1000
        for p in ps:
            assert p.answer_span == " " + p.answer and " " not in p.answer and p.answer
        prov = provenance(task, ps)
        assert prov["n_problems"] == 1000 and len(prov["problems_sha256"]) == 64


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_arithmetic_answers_by_independent_solver(shift):
    for p in get_task("arithmetic", n=300, shift=shift).problems():
        assert solve_arithmetic(p.prompt) == p.answer, p.prompt


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_spatial_answers_by_independent_solver(shift):
    for p in get_task("spatial", n=300, shift=shift).problems():
        assert solve_spatial(p.prompt) == p.answer, p.prompt


@pytest.mark.parametrize("shift", [0, 1])
def test_causal_answers_follow_the_corpus_rules(shift):
    task = get_task("causal", n=300, shift=shift)
    rules = causal_rules(task)
    for p in task.problems():
        assert solve_causal(p.prompt, rules) == p.answer, p.prompt


def test_knowledge_answers_are_stated_in_the_corpus_biographies():
    """Every question's fact is stated in one epoch of the corpus (recall, not inference), never
    contradicted, and the shifted questions ask the same facts in a phrasing the corpus lacks."""
    task = get_task("knowledge", n=100, people=40)
    corpus = "\n".join(task.corpus(5))  # 5 docs x 8 biographies = one epoch of 40 persons
    stated: dict[str, str] = {}
    for person, city in re.findall(r"(\w+) lives in (\w+)\.", corpus):
        assert stated.setdefault(person, city) == city
    assert len(stated) == 40
    questions = [p for p in task.problems() if p.prompt.endswith(" lives in")]
    assert len(questions) == 20
    for p in questions:
        assert stated[p.prompt.split()[0]] == p.answer
    shifted = get_task("knowledge", n=100, people=40, shift=1).problems()
    assert all(p.prompt not in corpus for p in shifted)
    with pytest.raises(ValueError, match="people"):
        get_task("knowledge", n=100, people=10)


def test_corpus_never_contains_a_held_out_prompt():
    """Reasoning tasks hold their questions out of the corpus (knowledge asks facts the corpus
    states, tested above)."""
    for name in NAMES[1:]:
        task = get_task(name, n=300)
        corpus = "\n".join(task.corpus(300))
        lines = set(corpus.splitlines())
        for p in task.problems():
            assert f"{p.prompt} {p.answer}." not in lines
            if name != "spatial":  # spatial prompts are sentence lists, checked line-wise above
                assert p.prompt not in corpus, (name, p.prompt)


def test_corpus_is_in_the_question_style():
    task = get_task("arithmetic")
    docs = task.corpus(5, seed=3)
    assert len(docs) == 5 and docs == task.corpus(5, seed=3) and docs != task.corpus(5, seed=4)
    for line in "\n".join(docs).splitlines():
        prompt, answer = line.rsplit(" ", 1)
        assert solve_arithmetic(prompt) == answer.rstrip(".")


def test_shift_moves_the_distribution():
    def mean_steps(shift):
        ps = get_task("arithmetic", n=200, shift=shift).problems()
        return sum(p.prompt.count(".") for p in ps) / len(ps)

    assert mean_steps(1) > mean_steps(0) + 0.5
    big = [int(p.answer) for p in get_task("arithmetic", n=200, shift=2).problems()]
    assert max(big) > 200
    rows = [p.prompt.count(" of the ") for p in get_task("spatial", n=200, shift=2).problems()]
    assert min(rows) >= 6
    knowledge = get_task("knowledge", n=50, shift=1).problems()
    base = get_task("knowledge", n=50).problems()
    assert [p.answer for p in knowledge] == [p.answer for p in base]
    assert all(a.prompt != b.prompt for a, b in zip(knowledge, base))


def test_check_first_word_exact_match():
    task = get_task("causal", n=5)
    p = task.problems()[0]
    assert task.check(p, f" {p.answer}.\nMore text").correct
    assert task.check(p, f" {p.answer.upper()}").correct
    assert not task.check(p, f" not {p.answer}").correct
    assert task.check(p, "").answer is None and not task.check(p, "").correct
    arith = get_task("arithmetic", n=5)
    q = arith.problems()[0]
    assert arith.check(q, f" {q.answer}. Then").correct
    assert not arith.check(q, f" {int(q.answer) + 1}").correct


def test_bad_options_and_unknown_names():
    with pytest.raises(ValueError, match="n: expected a positive number of questions"):
        get_task("spatial", n=0)
    with pytest.raises(ValueError, match="fewer than"):
        get_task("causal", n=5000, shift=1).problems()
    with pytest.raises(ValueError, match="did you mean.*arithmetic"):
        get_task("arithmatic")


@pytest.mark.parametrize("name", ["knowledge", "arithmetic", "causal", "spatial"])
def test_few_shot_examples_are_training_questions_in_corpus_form(name):
    task = get_task(name, n=50, shift=1, num_fewshot=3, fewshot_seed=5)
    shot, zero = task.problems(), get_task(name, n=50, shift=1).problems()
    context = shot[0].prompt[: -len(zero[0].prompt)]
    assert all(s.prompt == context + z.prompt for s, z in zip(shot, zero, strict=True))
    assert [(s.id, s.answer) for s in shot] == [(z.id, z.answer) for z in zero]
    lines = context.splitlines()
    held = {p.prompt for p in get_task(name, n=50).problems()} | {z.prompt for z in zero}
    assert len(lines) == 3 and all(line.endswith(".") and " " in line for line in lines)
    assert not any(line.rsplit(" ", 1)[0] in held for line in lines)  # no held-out question is a shot
    assert task.fewshot["n"] == 3 and task.fewshot["seed"] == 5 and task.fewshot["split"] == "train"
    corpus = "\n".join(get_task(name, n=50).corpus(200)) if name == "knowledge" else None
    if corpus is not None:  # knowledge: each shot is a cloze line the corpus trains on
        assert all(line in corpus for line in lines)
