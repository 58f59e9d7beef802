"""HumanEval and MBPP: real data, judged in the sandbox."""

from __future__ import annotations

import ast
import json

import pytest

from harness.tasks import get_task
from harness.tasks.base import Problem
from harness.tasks.code import HumanEval, truncate


def without_returns(problem: Problem) -> str:
    """The canonical completion with every ``return <expr>`` of the entry-point function (nested
    defs, lambdas and classes excluded) replaced by ``return None``: same control flow, no value."""
    src = problem.prompt + problem.answer
    fn = [n for n in ast.parse(src).body
          if isinstance(n, ast.FunctionDef) and n.name == problem.meta["entry_point"]][-1]
    returns, todo = [], [fn]
    while todo:
        for child in ast.iter_child_nodes(todo.pop()):
            if isinstance(child, ast.Return):
                returns.append(child)
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.append(child)
    assert returns, f"{problem.id}: no return statement"
    lines = src.splitlines(keepends=True)
    for r in sorted(returns, key=lambda r: (r.lineno, r.col_offset), reverse=True):
        first, last = r.lineno - 1, r.end_lineno - 1
        lines[first:last + 1] = [lines[first][:r.col_offset] + "return None" + lines[last][r.end_col_offset:]]
    out = "".join(lines)
    assert out.startswith(problem.prompt), problem.id  # every change is inside the completion
    return out[len(problem.prompt):]


@pytest.fixture(scope="module")
def humaneval():
    task = get_task("humaneval", timeout=3.0)
    yield task
    task.close()


def test_humaneval_data(humaneval):
    problems = humaneval.problems()
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    for p in problems:
        assert p.answer == p.answer_span and p.meta["entry_point"] in p.prompt
        assert f"def {p.meta['entry_point']}(" in p.prompt and "def check(candidate)" in p.meta["test"]
        assert truncate(p.answer, humaneval.stop) == p.answer  # stops never cut a real solution


def test_all_canonical_solutions_pass_and_fail_without_their_returns(humaneval):
    problems = humaneval.problems()
    items = [(p, p.answer) for p in problems] + [(p, without_returns(p)) for p in problems]
    verdicts = humaneval.check_many(items)
    good, broken = verdicts[:164], verdicts[164:]
    assert [p.id for p, v in zip(problems, good) if not v.correct] == []
    assert [p.id for p, v in zip(problems, broken) if v.correct] == []
    for p, v in zip(problems, broken):  # they fail on a test, not on a broken transform
        assert v.answer == "failed" and not v.message.startswith("failed: SyntaxError"), (p.id, v)


def test_check_cuts_at_stop_and_reports_reasons():
    task = HumanEval(limit=2, timeout=1.0, workers=1)
    try:
        first = task.problems()[0]
        assert len(task.problems()) == 2
        ok = task.check(first, first.answer + "\ndef trailing_garbage(:\n")
        assert ok.correct and ok.answer == "passed"
        hang = task.check(first, "    while True:\n        pass\n")
        assert (hang.correct, hang.answer) == (False, "timeout") and "time limit" in hang.message
        crash = task.check(first, "    return 1 / 0\n")
        assert (crash.correct, crash.message) == (False, "failed: ZeroDivisionError: division by zero")
    finally:
        task.close()


# Rows of MBPP's test split (task ids 11, 12, 17) in its own field layout, plus one row that
# exercises test_setup_code.
MBPP_ROWS = [
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character from the string.",
     "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) - 1,-1,-1):  \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
     "test_list": ["assert remove_Occ(\"hello\",\"l\") == \"heo\"", "assert remove_Occ(\"abcda\",\"a\") == \"bcd\"", "assert remove_Occ(\"PHP\",\"P\") == \"H\""],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to sort a given matrix in ascending order according to the sum of its rows.",
     "code": "def sort_matrix(M):\r\n    result = sorted(M, key=sum)\r\n    return result",
     "test_list": ["assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]])==[[1, 1, 1], [1, 2, 3], [2, 4, 5]]", "assert sort_matrix([[1, 2, 3], [-2, 4, -5], [1, -1, 1]])==[[-2, 4, -5], [1, -1, 1], [1, 2, 3]]", "assert sort_matrix([[5,8,9],[6,4,3],[2,1,4]])==[[2, 1, 4], [6, 4, 3], [5, 8, 9]]"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 17, "text": "Write a function to find the perimeter of a square.",
     "code": "def square_perimeter(a):\r\n  perimeter=4*a\r\n  return perimeter",
     "test_list": ["assert square_perimeter(10)==40", "assert square_perimeter(5)==20", "assert square_perimeter(4)==16"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 9001, "text": "Write a function to find the area of a circle of radius r.",
     "code": "class Circle:\r\n    def __init__(self, r):\r\n        self.r = r\r\ndef circle_area(r):\r\n    return pi * Circle(r).r ** 2",
     "test_list": ["assert isclose(circle_area(2), 12.566370614359172)"],
     "test_setup_code": "from math import pi, isclose", "challenge_test_list": []},
]


@pytest.fixture(scope="module")
def mbpp(tmp_path_factory):
    path = tmp_path_factory.mktemp("mbpp") / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    task = get_task("mbpp", data_files=str(path), timeout=2.0, workers=2)
    yield task
    task.close()


def test_mbpp_problems_and_prompt(mbpp):
    problems = mbpp.problems()
    assert [p.id for p in problems] == ["mbpp/11", "mbpp/12", "mbpp/17", "mbpp/9001"]
    p = problems[1]
    assert p.prompt == ('"""\nWrite a function to sort a given matrix in ascending order according to '
                        'the sum of its rows.\n' + MBPP_ROWS[1]["test_list"][0] + '\n"""\n')
    assert p.meta["entry_point"] == "sort_matrix" and p.answer_span == MBPP_ROWS[1]["code"]
    assert problems[3].meta["entry_point"] == "isclose"  # the first name called in the assert


def test_mbpp_gold_passes_and_wrong_code_fails(mbpp):
    problems = mbpp.problems()
    wrong = {"mbpp/11": "def remove_Occ(s, ch):\n    return s[1:-1]",
             "mbpp/12": "def sort_matrix(M):\n    return sorted(M)",
             "mbpp/17": "def square_perimeter(a):\n    return a * a",
             "mbpp/9001": "def circle_area(r):\n    return 3.14 * r * r"}
    verdicts = mbpp.check_many([(p, p.answer) for p in problems] + [(p, wrong[p.id]) for p in problems])
    assert [v.correct for v in verdicts] == [True] * 4 + [False] * 4
    assert all(v.message.startswith("failed: AssertionError") for v in verdicts[4:])
    # text after a stop sequence (a model repeating the tests) is cut before the run
    assert mbpp.check(problems[2], problems[2].answer + "\nassert square_perimeter(1) == 5").correct


def test_mbpp_malformed_file_names_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    row = {k: v for k, v in MBPP_ROWS[0].items() if k != "test_list"}
    path.write_text(json.dumps(MBPP_ROWS[1]) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl.*2.*test_list"):
        get_task("mbpp", data_files=str(path)).problems()


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError, match="limit"):
        HumanEval(limit=0)
    with pytest.raises(ValueError, match="timeout"):
        HumanEval(timeout=-1)
