"""GSM8K: grade-school maths word problems, judged by the final number of a completion.

Data: local JSON-lines ``data_files`` (fields ``question``, ``answer``), else
$T2_DATA/gsm8k/test.jsonl when the environment variable T2_DATA names a data folder holding it,
else ``openai/gsm8k`` (main, test) from the hub. Gold = the number after ``####`` in the solution.

Prompt: "Question: {question}\\nAnswer:" (lm-eval's gsm8k format). With ``n_shot`` > 0 the prompt
is preceded by n_shot worked examples "Question: ...\\nAnswer: {solution}\\n\\n" (calculator
annotations <<...>> removed, ending "#### n"), taken from ``fewshot_files`` if given, else from
the first n_shot rows of the data, which are then left out of the problems.

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

from .answers import DataFiles, data_paths, last_boxed, last_number, load_rows, normalize_number
from .base import Problem, Task, Verdict, env_data_file

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


class GSM8K(Task):
    name = "gsm8k"
    version = "1"
    hub = HUB
    stop = ("Question:", "</s>", "<|im_end|>")
    template = "Question: {question}\nAnswer: {solution}"

    def __init__(self, data_files: DataFiles = None, n_shot: int = 0, fewshot_files: DataFiles = None,
                 mode: str = "flexible", limit: int | None = None, **_: Any) -> None:
        if mode not in ("strict", "flexible"):
            raise InvalidSetting("mode", mode, "'strict' or 'flexible' (gsm8k)")
        if n_shot < 0:
            raise InvalidSetting("n_shot", n_shot, "an integer >= 0 (gsm8k)")
        local = data_paths(data_files) or ([f] if (f := env_data_file("gsm8k", "test.jsonl")) else [])
        self.data_files = local or None
        self.fewshot_files = data_paths(fewshot_files) or None
        self.n_shot, self.mode, self.limit, self.few_shot = n_shot, mode, limit, n_shot
        self.source = ",".join(map(str, local)) if local else f"hf:{HUB[0]}/{HUB[1]}:{HUB[2]}"
        if n_shot:
            self.source += f" ({n_shot}-shot)"

    def problems(self) -> list[Problem]:
        rows = load_rows(self.data_files, ("question", "answer"), HUB)
        start = 0
        if self.fewshot_files:
            shots = load_rows(self.fewshot_files, ("question", "answer"), HUB)[: self.n_shot]
        else:
            shots, start = rows[: self.n_shot], self.n_shot
        if len(shots) < self.n_shot:
            raise DataError(f"gsm8k: n_shot={self.n_shot} but only {len(shots)} few-shot rows")
        context = "".join(f"Question: {r['question']}\nAnswer: {_CALC.sub('', r['answer'])}\n\n"
                          for r in shots)
        out = []
        for i in range(start, len(rows)):
            gold = gold_answer(rows[i]["answer"])
            out.append(Problem(f"gsm8k/{i}", f"{context}Question: {rows[i]['question']}\nAnswer:",
                               gold, " " + _CALC.sub("", rows[i]["answer"]),
                               {"solution": rows[i]["answer"]}))
        return out[: self.limit]

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = extract_answer(completion, self.mode)
        if got is None:
            return Verdict(None, False, f"no answer found ({self.mode})")
        ok = got == problem.answer
        return Verdict(got, ok, "match" if ok else f"expected {problem.answer}")
