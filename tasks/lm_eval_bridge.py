"""Any lm-evaluation-harness task as a harness task (``get_task("lm-eval:<name>")``).

lm-eval's TaskManager builds the task; this bridge uses its own pieces, unchanged:
docs (test split, else validation), prompts with few-shot context (``fewshot_context``, the task's
``num_fewshot`` unless ``num_fewshot`` is given), targets (``doc_to_target``; for multiple-choice
tasks the gold choice), stop sequences (``generation_kwargs.until``), and as the verifier its
filter chain (``filter_list``; default the first one) followed by ``process_results``. A
completion is correct when the task's first metric scores >= 1 (binary metrics: exact match,
accuracy). Likelihood tasks (``multiple_choice``, ``loglikelihood``) give the gold choice as the
answer span; sampled completions of them are judged by normalised exact match with it.

Tasks that execute model-written code (``unsafe_code: true`` in their config, or the ``code_eval``
metric, e.g. humaneval and mbpp) are judged by our sandbox instead, never in this process: the
filtered program runs in :class:`harness.tasks.sandbox.Sandbox` and ``doc_to_target`` (the tests)
in its trusted judge process, out of process where the tests allow (see ``_run_code``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from harness.errors import DataError

from .answers import normalize_text
from .base import Problem, Task, Verdict


@lru_cache(maxsize=4)
def _manager(include_path: tuple[str, ...]):
    """A TaskManager (indexing lm-eval's ~15k task configs takes seconds: built once per path)."""
    import lm_eval.tasks

    return lm_eval.tasks.TaskManager(include_path=list(include_path) or None)


def _load(name: str, include_path: Any, overrides: dict | None):
    """lm-eval's task object for ``name``; ``overrides`` are merged into its registered config
    (through the TaskManager's factory, as lm-eval does for inline configs)."""
    import difflib

    import lm_eval.tasks

    paths = [include_path] if isinstance(include_path, (str, bytes)) or hasattr(include_path, "__fspath__") \
        else list(include_path or [])
    manager = _manager(tuple(str(p) for p in paths))
    entry = manager._entry(name)
    if entry is None:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        raise DataError(f"lm-eval: unknown task {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    if overrides:
        built = manager._factory.build(entry, overrides={"task": name, **overrides}, registry=manager._index)
    else:
        built = lm_eval.tasks.get_task_dict([name], manager)
    tasks = list(_leaves(built))
    if len(tasks) != 1:
        raise DataError(f"lm-eval: {name!r} is a group of {len(tasks)} tasks; name one of them")
    return tasks[0]


def _leaves(d: Any):
    for value in (d.values() if isinstance(d, dict) else d if isinstance(d, list) else [d]):
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value


class LMEvalTask(Task):
    """lm-eval task ``name`` (options: include_path, num_fewshot, filter, limit, seed and
    ``overrides``, a dict merged into the task's YAML config, e.g. to point dataset_path at local
    files)."""

    def __init__(self, name: str, include_path: Any = None, num_fewshot: int | None = None,
                 filter: str | None = None, limit: int | None = None, seed: int = 1234,
                 overrides: dict | None = None, **_: Any) -> None:
        self._task = task = _load(name, include_path, overrides)
        config = task.config
        self.name = f"lm-eval:{name}"
        self.version = str((config.metadata or {}).get("version", "0"))
        self.source = f"lm-eval:{name} ({config.dataset_path}" + (
            f"/{config.dataset_name})" if config.dataset_name else ")")
        self.output_type = config.output_type
        self.stop = tuple((config.generation_kwargs or {}).get("until", ()))
        self.template = f"{config.doc_to_text}{config.target_delimiter}{config.doc_to_target}"
        self.num_fewshot = (config.num_fewshot or 0) if num_fewshot is None else num_fewshot
        self.limit, self.seed = limit, seed
        ensembles = getattr(task, "_filters", [])
        names = [f.name for f in ensembles]
        if filter is not None and filter not in names:
            raise DataError(f"lm-eval:{name}: unknown filter {filter!r}; the task has {names}")
        self._filter = next((f for f in ensembles if f.name == (filter or names[0])), None) if names else None
        self.code = bool(getattr(config, "unsafe_code", False)) or any(  # judged in our sandbox
            m.get("metric") == "code_eval" for m in config.metric_list or [] if isinstance(m, dict))
        self._docs: list[dict] = []

    def _target(self, doc: dict) -> str:
        target = self._task.doc_to_target(doc)
        if self._task.config.doc_to_choice is not None and isinstance(target, int):
            target = self._task.doc_to_choice(doc)[target]
        if isinstance(target, list):
            target = target[0]
        return str(target)

    def problems(self) -> list[Problem]:
        self._task.set_fewshot_seed(self.seed)
        self._docs = list(self._task.eval_docs)[: self.limit]
        out = []
        for i, doc in enumerate(self._docs):
            prompt = self._task.fewshot_context(doc, self.num_fewshot)
            if not isinstance(prompt, str):
                raise DataError(f"{self.name}: multiple-input tasks are not supported")
            target = self._target(doc)
            out.append(Problem(f"{self.name}/{i}", prompt, target,
                               self._task.config.target_delimiter + target, {"doc_index": i}))
        return out

    def _doc(self, problem: Problem) -> dict:
        if not self._docs:
            self.problems()
        return self._docs[problem.meta["doc_index"]]

    def _filtered(self, doc: dict, completion: str) -> Any:
        """The completion after the task's filter chain (lm-eval's FilterEnsemble, one instance)."""
        from lm_eval.api.instance import Instance

        if self._filter is None:
            return completion
        inst = Instance("generate_until", doc, ("", {}), 0, resps=[completion])
        self._filter.apply([inst])
        return inst.filtered_resps[self._filter.name]

    def check(self, problem: Problem, completion: str) -> Verdict:
        doc = self._doc(problem)
        if self.output_type != "generate_until":  # likelihood tasks, sampled: exact match of the gold
            got = normalize_text(completion.strip().split("\n")[0])
            ok = got == normalize_text(problem.answer)
            return Verdict(got or None, ok, "match" if ok else f"expected {problem.answer!r}")
        result = self._filtered(doc, completion)
        if self.code:
            return self._run_code(doc, result)
        metrics = self._task.process_results(doc, [result])
        score = float(next(iter(metrics.values())))
        answer = result if isinstance(result, str) else str(result)
        return Verdict(answer, score >= 1.0, ", ".join(f"{k}={v}" for k, v in metrics.items()))

    def _run_code(self, doc: dict, program: Any) -> Verdict:
        """Judge the filtered program in the sandbox, never in this process: out of process (the
        tests, ``doc_to_target``, in a judge process after the prompt's imports, calling the
        program's functions through proxies) when the tests read names they do not define,
        else program and tests together in one sandboxed process."""
        from .code import imports_of, out_of_process_oracle, verdict
        from .sandbox import Sandbox

        if isinstance(program, list):
            program = program[0]
        if not hasattr(self, "_sandbox"):
            self._sandbox = Sandbox(workers=1)
        test = self._task.doc_to_target(doc)
        oracle = out_of_process_oracle(test, imports_of(self._task.doc_to_text(doc)))
        result = self._sandbox.run(program if oracle else f"{program}\n\n{test}\n", oracle=oracle)
        return Verdict(program, result.passed, verdict(result).message)
