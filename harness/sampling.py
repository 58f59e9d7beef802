"""The run driver behind ``t2 sample``, ``t2 likelihood``, ``t2 score`` and ``t2 merge``.

The run directory (files, manifest, identity, lock, merge) is :class:`harness.rundir.RunDir`.

- Resume: rerunning the same command skips problems whose n samples are already stored. A rerun
  with a larger ``n`` (``-n``) draws each problem's missing samples stored..n-1 with the same seeds
  (the grown run equals one made at that n from the start); a smaller ``n`` samples nothing. run.json
  records the largest n asked; ``t2 score`` and ``t2 passk`` use every stored sample (per-problem n).
- Seeds: sample i of problem p uses ``problem_seed(seed, task, p) + i`` (run.json
  ``sampler.seed_rule = "problem-hash"``); a run made before that rule (no seed_rule: "base+i",
  seed + i for every problem) resumes and grows with its own rule. A
  that differs from run.json in its run identity (see :mod:`harness.rundir`) is refused before
  anything is written; a second process on the same directory is refused at once (the lock).
- Flushes: problems stream through ``backend.stream`` (vllm submits new problems while earlier ones
  decode; hf refills per decode batch); the moment a problem's samples all exist they are appended
  to the store as their own shard, so a kill loses at most the problems in flight; at the end of a
  session more than 64 such shards are compacted into one (:meth:`SampleStore.compact`). ``chunk``
  bounds the problems in flight (as ``chunk`` times the most samples one draws); default: the
  backend's, vllm twice its scheduler's ``max_num_seqs`` samples, hf 256 samples. A larger bound
  fills a GPU better and risks more on a kill.
- Engine output: everything the engine and libraries print (vLLM's log lines, warnings, load bars)
  goes to ``engine.log`` in the run directory; the terminal shows the progress bar and summary.
- Executors: a :class:`ProcessExecutor` (one backend in this process) streams the problems, or
  with ``executor="ray"`` a :class:`harness.ray_executor.RayExecutor` hands chunks of them to Ray
  actors, each running a ProcessExecutor: the same loop, so the same samples.
- Shards: ``shard=(i, N)`` keeps problem p iff ``int(sha256(p.id)[:16 hex], 16) mod N == i``:
  stable across machines and data order, every problem in exactly one shard. ``limit`` applies first.
- problems.parquet: one row per problem; ``t2 score`` fills n and c, ``t2 likelihood`` fills nll
  and answer_tokens; each keeps the other's columns from an existing file (n = c = 0 and nll
  null until the other has run).
- Commands that act on an existing run (likelihood, score) take the task, limit, data files,
  options and shard from its run.json; a conflicting explicit value is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TextIO

import pyarrow as pa

from harness import records
from harness.errors import DataError, InvalidSetting, RecordError, RunMismatch
from harness.models import resolve_model, training_metadata
from harness.progress import progress_bar
from harness.provenance import harness_source, model_commit, package_versions, prompt_record
from harness.rundir import RunDir, identity, model_id
from harness.samplers import (
    MAX_SAMPLES,
    SampleRequest,
    SamplingSettings,
    engine_output,
    get_backend,
    sample_seeds,
)
from harness.tasks.base import Problem, Task, data_files_hash, provenance

Shard = tuple[int, int]
ENGINE_LOG = "engine.log"  # in the run directory: the engine's own log lines and library warnings


def shard_of(problem_id: str, n_shards: int) -> int:
    """The shard (0..n_shards-1) problem ``problem_id`` belongs to: sha256 of the id mod N."""
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:16], 16) % n_shards


def select_problems(problems: Sequence[Problem], limit: int | None, shard: Shard | None) -> list[Problem]:
    """The first ``limit`` problems, then this shard's share of them."""
    chosen = list(problems[:limit] if limit is not None else problems)
    if shard is not None:
        chosen = [p for p in chosen if shard_of(p.id, shard[1]) == shard[0]]
    return chosen


def shard_spec(shard: Shard | None) -> str | None:
    """run.json's form of a shard, "i/N" (None: the whole task)."""
    if shard is None:
        return None
    if not 0 <= shard[0] < shard[1]:
        raise InvalidSetting("shard", f"{shard[0]}/{shard[1]}", "i/N with 0 <= i < N")
    return f"{shard[0]}/{shard[1]}"


def load_problems(task_name: str, data_files: str | None, limit: int | None, shard: Shard | None,
                  options: dict[str, Any] | None = None) -> tuple[Task, list[Problem], dict[str, Any]]:
    """The task, this run's problems, and run.json's task entry (provenance, options, data hash)."""
    from harness.tasks import get_task, task_options

    if limit is not None and limit < 1:
        raise InvalidSetting("limit", limit, "a count >= 1")
    spec = shard_spec(shard)
    kwargs = dict(options or {})
    if data_files:
        kwargs["data_files"] = data_files
    if limit is not None and "limit" in task_options(task_name):
        kwargs["limit"] = limit
    task = get_task(task_name, **kwargs)
    problems = select_problems(task.problems(), limit, shard)
    if not problems:
        raise DataError(f"task {task_name}: no problems to run (limit {limit}, shard {spec}, "
                        f"data {data_files or task.source})")
    record = {**provenance(task, problems), "data_sha256": data_files_hash(task.data_files),
              "options": {"limit": limit, "data_files": data_files, **(options or {})}}
    return task, problems, record


def seeded_fewshot(task_name: str, options: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """``options`` with ``fewshot_seed`` = the run's base seed ``seed`` when few-shot examples are
    asked of a task that draws them itself (not given explicitly; lm-eval tasks keep their own
    fewshot seed, option ``seed``): which examples a run shows follows from its seed."""
    from harness.tasks import task_options as options_of

    options = dict(options or {})
    if options.get("num_fewshot") and "fewshot_seed" in options_of(task_name):
        options.setdefault("fewshot_seed", seed)
    return options


def check_settings(settings: SamplingSettings, chunk: int | None) -> None:
    """Refuse sampler settings outside their domain (non-finite numbers included)."""
    for field, value in (("n", settings.n), ("max_tokens", settings.max_tokens), ("chunk", chunk or 1)):
        if value < 1:
            raise InvalidSetting(field, value, "an integer >= 1")
    if settings.n > MAX_SAMPLES:
        raise InvalidSetting("n", settings.n, f"at most {MAX_SAMPLES} samples per problem")
    if not (math.isfinite(settings.temperature) and settings.temperature >= 0):
        raise InvalidSetting("temperature", settings.temperature, "a finite number >= 0")
    if not 0 < settings.top_p <= 1:
        raise InvalidSetting("top_p", settings.top_p, "0 < p <= 1")
    if settings.top_k < 0:
        raise InvalidSetting("top_k", settings.top_k, "an integer >= 0 (0 = off)")
    if not 0 <= settings.min_p <= 1:
        raise InvalidSetting("min_p", settings.min_p, "0 <= min_p <= 1 (0 = off)")
    if not (math.isfinite(settings.repetition_penalty) and settings.repetition_penalty > 0):
        raise InvalidSetting("repetition_penalty", settings.repetition_penalty, "a finite number > 0 (1 = off)")
    for field in ("presence_penalty", "frequency_penalty"):
        if not -2 <= getattr(settings, field) <= 2:
            raise InvalidSetting(field, getattr(settings, field), "a number in [-2, 2] (0 = off)")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _loaded(manifest: dict[str, Any], spec: str, path: str, info: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with what the loaded model tells: run.json's model entry (id, path, revision,
    commit, dtype, parameter counts, D / training FLOPs when the folder records them), the harness
    source, versions, device (see :mod:`harness.provenance`)."""
    model = {"id": model_id(spec, path), "path": path, "revision": info.get("revision"),
             "commit": model_commit(model_id(spec, path), path, info.get("revision")),
             "params_total": info["params"]["total"], "params_non_embedding": info["params"]["non_embedding"],
             "dtype": info.get("dtype"), **training_metadata(path)}
    return {**manifest, "model": model, "harness": harness_source(),
            "versions": {**package_versions(), **info.get("versions", {})}, "device": info.get("device"),
            "host": platform.node()}


def chat_prompt(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """``prompt`` as the single user turn of the tokenizer's chat template (after a system turn
    ``system_prompt`` if given), assistant turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidSetting("chat", True, "a model whose tokenizer has a chat template")
    system = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
    return tokenizer.apply_chat_template([*system, {"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def prompt_renderer(task: Task, tokenizer, chat: bool, system_prompt: str | None) -> Callable[[Problem], str]:
    """Problem → the text the model is given: its prompt, or in chat mode the task's user message
    in the chat template."""
    if not chat:
        return lambda p: p.prompt
    return lambda p: chat_prompt(tokenizer, task.user_message(p), system_prompt)


class TaskSpec(NamedTuple):
    """What :func:`load_problems` takes: enough for another process to load the same problems."""

    name: str
    data_files: str | None
    limit: int | None
    shard: Shard | None
    options: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What builds a run's engine: the backend, the resolved model path, the backend's options,
    and how prompts are rendered (chat mode, system prompt)."""

    backend: str
    path: str
    options: dict[str, Any]
    chat: bool = False
    system_prompt: str | None = None


def worker_place(info: dict[str, Any]) -> dict[str, Any]:
    """run.json's entry for one worker: its host and device (from the backend's model_info)."""
    return {"host": platform.node(), "device": info.get("device")}


class ProcessExecutor:
    """One backend in this process with the task's prompt renderer: the executor of a plain run,
    and the engine inside every Ray worker, so both draw through :func:`_sample_loop`."""

    name = "process"

    def __init__(self, task: Task, spec: EngineSpec) -> None:
        self.task, self.spec = task, spec
        self.engine = get_backend(spec.backend, spec.path, **spec.options)
        self.render = prompt_renderer(task, self.engine.tokenizer, spec.chat, spec.system_prompt)
        self.info = self.engine.model_info()

    def describe(self, example: Problem) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the backend's model_info, run.json's prompt record with ``example`` rendered)."""
        template = self.task.chat_message if self.spec.chat else self.task.template
        return self.info, prompt_record(self.engine.tokenizer, template, self.spec.chat, self.spec.system_prompt,
                                        self.render(example))

    def record(self) -> dict[str, Any]:
        """run.json's ``executor``: its name and where its one worker runs."""
        return {"name": self.name, "workers": [worker_place(self.info)]}

    def sample(self, run: RunDir, todo: list[tuple[Problem, int]], settings: SamplingSettings, seed_rule: str,
               size: int | None, bar) -> tuple[int, int]:
        """Samples start..n-1 of each (problem, start) of ``todo`` into ``run``'s store (see
        :func:`_sample_loop`); returns (samples, completion tokens) written."""
        return _sample_loop(self.engine, run, self.task.name, todo, settings, seed_rule, self.render, size, bar)

    def gold_nll(self, problems: Sequence[Problem]) -> list[tuple[float, int]]:
        """(NLL in nats, answer tokens) of each problem's gold answer span given its prompt."""
        return self.engine.gold_nll([p.prompt for p in problems], [p.answer_span for p in problems])

    def close(self) -> None:
        self.engine.close()


def check_executor(kind: str, workers: int | None) -> None:
    """Refuse an unknown executor, or a worker count without the ray executor or below 1."""
    if kind not in ("process", "ray"):
        raise InvalidSetting("executor", kind, "process or ray")
    if workers is not None and (kind != "ray" or workers < 1):
        raise InvalidSetting("workers", workers, "a count >= 1, with the ray executor only")


def _open_executor(kind: str, workers: int | None, task: Task, engine: EngineSpec, run: RunDir,
                   task_spec: TaskSpec, problems_sha256: str, terminal: TextIO | None = None):
    """The executor ``kind`` of a run (see :func:`check_executor`): a :class:`ProcessExecutor`,
    or a :class:`harness.ray_executor.RayExecutor` of ``workers`` actors that load ``task_spec``'s
    problems themselves (checked against ``problems_sha256``)."""
    if kind == "process":
        return ProcessExecutor(task, engine)
    from harness.ray_executor import RayExecutor

    return RayExecutor(workers, run, task_spec, problems_sha256, engine, terminal)


def run_sample(task_name: str, model: str, out: str | os.PathLike, settings: SamplingSettings, *,
               backend: str = "hf", limit: int | None = None, shard: Shard | None = None, chat: bool = False,
               chunk: int | None = None, data_files: str | None = None, system_prompt: str | None = None,
               task_options: dict[str, Any] | None = None, backend_options: dict[str, Any] | None = None,
               progress: bool = True, executor: str = "process", workers: int | None = None,
               allocator=None, with_likelihood: bool = False) -> dict[str, Any]:
    """Sample ``settings.n`` completions per problem into run directory ``out`` (resumable);
    returns the cost record (also written to cost.json). ``settings.stop`` (e.g. from generation
    kwargs) is added to the task's stops of the mode (chat or completion); ``system_prompt`` (chat
    mode only) opens each chat.
    ``executor``: "process" (this process) or "ray" (``workers`` Ray actors, see
    :mod:`harness.ray_executor`); both write the same samples, and run.json's ``executor`` names it.
    ``allocator`` (:class:`harness.adaptive.Allocator`): per-problem n chosen in rounds, at most
    ``settings.n`` each, drawn through the same growing-n path; run.json records it as ``adaptive``.
    ``with_likelihood``: then score the gold answers' NLL with the same engine (what
    :func:`run_likelihood` writes into problems.parquet)."""
    check_settings(settings, chunk)
    check_executor(executor, workers)
    if system_prompt is not None and not chat:
        raise InvalidSetting("system_prompt", system_prompt, "none without chat mode (chat templates only)")
    run = RunDir(out)
    task_options = seeded_fewshot(task_name, task_options, settings.seed)
    task, problems, task_record = load_problems(task_name, data_files, limit, shard, task_options)
    task.chat = chat
    settings = dataclasses.replace(settings, stop=tuple(dict.fromkeys(task.stop_sequences() + settings.stop)))
    path = resolve_model(model)
    sampler = {"backend": backend, **dataclasses.asdict(settings), "stop": list(settings.stop), "chat": chat,
               "system_prompt": system_prompt}
    manifest = {"model": {"id": model_id(model, path), "revision": (backend_options or {}).get("revision")},
                "task": task_record, "sampler": sampler, "shard": shard_spec(shard)}
    with run.locked():
        prior = run.manifest() or {}
        had = prior.get("sampler")
        sampler["seed_rule"] = identity(prior, ("sampler",))["sampler.seed_rule"] if had else "problem-hash"
        sampler["n"] = max(settings.n, prior["sampler"]["n"] if prior.get("sampler") else 0)  # the largest n asked
        old = run.verify(manifest, skip=("model.dtype",)) or {}  # before the (slow) model load
        engine_spec = EngineSpec(backend, path, _run_dtype(run, backend_options, old), chat, system_prompt)
        stored = run.store.stored_counts(task.name, settings.n)
        todo = [(p, stored.get(p.id, 0)) for p in problems if stored.get(p.id, 0) < settings.n]
        if allocator is None and _finished(run, old, task.name, problems, todo, with_likelihood):
            return _nothing_to_sample(run, task.name, problems, settings.n, with_likelihood)
        with _executor(executor, workers, task, engine_spec, run,
                       TaskSpec(task_name, data_files, limit, shard, task_options),
                       task_record["problems_sha256"]) as (engine, terminal):
            info, manifest["prompt"] = engine.describe(problems[0])
            manifest = {**_loaded(manifest, model, path, info), "executor": engine.record()}
            run.verify(manifest)
            manifest.update(start_time=old.get("start_time", _now()), end_time=None, wall_s=old.get("wall_s", 0.0),
                            likelihood={"backend": backend} if with_likelihood else old.get("likelihood"))
            if old.get("adaptive") or allocator is not None:  # its n_i depend on outcomes, whatever comes later
                manifest["adaptive"] = old.get("adaptive") or allocator.record(None)
            run.write_manifest(manifest)
            bar = progress_bar(total=len(problems), initial=len(problems) - len(todo), unit="problem",
                               disable=not progress, desc=f"{task.name} n={settings.n}", file=terminal)
            t0 = time.perf_counter()
            if allocator is None:
                samples, tokens = engine.sample(run, todo, settings, sampler["seed_rule"], chunk, bar)
            else:
                bar.close()
                samples, tokens = allocator.run(lambda todo, n: engine.sample(
                    run, todo, dataclasses.replace(settings, n=n), sampler["seed_rule"], chunk,
                    progress_bar(total=len(todo), disable=not progress, desc=f"{task.name} n={n}", file=terminal)),
                    task, run.store, problems)
                manifest["adaptive"] = allocator.record(old.get("adaptive"))
            wall = time.perf_counter() - t0
            manifest["executor"] = engine.record()
            if with_likelihood:
                _store_likelihood(run, task.name, problems, engine)
        run.store.compact()
        manifest.update(end_time=_now(), wall_s=manifest["wall_s"] + wall)
        run.write_manifest(manifest)
        cost = _write_cost(run, task.name, {p.id for p in problems}, info, manifest["wall_s"], wall)
    flops = f", {cost['total_flops']:.3g} FLOPs" if "total_flops" in cost else ""
    print(f"{out}: {cost['n_problems']} problems, {cost['n_samples']} samples, {cost['tokens']} completion "
          f"tokens; this session {samples} samples in {wall:.1f} s ({tokens / max(wall, 1e-9):.1f} tok/s){flops}; "
          f"{backend} backend, {info.get('dtype')} on {info.get('device')}; engine log {run.path / ENGINE_LOG}"
          + (f"; gold NLL in {run.problems_file}" if with_likelihood else ""))
    if manifest["executor"]["name"] == "ray":
        for i, w in enumerate(manifest["executor"]["workers"]):
            print(f"  Ray worker {i} on {w['host']} ({w['device']}): {w['problems']} problems, {w['samples']} "
                  f"samples, {w['completion_tokens']} completion tokens{'' if w['alive'] else ' (died)'}")
    return cost


def _finished(run: RunDir, old: dict[str, Any], task: str, problems: list[Problem],
              todo: list[tuple[Problem, int]], with_likelihood: bool) -> bool:
    """Whether a session would add nothing: no sample ``todo``, the last session ended (its
    run.json end time and cost.json are written) and, ``with_likelihood``, every problem already
    has its gold NLL in problems.parquet. Then no model needs loading."""
    if todo or not old.get("end_time") or not run.cost_file.is_file():
        return False
    if not with_likelihood:
        return True
    rows = run.read_problems()
    return all((rows.get((task, p.id)) or {}).get("nll") is not None for p in problems)


def _nothing_to_sample(run: RunDir, task: str, problems: list[Problem], n: int, with_likelihood: bool
                       ) -> dict[str, Any]:
    """The rerun of a finished run (:func:`_finished`): no model loaded, nothing written (run.json,
    cost.json and engine.log stay as the last session left them); returns cost.json's record with
    this session's counts, as :func:`run_sample` does, and wall_s_this_session 0."""
    counts = _counts(_stored_tokens(run, task, {p.id for p in problems})[0])
    print(f"{run.path}: {counts['n_problems']} problems, {counts['n_samples']} samples; nothing to sample (every "
          f"problem has its n={n} samples{' and a gold NLL' if with_likelihood else ''}), no model loaded")
    return {**records.read_json(run.cost_file, "cost"), "wall_s_this_session": 0.0, **counts}


def _run_dtype(run: RunDir, options: dict[str, Any] | None, old: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the dtype an existing run's run.json records (another explicit one is
    refused before anything is loaded or written), so a run resumes as it began."""
    options = dict(options or {})
    recorded = (old.get("model") or {}).get("dtype")
    if recorded and options.setdefault("dtype", recorded) != recorded:
        raise RunMismatch(f"{run.run_file}: this run has model.dtype={recorded!r} but the command asks for "
                          f"{options['dtype']!r}; runs are never mixed", "model.dtype")
    return options


@contextlib.contextmanager
def _executor(kind: str, workers: int | None, task: Task, engine: EngineSpec, run: RunDir, task_spec: TaskSpec,
              problems_sha256: str) -> Iterator[tuple[ProcessExecutor, TextIO]]:
    """(the run's executor (:func:`_open_executor`), a stream on the terminal) with every engine log
    line and library warning in RUN/engine.log (:func:`engine_output`)."""
    with engine_output(run.path / ENGINE_LOG) as terminal, \
            contextlib.closing(_open_executor(kind, workers, task, engine, run, task_spec, problems_sha256,
                                              terminal)) as ex:
        yield ex, terminal


def _store_likelihood(run: RunDir, task: str, problems: list[Problem], engine: ProcessExecutor):
    """Gold-answer NLL and answer tokens of every problem into problems.parquet (n, c kept)."""
    nll = engine.gold_nll(problems)
    rows = run.read_problems()
    for p, (value, n_tokens) in zip(problems, nll, strict=True):
        row = rows.setdefault((task, p.id), {"task": task, "problem_id": p.id, "n": 0, "c": 0})
        row.update(nll=value, answer_tokens=n_tokens, prompt=p.prompt, gold=p.answer)
    return run.write_problems(rows)


def _sample_loop(engine, run: RunDir, task: str, todo: list[tuple[Problem, int]], settings: SamplingSettings,
                 seed_rule: str, render: Callable[[Problem], str], size: int | None, bar=None) -> tuple[int, int]:
    """Draw each (problem, start) of ``todo`` its samples start..n-1 with ``seed_rule``'s seeds
    through ``engine.stream``, at most ``size`` problems in flight (``size`` times the most samples
    one of them draws; None: the backend's default), each problem's rows appended to the store the
    moment they all exist, so a kill loses only the problems in flight; ``bar`` moves per problem.
    Returns (samples, completion tokens) written (also the path a distributed worker calls)."""
    ordered = sorted(todo, key=lambda item: item[1])  # equal starts adjacent (hf batches share one)
    seeds = sample_seeds(seed_rule, settings.seed, task, [p.id for p, _ in ordered])
    requests = (SampleRequest(p, render(p), seed, start) for (p, start), seed in zip(ordered, seeds, strict=True))
    t0, samples, tokens = time.perf_counter(), 0, 0
    per_problem = settings.n - (ordered[0][1] if ordered else 0)  # the most samples one problem draws
    for problem, completions in engine.stream(requests, settings, size * per_problem if size else None):
        run.store.append([{"task": task, "problem_id": problem.id, **dataclasses.asdict(c)} for c in completions])
        samples += len(completions)
        tokens += sum(c.completion_tokens for c in completions)
        if bar is not None:
            elapsed = time.perf_counter() - t0
            bar.set_postfix_str(f"{samples / elapsed:.1f} samples/s, {tokens / elapsed:.1f} tok/s", refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    return samples, tokens


def _stored_tokens(run: RunDir, task: str, wanted: set[str]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """({problem id: completion tokens of each stored sample}, {problem id: prompt tokens}) of the
    ``wanted`` problems of ``task``, read from the store's token columns (no texts)."""
    per_problem: dict[str, list[int]] = {}
    prompt_len: dict[str, int] = {}
    for batch in run.store.batches(["task", "problem_id", "prompt_tokens", "completion_tokens"]):
        for row in batch.to_pylist():
            if row["task"] == task and row["problem_id"] in wanted:
                per_problem.setdefault(row["problem_id"], []).append(row["completion_tokens"])
                prompt_len[row["problem_id"]] = row["prompt_tokens"]
    return per_problem, prompt_len


def _write_cost(run: RunDir, task: str, wanted: set[str], info: dict[str, Any], wall_s: float,
                wall_session: float) -> dict[str, Any]:
    """cost.json of the run's stored samples of ``wanted`` problems (FLOPs from the model config)."""
    per_problem, prompt_len = _stored_tokens(run, task, wanted)
    cost: dict[str, Any] = {"wall_s": wall_s, "wall_s_this_session": wall_session}
    try:
        from harness.cost import sampling_cost
    except ImportError as e:
        warnings.warn(f"cost.json without FLOPs: harness.cost unavailable ({e})", stacklevel=2)
    else:
        ids = sorted(per_problem)
        cost.update(sampling_cost(info["config"], [prompt_len[i] for i in ids], [per_problem[i] for i in ids]))
    run.write_cost(cost)
    return {**cost, **_counts(per_problem)}


def _counts(per_problem: dict[str, list[int]]) -> dict[str, int]:
    """Problems, samples and completion tokens of :func:`_stored_tokens`'s first map."""
    return {"n_problems": len(per_problem), "n_samples": sum(map(len, per_problem.values())),
            "tokens": sum(map(sum, per_problem.values()))}


def _from_manifest(old: dict[str, Any], asked: dict[str, Any]) -> tuple:
    """(task, data_files, limit, shard, options) of an existing run; an explicit value in
    ``asked`` (run.json field → value, None = not given) that differs raises :class:`RunMismatch`."""
    options = dict(old["task"].get("options") or {})
    recorded = {"task.name": old["task"]["name"], "task.options.limit": options.pop("limit", None),
                "task.options.data_files": options.pop("data_files", None), "shard": old.get("shard"),
                "task.options": options}
    for field, value in asked.items():
        if value is not None and value != recorded[field]:
            raise RunMismatch(f"run.json has {field}={recorded[field]!r} but the command asks for "
                              f"{value!r}; a command on an existing run takes its settings", field)
    spec = recorded["shard"]
    return (recorded["task.name"], recorded["task.options.data_files"], recorded["task.options.limit"],
            tuple(map(int, spec.split("/"))) if spec else None, options)


def _existing_problems(run: RunDir, old: dict[str, Any], asked: dict[str, Any] | None = None,
                       extra_options: dict[str, Any] | None = None) -> tuple[Task, list[Problem], dict[str, Any]]:
    """The task (with ``extra_options``) and problems of an existing run, checked against the
    run's data identity."""
    name, data_files, limit, shard, options = _from_manifest(old, asked or {})
    task, problems, record = load_problems(name, data_files, limit, shard, {**options, **(extra_options or {})})
    recorded = old["task"]
    for field in ("problems_sha256", "data_sha256"):
        if recorded.get(field) is not None and recorded[field] != record[field]:
            raise RunMismatch(f"{run.run_file}: the data of task {task.name} loaded from {task.source} is not "
                              f"the data this run used (task.{field} differs)", f"task.{field}")
    return task, problems, record


def run_likelihood(task_name: str | None, model: str | None, out: str | os.PathLike, *, backend: str | None = None,
                   limit: int | None = None, shard: Shard | None = None, data_files: str | None = None,
                   task_options: dict[str, Any] | None = None,
                   backend_options: dict[str, Any] | None = None, executor: str = "process",
                   workers: int | None = None):
    """Gold-answer NLL of every problem into ``out``/problems.parquet (n, c kept from a scored run).
    On an existing run, the task, limit, data files, options and shard come from its run.json, and
    so do the model, the backend and the dtype when not given (``model``/``backend`` None).
    ``executor`` and ``workers`` as in :func:`run_sample`."""
    check_executor(executor, workers)
    run = RunDir(out)
    if task_name is None and not run.run_file.is_file():
        raise InvalidSetting("task", None, f"a task name ({run.path} holds no run yet)")
    with run.locked():
        old = run.manifest()
        if old:
            asked = {"task.name": task_name, "task.options.limit": limit, "task.options.data_files": data_files,
                     "shard": shard_spec(shard), "task.options": task_options or None}
            task_spec = TaskSpec(*_from_manifest(old, asked))
            task, problems, task_record = _existing_problems(run, old, asked)
        else:
            task_spec = TaskSpec(task_name, data_files, limit, shard, task_options)
            task, problems, task_record = load_problems(*task_spec)
        if model is None and not old:
            raise InvalidSetting("model", None, f"a model ({run.path} holds no run yet)")
        if model is None:  # the run's own model, at its revision
            model = old["model"]["id"]
            backend_options = {"revision": old["model"].get("revision"), **(backend_options or {})}
        backend = backend or ((old or {}).get("sampler") or (old or {}).get("likelihood") or {}).get("backend", "hf")
        path = resolve_model(model)
        manifest = {"model": {"id": model_id(model, path), "revision": (backend_options or {}).get("revision")},
                    "task": task_record, "sampler": None, "shard": shard_spec(shard) if not old else old["shard"]}
        run.verify(manifest, parts=("model", "task"), skip=("model.dtype",))
        engine_spec = EngineSpec(backend, path, _run_dtype(run, backend_options, old or {}))
        with _executor(executor, workers, task, engine_spec, run, task_spec,
                       task_record["problems_sha256"]) as (engine, _):
            manifest = _loaded(manifest, model, path, engine.info)
            run.verify(manifest, parts=("model", "task"))
            if not old:
                run.write_manifest({**manifest, "likelihood": {"backend": backend}, "start_time": _now(),
                                    "executor": engine.record()})
            return _store_likelihood(run, task.name, problems, engine)


def score_run(out: str | os.PathLike, task_options: dict[str, Any] | None = None):
    """Judge every stored sample with its task's verifier → scores.parquet and problems.parquet.

    ``task_options`` are checking options (e.g. ``workers``) added to the run's own; those the
    run's task does not take are left out. A verifier that raises on one sample marks that sample
    incorrect with the exception as its message; the rest are still judged. scores.parquet records
    what it judged (:func:`scoring_stamp`) for :func:`scores_current`."""
    run = RunDir(out)
    old = run.require()
    options = _checking_options(old, task_options)
    with run.locked():
        if not run.store.shards():
            raise DataError(f"{run.store.dir}: no samples to score (sample into {run.path} first)")
        task, problems, _ = _existing_problems(run, old, extra_options=options)
        task.chat = bool((old.get("sampler") or {}).get("chat"))  # replies are judged as they were drawn
        try:
            return _score(run, task, {p.id: p for p in problems}, scoring_stamp(run, old, options))
        finally:
            task.close()


SCORED_KEY = "t2_scored"  # scores.parquet schema metadata: the scoring_stamp of its verdicts, as JSON


def _checking_options(manifest: dict[str, Any], task_options: dict[str, Any] | None) -> dict[str, Any]:
    """The checking options of ``task_options`` that the run's task takes (others are left out)."""
    from harness.tasks import task_options as options_of

    accepted = options_of(manifest["task"]["name"])
    return {k: v for k, v in (task_options or {}).items() if k in accepted}


def scoring_stamp(run: RunDir, manifest: dict[str, Any], options: dict[str, Any]) -> str:
    """What a scoring of ``run`` judges, as JSON: ``samples``, sha256 over every stored problem's
    (task, id, sample count, lowest and highest sample_idx) (the store only grows and a key's text
    never changes, so any new sample changes it), and the scorer's settings: the run's task
    identity (name, version, template, options, data, shard), chat mode, the checking ``options``
    but ``workers`` (parallelism only) and the harness version. Reads the key columns only."""
    import harness
    from harness.store import KEY

    spans = [b.group_by(["task", "problem_id"]).aggregate([("sample_idx", f) for f in ("count", "min", "max")])
             for b in run.store.batches(list(KEY))]
    if spans:  # one problem may span batches: combine their spans
        spans = pa.concat_tables(spans).group_by(["task", "problem_id"]).aggregate(
            [("sample_idx_count", "sum"), ("sample_idx_min", "min"), ("sample_idx_max", "max")]).to_pylist()
    samples = hashlib.sha256(json.dumps(sorted(tuple(r.values()) for r in spans)).encode()).hexdigest()
    return json.dumps({"samples": samples, "task": identity(manifest, ("task",)),
                       "chat": bool((manifest.get("sampler") or {}).get("chat")),
                       "options": {k: v for k, v in options.items() if k != "workers"},
                       "harness": harness.__version__}, sort_keys=True, default=str)


def scores_current(out: str | os.PathLike, task_options: dict[str, Any] | None = None) -> bool:
    """Whether the run's scores.parquet (with problems.parquet) judged exactly its stored samples
    with these scorer settings (its :func:`scoring_stamp` is today's), so that scoring again would
    write the same verdicts; False for scores written before stamps or unreadable ones."""
    run = RunDir(out)
    old = run.require()
    if not (run.scores_file.is_file() and run.problems_file.is_file()):
        return False
    try:
        found = records.read_metadata(run.scores_file, "scores").get(SCORED_KEY)
    except RecordError:
        return False
    return found == scoring_stamp(run, old, _checking_options(old, task_options))


SCORE_BATCH = 65_536  # samples judged and written per batch: memory is one batch of texts, not the run's


def _score(run: RunDir, task: Task, by_id: dict[str, Problem], stamp: str):
    """scores.parquet streamed batch by batch (rows in store order) with ``stamp`` in its metadata,
    then problems.parquet's n and c."""
    counts: dict[tuple[str, str], list[int]] = {}

    def scored():
        for batch in run.store.batches(["task", "problem_id", "sample_idx", "text"], SCORE_BATCH):
            rows = batch.to_pydict()
            missing = sorted(set(rows["problem_id"]) - by_id.keys())
            if missing:
                raise DataError(f"{run.path}: samples of problem(s) {', '.join(missing[:3])} not in task "
                                f"{task.name} as loaded from {task.source}")
            verdicts = _judge(task, [(by_id[p], t) for p, t in zip(rows["problem_id"], rows["text"], strict=True)])
            for key, (_, ok, _) in zip(zip(rows["task"], rows["problem_id"]), verdicts, strict=True):
                c = counts.setdefault(key, [0, 0])
                c[0], c[1] = c[0] + 1, c[1] + int(ok)
            yield {"task": rows["task"], "problem_id": rows["problem_id"], "sample_idx": rows["sample_idx"],
                   "answer": [v[0] for v in verdicts], "correct": [v[1] for v in verdicts],
                   "verifier_message": [v[2] for v in verdicts]}

    scores_path = records.write_batches(run.scores_file, "scores", scored(), {SCORED_KEY: stamp})
    problems = run.read_problems()
    for key, (n, c) in counts.items():
        row = problems.setdefault(key, {"task": key[0], "problem_id": key[1], "nll": None, "answer_tokens": None})
        row.update(n=n, c=c, prompt=by_id[key[1]].prompt, gold=by_id[key[1]].answer)
    return scores_path, run.write_problems(problems)


def _judge(task: Task, items: list[tuple[Problem, str]]) -> list[tuple[str | None, bool, str]]:
    """(answer, correct, message) per (problem, completion); a crash is recorded, not raised."""
    def one(problem: Problem, text: str) -> tuple[str | None, bool, str]:
        try:
            v = task.check(problem, text)
            return v.answer, bool(v.correct), v.message
        except Exception as e:  # noqa: BLE001 - a verifier bug must not lose the other verdicts
            return None, False, f"verifier error: {type(e).__name__}: {e}"

    if type(task).check_many is not Task.check_many:
        try:
            return [(v.answer, bool(v.correct), v.message) for v in task.check_many(items)]
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"{task.name}: check_many failed ({type(e).__name__}: {e}); checking one by one",
                          stacklevel=2)
    return [one(p, t) for p, t in items]


def merge_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Join shard run directories into ``out`` (see :meth:`RunDir.merge`): their run.json must
    agree except for shard, times and host; samples are unioned by key (idempotent), all or
    nothing. Returns the new samples written."""
    return RunDir(out).merge([RunDir(r) for r in runs])
