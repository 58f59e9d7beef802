"""The run directory: its files, its manifest, its identity, its lock, and merging shards into it.

A run directory holds run.json (the manifest), samples/ (the store, see :mod:`harness.store`),
cost.json, and after scoring scores.parquet, problems.parquet and passk.parquet; ``.t2-lock`` is the
lock file.
:class:`RunDir` is the only code that knows these names.

Run identity (:func:`identity`): the run.json fields a command that writes into an existing run
must share with it, in three parts.

- model: ``model.id`` (a local folder as its absolute path), ``model.revision``, ``model.dtype``;
- task: ``task.name``, ``.version``, ``.template``, every ``task.options.*`` (``limit`` and the
  task's own options; not ``data_files``, a path), ``task.problems_sha256`` (ids, prompts and gold
  of the run's problems), ``task.fewshot`` (the few-shot examples: count, seed, split, ids; None
  without shots), ``task.data_sha256`` (the data files' contents), ``shard``;
- sampler: every ``sampler.*`` setting (backend, temperature, top_p, top_k, max_tokens, seed,
  stop, min_p, the penalties, chat, seed_rule; an absent seed_rule is "base+i", the rule of runs made
  before it, an absent min_p or penalty is off) except
  ``n``: a run grows (or is read at a smaller n) without becoming another run; run.json's
  ``sampler.n`` is the largest n asked of it (of its shards, when merged).

A difference raises :class:`RunMismatch` naming the field, before anything is written. Hashes the
existing run did not record (a run.json of an earlier version has no ``task.data_sha256``; a merged
run has no ``task.problems_sha256``) are not compared.

Lock: every command that writes a run holds ``fcntl.flock`` on its lock file for the whole write;
a second one refuses at once with :class:`RunLocked`. The kernel drops the lock when the holder
dies, so a killed run never leaves a stale lock; the temporaries it leaves are removed by the next
holder (:meth:`SampleStore.remove_stale_temporaries`), and the staging folder of a killed merge
into a new directory by the next merge into it (:meth:`RunDir.remove_stale_stagings`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from harness import records
from harness.errors import DataError, RunLocked, RunMismatch
from harness.samplers import LATER_SETTINGS, SEED_RULES
from harness.store import HOST, SampleStore, pid_alive

RUN_FILE, COST_FILE, SCORES_FILE, PROBLEMS_FILE, PASSK_FILE, LOCK_FILE = (
    "run.json", "cost.json", "scores.parquet", "problems.parquet", "passk.parquet", ".t2-lock")
PARTS = ("model", "task", "sampler")
# fields an existing run may not have recorded (None): an older run.json, a merged run's problems hash
UNRECORDED_OK = ("task.data_sha256", "task.problems_sha256")


def model_id(spec: str, path: str) -> str:
    """run.json's model id: the --model spec as given, or a local folder's absolute path."""
    return path if Path(spec).expanduser().exists() else spec


def identity(run: dict[str, Any], parts: Sequence[str] = PARTS) -> dict[str, Any]:
    """The identity fields of a manifest (dotted name → value), for ``parts`` of :data:`PARTS`."""
    model, task = run.get("model") or {}, run.get("task") or {}
    flat: dict[str, Any] = {}
    if "model" in parts:
        flat.update({f"model.{k}": model.get(k) for k in ("id", "revision", "dtype")})
    if "task" in parts:
        flat.update({f"task.{k}": task.get(k) for k in ("name", "version", "template", "problems_sha256", "fewshot")})
        flat.update({f"task.options.{k}": v for k, v in (task.get("options") or {}).items() if k != "data_files"})
        flat.update({"task.data_sha256": task.get("data_sha256"), "shard": run.get("shard")})
    if "sampler" in parts:
        flat.update({f"sampler.{k}": v for k, v in (run.get("sampler") or {}).items() if k != "n"})
        flat.setdefault("sampler.seed_rule", SEED_RULES[0])
        for name, default in LATER_SETTINGS.items():
            flat.setdefault(f"sampler.{name}", default)
    return flat


def differences(old: dict[str, Any], new: dict[str, Any], parts: Sequence[str] = PARTS,
                skip: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) of every identity field that differs. The sampler part is
    compared only when both runs sampled; fields ``old`` predates are not compared."""
    if old.get("sampler") is None or new.get("sampler") is None:
        parts = [p for p in parts if p != "sampler"]
    before, now = identity(old, parts), identity(new, parts)
    skip = {*skip, *(k for k in UNRECORDED_OK if before.get(k) is None)}
    return [(k, before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
            if k not in skip and before.get(k) != now.get(k)]


class RunDir:
    """One run directory (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.run_file, self.cost_file = self.path / RUN_FILE, self.path / COST_FILE
        self.scores_file, self.problems_file = self.path / SCORES_FILE, self.path / PROBLEMS_FILE
        self.passk_file = self.path / PASSK_FILE
        self.lock_file = self.path / LOCK_FILE
        self.store = SampleStore(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def manifest(self) -> dict[str, Any] | None:
        """run.json, or None when the directory holds none."""
        return records.read_json(self.run_file, "run") if self.run_file.is_file() else None

    def require(self) -> dict[str, Any]:
        """run.json; :class:`DataError` when ``path`` is not a run directory."""
        if not self.run_file.is_file():
            what = "a file" if self.path.is_file() else f"no {RUN_FILE} in it"
            raise DataError(f"{self.path}: not a run directory ({what})")
        return records.read_json(self.run_file, "run")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        records.write_json(self.run_file, "run", manifest)

    def write_cost(self, cost: dict[str, Any]) -> None:
        records.write_json(self.cost_file, "cost", cost)

    def verify(self, manifest: dict[str, Any], parts: Sequence[str] = PARTS,
               skip: Sequence[str] = ()) -> dict[str, Any] | None:
        """The existing run.json (None if none) after checking ``manifest`` is the same run."""
        old = self.manifest()
        for field, have, want in differences(old, manifest, parts, skip) if old else ():
            raise RunMismatch(f"{self.run_file}: this run has {field}={have!r} but the command asks for "
                              f"{want!r}; runs are never mixed", field)
        return old

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run's lock (creating the directory): a second writer gets :class:`RunLocked`.
        Once held, the temporaries that killed writers left are removed
        (:meth:`SampleStore.remove_stale_temporaries`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{self.path}: another t2 process is writing this run directory "
                                "(it holds its lock); wait for it to end") from None
            self.store.remove_stale_temporaries(before=time.time())
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_problems(self) -> dict[tuple[str, str], dict[str, Any]]:
        """problems.parquet as {(task, problem_id): row} (empty when absent)."""
        if not self.problems_file.is_file():
            return {}
        table = records.read_table(self.problems_file, "problems")
        return {(r["task"], r["problem_id"]): r for r in table.to_pylist()}

    def write_problems(self, rows: dict[tuple[str, str], dict[str, Any]]) -> Path:
        ordered = [rows[key] for key in sorted(rows)]
        types = records.COLUMNS["problems"]
        return records.write_table(self.problems_file, "problems",
                                   pa.table({k: pa.array([r.get(k) for r in ordered], t) for k, t in types.items()}))

    def merge(self, sources: Sequence[RunDir]) -> int:
        """Join shard runs ``sources`` into this directory, all or nothing: the identity checks pass
        before anything is written, the samples stream into one new shard that appears only whole
        (:meth:`SampleStore.append_new`: a conflicting text anywhere leaves everything as it was),
        and a new directory appears whole by a rename from a staging folder beside it. Staging
        folders of killed merges go first (:meth:`remove_stale_stagings`). Returns the new samples
        written."""
        merged = merged_manifest(sources)
        shards = [shard for source in sources for shard in source.store.shards()]
        self.remove_stale_stagings()
        if self.run_file.is_file():
            with self.locked():
                self.verify(merged, skip=("task.problems_sha256",))
                return self._add_samples(merged, shards)
        staging = RunDir(self.path.with_name(f"{self._staging_prefix()}{HOST}-{os.getpid()}"))
        try:
            with staging.locked():
                written = staging._add_samples(merged, shards)
            os.rename(staging.path, self.path)  # refused (OSError) if the target is a non-empty directory
        except BaseException:
            shutil.rmtree(staging.path, ignore_errors=True)
            raise
        return written

    def _add_samples(self, merged: dict[str, Any], shards: Sequence[Path]) -> int:
        """Append the samples of ``shards`` this run lacks, then write ``merged`` as run.json with
        its n_problems counted over the store (key columns, batch by batch); returns the samples
        written. Call with the lock held."""
        written = self.store.append_new(shards)
        merged["task"]["n_problems"] = _count_problems(self.store.batches(["task", "problem_id"]))
        self.write_manifest(merged)
        return written

    def _staging_prefix(self) -> str:
        """A merge into a new directory RUN writes ``.RUN.merging-HOST-PID`` beside it first."""
        return f".{self.path.name}.merging-"

    def remove_stale_stagings(self) -> list[Path]:
        """Remove the staging folders that killed merges into this directory left beside it (outside
        any lock): those of this host whose merge is not a live process, or that bear this process's
        pid (it has made none yet: an earlier process's with a reused pid). A name without a host
        (``.RUN.merging-PID``, from before hosts were named) counts as this host's. Returns them."""
        prefix, removed = self._staging_prefix(), []
        for path in sorted(self.path.parent.glob(f"{glob.escape(prefix)}*")):
            owner = STAGING_OWNER.fullmatch(path.name[len(prefix):])
            if (owner and owner["host"] in (None, HOST) and path.is_dir()
                    and (int(owner["pid"]) == os.getpid() or not pid_alive(int(owner["pid"])))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed


STAGING_OWNER = re.compile(r"(?:(?P<host>.+)-)?(?P<pid>\d+)")  # HOST-PID after a staging folder's prefix


def _count_problems(tables: Iterable[pa.Table]) -> int:
    """Distinct (task, problem_id) pairs over ``tables`` of samples, taken one at a time."""
    seen: set[tuple[str, str]] = set()
    for table in tables:
        keys = table.select(["task", "problem_id"]).group_by(["task", "problem_id"]).aggregate([])
        seen.update(zip(keys["task"].to_pylist(), keys["problem_id"].to_pylist(), strict=True))
    return len(seen)


def merged_manifest(sources: Sequence[RunDir]) -> dict[str, Any]:
    """The run.json of the union of shard runs, which must agree on everything but shard,
    problems_sha256 (each shard's own problems), times and host."""
    manifests = [s.require() for s in sources]
    first = manifests[0]
    for source, m in zip(sources[1:], manifests[1:], strict=True):
        for field, have, want in differences(first, m, skip=("shard", "task.problems_sha256")):
            raise RunMismatch(f"{source}: {field}={want!r} differs from {sources[0]}'s {have!r}; "
                              "only shards of one run can be merged", field)
    return {**first, "shard": None, "merged_from": sorted(str(s.path.resolve()) for s in sources),
            "start_time": min(m.get("start_time") or "" for m in manifests),
            "end_time": max(m.get("end_time") or "" for m in manifests),
            "wall_s": sum(m.get("wall_s") or 0.0 for m in manifests),
            "task": {**first["task"], "problems_sha256": None}, **_largest_n(manifests)}


def _largest_n(manifests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{"sampler": the first manifest's sampler with the largest n of all} ({} when none sampled)."""
    samplers = [m["sampler"] for m in manifests if m.get("sampler")]
    return {"sampler": {**samplers[0], "n": max(s["n"] for s in samplers)}} if samplers else {}
