"""Task definitions and verifiers (installed as ``harness.tasks``).

``get_task(name, **options)`` builds a task by registry name; ``lm-eval:<name>`` reaches any
lm-evaluation-harness task through the bridge. ``TASKS`` maps each name to "module:factory",
imported only when the task is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

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


def get_task(name: str, **options: Any) -> Task:
    """The task registered as ``name`` (or ``lm-eval:<task>``), built with ``options``."""
    if name.startswith(LM_EVAL_PREFIX):
        from .lm_eval_bridge import LMEvalTask

        return LMEvalTask(name[len(LM_EVAL_PREFIX):], **options)
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(TASKS)}"
        raise ValueError(f"unknown task {name!r}{hint} (or lm-eval:<task> for lm-eval tasks)")
    module, factory = TASKS[name].split(":")
    return getattr(importlib.import_module(module), factory)(**options)


__all__ = ["Problem", "Task", "Verdict", "TASKS", "get_task"]
