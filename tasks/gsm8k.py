"""GSM8K: grade-school maths word problems, judged by the final number of a completion.

Data: local JSON-lines ``data_files`` (fields ``question``, ``answer``; by split, e.g.
``train=train.jsonl,test=test.jsonl``, see :mod:`harness.tasks.rows`), else
$T2_DATA/gsm8k/test.jsonl (and its train.jsonl beside it for few-shot) when the environment
variable T2_DATA names a data folder holding it, else ``openai/gsm8k`` (main, test; train for
few-shot) from the hub. Gold = the number after ``####`` in the solution. Every test row is a
problem, with or without shots.

Prompt: "Question: {question}\\nAnswer:" (lm-eval's gsm8k format). With ``num_fewshot`` > 0 the
prompt is preceded by that many worked examples of the train split, chosen with ``fewshot_seed``
(:meth:`Task.with_fewshot`), each as lm-eval's gsm8k config renders one:
"Question: {question}\\nAnswer: {answer}\\n\\n" with the solution as in the data.

Extraction: ``strict`` accepts only "#### n" and "The (final) answer is n"; ``flexible`` (the
default) also accepts a final \\boxed{n}, and else falls back to the last number in the completion.
Among the accepted forms the last one in the text wins. Numbers are normalised: $, commas, units,
% and trailing zeros dropped ("$1,200.00" -> "1200").

Chat mode (``t2 sample --chat``): the prompt is the user turn, no stop sequence applies (the model's
end of turn ends the reply), and the same extraction reads the reply's final answer.
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import DataError, InvalidSetting

from .answers import DataFiles, last_boxed, last_number, normalize_number
from .base import Problem, Verdict, env_data_file
from .rows import RowsTask

HUB = ("openai/gsm8k", "main", "test")
_HASHES = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"answer\s+is\b\s*:?(?=([^\n]{0,40}))", re.IGNORECASE)  # lookahead: no overlap loss
_CALC = re.compile(r"<<[^>]*>>")


def extract_answer(completion: str, mode: str = "flexible") -> str | None:
    """The normalised final answer of a completion (None if none), by the rules in the module doc."""
    if mode not in ("strict", "flexible"):
        raise InvalidSetting("mode", mode, "'strict' or 'flexible' (gsm8k)")
    found: list[tuple[int, str]] = []
    for pattern in (_HASHES, _ANSWER_IS):
        for m in pattern.finditer(completion):
            if (value := normalize_number(m.group(1))) is not None:
                found.append((m.start(), value))
    if mode == "flexible":
        boxed = last_boxed(completion)
        if boxed and (value := normalize_number(boxed[1])) is not None:
            found.append((boxed[0], value))
        if not found:
            return last_number(completion)
    return max(found)[1] if found else None


def gold_answer(solution: str) -> str:
    """The normalised number after ``####`` in a GSM8K solution."""
    m = _HASHES.search(solution)
    value = normalize_number(m.group(1)) if m else None
    if value is None:
        raise DataError(f"gsm8k: field 'answer' has no '#### <number>' line: {solution[-60:]!r}")
    return value


class GSM8K(RowsTask):
    name = "gsm8k"
    version = "1"
    hub = HUB
    train_hub = (HUB[0], HUB[1], "train")
    fields = ("question", "answer")
    stop = ("Question:", "</s>", "<|im_end|>")
    template = "Question: {question}\nAnswer: {solution}"

    def __init__(self, data_files: DataFiles = None, num_fewshot: int = 0, fewshot_seed: int = 0,
                 mode: str = "flexible", limit: int | None = None, **_: Any) -> None:
        if mode not in ("strict", "flexible"):
            raise InvalidSetting("mode", mode, "'strict' or 'flexible' (gsm8k)")
        if data_files is None and num_fewshot and (train := env_data_file("gsm8k", "train.jsonl")):
            data_files = [f"train={train}"]
        super().__init__(data_files, limit, num_fewshot, fewshot_seed)
        self.mode = mode

    def default_test_files(self) -> list:
        return [f] if (f := env_data_file("gsm8k", "test.jsonl")) else []

    def _problem(self, i: int, row: dict) -> Problem:
        return Problem(f"gsm8k/{i}", f"Question: {row['question']}\nAnswer:", gold_answer(row["answer"]),
                       " " + _CALC.sub("", row["answer"]), {"solution": row["answer"]})

    def shot_text(self, example: Problem) -> str:
        """lm-eval's gsm8k example: doc_to_text, target_delimiter " ", doc_to_target = the solution."""
        return f"{example.prompt} {example.meta['solution']}"

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = extract_answer(completion, self.mode)
        if got is None:
            return Verdict(None, False, f"no answer found ({self.mode})")
        ok = got == problem.answer
        return Verdict(got, ok, "match" if ok else f"expected {problem.answer}")
