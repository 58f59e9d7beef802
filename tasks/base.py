"""What a task is: data (problems), a prompt per problem, and a check of a completion.

A sampler needs only :class:`Problem` (prompt, stop sequences) and the task's ``check``; likelihood
mode needs ``Problem.answer_span``, the text whose NLL given ``Problem.prompt`` is scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One question.

    id: stable identifier within its task (a string, e.g. "gsm8k/17").
    prompt: the full text the model is conditioned on (few-shot context included).
    answer: the gold answer in canonical form (what ``check`` compares against).
    answer_span: the continuation scored in likelihood mode, e.g. " 42" (leading space included
        when the prompt's format puts one there).
    meta: task-specific extras (unit tests for code, choices, difficulty); JSON-serialisable.
    """

    id: str
    prompt: str
    answer: str
    answer_span: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one completion: the extracted answer (None if none found),
    whether it is correct, and a short human-readable reason."""

    answer: str | None
    correct: bool
    message: str = ""


@runtime_checkable
class Task(Protocol):
    """A task: data plus a prompt plus a check, nothing more."""

    name: str          # registry name, e.g. "gsm8k"
    version: str       # bump when the data, prompt or check changes
    source: str        # where the data comes from (dataset id, package, generator + seed)
    stop: Sequence[str]  # stop sequences for sampling
    template: str      # the prompt template, recorded for provenance

    def problems(self) -> list[Problem]: ...

    def check(self, problem: Problem, completion: str) -> Verdict: ...


def problems_hash(problems: Sequence[Problem]) -> str:
    """sha256 of the problems' ids, prompts and answers: which data a run saw, exactly."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.prompt, p.answer, p.answer_span], ensure_ascii=False).encode())
    return h.hexdigest()


def provenance(task: Task, problems: Sequence[Problem]) -> dict[str, Any]:
    """The task fields a run records in run.json."""
    return {"name": task.name, "version": task.version, "source": task.source,
            "template": task.template, "stop": list(task.stop), "n_problems": len(problems),
            "problems_sha256": problems_hash(problems)}
