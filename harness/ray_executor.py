"""The Ray executor (``t2 sample --ray``, ``t2 likelihood --ray``): Ray actors, one per GPU group, draw a run.

- Cluster: the one in ``RAY_ADDRESS`` ("auto": the one ``ray start``-ed on this machine), else a
  local one started here and shut down at the end.
- Workers: ``workers`` actors, each holding ``tensor_parallel_size`` GPUs (vllm; 1 for hf) when the
  cluster has GPUs (default: as many as fit), else 1 CPU (default: 1 actor). Each actor loads the
  run's problems itself (:class:`harness.sampling.TaskSpec`, checked against the driver's
  ``problems_sha256``) and one :class:`harness.sampling.ProcessExecutor`: the backend, prompt
  renderer and sampling loop of a plain run.
- Queue: the driver cuts the problems still to draw into the chunks a plain run uses and keeps
  :data:`IN_FLIGHT` chunks on each live actor; a fast actor comes back sooner and takes more.
- Store: each actor appends whole problems to ``RUN/samples/`` itself (shard names carry host, time
  and pid), so RUN must be on a filesystem every node mounts at the same path. Before anything is
  loaded, each actor must read a token the driver wrote into RUN, else the run is refused.
- Failures: an actor that dies (killed, node lost) is dropped, and the problems of its chunks that
  are not in the store yet go back to the queue, each chunk at most :data:`MAX_TRIES` times; an
  actor that cannot load the model, or raises while sampling, fails the run in one line
  (:class:`harness.errors.WorkerError`) naming its host.
- Likelihood (``t2 likelihood --ray``): chunks of problems go to the workers the same way; their
  gold-answer NLLs come back to the driver, which writes problems.parquet.
- Same run: sample i of problem p uses seed ``problem_seed(seed, task, p) + i`` wherever it is
  drawn, so a Ray run writes exactly the samples of a plain run (same keys, same texts), and
  either resumes the other.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import ray
from ray.exceptions import RayActorError, RayTaskError

from harness.errors import DataError, InvalidSetting, T2Error, WorkerError
from harness.progress import progress_bar
from harness.rundir import RunDir
from harness.samplers import SAMPLES_IN_FLIGHT, SamplingSettings
from harness.sampling import EngineSpec, ProcessExecutor, TaskSpec, load_problems, worker_place
from harness.tasks.base import Problem

IN_FLIGHT = 2  # chunks queued on each actor: the next one is there when the current one returns
MAX_TRIES = 3  # times a chunk is handed out before its loss fails the run
PROBE_FILE = ".t2-ray-probe"
LIKELIHOOD_CHUNK = 64  # problems per gold_nll call


def check_shared(run_path: Path, token: str) -> None:
    """Refuse (:class:`DataError`) unless this process reads ``token`` in ``run_path``'s probe file
    and may write there: the driver's run directory, seen at the same path."""
    try:
        seen = (run_path / PROBE_FILE).read_text()
    except OSError:
        seen = None
    if seen != token or not os.access(run_path, os.W_OK):
        raise DataError(f"{run_path}: the run directory is not readable and writable from Ray worker host "
                        f"{platform.node()}; the ray executor needs it on a filesystem every node mounts at the "
                        "same path")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class SampleWorker:
    """A Ray actor: one :class:`ProcessExecutor` and the run's problems."""

    def load(self, run_path: str, token: str, task_spec: TaskSpec, problems_sha256: str,
             engine: EngineSpec) -> dict[str, Any]:
        """Check the run directory, load the problems and the model; returns this worker's place
        (host, device, GPU ids), the task's name, and the model_info."""
        check_shared(Path(run_path), token)
        task, problems, record = load_problems(*task_spec)
        if record["problems_sha256"] != problems_sha256:
            raise DataError(f"Ray worker host {platform.node()}: task {task.name} loaded from {task.source} differs "
                            "from the driver's (task.problems_sha256); every node needs the same data")
        task.chat = engine.chat
        self.run, self.by_id = RunDir(run_path), {p.id: p for p in problems}
        try:
            self.executor = ProcessExecutor(task, engine)
        except T2Error:
            raise
        except Exception as e:  # noqa: BLE001 - reported as one line naming the host
            raise WorkerError(f"Ray worker host {platform.node()} cannot load the model {engine.path}: "
                              f"{_first_line(e)}") from None
        place = {**worker_place(self.executor.info), "gpus": [str(g) for g in ray.get_gpu_ids()]}
        return {"place": place, "task": task.name, "info": self.executor.info}

    def describe(self, example_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.executor.describe(self.by_id[example_id])

    def gold_nll(self, ids: list[str]) -> list[tuple[float, int]]:
        return self.executor.gold_nll([self.by_id[i] for i in ids])

    def sample(self, ids: list[str], start: int, settings: SamplingSettings, seed_rule: str) -> tuple[int, int]:
        """Samples start..n-1 of problems ``ids`` into the run's store, as one chunk of a plain run."""
        todo = [(self.by_id[i], start) for i in ids]
        return self.executor.sample(self.run, todo, settings, seed_rule, len(todo),
                                    progress_bar(total=len(todo), disable=True))


def _chunks(todo: list[tuple[Problem, int]], size: int) -> list[tuple[list[Problem], int]]:
    """``todo`` ((problem, first missing sample_idx) pairs) as (problems, first index) chunks of at
    most ``size`` problems that share their first index, in order of that index."""
    ordered = sorted(todo, key=lambda item: item[1])
    chunks = []
    for start, group in itertools.groupby(ordered, key=lambda item: item[1]):
        problems = [p for p, _ in group]
        chunks += [(problems[i:i + size], start) for i in range(0, len(problems), size)]
    return chunks


@dataclasses.dataclass
class _Chunk:
    ids: list[str]
    start: int
    tries: int = 1


@dataclasses.dataclass(eq=False)
class _Worker:
    actor: Any
    place: dict[str, Any]
    alive: bool = True
    problems: int = 0
    samples: int = 0
    tokens: int = 0


def _get(ref, where: str, doing: str):
    """``ray.get(ref)`` with a worker's exception as one line: its own :class:`T2Error` as it is,
    any other as a :class:`WorkerError` naming ``where``. A dead actor raises ``RayActorError``."""
    try:
        return ray.get(ref)
    except RayTaskError as e:
        if isinstance(e.cause, T2Error):
            raise e.cause from None
        raise WorkerError(f"{where} failed {doing}: {_first_line(e.cause)}") from None


def _connect() -> bool:
    """Join the cluster in ``RAY_ADDRESS`` (an address, or "auto" for this machine's ``ray
    start``-ed one), else start a local one; True when this call connected (and so must shut
    down), False when Ray already was (a caller's own ``ray.init``)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": "warning"}  # worker logs stay in Ray's session folder
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)
    else:  # "local": never attach to some other Ray instance found on this machine
        ray.init(address="local", include_dashboard=False, **quiet)
    return True


def _worker_shape(workers: int | None, engine: EngineSpec) -> tuple[int, int]:
    """(actors, GPUs per actor) for ``workers`` on this cluster: tensor_parallel_size GPUs (vllm)
    or 1 (hf) per actor when it has GPUs, else none; every actor also takes 1 CPU."""
    if engine.options.get("data_parallel_size", 1) != 1:
        raise InvalidSetting("data_parallel_size", engine.options["data_parallel_size"],
                             "1 with the ray executor (its workers are the replicas)")
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    per = int(engine.options.get("tensor_parallel_size", 1)) if engine.backend == "vllm" else 1
    if not gpus or engine.options.get("device") == "cpu":
        per = 0
    most = min(cpus, gpus // per if per else cpus)
    count = workers if workers is not None else (most if per else 1)
    if not 1 <= count <= most:
        raise InvalidSetting("workers", count, f"1..{most} (the Ray cluster has {gpus} GPUs and {cpus} CPUs; "
                                               f"a worker takes {per} GPU(s) and 1 CPU)")
    return count, per


class RayExecutor:
    """``workers`` Ray actors sampling one run (see the module docstring); the interface of
    :class:`harness.sampling.ProcessExecutor`."""

    name = "ray"

    def __init__(self, workers: int | None, run: RunDir, task_spec: TaskSpec, problems_sha256: str,
                 engine: EngineSpec, terminal: TextIO | None = None) -> None:
        self.terminal = terminal or sys.stderr  # where the driver's notices go (the engine log takes stderr)
        self.actors: list[Any] = []
        self.workers: list[_Worker] = []
        self.owns_ray = _connect()
        probe = run.path / PROBE_FILE
        try:
            count, gpus = _worker_shape(workers, engine)
            actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=0)(SampleWorker)
            self.actors = [actor.options(scheduling_strategy="SPREAD" if gpus == 0 else "DEFAULT").remote()
                           for _ in range(count)]
            token = uuid.uuid4().hex
            probe.write_text(token)
            loaded = [self._loaded(i, a.load.remote(str(run.path.resolve()), token, task_spec, problems_sha256, engine))
                      for i, a in enumerate(self.actors)]
            _same_model(loaded)
            self.workers = [_Worker(a, r["place"]) for a, r in zip(self.actors, loaded)]
            self.task, self.info = loaded[0]["task"], loaded[0]["info"]
        except BaseException:
            self.close()
            raise
        finally:
            probe.unlink(missing_ok=True)

    @staticmethod
    def _loaded(index: int, ref) -> dict[str, Any]:
        """The result of worker ``index``'s ``load``; its death as one line."""
        try:
            return _get(ref, f"Ray worker {index}", "loading the model")
        except RayActorError:
            raise WorkerError(f"Ray worker {index} died loading the model (see the Ray logs of this session)") from None

    def describe(self, example: Problem) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model_info, run.json's prompt record of ``example``), from the first worker."""
        return ray.get(self.workers[0].actor.describe.remote(example.id))

    def record(self) -> dict[str, Any]:
        """run.json's ``executor``: "ray", and each worker's host, device, GPUs and this session's
        problems, samples and completion tokens."""
        return {"name": self.name, "workers": [
            {**w.place, "alive": w.alive, "problems": w.problems, "samples": w.samples,
             "completion_tokens": w.tokens} for w in self.workers]}

    def sample(self, run: RunDir, todo: list[tuple[Problem, int]], settings: SamplingSettings, seed_rule: str,
               size: int | None, bar) -> tuple[int, int]:
        """Draw ``todo`` on the workers in chunks of ``size`` problems (None: ⌈SAMPLES_IN_FLIGHT / n⌉),
        each handed to the first worker with room; returns (samples, completion tokens) written by all of them. A dead
        worker's problems already in the store are not drawn again."""
        t0 = time.perf_counter()

        def done(worker: _Worker, chunk: _Chunk, result: tuple[int, int]) -> None:
            worker.problems, worker.samples, worker.tokens = (
                worker.problems + len(chunk.ids), worker.samples + result[0], worker.tokens + result[1])
            samples, tokens, elapsed = self._total("samples"), self._total("tokens"), time.perf_counter() - t0
            per_worker = "/".join(str(w.problems) if w.alive else "x" for w in self.workers)
            bar.set_postfix_str(f"{samples / elapsed:.1f} samples/s, {tokens / elapsed:.1f} tok/s, "
                                f"problems per worker {per_worker}", refresh=False)
            bar.update(len(chunk.ids))

        def missing(chunk: _Chunk) -> list[str]:
            stored = run.store.stored_counts(self.task, settings.n)
            left = [i for i in chunk.ids if stored.get(i, 0) < settings.n]
            bar.update(len(chunk.ids) - len(left))
            return left

        size = size or -(-SAMPLES_IN_FLIGHT // settings.n)
        chunks = [_Chunk([p.id for p in batch], start) for batch, start in _chunks(todo, size)]
        self._run(chunks, lambda w, c: w.actor.sample.remote(c.ids, c.start, settings, seed_rule), done, missing,
                  "while sampling")
        bar.close()
        return self._total("samples"), self._total("tokens")

    def gold_nll(self, problems: Sequence[Problem]) -> list[tuple[float, int]]:
        """(NLL in nats, answer tokens) of each problem's gold answer, in chunks of at most
        :data:`LIKELIHOOD_CHUNK` problems, at least 4 per worker when there are enough problems."""
        ids = [p.id for p in problems]
        size = max(1, min(LIKELIHOOD_CHUNK, len(ids) // (4 * len(self.workers))))
        found: dict[str, tuple[float, int]] = {}

        def done(worker: _Worker, chunk: _Chunk, result: list[tuple[float, int]]) -> None:
            worker.problems += len(chunk.ids)
            found.update(zip(chunk.ids, result, strict=True))

        chunks = [_Chunk(ids[i:i + size], 0) for i in range(0, len(ids), size)]
        self._run(chunks, lambda w, c: w.actor.gold_nll.remote(c.ids), done, lambda c: c.ids,
                  "scoring likelihoods")
        return [found[i] for i in ids]

    def _total(self, field: str) -> int:
        return sum(getattr(w, field) for w in self.workers)

    def _run(self, chunks: list[_Chunk], call: Callable[[_Worker, _Chunk], Any],
             done: Callable[[_Worker, _Chunk, Any], None], missing: Callable[[_Chunk], list[str]], doing: str) -> None:
        """The work queue: keep :data:`IN_FLIGHT` chunks on every live worker (``call`` submits one)
        until each is ``done``. A chunk whose worker died goes back to the front of the queue with
        the problems ``missing`` says are still to do, at most :data:`MAX_TRIES` times in all."""
        queue, running = collections.deque(chunks), {}
        while queue or running:
            for worker in (w for w in self.workers if w.alive):
                held = sum(1 for w, _ in running.values() if w is worker)
                for chunk in [queue.popleft() for _ in range(min(IN_FLIGHT - held, len(queue)))]:
                    running[call(worker, chunk)] = (worker, chunk)
            if not running:
                raise WorkerError("every Ray worker died with problems left; rerun the command to resume")
            [ref], _ = ray.wait(list(running), num_returns=1)
            worker, chunk = running.pop(ref)
            try:
                done(worker, chunk, _get(ref, f"Ray worker {self.workers.index(worker)} on {worker.place['host']}",
                                         doing))
            except RayActorError:
                self._dead(worker)
                left = missing(chunk)
                if left and chunk.tries >= MAX_TRIES:
                    raise WorkerError(f"problem {left[0]} lost its Ray worker {MAX_TRIES} times; "
                                      "rerun the command to resume") from None
                if left:
                    queue.appendleft(_Chunk(left, chunk.start, chunk.tries + 1))

    def _dead(self, worker: _Worker) -> None:
        if worker.alive:
            worker.alive = False
            print(f"t2: Ray worker {self.workers.index(worker)} on {worker.place['host']} died; "
                  "its problems go to the other workers", file=self.terminal)

    def close(self) -> None:
        """Stop the actors (freeing their devices), and the cluster if this executor started it."""
        for actor in self.actors:
            ray.kill(actor)
        if self.owns_ray:
            ray.shutdown()


def _same_model(loaded: list[dict[str, Any]]) -> None:
    """Refuse workers that loaded the model with another dtype or size than the first one."""
    first = loaded[0]
    for r in loaded[1:]:
        for field in ("dtype", "params"):
            have, want = r["info"].get(field), first["info"].get(field)
            if have != want:
                raise WorkerError(f"Ray worker on {r['place']['host']} loaded the model with {field} {have} "
                                  f"but the one on {first['place']['host']} with {want}")
