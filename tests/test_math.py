"""MATH / MATH-500: boxed extraction, answer equivalence over hand-written completion styles,
local data files, time limits and bad input."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.tasks import get_task
from harness.tasks.math import extract_answer, is_equiv, normalize

# (completion, gold, extracted answer, equivalent?)
STYLES = [
    # boxed forms
    (r"So $x = \boxed{5}$.", "5", "5", True),
    (r"\boxed{5}", "5", "5", True),
    (r"\boxed{ 5 }", "5", "5", True),
    (r"\fbox{5}", "5", "5", True),
    (r"\boxed {5}", "5", "5", True),
    (r"First \boxed{4}, no wait: \boxed{5}", "5", "5", True),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", r"\frac{1}{2}", True),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}", True),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)",
     r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"$$\boxed{x^{2}+2x+1}$$", r"x^2+2x+1", r"x^{2}+2x+1", True),
    (r"\boxed{5", "5", None, False),
    (r"\boxed{}", "5", None, False),
    # fractions, decimals, slashes
    (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", r"\dfrac{1}{2}", True),
    (r"\boxed{\tfrac{3}{4}}", r"\frac34", r"\tfrac{3}{4}", True),
    (r"\boxed{1/2}", r"\frac{1}{2}", "1/2", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", "0.5", True),
    (r"\boxed{.5}", r"\frac{1}{2}", ".5", True),
    (r"\boxed{\frac12}", r"\frac{1}{2}", r"\frac12", True),
    (r"\boxed{-\frac{2}{3}}", r"\frac{-2}{3}", r"-\frac{2}{3}", True),
    (r"\boxed{0.333}", r"\frac{1}{3}", "0.333", False),
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", r"\frac{2}{4}", True),
    (r"\boxed{2.50}", r"\frac{5}{2}", "2.50", True),
    (r"\boxed{10.0}", "10", "10.0", True),
    # radicals, pi, expressions
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", r"2\sqrt{3}", True),
    (r"\boxed{\sqrt2}", r"\sqrt{2}", r"\sqrt2", True),
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", True),
    (r"\boxed{2\pi}", r"2 \pi", r"2\pi", True),
    (r"\boxed{\frac{\pi}{4}}", r"\pi/4", r"\frac{\pi}{4}", True),
    (r"\boxed{6.283185307179586}", r"2\pi", "6.283185307179586", True),
    (r"\boxed{3.14}", r"\pi", "3.14", False),
    (r"\boxed{(x+1)^2}", r"x^2+2x+1", "(x+1)^2", True),
    (r"\boxed{x^2-1}", r"(x-1)(x+1)", "x^2-1", True),
    (r"\boxed{2x}", r"2y", "2x", False),
    (r"\boxed{2x}", "2", "2x", False),
    (r"\boxed{10^{-3}}", "0.001", "10^{-3}", True),
    (r"\boxed{5!}", "120", "5!", True),
    # LaTeX noise
    (r"\boxed{\left(2,3\right)}", "(2,3)", r"\left(2,3\right)", True),
    (r"\boxed{\!5}", "5", r"\!5", True),
    (r"\boxed{\displaystyle \frac{1}{2}}", r"\frac{1}{2}", r"\displaystyle \frac{1}{2}", True),
    (r"\boxed{5.}", "5", "5.", True),
    (r"\boxed{\$ 5}", "5", r"\$ 5", True),
    (r"\boxed{1,\!000}", "1000", r"1,\!000", True),
    (r"\boxed{1{,}000}", "1000", "1{,}000", True),
    (r"\boxed{10{,}000}", "10000", "10{,}000", True),
    # units, degrees, percent, text
    (r"\boxed{30^\circ}", "30", r"30^\circ", True),
    (r"\boxed{30^{\circ}}", "30", r"30^{\circ}", True),
    (r"\boxed{30°}", "30", "30°", True),
    (r"\boxed{5 \text{ cm}}", "5", r"5 \text{ cm}", True),
    (r"\boxed{12\text{ inches}^2}", "12", r"12\text{ inches}^2", True),
    (r"\boxed{5\text{ dollars}}", r"5", r"5\text{ dollars}", True),
    (r"\boxed{25\%}", "25", r"25\%", True),
    (r"\boxed{\text{(A)}}", r"\text{(A)}", r"\text{(A)}", True),
    (r"\boxed{\text{Monday}}", r"\text{Monday}", r"\text{Monday}", True),
    (r"\boxed{\text{(B)}}", r"\text{(A)}", r"\text{(B)}", False),
    (r"\boxed{6 \text{ meters}}", "7", r"6 \text{ meters}", False),
    # equations, tuples, intervals, lists
    (r"\boxed{x=5}", "5", "x=5", True),
    (r"\boxed{k = -2}", "-2", "k = -2", True),
    (r"\boxed{(1,2)}", "(1, 2)", "(1,2)", True),
    (r"\boxed{(2,1)}", "(1,2)", "(2,1)", False),
    (r"\boxed{(0.5, 2)}", r"\left(\frac{1}{2}, 2\right)", "(0.5, 2)", True),
    (r"\boxed{[1,2)}", "[1,2)", "[1,2)", True),
    (r"\boxed{[1,2]}", "[1,2)", "[1,2]", False),
    (r"\boxed{(-\infty, 3]}", r"(-\infty,3]", r"(-\infty, 3]", True),
    (r"\boxed{3, 1, 2}", "1,2,3", "3, 1, 2", True),
    (r"\boxed{1, 2}", "1,2,3", "1, 2", False),
    (r"\boxed{x \leq 3}", r"x \le 3", r"x \leq 3", True),
    # Minerva / chat / no-box styles
    ("Final Answer: The final answer is $5$. I hope it is correct.", "5", "5", True),
    (r"Final Answer: The final answer is $\frac{1}{2}$. I hope it is correct.", "0.5", r"\frac{1}{2}", True),
    ("The final answer is 7", "7", "7", True),
    ("**Final answer:** 7", "7", None, False),
    ("I think the answer might be 5 but I'm not sure.", "5", None, False),
    ("", "5", None, False),
    (r"<think>try 4... no, 5</think>\n\nThe answer is $\boxed{5}$.", "5", "5", True),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}",
     r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
    (r"\boxed{4}", "5", "4", False),
    (r"\boxed{-5}", "5", "-5", False),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", r"\frac{1}{2}", False),
]


def test_style_table_is_large_enough():
    assert len(STYLES) >= 60


@pytest.mark.parametrize("completion,gold,extracted,equivalent", STYLES)
def test_extraction_and_equivalence(completion, gold, extracted, equivalent):
    got = extract_answer(completion)
    assert got == extracted
    assert is_equiv(got, gold) is equivalent


def test_strict_mode_needs_a_box():
    text = "Final Answer: The final answer is $5$. I hope it is correct."
    assert extract_answer(text, "strict") is None
    assert extract_answer(r"\boxed{5}", "strict") == "5"


def test_normalize_is_idempotent():
    for completion, gold, _, _ in STYLES:
        for s in (completion, gold):
            assert normalize(normalize(s)) == normalize(s)


def test_huge_expressions_are_refused_fast():
    start = time.perf_counter()
    assert not is_equiv(r"9^{9^{9^{9}}}", r"9^{9^{9^{9}}}+1")
    assert not is_equiv("x" * 500, "y" * 500)
    assert time.perf_counter() - start < 10


def test_math_verify_verdicts_in_worker_threads():
    """math-verify's own signal time-outs raise outside the main thread; ours are off there."""
    pairs = [(r"\{1, 2, 3\}", r"\{3, 2, 1\}", True), (r"(3, \infty) \cup (-\infty, 2)", r"(-\infty,2)\cup(3,\infty)", True),
             (r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}", r"\begin{pmatrix}1\\-2\end{pmatrix}", True), (r"-\infty", r"\infty", False)]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda p: is_equiv(p[0], p[1]), pairs))
    assert got == [ok for _, _, ok in pairs]


MATH_ROWS = [
    {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "We have $\\frac{1}{2}+\\frac{1}{4} = \\frac{2}{4}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$."},
    {"problem": "Find the vertex of $y=(x-1)^2+2$.", "level": "Level 2", "type": "Algebra",
     "solution": "In vertex form, the vertex is $\\boxed{(1,2)}$."},
]
MATH500_ROWS = [
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
     "solution": "We have $r = 3$ and $\\theta = \\frac{\\pi}{2}$, so the answer is "
                 "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_files_problems_and_check(tmp_path):
    task = get_task("math", data_files=write(tmp_path / "math.jsonl", MATH_ROWS))
    ps = task.problems()
    assert [p.answer for p in ps] == [r"\frac{3}{4}", "(1,2)"]
    assert ps[0].prompt == "Problem:\nWhat is $\\frac{1}{2}+\\frac{1}{4}$?\n\nSolution:"
    assert ps[0].meta == {"level": "Level 1", "type": "Prealgebra"}
    assert task.check(ps[0], r" $0.75$ so \boxed{0.75}").correct
    assert not task.check(ps[1], r"\boxed{(2,1)}").correct
    v = task.check(ps[1], "no idea")
    assert v.answer is None and not v.correct
    m500 = get_task("math500", data_files=write(tmp_path / "m500.jsonl", MATH500_ROWS))
    (p,) = m500.problems()
    assert p.id == "math500/test/precalculus/807.json" and p.meta["subject"] == "Precalculus"
    assert m500.check(p, r"The polar form is \boxed{(3, \pi/2)}").correct
    assert m500.source.endswith("m500.jsonl") and get_task("math500").source == "hf:HuggingFaceH4/MATH-500:test"


def test_bad_input(tmp_path):
    rows = [MATH_ROWS[0], {**MATH_ROWS[1], "solution": "The vertex is (1,2)."}]
    with pytest.raises(ValueError, match=r"math row 1: field 'solution' has no \\boxed"):
        get_task("math", data_files=write(tmp_path / "m.jsonl", rows)).problems()
    no_answer = [{k: v for k, v in MATH500_ROWS[0].items() if k != "answer"}]
    with pytest.raises(ValueError, match=r"m5\.jsonl:1: missing field 'answer'"):
        get_task("math500", data_files=write(tmp_path / "m5.jsonl", no_answer)).problems()
    with pytest.raises(ValueError, match="mode: expected 'strict' or 'flexible'"):
        get_task("math", mode="loose")
