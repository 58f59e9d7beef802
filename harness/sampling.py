"""The run driver behind ``t2 sample``, ``t2 likelihood``, ``t2 score`` and ``t2 merge``.

A run directory holds run.json (the manifest), samples/ (the store, see :mod:`harness.store`),
cost.json, and after scoring scores.parquet and problems.parquet.

- Resume: rerunning the same command skips problems whose n samples are already stored. A rerun
  whose model, task, sampler settings or shard differ from run.json's refuses, naming the field.
- Chunks: ``chunk`` problems (all their prompts at once) go to ``backend.sample`` per call, and
  each chunk is flushed to the store as one shard. Default: ⌈1024 / n⌉ problems (≈1024 samples);
  the hf backend packs them into decode batches, vllm schedules them itself.
- Shards: ``--shard i/N`` keeps problem p iff ``int(sha256(p.id)[:16 hex], 16) mod N == i``: stable
  across machines and data order, every problem in exactly one shard. ``--limit P`` applies first.
- problems.parquet: one row per problem; ``t2 score`` fills n and c, ``t2 likelihood`` fills nll
  and answer_tokens; each keeps the other's columns from an existing file (n = c = 0 and nll
  null until the other has run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata as metadata
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

import harness
from harness import records
from harness.models import resolve_model, training_metadata
from harness.progress import progress as progress_bar
from harness.samplers import SamplingSettings, get_backend
from harness.store import SampleStore, merge_stores
from harness.tasks.base import Problem, Task, provenance

RUN_FILE, COST_FILE, SCORES_FILE, PROBLEMS_FILE = "run.json", "cost.json", "scores.parquet", "problems.parquet"


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → (i, N) with 0 <= i < N; None stays None."""
    if spec is None:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard: expected i/N (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard: expected 0 <= i < N, got {spec!r}")
    return i, n


def shard_of(problem_id: str, n_shards: int) -> int:
    """The shard (0..n_shards-1) problem ``problem_id`` belongs to: sha256 of the id mod N."""
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:16], 16) % n_shards


def select_problems(problems: Sequence[Problem], limit: int | None, shard: tuple[int, int] | None) -> list[Problem]:
    """The first ``limit`` problems, then this shard's share of them."""
    chosen = list(problems[:limit] if limit is not None else problems)
    if shard is not None:
        chosen = [p for p in chosen if shard_of(p.id, shard[1]) == shard[0]]
    return chosen


def load_task(name: str, data_files: str | None, limit: int | None, options: dict[str, Any] | None = None) -> Task:
    from harness.tasks import get_task

    kwargs = dict(options or {})
    if data_files:
        kwargs["data_files"] = data_files
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit: expected a count >= 1, got {limit}")
        kwargs["limit"] = limit
    return get_task(name, **kwargs)


def parse_task_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``["n_shot=5", "shift=1"]`` → {"n_shot": 5, "shift": 1} (values parsed as YAML scalars)."""
    import yaml

    options = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--task-option: expected KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def backend_options(backend: str, *, device: str | None = None, dtype: str | None = None,
                    revision: str | None = None, attention: str | None = None,
                    **vllm_options: Any) -> dict[str, Any]:
    """The constructor options of ``backend`` from CLI values (None = the backend's default)."""
    if backend == "hf":
        chosen = {"device": device, "dtype": dtype, "revision": revision, "attention": attention}
    else:
        if device not in (None, "cuda", "cpu"):
            raise ValueError(f"--device: the vllm backend picks its platform itself; got {device!r}")
        chosen = {"dtype": dtype, "revision": revision, **vllm_options}
    return {k: v for k, v in chosen.items() if v is not None}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _versions() -> dict[str, str | None]:
    found = {"harness": harness.__version__}
    for package in ("torch", "transformers", "vllm"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _model_record(spec: str, path: str, info: dict[str, Any]) -> dict[str, Any]:
    """run.json's model entry: id (the --model spec; a local folder as its absolute path), path,
    revision, parameter counts, and D / training FLOPs when the folder records them."""
    return {"id": path if Path(spec).expanduser().exists() else spec, "path": path,
            "revision": info.get("revision"), "params_total": info["params"]["total"],
            "params_non_embedding": info["params"]["non_embedding"], "dtype": info.get("dtype"),
            **training_metadata(path)}


def _identity(run: dict[str, Any]) -> dict[str, Any]:
    """The run.json fields a resumed run must share (dotted name → value)."""
    flat = {"model.id": run["model"]["id"], "model.revision": run["model"].get("revision"),
            "task.name": run["task"]["name"], "task.version": run["task"]["version"],
            "task.template": run["task"]["template"], "shard": run.get("shard")}
    for key, value in (run.get("sampler") or {}).items():
        flat[f"sampler.{key}"] = value
    return flat


def check_resume(out: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The existing run.json of ``out`` (None if none) after checking it is the same run."""
    path = out / RUN_FILE
    if not path.is_file():
        return None
    old = records.read_json(path, "run")
    before, now = _identity(old), _identity(run)
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            raise ValueError(f"{path}: this run has {key}={before.get(key)!r} but the command asks for "
                             f"{now.get(key)!r}; use another --out (runs are never mixed)")
    return old


def chat_prompt(tokenizer, prompt: str) -> str:
    """``prompt`` as the single user turn of the tokenizer's chat template, assistant turn opened."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("--chat: the model's tokenizer has no chat template")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def run_sample(task_name: str, model: str, out: str | os.PathLike, settings: SamplingSettings, *,
               backend: str = "hf", limit: int | None = None, shard: str | None = None, chat: bool = False,
               chunk: int | None = None, data_files: str | None = None,
               task_options: dict[str, Any] | None = None, backend_options: dict[str, Any] | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Sample ``settings.n`` completions per problem into run directory ``out`` (resumable);
    returns the cost record (also written to cost.json). ``settings.stop`` is replaced by the task's."""
    for flag, value in (("-n", settings.n), ("--max-tokens", settings.max_tokens), ("--chunk", chunk or 1)):
        if value < 1:
            raise ValueError(f"{flag}: expected an integer >= 1, got {value}")
    if settings.temperature < 0:
        raise ValueError(f"--temperature: expected >= 0, got {settings.temperature}")
    if not 0 < settings.top_p <= 1:
        raise ValueError(f"--top-p: expected 0 < p <= 1, got {settings.top_p}")
    if settings.top_k < 0:
        raise ValueError(f"--top-k: expected >= 0 (0 = off), got {settings.top_k}")
    out = Path(out)
    shard_spec = parse_shard(shard)
    task = load_task(task_name, data_files, limit, task_options)
    problems = select_problems(task.problems(), limit, shard_spec)
    if not problems:
        raise ValueError(f"--task {task_name}: no problems to sample (after --limit/--shard/--data-files)")
    _writable(out)
    settings = dataclasses.replace(settings, stop=tuple(task.stop))
    path = resolve_model(model)
    sampler = {"backend": backend, **dataclasses.asdict(settings), "chat": chat}
    sampler["stop"] = list(settings.stop)
    manifest = {"model": {"id": path if Path(model).expanduser().exists() else model,
                          "revision": (backend_options or {}).get("revision")},
                "task": {**provenance(task, problems),
                         "options": {"limit": limit, "data_files": data_files, **(task_options or {})}},
                "sampler": sampler, "shard": shard}
    old = check_resume(out, manifest)  # before the (slow) model load

    with contextlib.closing(get_backend(backend, path, **(backend_options or {}))) as engine:
        info = engine.model_info()
        manifest.update(model=_model_record(model, path, info), versions={**_versions(), **info.get("versions", {})},
                        device=info.get("device"), host=platform.node(),
                        start_time=(old or {}).get("start_time", _now()), end_time=None,
                        wall_s=(old or {}).get("wall_s", 0.0))
        records.write_json(out / RUN_FILE, "run", manifest)

        store = SampleStore(out)
        done = store.done_problems(task.name, settings.n)
        todo = [p for p in problems if p.id not in done]
        size = chunk or -(-1024 // settings.n)
        t0 = time.perf_counter()
        samples = tokens = 0
        bar = progress_bar(total=len(problems), initial=len(problems) - len(todo), unit="problem", disable=not progress,
                   desc=f"{task.name} n={settings.n}")
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            prompts = [chat_prompt(engine.tokenizer, p.prompt) if chat else p.prompt for p in batch]
            completions = engine.sample(prompts, settings)
            rows = [{"task": task.name, "problem_id": p.id, **dataclasses.asdict(c)}
                    for p, cs in zip(batch, completions) for c in cs]
            store.append(rows)
            samples += len(rows)
            tokens += sum(r["completion_tokens"] for r in rows)
            elapsed = time.perf_counter() - t0
            bar.set_postfix_str(f"{samples / elapsed:.1f} samples/s, {tokens / elapsed:.1f} tok/s")
            bar.update(len(batch))
        bar.close()
    wall = time.perf_counter() - t0

    table = store.read()
    wanted = {p.id for p in problems}
    per_problem: dict[str, list[int]] = {}
    prompt_len: dict[str, int] = {}
    for row in table.select(["task", "problem_id", "prompt_tokens", "completion_tokens"]).to_pylist():
        if row["task"] == task.name and row["problem_id"] in wanted:
            per_problem.setdefault(row["problem_id"], []).append(row["completion_tokens"])
            prompt_len[row["problem_id"]] = row["prompt_tokens"]
    manifest.update(end_time=_now(), wall_s=manifest["wall_s"] + wall)
    records.write_json(out / RUN_FILE, "run", manifest)
    cost: dict[str, Any] = {"wall_s": manifest["wall_s"], "wall_s_this_session": wall}
    try:
        from harness.cost import sampling_cost
    except ImportError as e:
        warnings.warn(f"cost.json without FLOPs: harness.cost unavailable ({e})")
    else:
        ids = sorted(per_problem)
        cost.update(sampling_cost(info["config"], [prompt_len[i] for i in ids], [per_problem[i] for i in ids]))
    records.write_json(out / COST_FILE, "cost", cost)
    n_samples = sum(map(len, per_problem.values()))
    flops = f", {cost['total_flops']:.3g} FLOPs" if "total_flops" in cost else ""
    print(f"{out}: {len(per_problem)} problems, {n_samples} samples, "
          f"{sum(map(sum, per_problem.values()))} completion tokens; this session {samples} samples in "
          f"{wall:.1f} s ({tokens / max(wall, 1e-9):.1f} tok/s){flops}")
    return cost


def _read_problems(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = out / PROBLEMS_FILE
    if not path.is_file():
        return {}
    return {(r["task"], r["problem_id"]): r for r in records.read_table(path, "problems").to_pylist()}


def _write_problems(out: Path, rows: dict[tuple[str, str], dict[str, Any]]) -> Path:
    ordered = [rows[key] for key in sorted(rows)]
    columns = {name: [r.get(name) for r in ordered] for name in records.COLUMNS["problems"]}
    return records.write_table(out / PROBLEMS_FILE, "problems",
                               pa.table({k: pa.array(v, records.COLUMNS["problems"][k]) for k, v in columns.items()}))


def run_likelihood(task_name: str, model: str, out: str | os.PathLike, *, backend: str = "hf",
                   limit: int | None = None, shard: str | None = None, data_files: str | None = None,
                   task_options: dict[str, Any] | None = None,
                   backend_options: dict[str, Any] | None = None) -> Path:
    """Gold-answer NLL of every problem into ``out``/problems.parquet (n, c kept from a scored run)."""
    out = Path(out)
    task = load_task(task_name, data_files, limit, task_options)
    problems = select_problems(task.problems(), limit, parse_shard(shard))
    if not problems:
        raise ValueError(f"--task {task_name}: no problems to score (after --limit/--shard/--data-files)")
    _writable(out)
    path = resolve_model(model)
    run_path = out / RUN_FILE
    if run_path.is_file():
        old = records.read_json(run_path, "run")
        want = path if Path(model).expanduser().exists() else model
        if old["model"]["id"] != want:
            raise ValueError(f"{run_path}: this run has model.id={old['model']['id']!r} but the command asks "
                             f"for {want!r}; use another --out (runs are never mixed)")
    with contextlib.closing(get_backend(backend, path, **(backend_options or {}))) as engine:
        info = engine.model_info()
        if not run_path.is_file():
            records.write_json(run_path, "run", {
                "model": _model_record(model, path, info),
                "task": {**provenance(task, problems),
                         "options": {"limit": limit, "data_files": data_files, **(task_options or {})}},
                "sampler": None, "likelihood": {"backend": backend}, "shard": shard,
                "versions": {**_versions(), **info.get("versions", {})}, "device": info.get("device"),
                "host": platform.node(), "start_time": _now()})
        nll = engine.gold_nll([p.prompt for p in problems], [p.answer_span for p in problems])
    rows = _read_problems(out)
    for p, (value, n_tokens) in zip(problems, nll):
        row = rows.setdefault((task.name, p.id), {"task": task.name, "problem_id": p.id, "n": 0, "c": 0})
        row.update(nll=value, answer_tokens=n_tokens)
    return _write_problems(out, rows)


def score_run(run: str | os.PathLike, task_options: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Judge every stored sample with its task's verifier → scores.parquet and problems.parquet.

    A verifier that raises on one sample marks that sample incorrect with the exception as its
    message; the rest are still judged. Uses ``task.check_many`` when the task has it."""
    out = Path(run)
    manifest = records.read_json(out / RUN_FILE, "run")
    table = SampleStore(out).read()
    if table.num_rows == 0:
        raise ValueError(f"{out / 'samples'}: no samples to score (run `t2 sample --out {out}` first)")
    options = {k: v for k, v in (manifest["task"].get("options") or {}).items() if v is not None}
    task = load_task(manifest["task"]["name"], options.pop("data_files", None), options.pop("limit", None),
                     {**options, **(task_options or {})})
    by_id = {p.id: p for p in task.problems()}
    rows = table.select(["task", "problem_id", "sample_idx", "text"]).to_pylist()
    missing = sorted({r["problem_id"] for r in rows} - by_id.keys())
    if missing:
        raise ValueError(f"{out}: samples of problem(s) {', '.join(missing[:3])} not in task {task.name} "
                         f"as loaded from {task.source}")
    items = [(by_id[r["problem_id"]], r["text"]) for r in rows]
    verdicts = _judge(task, items)
    scores = {"task": [r["task"] for r in rows], "problem_id": [r["problem_id"] for r in rows],
              "sample_idx": [r["sample_idx"] for r in rows], "answer": [v[0] for v in verdicts],
              "correct": [v[1] for v in verdicts], "verifier_message": [v[2] for v in verdicts]}
    scores_path = records.write_table(out / SCORES_FILE, "scores", scores)
    problems = _read_problems(out)
    counts: dict[tuple[str, str], list[int]] = {}
    for r, (_, ok, _) in zip(rows, verdicts):
        c = counts.setdefault((r["task"], r["problem_id"]), [0, 0])
        c[0] += 1
        c[1] += int(ok)
    for key, (n, c) in counts.items():
        row = problems.setdefault(key, {"task": key[0], "problem_id": key[1], "nll": None, "answer_tokens": None})
        row.update(n=n, c=c)
    if hasattr(task, "close"):
        task.close()
    return scores_path, _write_problems(out, problems)


def _judge(task: Task, items: list[tuple[Problem, str]]) -> list[tuple[str | None, bool, str]]:
    """(answer, correct, message) per (problem, completion); a crash is recorded, not raised."""
    def one(problem: Problem, text: str) -> tuple[str | None, bool, str]:
        try:
            v = task.check(problem, text)
            return v.answer, bool(v.correct), v.message
        except Exception as e:  # noqa: BLE001 - a verifier bug must not lose the other verdicts
            return None, False, f"verifier error: {type(e).__name__}: {e}"

    if hasattr(task, "check_many"):
        try:
            return [(v.answer, bool(v.correct), v.message) for v in task.check_many(items)]
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"{task.name}: check_many failed ({type(e).__name__}: {e}); checking one by one")
    return [one(p, t) for p, t in items]


def merge_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Join shard run directories into ``out``: their run.json must agree except for shard,
    times and host; samples are unioned by key (idempotent). Returns the new samples written."""
    out = Path(out)
    manifests = []
    for run in runs:
        if not (Path(run) / RUN_FILE).is_file():
            raise ValueError(f"{run}: not a run directory (no {RUN_FILE})")
        manifests.append(records.read_json(Path(run) / RUN_FILE, "run"))
    first = manifests[0]
    for run, m in zip(runs[1:], manifests[1:]):
        a, b = _identity(first), _identity(m)
        for key in sorted(set(a) | set(b)):
            if key != "shard" and a.get(key) != b.get(key):
                raise ValueError(f"{run}: {key}={b.get(key)!r} differs from {runs[0]}'s {a.get(key)!r}; "
                                 "only shards of one run can be merged")
    merged = {**first, "shard": None, "merged_from": sorted(str(Path(r).resolve()) for r in runs),
              "start_time": min(m.get("start_time") or "" for m in manifests),
              "end_time": max(m.get("end_time") or "" for m in manifests),
              "wall_s": sum(m.get("wall_s") or 0.0 for m in manifests)}
    merged["task"] = {**first["task"], "n_problems": sum(m["task"].get("n_problems", 0) for m in manifests),
                      "problems_sha256": None}
    if (out / RUN_FILE).is_file():
        existing = records.read_json(out / RUN_FILE, "run")
        a, b = _identity(existing), _identity(merged)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise ValueError(f"{out / RUN_FILE}: {key}={a.get(key)!r} differs from the shards' "
                                 f"{b.get(key)!r}; merge into another --out")
    _writable(out)
    records.write_json(out / RUN_FILE, "run", merged)
    return merge_stores(runs, out)
