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
answer is $x$. I hope it is correct."). Equivalence, in order: equal after LaTeX normalisation
(:func:`normalize`); tuples / intervals / lists element-wise; equal as sympy expressions, checked
numerically at fixed points (|a - b| <= 1e-9 (1 + |b|)), with a time limit per comparison.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
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


def _split_top(s: str) -> list[str]:
    """Split at commas not inside brackets or braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return parts + [s[start:]]


def _elements(s: str) -> tuple[str, list[str]]:
    """(bracket pair, elements) of a tuple or interval like "(a,b]"; ("", elements) otherwise."""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and len(inner := _split_top(s[1:-1])) > 1:
        return s[0] + s[-1], inner
    return "", _split_top(s)


class _Timeout(Exception):
    pass


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


_POINTS = (0.3711, 1.2519, 2.7183)


@lru_cache(maxsize=1)
def _parse_latex() -> Callable[[str], Any]:
    """sympy's LaTeX parser (lark backend: no antlr4 version pinning), warmed up once: building
    its grammar takes seconds, which must not count against a comparison's time limit."""
    from sympy.parsing.latex import parse_latex

    parse = partial(parse_latex, backend="lark")
    parse("1")
    return parse


def _sympy_equal(a: str, b: str) -> bool:
    """a == b as expressions: parsed with sympy's LaTeX parser, compared at fixed numeric points."""
    from sympy import N

    pi = "(3.14159265358979323846)"
    x, y = (_parse_latex()(t.replace("\\pi", pi)) for t in (a, b))
    symbols = sorted(x.free_symbols | y.free_symbols, key=str)
    if x.free_symbols != y.free_symbols:
        return False
    for shift in range(len(_POINTS)):
        point = {sym: _POINTS[(i + shift) % len(_POINTS)] for i, sym in enumerate(symbols)}
        xv, yv = complex(N(x.subs(point), 30)), complex(N(y.subs(point), 30))
        if abs(xv - yv) > 1e-9 * (1 + abs(yv)):
            return False
        if not symbols:
            break
    return True


def is_equiv(answer: str | None, gold: str) -> bool:
    """Whether a LaTeX answer equals the gold one (module doc: normalisation, then element-wise,
    then sympy). Never raises: a parse failure or time-out counts as not equal."""
    if answer is None:
        return False
    a, b = normalize(answer), normalize(gold)
    if a == b:
        return True
    (ka, pa), (kb, pb) = _elements(a), _elements(b)
    if len(pa) > 1 or len(pb) > 1:
        if ka != kb or len(pa) != len(pb):
            return False
        if ka:  # tuples and intervals: in order
            return all(is_equiv(x, y) for x, y in zip(pa, pb))
        return all(any(is_equiv(x, y) for y in pb) for x in pa) and all(any(is_equiv(y, x) for x in pa) for y in pb)
    if len(a) > _MAX_LEN or len(b) > _MAX_LEN or not a or not b:
        return False
    try:
        _parse_latex()
        with _time_limit(_TIME_LIMIT_S):
            return _sympy_equal(a, b)
    except Exception:  # unparsable LaTeX, sympy errors, _Timeout: not equal
        return False


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
