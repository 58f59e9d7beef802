r"""MATH (Hendrycks et al. 2021) and MATH-500: competition problems judged by answer equivalence.

Data: local JSON-lines ``data_files`` or the hub — MATH: ``DigitalLearningGmbH/MATH-lighteval``
(the competition_math fields problem/solution/level/type; gold = last \boxed{} of the solution),
MATH-500: ``HuggingFaceH4/MATH-500`` (problem/solution/answer; gold = ``answer``). Few-shot
(``num_fewshot``): worked examples of the train split (MATH-500: MATH's), "Problem: ...\n\nSolution: ..."
blocks separated by a blank line.
Prompt: "Problem:\n{problem}\n\nSolution:" (lm-eval's minerva_math form); the likelihood span is
the gold solution.

Extraction: the last \boxed{...} or \fbox{...} (nested braces kept whole); in ``flexible`` mode
(the default), else the text after the last "final answer is" (Minerva's "Final Answer: The final
answer is $x$. I hope it is correct."). Equivalence: equal after LaTeX normalisation
(:func:`normalize`: units, degrees, trailing period), else equal by ``math-verify`` (sympy-based:
sets, intervals, tuples, matrices, equations, numbers to 6 decimals), with a time limit per comparison.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.errors import DataError, InvalidSetting

from .answers import DataFiles, last_boxed
from .base import Problem, Verdict
from .rows import RowsTask

_TIME_LIMIT_S = 2.0
_MAX_LEN = 200  # longer answers are compared as strings only

_FINAL = re.compile(r"final answer is\s*:?\s*(.+?)(?:\.?\s*I hope it is correct|$)", re.IGNORECASE | re.DOTALL)


def extract_answer(completion: str, mode: str = "flexible") -> str | None:
    """The completion's final answer as a LaTeX string (None if none is found)."""
    if mode not in ("strict", "flexible"):
        raise InvalidSetting("mode", mode, "'strict' or 'flexible' (math)")
    boxed = last_boxed(completion)
    if boxed:
        return boxed[1].strip() or None
    if mode == "flexible":
        matches = list(_FINAL.finditer(completion))
        if matches:
            return matches[-1].group(1).strip().strip("$").strip() or None
    return None


_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_UNIT_TEXT = re.compile(r"\\(?:text|mbox|mathrm)\s*\{\s*(?:[a-zA-Z]+\.?\s*)+\}(?:\^\{?\d\}?)?$")
_UNIT_WORDS = re.compile(r"^(-?[\d.,]*\d)\s+[a-zA-Z]{2,}(?:\s+[a-zA-Z]+)*\.?(?:\^\{?\d\}?)?$")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_HALF = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\w)")
_SLASH = re.compile(r"^(-?\d+)/(\d+)$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_LHS = re.compile(r"^[a-zA-Z]\w?(?:_\w)?\s*=\s*")


def normalize(s: str) -> str:
    r"""Canonical LaTeX answer: no \left/\right, spacing commands, $, \text{} wrappers, degree
    signs, units after a number, %, trailing period or spaces; \dfrac/\tfrac -> \frac, \frac12 ->
    \frac{1}{2}, a/b -> \frac{a}{b}, .5 -> 0.5, 1,000 -> 1000, "x = 3" -> 3."""
    s = s.strip()
    for old, new in (("\\!", ""), ("\\left", ""), ("\\right", ""), ("\\displaystyle", ""),
                     ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\$", ""), ("$", ""),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("°", ""), ("\\degree", ""),
                     ("\\%", ""), ("%", ""), ("\\,", " "), ("\\;", " "), ("\\:", " "), ("\\ ", " "),
                     ("\\leqslant", "\\le"), ("\\geqslant", "\\ge"), ("\\leq", "\\le"), ("\\geq", "\\ge")):
        s = s.replace(old, new)
    if re.search(r"\d", unitless := _UNIT_TEXT.sub("", s)):
        s = unitless
    s = _TEXT.sub(r"\1", s).strip().rstrip(".").strip()
    s = _LHS.sub("", s)
    if m := _UNIT_WORDS.match(s):
        s = m.group(1)
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = "".join(s.split())
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _SLASH.sub(r"\\frac{\1}{\2}", s)
    s = re.sub(r"(^|[^\d])\.(\d)", r"\g<1>0.\2", s)
    if re.fullmatch(r"-?\d+\.\d*", s):
        s = s.rstrip("0").rstrip(".")
    return s


class _Timeout(BaseException):
    """A BaseException, so that libraries catching Exception (math-verify does) cannot swallow it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM-based limit in the main thread; elsewhere inputs are only bounded by _MAX_LEN."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(*_: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _drop_own_timeout_notice(record: logging.LogRecord) -> bool:
    """False for math-verify's one-time notice that its time-outs are off (ours bound it)."""
    return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_drop_own_timeout_notice)


def math_verify_equiv(answer: str | None, gold: str) -> bool:
    """math-verify's verdict (Hugging Face's checker, as in lighteval) with each answer read as
    ``\\boxed{...}``. Its own signal-based time-outs are off (they raise outside the main thread);
    :func:`_time_limit` bounds parse + verify instead. Never raises: failure or time-out = not equal."""
    if answer is None or len(answer) > _MAX_LEN or len(gold) > _MAX_LEN:
        return False
    from math_verify import parse, verify

    try:
        with _time_limit(_TIME_LIMIT_S):
            parsed_gold, parsed = (parse(f"\\boxed{{{s}}}", parsing_timeout=None) for s in (gold, answer))
            return bool(verify(parsed_gold, parsed, timeout_seconds=None))
    except (Exception, _Timeout):
        return False


def is_equiv(answer: str | None, gold: str) -> bool:
    """Whether a LaTeX answer equals the gold one: equal after :func:`normalize`, else by
    math-verify (comparison with the former hand-written checker: results/bench/math_verify.md)."""
    return answer is not None and (normalize(answer) == normalize(gold) or math_verify_equiv(answer, gold))


class MATH(RowsTask):
    name = "math"
    version = "1"
    hub: tuple[str, str | None, str] = ("DigitalLearningGmbH/MATH-lighteval", "default", "test")
    train_hub = ("DigitalLearningGmbH/MATH-lighteval", "default", "train")
    fields: tuple[str, ...] = ("problem", "solution")
    stop = ("Problem:",)
    template = "Problem:\n{problem}\n\nSolution: {solution}"

    def __init__(self, data_files: DataFiles = None, mode: str = "flexible", limit: int | None = None,
                 num_fewshot: int = 0, fewshot_seed: int = 0, **_: Any) -> None:
        if mode not in ("strict", "flexible"):
            raise InvalidSetting("mode", mode, f"'strict' or 'flexible' ({self.name})")
        super().__init__(data_files, limit, num_fewshot, fewshot_seed)
        self.mode = mode

    def _gold(self, i: int, row: dict) -> str:
        boxed = last_boxed(row["solution"])
        if not boxed:
            raise DataError(f"{self.name} row {i}: field 'solution' has no \\boxed{{}} answer")
        return boxed[1].strip()

    def _problem(self, i: int, row: dict) -> Problem:
        return Problem(f"{self.name}/{row.get('unique_id') or i}", f"Problem:\n{row['problem']}\n\nSolution:",
                       self._gold(i, row), " " + row["solution"],
                       {k: row[k] for k in ("level", "type", "subject") if k in row})

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = extract_answer(completion, self.mode)
        if got is None:
            return Verdict(None, False, f"no answer found ({self.mode})")
        ok = is_equiv(got, problem.answer)
        return Verdict(got, ok, "equivalent" if ok else f"expected {problem.answer}")


class MATH500(MATH):
    """MATH-500 (a subset of MATH's test set): gold = ``answer``; few-shot examples are MATH's
    train rows (gold = their solution's last \\boxed{})."""

    name = "math500"
    hub = ("HuggingFaceH4/MATH-500", None, "test")
    fields = ("problem", "solution", "answer")
    train_fields = MATH.fields

    def _gold(self, i: int, row: dict) -> str:
        return row["answer"].strip() if "answer" in row else super()._gold(i, row)
