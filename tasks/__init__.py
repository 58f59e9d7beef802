"""Task definitions and verifiers (installed as ``harness.tasks``).

``get_task(name, **options)`` builds a task by registry name; ``lm-eval:<name>`` reaches any
lm-evaluation-harness task through the bridge. ``TASKS`` maps each name to "module:factory",
imported only when the task is asked for.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from harness.errors import InvalidSetting

from .base import Problem, Task, Verdict

TASKS: dict[str, str] = {
    # the T² paper's eight tasks
    "lambada": "harness.tasks.mc:Lambada",
    "arc_easy": "harness.tasks.mc:ArcEasy",
    "sciq": "harness.tasks.mc:SciQ",
    "openbookqa": "harness.tasks.mc:OpenBookQA",
    "knowledge": "harness.tasks.synthetic:Knowledge",
    "arithmetic": "harness.tasks.synthetic:Arithmetic",
    "causal": "harness.tasks.synthetic:Causal",
    "spatial": "harness.tasks.synthetic:Spatial",
    # generative benchmarks for large k
    "gsm8k": "harness.tasks.gsm8k:GSM8K",
    "math": "harness.tasks.math:MATH",
    "math500": "harness.tasks.math:MATH500",
    "humaneval": "harness.tasks.code:HumanEval",
    "mbpp": "harness.tasks.code:MBPP",
}

LM_EVAL_PREFIX = "lm-eval:"
# options that were removed → what replaces them
REMOVED_OPTIONS = {
    "n_shot": "num_fewshot (examples from the train split; n_shot took them from the test set)",
    "fewshot_files": "data_files with a train=PATH item (e.g. train=train.jsonl,test=test.jsonl)",
}


def _factory(name: str) -> Callable[..., Task]:
    if name.startswith(LM_EVAL_PREFIX):
        from .lm_eval_bridge import LMEvalTask

        return lambda **options: LMEvalTask(name[len(LM_EVAL_PREFIX):], **options)
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(TASKS)}"
        raise InvalidSetting("task", name, f"a registered task ({hint}) or lm-eval:<task>")
    module, factory = TASKS[name].split(":")
    return getattr(importlib.import_module(module), factory)


def task_options(name: str) -> list[str]:
    """The options task ``name`` takes: its constructor's named keyword parameters."""
    if name.startswith(LM_EVAL_PREFIX):
        from .lm_eval_bridge import LMEvalTask as factory
    else:
        factory = _factory(name)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return sorted(p.name for p in inspect.signature(factory).parameters.values()
                  if p.kind in kinds and p.name != "name")


def get_task(name: str, **options: Any) -> Task:
    """The task registered as ``name`` (or ``lm-eval:<task>``), built with ``options``; an option
    the task does not take raises :class:`InvalidSetting` naming the ones it does."""
    factory, accepted = _factory(name), task_options(name)
    if "num_fewshot" not in accepted and not options.get("num_fewshot", 1):
        del options["num_fewshot"]  # zero shots: what every task does
    for key, value in options.items():
        if key == "data_files" and key not in accepted:
            raise InvalidSetting("data_files", value, f"none: task {name} reads no data files")
        if key == "num_fewshot" and key not in accepted:
            raise InvalidSetting("num_fewshot", value, f"0: task {name} has no training examples to draw shots from")
        if key in REMOVED_OPTIONS and key not in accepted:
            raise InvalidSetting("task_option", key, REMOVED_OPTIONS[key])
        if key not in accepted:
            raise InvalidSetting("task_option", key, f"an option of task {name} ({', '.join(accepted)})")
    return factory(**options)


__all__ = ["Problem", "Task", "Verdict", "TASKS", "get_task", "task_options"]
