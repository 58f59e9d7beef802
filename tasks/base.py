"""What a task is: data (problems), a prompt per problem, and a check of a completion.

A sampler needs only :class:`Problem` (prompt, stop sequences) and the task's ``check``; likelihood
mode needs ``Problem.answer_span``, the text whose NLL given ``Problem.prompt`` is scored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError, InvalidSetting


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


class Task:
    """A task: data, a prompt per problem, and a check of a completion.

    Subclasses set the class attributes and define :meth:`problems` and :meth:`check`; the other
    methods have working defaults that a task overrides when it can do better (a sandbox pool
    checking many completions at once, a hub dataset, few-shot context). Constructor keyword
    arguments are the task's options (``t2 ... --task-option KEY=VALUE``); :func:`harness.tasks.get_task`
    refuses names the constructor does not take.
    """

    name: str = ""             # registry name, e.g. "gsm8k"
    version: str = "1"         # bump when the data, prompt or check changes
    source: str = ""           # where the data comes from (dataset id, package, generator + seed)
    stop: Sequence[str] = ()   # stop sequences for sampling in completion mode
    chat_stop: Sequence[str] = ()  # stop sequences in chat mode (the model's end of turn ends a reply)
    chat_message: str = "{prompt}"  # chat mode: the user turn, ``{prompt}`` = the problem's prompt
    chat: bool = False         # completions are chat replies (set from the run's sampler.chat)
    template: str = ""         # the prompt template, recorded for provenance
    hub: tuple[str, str | None, str] | None = None  # (path, config, split) on the HF hub, if any
    data_files: Sequence[Path] | None = None        # local data files in use (None: hub or generated)
    num_fewshot: int = 0       # worked examples before each prompt, from a training split
    fewshot_seed: int = 0      # seed of the examples' choice (the run's base seed)
    fewshot_delimiter: str = "\n\n"  # after each example
    fewshot: dict[str, Any] | None = None  # after problems(): which examples (run.json's task.fewshot)

    def problems(self) -> list[Problem]:
        raise NotImplementedError(f"{type(self).__name__}.problems")

    def check(self, problem: Problem, completion: str) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__}.check")

    def check_many(self, items: Sequence[tuple[Problem, str]]) -> list[Verdict]:
        """:meth:`check` of each (problem, completion) pair, in order."""
        return [self.check(p, c) for p, c in items]

    def stop_sequences(self) -> tuple[str, ...]:
        """The stop sequences of the current mode: :attr:`chat_stop` in chat mode, else :attr:`stop`."""
        return tuple(self.chat_stop if self.chat else self.stop)

    def user_message(self, problem: Problem) -> str:
        """Chat mode's user turn for ``problem``: :attr:`chat_message` around its prompt."""
        return self.chat_message.replace("{prompt}", problem.prompt)

    def on_hub(self) -> bool:
        """True when the problems come from the hub (counting them would download the data)."""
        return self.hub is not None and not self.data_files

    def close(self) -> None:
        """Free what the checks hold (sandbox processes); the default holds nothing."""

    def fewshot_pool(self) -> tuple[list[Problem], str, str]:
        """(examples, split, source): the training (or validation) examples few-shot prompts draw
        from; never the test set. A task without such examples refuses ``num_fewshot`` > 0."""
        raise InvalidSetting("num_fewshot", self.num_fewshot,
                             f"0: task {self.name} has no training examples to draw shots from")

    def shot_text(self, example: Problem) -> str:
        """One worked example as it stands in a prompt: its prompt and gold continuation."""
        return example.prompt + example.answer_span

    def with_fewshot(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` with the same :attr:`num_fewshot` examples before every prompt, chosen by
        :func:`choose_shots` with :attr:`fewshot_seed`; sets :attr:`fewshot` (n, seed, split,
        source, ids = the examples' row indices in their split, in prompt order)."""
        if not self.num_fewshot:
            return problems
        pool, split, source = self.fewshot_pool()
        ids = choose_shots(len(pool), self.num_fewshot, self.fewshot_seed, f"{self.name} {split} ({source})")
        context = "".join(self.shot_text(pool[i]) + self.fewshot_delimiter for i in ids)
        self.fewshot = {"n": self.num_fewshot, "seed": self.fewshot_seed, "split": split, "source": source,
                        "ids": ids}
        return [dataclasses.replace(p, prompt=context + p.prompt) for p in problems]


def check_fewshot(num_fewshot: int, seed: int) -> None:
    """Refuse a negative shot count or a non-integer seed."""
    if not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise InvalidSetting("num_fewshot", num_fewshot, "an integer >= 0")
    if not isinstance(seed, int):
        raise InvalidSetting("fewshot_seed", seed, "an integer")


def choose_shots(pool_size: int, n: int, seed: int, what: str) -> list[int]:
    """``n`` distinct indices of a pool of ``pool_size`` examples: ``random.Random(seed).sample``
    (the draw lm-eval's default few-shot sampler makes), in drawn order."""
    if n > pool_size:
        raise DataError(f"{what}: {n} few-shot examples asked but the split has {pool_size}")
    return random.Random(seed).sample(range(pool_size), n)


def problems_hash(problems: Sequence[Problem]) -> str:
    """sha256 of the problems' ids, prompts and answers: which data a run saw, exactly."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.prompt, p.answer, p.answer_span], ensure_ascii=False).encode())
    return h.hexdigest()


DATA_ENV = "T2_DATA"


def env_data_file(*parts: str) -> Path | None:
    """``$T2_DATA/<parts>`` when the environment variable names a folder holding that file."""
    root = os.environ.get(DATA_ENV)
    path = Path(root, *parts) if root else None
    return path if path is not None and path.is_file() else None


def data_files_hash(paths: Sequence[str | Path] | None) -> str | None:
    """sha256 over the contents of local data files, in order (None without files): which data a
    run read, whatever the files' paths."""
    if not paths:
        return None
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def provenance(task: Task, problems: Sequence[Problem]) -> dict[str, Any]:
    """The task fields a run records in run.json."""
    return {"name": task.name, "version": task.version, "source": task.source,
            "template": task.template, "stop": list(task.stop), "chat_stop": list(task.chat_stop),
            "chat_message": task.chat_message, "fewshot": task.fewshot,
            "n_problems": len(problems),
            "problems_sha256": problems_hash(problems)}
