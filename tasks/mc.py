"""The T² paper's four public tasks: LAMBADA (OpenAI), ARC-Easy, SciQ, OpenBookQA.

Data: ``datasets.load_dataset`` from the hub (test splits), or local JSON-lines ``data_files`` in
the hub's field layout (by split, see :mod:`harness.tasks.rows`). Few-shot (``num_fewshot``):
examples of the train split (ARC-Easy, SciQ, OpenBookQA; LAMBADA has none), each the prompt and
its gold answer, separated by a blank line (lm-eval's form). Likelihood mode scores the gold
answer span (" " + answer) after the paper's prompt; sampling mode checks the completion's first
line (LAMBADA: first word) by normalised exact match (lowercase, no punctuation or articles)
against the gold answer.
"""

from __future__ import annotations

from harness.errors import DataError

from .answers import normalize_text
from .base import Problem, Verdict
from .rows import RowsTask


class _Dataset(RowsTask):
    name = ""
    version = "1"
    hub: tuple[str, str | None, str] = ("", None, "test")
    stop: tuple[str, ...] = ("\n",)
    template = ""

    def _answer(self, completion: str) -> str:
        return completion.strip().split("\n")[0]

    def check(self, problem: Problem, completion: str) -> Verdict:
        got = normalize_text(self._answer(completion))
        ok = got == normalize_text(problem.answer)
        return Verdict(got or None, ok, "match" if ok else f"expected {problem.answer!r}")


def _choice(task: str, i: int, row: dict) -> tuple[list[str], int]:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if row["answerKey"] not in labels:
        raise DataError(f"{task} row {i}: field 'answerKey' = {row['answerKey']!r} is not one of "
                         f"the choice labels {labels}")
    return list(texts), labels.index(row["answerKey"])


class Lambada(_Dataset):
    """LAMBADA (OpenAI variant): the passage without its last word -> the last word."""

    name = "lambada"
    hub = ("EleutherAI/lambada_openai", "default", "test")
    fields = ("text",)
    template = "{context} {last_word}"

    def _problem(self, i: int, row: dict) -> Problem:
        context, _, word = row["text"].strip().rpartition(" ")
        if not context:
            raise DataError(f"lambada row {i}: field 'text' has no context before its last word")
        return Problem(f"lambada/{i}", context, word, " " + word)

    def _answer(self, completion: str) -> str:
        words = completion.split()
        return words[0] if words else ""


class ArcEasy(_Dataset):
    name = "arc_easy"
    hub = ("allenai/ai2_arc", "ARC-Easy", "test")
    train_hub = ("allenai/ai2_arc", "ARC-Easy", "train")
    fields = ("question", "choices.text", "choices.label", "answerKey")
    template = "Question: {question}\nAnswer: {answer}"

    def _problem(self, i: int, row: dict) -> Problem:
        choices, gold = _choice(self.name, i, row)
        return Problem(f"arc_easy/{row.get('id') or i}", f"Question: {row['question']}\nAnswer:",
                       choices[gold], " " + choices[gold], {"choices": choices, "gold": gold})


class OpenBookQA(_Dataset):
    name = "openbookqa"
    hub = ("allenai/openbookqa", "main", "test")
    train_hub = ("allenai/openbookqa", "main", "train")
    fields = ("question_stem", "choices.text", "choices.label", "answerKey")
    template = "{question} {answer}"

    def _problem(self, i: int, row: dict) -> Problem:
        choices, gold = _choice(self.name, i, row)
        return Problem(f"openbookqa/{row.get('id') or i}", row["question_stem"], choices[gold],
                       " " + choices[gold], {"choices": choices, "gold": gold})


class SciQ(_Dataset):
    name = "sciq"
    hub = ("allenai/sciq", None, "test")
    train_hub = ("allenai/sciq", None, "train")
    fields = ("support", "question", "correct_answer", "distractor1", "distractor2", "distractor3")
    template = "{support}\nQuestion: {question}\nAnswer: {answer}"

    def _problem(self, i: int, row: dict) -> Problem:
        choices = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
        prompt = f"{row['support'].strip()}\nQuestion: {row['question']}\nAnswer:"
        return Problem(f"sciq/{i}", prompt, row["correct_answer"], " " + row["correct_answer"],
                       {"choices": choices, "gold": 3})
