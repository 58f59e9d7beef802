"""The sample store: completions as append-only parquet shards under ``RUN/samples/``.

A sample's identity is (task, problem_id, sample_idx). Each flush writes one new shard holding all
samples of whole problems (never part of a problem), through a temporary name and an atomic
rename, so a killed run leaves only whole shards. A shard's name holds the time (ns), host and pid
of its writer, so processes on several machines (the Ray executor) may append to one store.
Reading unions the shards and keeps one row per key; a key stored twice must carry the same text
(a rerun with the same seeds reproduces it), else the store is corrupt and reading fails naming
both shards (:class:`harness.errors.DataError`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness import records
from harness.errors import DataError

KEY = ("task", "problem_id", "sample_idx")
SAMPLES = "samples"
HOST = re.sub(r"[^A-Za-z0-9.-]", "-", platform.node()) or "host"  # in shard names: two nodes never collide


class SampleStore:
    """The samples of one run directory."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / SAMPLES
        self._flushes = 0

    def shards(self) -> list[Path]:
        """The complete shards, in name (= write) order; temporaries (dot-names) are ignored."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("*.parquet") if not p.name.startswith("."))

    def append(self, rows: Sequence[Mapping[str, Any]] | pa.Table) -> Path | None:
        """Write ``rows`` (dicts with at least :data:`records.COLUMNS` ["samples"]) as one new shard."""
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
        if table.num_rows == 0:
            return None
        return records.write_table(self.dir / self._new_name(), "samples", table)

    def read(self) -> pa.Table:
        """All samples, one row per key, sorted by key."""
        return read_shards(self.shards())

    def append_new(self, sources: Sequence[Path]) -> int:
        """Append the rows of ``sources`` (shards of other stores) whose key is not stored yet, one
        per key, as one new shard; returns how many (0: no shard written). A key that two shards
        hold (this store's or the sources') with two texts raises :class:`DataError` naming both.
        Streamed: this store's shards and the sources are read together (:meth:`_unique_batches`,
        the store's own rows left out) into a temporary renamed when complete, so memory is one
        batch (and one group of repeated problems) and a conflict or a kill leaves the store as it
        was."""
        own = self.shards()
        shards = [*own, *dict.fromkeys(sources)]
        if len(shards) == len(own):
            return 0
        batches = (b for b in self._unique_batches(shards, None, first=len(own)) if b.num_rows)
        head = next(batches, None)
        if head is None:
            return 0
        path = records.write_batches(self.dir / self._new_name(), "samples", itertools.chain([head], batches))
        return pq.read_metadata(path).num_rows

    def compact(self, at: int = 64) -> None:
        """Rewrite the store as one shard once it holds more than ``at`` shards (reading many small
        shards is slow: per-problem flushes make one each). Streamed: :meth:`_unique_batches` of every
        column into a temporary that is renamed when complete, then the old shards go, so memory is
        one batch (and one group of repeated problems, if any) and a kill never loses a row: before
        the rename the store is as it was, after it the old shards repeat keys with equal text,
        which reading drops."""
        shards = self.shards()
        if len(shards) > at:
            records.write_batches(self.dir / self._new_name(), "samples", self._unique_batches(shards, None))
            for path in shards:
                path.unlink()

    def done_problems(self, task: str, n: int) -> set[str]:
        """Problem ids of ``task`` that already hold samples 0..n-1."""
        return {p for p, count in self.stored_counts(task, n).items() if count == n}

    def stored_counts(self, task: str, n: int) -> dict[str, int]:
        """{problem id: how many of samples 0..n-1 of ``task`` are stored} (problems with none left
        out). Reads the key columns only (no texts), _KEY_ROWS rows at a time, into per-shard counts
        (:func:`_spans`): resume starts fast and small at 10⁷ samples. Problems that two shards both
        hold (:func:`_repeated`) are counted key by key instead."""
        shards = self.shards()
        spans = _spans(shards, below=n)
        repeated = _repeated(spans)
        repeated = repeated.filter(pc.equal(repeated["task"], task))
        mine = spans.filter(pc.equal(spans["task"], task))
        if repeated.num_rows:
            mine = mine.filter(pc.invert(pc.is_in(_problem_keys(mine), value_set=_problem_keys(repeated))))
        counts = mine.group_by("problem_id").aggregate([("below", "sum")])
        out = {p: c for p, c in zip(counts["problem_id"].to_pylist(), counts["below_sum"].to_pylist()) if c}
        for table in _repeated_rows(shards, spans, repeated, list(KEY)):
            table = table.filter(pc.less(table["sample_idx"], n)).group_by("problem_id").aggregate(
                [("sample_idx", "count_distinct")])
            out.update(zip(table["problem_id"].to_pylist(), table["sample_idx_count_distinct"].to_pylist()))
        return out

    def batches(self, columns: Sequence[str], rows: int = 65_536) -> Iterator[pa.Table]:
        """The samples' ``columns``, one row per key, as tables of at most ``rows`` rows, shard by
        shard (in store order, not sorted), holding one batch of texts at a time
        (:meth:`_unique_batches`)."""
        return self._unique_batches(self.shards(), list(columns), rows)

    def _unique_batches(self, shards: Sequence[Path], columns: list[str] | None, rows: int = 65_536,
                        first: int = 0) -> Iterator[pa.Table]:
        """Every stored row of ``shards`` once, ``columns`` of it (None: all, on the shards' unified
        schema), in tables of at most ``rows`` rows: shard by shard, except the problems that two
        shards both hold (:func:`_repeated`: a compaction killed midway, a retried task), which come
        last, _DEDUP_ROWS stored rows at a time, their copies' texts compared (:func:`_dedup`). Keys
        that the shards before index ``first`` hold are left out (a key's first copy is kept)."""
        schema = _unified_schema(shards) if columns is None else None
        names = schema.names if schema is not None else columns
        spans = _spans(shards)
        repeated = _repeated(spans)
        skip = _problem_keys(repeated) if repeated.num_rows else None
        read = names if skip is None else list(dict.fromkeys([*names, "task", "problem_id"]))
        for path in shards[first:]:
            for batch in _shard_batches(path, read, rows, schema):
                if skip is not None:
                    batch = batch.filter(pc.invert(pc.is_in(_problem_keys(batch), value_set=skip)))
                yield batch.select(names)
        for table in _repeated_rows(shards, spans, repeated, list(dict.fromkeys([*names, *KEY, "text"])), schema):
            table = _dedup(table.sort_by([(k, "ascending") for k in KEY] + [("_shard", "ascending")]), shards)
            table = table.filter(pc.greater_equal(table["_shard"], first)).select(names)
            yield from (table.slice(i, rows) for i in range(0, table.num_rows, rows))

    def _new_name(self) -> str:
        """A shard name no other writer takes: time (ns), host, pid and this store's flush count
        (:data:`SHARD_NAME` parses it)."""
        self._flushes += 1
        return f"part-{time.time_ns():020d}-{HOST}-{os.getpid()}-{self._flushes:05d}.parquet"

    def remove_stale_temporaries(self, before: float) -> list[Path]:
        """Remove the temporaries of atomic writes (:data:`records.TEMPORARY`, ``.NAME.PID.TAG.tmp``)
        that killed writers left in RUN/ and RUN/samples/ (reading ignores them); returns them.
        Stale: last modified before ``before`` (s since the epoch: when the caller took the run's
        lock, so the previous holder is gone) and not written by a live process of this host (a
        shard's host is in its name; a writer on another host, a Ray worker of a gone driver, is
        taken as gone). Call with the run's lock held."""
        removed = []
        for directory in (self.run_dir, self.dir):
            for path in sorted(directory.glob(".*.tmp")) if directory.is_dir() else ():
                temporary = records.TEMPORARY.match(path.name)
                shard = SHARD_NAME.match(temporary["name"]) if temporary else None
                if temporary is None or ((shard is None or shard["host"] == HOST) and pid_alive(int(temporary["pid"]))):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        path.unlink()
                        removed.append(path)
        return removed


SHARD_NAME = re.compile(r"^part-\d{20}-(?P<host>.+)-\d+-\d{5}\.parquet$")  # time, host, pid, flush


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not reaped yet, does not)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:  # reaped meanwhile
        return False
    except OSError:  # no procfs: the pid exists
        return True


_KEY_ROWS = 1 << 20  # rows of key columns read at a time (resume start, spans)
_DEDUP_ROWS = 1 << 21  # stored rows (copies included) of repeated problems deduplicated at a time
_SPAN_COLUMNS = {"shard": pa.int32(), "task": pa.string(), "problem_id": pa.string(), "lo": pa.int64(),
                 "hi": pa.int64(), "rows": pa.int64(), "below": pa.int64()}


def _spans(shards: Sequence[Path], below: int | None = None) -> pa.Table:
    """One row per shard and problem: shard (index into ``shards``), task, problem_id, lo and hi (its
    least and largest sample_idx there), rows, and below (rows with sample_idx < ``below``; 0 when
    None). Reads the key columns only, _KEY_ROWS rows at a time."""
    parts = []
    for i, path in enumerate(shards):
        for batch in records.iter_table(path, "samples", list(KEY), _KEY_ROWS):
            flag = pc.less(batch["sample_idx"], below) if below is not None else pa.nulls(batch.num_rows, pa.bool_())
            batch = batch.append_column("below", pc.fill_null(flag, False).cast(pa.int64()))
            part = batch.group_by(["task", "problem_id"]).aggregate(
                [("sample_idx", "min"), ("sample_idx", "max"), ("sample_idx", "count"), ("below", "sum")])
            parts.append(part.append_column("shard", pa.array(np.full(part.num_rows, i, np.int32))))
    if not parts:
        return pa.schema(list(_SPAN_COLUMNS.items())).empty_table()
    table = pa.concat_tables(parts).group_by(["shard", "task", "problem_id"]).aggregate(
        [("sample_idx_min", "min"), ("sample_idx_max", "max"), ("sample_idx_count", "sum"), ("below_sum", "sum")])
    return pa.table([table[c] for c in ("shard", "task", "problem_id", "sample_idx_min_min", "sample_idx_max_max",
                                        "sample_idx_count_sum", "below_sum_sum")], names=list(_SPAN_COLUMNS))


def _repeated(spans: pa.Table) -> pa.Table:
    """(task, problem_id, rows = its stored rows in all shards) of the problems whose sample_idx
    spans [lo, hi] overlap in two shards (a shard holds each key at most once: the driver,
    :meth:`SampleStore.compact` and merges write deduplicated rows), sorted; every other problem's
    shards hold disjoint keys."""
    table = spans.sort_by([("task", "ascending"), ("problem_id", "ascending"), ("lo", "ascending")])
    last = table.num_rows - 1
    if last < 1:
        return table.select(["task", "problem_id", "rows"]).slice(0, 0)
    same = [pc.equal(table[k].slice(1), table[k].slice(0, last)) for k in ("task", "problem_id")]
    overlap = pc.and_(pc.and_(*same), pc.less_equal(table["lo"].slice(1), table["hi"].slice(0, last)))
    hit = table.slice(1).filter(overlap).select(["task", "problem_id"]).group_by(["task", "problem_id"]).aggregate([])
    counts = spans.group_by(["task", "problem_id"]).aggregate([("rows", "sum")]).rename_columns(
        ["task", "problem_id", "rows"])
    return counts.join(hit, ["task", "problem_id"], join_type="inner").sort_by(
        [("task", "ascending"), ("problem_id", "ascending")])


def _repeated_rows(shards: Sequence[Path], spans: pa.Table, repeated: pa.Table, columns: list[str],
                   schema: pa.Schema | None = None) -> Iterator[pa.Table]:
    """The stored rows (``columns`` plus ``_shard``, the index of their shard; copies included) of the
    ``repeated`` problems, one table per group of them holding <= _DEDUP_ROWS rows (a problem
    alone may hold more), read from the shards that hold them."""
    sizes = np.asarray(repeated["rows"].to_numpy(zero_copy_only=False), dtype=np.int64)
    first = 0
    while first < sizes.size:
        last = first + max(1, int(np.searchsorted(np.cumsum(sizes[first:]), _DEDUP_ROWS, side="right")))
        keys = _problem_keys(repeated.slice(first, last - first))
        holders = set(spans.filter(pc.is_in(_problem_keys(spans), value_set=keys))["shard"].to_pylist())
        parts = []
        for i in sorted(holders):
            for batch in _shard_batches(shards[i], columns, _KEY_ROWS, schema):
                batch = batch.filter(pc.is_in(_problem_keys(batch), value_set=keys))
                parts.append(batch.append_column("_shard", pa.array(np.full(batch.num_rows, i, np.int32))))
        yield pa.concat_tables(parts)
        first = last


def _problem_keys(table: pa.Table) -> pa.Array:
    """task and problem_id joined by a unit separator (U+001F): one string per row to match problems by."""
    return pc.binary_join_element_wise(table["task"], table["problem_id"], "\x1f")


def _unified_schema(shards: Sequence[Path]) -> pa.Schema:
    """The samples schema of ``shards`` together: every column any of them holds (types promoted)."""
    return pa.unify_schemas([records.to_table("samples", pq.read_schema(p).empty_table()).schema for p in shards],
                            promote_options="permissive")


def _shard_batches(path: Path, columns: list[str], rows: int, schema: pa.Schema | None = None
                   ) -> Iterator[pa.Table]:
    """``columns`` of one shard in tables of at most ``rows`` rows; with ``schema``, all of its columns
    instead, those the shard lacks as nulls, in its order and types."""
    held = set(pq.read_schema(path).names) if schema is not None else set(columns)
    read = [f.name for f in schema if f.name in held] if schema is not None else columns
    for batch in records.iter_table(path, "samples", read, rows):
        if schema is not None:
            batch = pa.table([batch[f.name].cast(f.type) if f.name in held else pa.nulls(batch.num_rows, f.type)
                              for f in schema], schema=schema)
        yield batch


def read_shards(shards: Sequence[Path]) -> pa.Table:
    """The samples of ``shards``, one row per key, sorted by key (conflicting texts raise)."""
    if not shards:
        return records.to_table("samples", pa.schema(list(records.COLUMNS["samples"].items())).empty_table())
    parts = []
    for i, path in enumerate(shards):
        t = records.read_table(path, "samples")
        parts.append(t.append_column("_shard", pa.array([i] * t.num_rows, pa.int32())))
    table = pa.concat_tables(parts, promote_options="permissive")
    table = table.sort_by([(k, "ascending") for k in KEY] + [("_shard", "ascending")])
    table = _dedup(table, shards)
    return records.to_table("samples", table.drop_columns(["_shard"]))


def _dedup(table: pa.Table, shards: Sequence[Path]) -> pa.Table:
    """Keep the first row of each key of a key-sorted table; duplicates must have equal text."""
    if table.num_rows < 2:
        return table
    table = table.combine_chunks()
    keys = [table[k].chunk(0) for k in KEY]
    same = None
    for col in keys:
        eq = pc.equal(col.slice(1), col.slice(0, len(col) - 1))
        same = eq if same is None else pc.and_(same, eq)
    dup = pc.fill_null(same, False)
    if not pc.any(dup).as_py():
        return table
    texts, shard_ids = table["text"].to_pylist(), table["_shard"].to_pylist()
    for j in pc.indices_nonzero(dup).to_pylist():
        if texts[j] != texts[j + 1]:
            key = tuple(table[k][j].as_py() for k in KEY)
            raise DataError(f"{shards[shard_ids[j]]} and {shards[shard_ids[j + 1]]}: sample {key} differs "
                            "between them (runs with different settings were mixed)")
    keep = pa.concat_arrays([pa.array([True]), pc.invert(dup)])
    return table.filter(keep)
