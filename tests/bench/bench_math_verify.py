r"""MATH answer equivalence: the former hand-written checker (``normalize`` + sympy/lark, read from
git commit LEGACY) vs math-verify alone vs the shipped ``is_equiv`` (normalised strings equal, else
math-verify), on labelled (answer, gold, equivalent?) pairs: the style table of tests/test_math.py
(extracted answers) plus MATH-style cases written out here. Reports accuracy, false accepts / false
rejects, and mean time per check, measured interleaved.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_math_verify.py
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from child import REPO, at_revision  # noqa: E402
from harness.tasks import math as m  # noqa: E402
from test_math import STYLES  # noqa: E402

LEGACY = "2391d42"  # the last commit with the hand-written checker

# (model answer, gold, equivalent?): MATH-style cases with their correct label
CASES = [
    (r"\dfrac{3}{4}", r"\frac34", True), (r"0.75", r"\frac{3}{4}", True), (r"3/4", r"0.75", True),
    (r"\frac{4}{3}", r"\frac{3}{4}", False), (r"1\frac{1}{2}", r"\frac{3}{2}", True),
    (r"-\dfrac{7}{2}", r"-3.5", True), (r"\frac{-1}{4}", r"-\frac14", True),
    (r"(-\infty, 2) \cup (3, \infty)", r"(-\infty,2)\cup(3,\infty)", True),
    (r"(3, \infty) \cup (-\infty, 2)", r"(-\infty,2)\cup(3,\infty)", True),
    (r"[2, 5]", r"[2,5)", False), (r"(0, 1)", r"(0,1]", False), (r"[-1, 1]", r"[-1,1]", True),
    (r"(1, -2, 3)", r"(1,-2,3)", True), (r"(1, 3, -2)", r"(1,-2,3)", False),
    (r"\left( 2, \frac{\pi}{3} \right)", r"(2, \pi/3)", True),
    (r"12 \text{ cm}^2", "12", True), (r"5\text{ cents}", "5", True), (r"4 \mbox{ inches}", "4", True),
    (r"15\%", "15", True), (r"50\%", r"50", True), (r"0.5", r"50\%", False),
    (r"\sqrt{8}", r"2\sqrt{2}", True), (r"\sqrt{3}/3", r"\frac{1}{\sqrt{3}}", True),
    (r"\frac{\sqrt{6}}{2}", r"\sqrt{\frac{3}{2}}", True), (r"\sqrt{5}", r"\sqrt{6}", False),
    (r"3\sqrt{2}", r"\sqrt{18}", True), (r"4\pi", r"4 \pi", True), (r"\pi/2", r"\frac{\pi}{2}", True),
    (r"2\pi", r"\pi", False), (r"12.566", r"4\pi", False),
    (r"\{1, 2, 3\}", r"\{3, 2, 1\}", True), (r"\{1, 2\}", r"\{1,2,3\}", False),
    (r"1, 3", r"3, 1", True), (r"-2, 2", r"\pm 2", True),
    (r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}", r"\begin{pmatrix}1\\-2\end{pmatrix}", True),
    (r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", True),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", False),
    (r"\text{Tuesday}", r"\text{Tuesday}", True), (r"Tuesday", r"\text{Tuesday}", True),
    (r"\text{(C)}", r"\text{(C)}", True), (r"\text{(D)}", r"\text{(C)}", False),
    (r"\text{even}", r"\text{odd}", False), (r"\text{odd}", r"\text{odd}", True),
    (r"x=3", "3", True), (r"y = -\frac{1}{2}", r"-\frac12", True), (r"x = 4", "5", False),
    (r"y = 2x + 3", r"y=2x+3", True), (r"y = 2x+3", r"2x+3", True),
    (r"0.2", r"\frac{1}{5}", True), (r"0.125", r"\frac18", True), (r"0.33", r"\frac{1}{3}", False),
    (r"1.5", r"\frac{3}{2}", True), (r"2.0", "2", True), (r"1,000,000", "1000000", True),
    (r"90^\circ", "90", True), (r"45^{\circ}", r"45", True), (r"\frac{\pi}{4}", r"45^\circ", False),
    (r"60", r"60^\circ", True), (r"120^\circ", "60", False),
    (r"x^2 + 2x + 1", r"(x+1)^2", True), (r"2x^2-8", r"2(x-2)(x+2)", True), (r"x^2+1", r"x^2-1", False),
    (r"\frac{x+1}{2}", r"\frac{1}{2}x+\frac12", True), (r"a+b", r"b+a", True), (r"a-b", r"b-a", False),
    (r"10^{6}", "1000000", True), (r"2^{10}", "1024", True), (r"\binom{5}{2}", "10", True),
    (r"\$18.90", "18.90", True), (r"18.9", r"\$18.90", True), (r"-7", "7", False), ("0", "-0", True),
    (r"\infty", r"\infty", True), (r"-\infty", r"\infty", False), (r"i", r"i", True),
    (r"3+4i", r"4i+3", True), (r"3-4i", r"3+4i", False), (r"\frac{1+\sqrt{5}}{2}", r"\frac{1}{2}+\frac{\sqrt5}{2}", True),
    (r"x \in [1, 3]", r"[1,3]", True), (r"x > 2", r"(2, \infty)", True), (r"x \ge 2", r"x \le 2", False),
    (r"\log_2 8", "3", True), (r"e^{0}", "1", True), (r"\sin \frac{\pi}{6}", r"\frac12", True),
]


def _legacy_equiv():
    """``is_equiv`` of tasks/math.py at commit LEGACY, loaded as a module of harness.tasks."""
    source = at_revision(LEGACY, "tasks/math.py")
    module = types.ModuleType("harness.tasks.math_legacy")
    module.__package__ = "harness.tasks"
    exec(compile(source, f"{LEGACY}:tasks/math.py", "exec"), module.__dict__)
    return module.is_equiv


def _labelled() -> list[tuple[str, str, bool]]:
    from_tests = [(got, gold, ok) for c, gold, got, ok in STYLES if got is not None]
    return from_tests + CASES


def _score(check, pairs) -> tuple[list[bool], float]:
    start = time.perf_counter()
    verdicts = [check(a, g) for a, g, _ in pairs]
    return verdicts, (time.perf_counter() - start) / len(pairs)


def main() -> None:
    pairs = _labelled()
    checkers = {"old (normalise + sympy/lark)": _legacy_equiv(), "math-verify alone": m.math_verify_equiv,
                "shipped: normalised equal, else math-verify": m.is_equiv}
    for check in checkers.values():  # warm-up: grammar builds and caches are not timed
        check("1", "1")
    verdicts: dict[str, list[bool]] = {}
    times: dict[str, list[float]] = {name: [] for name in checkers}
    for _ in range(2):  # interleaved rounds A B C A B C
        for name, check in checkers.items():
            v, t = _score(check, pairs)
            verdicts[name] = v
            times[name].append(t)
    load = os.getloadavg()
    rows = []
    base = min(times[next(iter(checkers))])
    for name in checkers:
        v = verdicts[name]
        fa = sum(got and not ok for got, (_, _, ok) in zip(v, pairs))
        fr = sum(ok and not got for got, (_, _, ok) in zip(v, pairs))
        ms = min(times[name]) * 1e3
        rows.append(f"| {name} | {len(pairs) - fa - fr}/{len(pairs)} | {fa} | {fr} | {ms:.2f} | {min(times[name]) / base:.2f} |")
    disagree = [f"| `{a}` | `{g}` | {ok} | {vo} | {vm} |" for (a, g, ok), vo, vm in
                zip(pairs, verdicts["old (normalise + sympy/lark)"], verdicts["math-verify alone"]) if vo != vm]
    shipped = verdicts["shipped: normalised equal, else math-verify"]
    wrong = [f"| `{a}` | `{g}` | {ok} |" for (a, g, ok), v in zip(pairs, shipped) if v != ok]
    table = "\n".join([
        "# MATH answer equivalence: hand-written checker vs math-verify", "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_math_verify.py`", "",
        f"Old = tasks/math.py at commit {LEGACY}. {len(pairs)} labelled pairs ({len(pairs) - len(CASES)} from tests/test_math.py, {len(CASES)} MATH-style "
        f"cases in the bench). Time: mean per check, best of 2 interleaved rounds; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 shared cores).", "",
        "| checker | correct | false accepts | false rejects | ms / check | time vs old |", "|---|---|---|---|---|---|",
        *rows, "", "Pairs where the two disagree (label = correct verdict):", "",
        "| answer | gold | label | old | math-verify |", "|---|---|---|---|---|", *disagree, "", "Pairs the shipped checker gets wrong:", "",
        "| answer | gold | label |", "|---|---|---|", *wrong, ""])
    print(table)
    (REPO / "results" / "bench" / "math_verify.md").write_text(table)


if __name__ == "__main__":
    main()
