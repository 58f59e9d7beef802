"""Any lm-evaluation-harness task as a harness task (``get_task("lm-eval:<name>")``).

Only lm-eval's public API is used (0.4.x): ``TaskManager`` (its index, ``load``), the task config
YAML (``include:`` of the registered config), the task's ``config``, ``eval_docs``,
``fewshot_docs``, ``fewshot_context``, ``set_fewshot_seed``, ``doc_to_target``,
``process_results``, and ``lm_eval.filters.build_filter_ensemble`` for the filter chains.
The bridge uses lm-eval's pieces unchanged: docs (test split, else validation), prompts with
few-shot context (the task's ``num_fewshot`` unless ``num_fewshot`` is given; examples drawn by the
task's own sampler seeded with ``seed``, lm-eval's fewshot seed, default 1234), targets
(``doc_to_target``; for multiple-choice tasks the gold choice), stop sequences
(``generation_kwargs.until``), and as the verifier its filter chain (``filter_list``; default the
first one) followed by ``process_results``. A completion is correct when the task's first metric
scores >= 1 (binary metrics: exact match, accuracy). Likelihood tasks (``multiple_choice``,
``loglikelihood``) give the gold choice as the answer span; sampled completions of them are judged
by normalised exact match with it.

Local data (``data_files``, by split as in :func:`harness.tasks.rows.split_paths`; a path without
``split=`` is the task's evaluation split): the registered config is loaded with ``dataset_path:
json`` and ``dataset_kwargs.data_files`` set to them before any doc is read, so the hub is never
asked. Few-shot examples then come from the local file of the task's few-shot split (e.g.
``train=`` for gsm8k), or are refused.

Tasks that execute model-written code (``unsafe_code: true`` in their config, or the ``code_eval``
metric, e.g. humaneval and mbpp) are judged by our sandbox instead, never in this process: the
filtered program runs in :class:`harness.tasks.sandbox.Sandbox` and ``doc_to_target`` (the tests)
in its trusted judge process, out of process where the tests allow (see ``_run_code``).
"""

from __future__ import annotations

import difflib
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import DataError, InvalidSetting

from .answers import DataFiles, no_download_count, normalize_text
from .base import Problem, Task, Verdict, check_fewshot
from .rows import split_paths


@lru_cache(maxsize=4)
def _manager(include_path: tuple[str, ...]):
    """A TaskManager (indexing lm-eval's ~15k task configs takes seconds: built once per path)."""
    import lm_eval.tasks

    return lm_eval.tasks.TaskManager(include_path=list(include_path) or None)


def _registered(manager, name: str):
    """The index entry of task ``name``; :class:`DataError` naming it when unknown or a group."""
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        raise DataError(f"lm-eval: unknown task {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    if name not in manager.all_subtasks:
        raise DataError(f"lm-eval: {name!r} is a group or tag of several tasks; name one of them")
    return manager.task_index[name]


def _fewshot_split(config: dict[str, Any]) -> str | None:
    """The split a task config draws few-shot examples from (None: fixed samples in the config)."""
    fewshot = config.get("fewshot_config") or {}
    if fewshot.get("samples") is not None and not config.get("fewshot_split"):
        return None
    return (config.get("fewshot_split") or fewshot.get("split") or config.get("training_split")
            or config.get("validation_split"))


def local_dataset(name: str, config: dict[str, Any], data_files: DataFiles, num_fewshot: int) -> dict[str, Any]:
    """Config overrides that read task ``name``'s splits from local JSON-lines ``data_files``
    (dataset_path json, dataset_kwargs.data_files) instead of its hub dataset, splits without a
    file unset; refuses unknown split names, missing files, and few-shot without a local file of
    the few-shot split."""
    eval_split = config.get("test_split") or config.get("validation_split")
    splits = {k: [str(p) for p in v] for k, v in split_paths(data_files, default=eval_split).items()}
    known = {config.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")} - {None}
    for split, paths in splits.items():
        if split not in known:
            raise InvalidSetting("data_files", f"{split}={paths[0]}",
                                 f"split names of lm-eval:{name} ({', '.join(sorted(known))})")
        for path in paths:
            if not Path(path).is_file():
                raise DataError(f"{path}: data file not found (split {split} of lm-eval:{name})")
    if eval_split not in splits:
        raise InvalidSetting("data_files", ",".join(f"{k}=..." for k in splits),
                             f"a file of lm-eval:{name}'s evaluation split {eval_split!r} (e.g. {eval_split}=PATH)")
    shots = _fewshot_split(config)
    if num_fewshot and shots is not None and shots not in splits:
        raise InvalidSetting("num_fewshot", num_fewshot,
                             f"0, or a {shots}=PATH among the data files (lm-eval:{name} draws its examples "
                             f"from split {shots!r}; they are not fetched from the hub)")
    absent = {k: None for k in ("training_split", "validation_split", "fewshot_split")
              if config.get(k) is not None and config[k] not in splits}  # lm-eval reads them at load
    return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": splits}, **absent}


def _load(name: str, include_path: Any, overrides: dict[str, Any] | None, data_files: DataFiles,
          num_fewshot: int | None):
    """lm-eval's task object for ``name``. With ``data_files`` or ``overrides``, a task YAML that
    ``include``s the registered config and sets them is loaded instead (lm-eval's own config
    inheritance), so the dataset is read from the local files from the start."""
    import yaml

    paths = [include_path] if isinstance(include_path, (str, bytes)) or hasattr(include_path, "__fspath__") \
        else list(include_path or [])
    manager = _manager(tuple(str(p) for p in paths))
    entry = _registered(manager, name)
    config = {**(entry.cfg or {}), **(overrides or {})}
    shots = (config.get("num_fewshot") or 0) if num_fewshot is None else num_fewshot
    changes = {**(local_dataset(name, config, data_files, shots) if data_files else {}), **(overrides or {})}
    if not changes:
        return manager.load(name)["tasks"][name]
    if entry.yaml_path is None:
        raise DataError(f"lm-eval:{name} has no YAML config to point at local data")
    with tempfile.TemporaryDirectory(prefix="t2-lm-eval-") as folder:
        spec = Path(folder, f"{name}.yaml")
        spec.write_text(yaml.safe_dump({"include": str(entry.yaml_path), "task": name, **changes}))
        with no_download_count():
            return manager.load(str(spec))["tasks"][name]


def _filter_ensembles(config) -> list:
    """The task's filter chains (``filter_list``), built as lm-eval builds them; none: take_first."""
    from lm_eval.filters import build_filter_ensemble

    if config.filter_list is None:
        return [build_filter_ensemble("none", [["take_first", None]])]
    return [build_filter_ensemble(f["name"], [[step["function"], {k: v for k, v in step.items() if k != "function"}]
                                              for step in f["filter"]])
            for f in config.filter_list]


class LMEvalTask(Task):
    """lm-eval task ``name`` (options: data_files, include_path, num_fewshot, filter, limit, seed =
    lm-eval's fewshot seed, and ``overrides``, a dict merged into the task's YAML config)."""

    def __init__(self, name: str, data_files: DataFiles = None, include_path: Any = None,
                 num_fewshot: int | None = None, filter: str | None = None, limit: int | None = None,
                 seed: int = 1234, overrides: dict | None = None, **_: Any) -> None:
        check_fewshot(num_fewshot or 0, seed)
        self._task = task = _load(name, include_path, overrides, data_files, num_fewshot)
        config = task.config
        self.name = f"lm-eval:{name}"
        self.data_files = [p for paths in split_paths(data_files).values() for p in paths] or None
        self.version = str((config.metadata or {}).get("version", "0"))
        self.source = f"lm-eval:{name} ({config.dataset_path}" + (
            f"/{config.dataset_name})" if config.dataset_name else ")")
        if self.data_files:
            self.source = f"lm-eval:{name} ({','.join(map(str, self.data_files))})"
        self.output_type = config.output_type
        self.stop = tuple((config.generation_kwargs or {}).get("until", ()))
        self.template = f"{config.doc_to_text}{config.target_delimiter}{config.doc_to_target}"
        self.num_fewshot = (config.num_fewshot or 0) if num_fewshot is None else num_fewshot
        self.limit, self.seed, self.fewshot_seed = limit, seed, seed
        ensembles = _filter_ensembles(config)
        names = [f.name for f in ensembles]
        if filter is not None and filter not in names:
            raise DataError(f"lm-eval:{name}: unknown filter {filter!r}; the task has {names}")
        self._filter = next(f for f in ensembles if f.name == (filter or names[0]))
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
            prompt = self._task.fewshot_context(doc=doc, num_fewshot=self.num_fewshot)
            if not isinstance(prompt, str):
                raise DataError(f"{self.name}: multiple-input tasks are not supported")
            target = self._target(doc)
            out.append(Problem(f"{self.name}/{i}", prompt, target,
                               self._task.config.target_delimiter + target, {"doc_index": i}))
        self.fewshot = self._fewshot_record(out) if self.num_fewshot else None
        return out

    def _fewshot_record(self, problems: list[Problem]) -> dict[str, Any]:
        """run.json's few-shot entry: n, seed, split, source, sampler, and the examples' indices in the
        few-shot split (``ids`` when every problem has the same ones, else ``ids_by_problem``),
        redrawn by a twin of the task's sampler (same class, pool and seed: the same draws)."""
        task = self._task
        pool = list(task.fewshot_docs())
        twin = type(task.sampler)(pool, rnd=self.seed)
        index = {id(doc): i for i, doc in enumerate(pool)}
        exclude = task.fewshot_cfg.split == task.config.test_split  # lm-eval's rule: not the doc itself
        ids = {p.id: [index[id(d)] for d in twin.sample(n=self.num_fewshot, eval_doc=doc if exclude else None)]
               for p, doc in zip(problems, self._docs, strict=True)}
        split, files = task.fewshot_cfg.split, (task.config.dataset_kwargs or {}).get("data_files")
        local = files.get(split) if isinstance(files, dict) else None
        source = ",".join(map(str, local)) if isinstance(local, list) else str(local or self.source)
        record = {"n": self.num_fewshot, "seed": self.seed, "split": split, "source": source,
                  "sampler": type(task.sampler).__name__}
        shared = {tuple(v) for v in ids.values()}
        return {**record, "ids": list(shared.pop())} if len(shared) == 1 else {**record, "ids_by_problem": ids}

    def _doc(self, problem: Problem) -> dict:
        if not self._docs:
            self.problems()
        return self._docs[problem.meta["doc_index"]]

    def _filtered(self, doc: dict, completion: str) -> Any:
        """The completion after the task's filter chain (lm-eval's FilterEnsemble, one instance)."""
        from lm_eval.api.instance import Instance

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
