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

import os
import platform
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
        self._flushes += 1
        name = f"part-{time.time_ns():020d}-{HOST}-{os.getpid()}-{self._flushes:05d}.parquet"
        return records.write_table(self.dir / name, "samples", table)

    def read(self) -> pa.Table:
        """All samples, one row per key, sorted by key."""
        return read_shards(self.shards())

    def new_rows(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` whose key is not stored yet; a key stored with another text raises
        :class:`DataError` (the two runs were not one run)."""
        have = _texts_by_key(self.read())
        new = []
        for key, text in _texts_by_key(table).items():
            if key in have and have[key] != text:
                raise DataError(f"sample {key} differs from the one already in {self.dir}")
            new.append(key not in have)
        return table.filter(pa.array(new, pa.bool_()))

    def compact(self, at: int = 64) -> None:
        """Rewrite the store as one shard once it holds more than ``at`` shards (reading many small
        shards is slow: per-problem flushes make one each). Same rows; a kill midway leaves
        duplicates with equal text, which reading drops."""
        shards = self.shards()
        if len(shards) > at:
            self.append(self.read())
            for path in shards:
                path.unlink()

    def done_problems(self, task: str, n: int) -> set[str]:
        """Problem ids of ``task`` that already hold samples 0..n-1."""
        return {p for p, count in self.stored_counts(task, n).items() if count == n}

    def stored_counts(self, task: str, n: int) -> dict[str, int]:
        """{problem id: how many of samples 0..n-1 of ``task`` are stored} (problems with none left
        out). The driver appends each problem's samples start..n-1 as one shard, so they are always
        samples 0..count-1. Reads the key columns only (no texts): resume starts fast at 10⁷ samples."""
        table = self._keys()
        table = table.filter(pc.and_(pc.equal(table["task"], task), pc.less(table["sample_idx"], n)))
        counts = table.group_by("problem_id").aggregate([("sample_idx", "count_distinct")])
        return dict(zip(counts["problem_id"].to_pylist(), counts["sample_idx_count_distinct"].to_pylist()))

    def _keys(self) -> pa.Table:
        """The key columns of every stored row (duplicates included), no texts."""
        parts = [records.read_table(path, "samples", list(KEY)) for path in self.shards()]
        if not parts:
            return pa.schema([(k, records.COLUMNS["samples"][k]) for k in KEY]).empty_table()
        return pa.concat_tables(parts)

    def _may_repeat(self) -> bool:
        """Whether two shards hold overlapping sample_idx ranges [min, max] of one problem (a shard
        holds each key at most once: the driver, :meth:`compact` and merges write deduplicated
        rows). Reads one shard's key columns at a time: memory is per shard, not per store."""
        spans = [records.read_table(path, "samples", list(KEY)).group_by(["task", "problem_id"]).aggregate(
            [("sample_idx", "min"), ("sample_idx", "max")]) for path in self.shards()]
        if len(spans) < 2:
            return False
        table = pa.concat_tables(spans).sort_by([("task", "ascending"), ("problem_id", "ascending"),
                                                 ("sample_idx_min", "ascending")])
        same = [pc.equal(table[k].slice(1), table[k].slice(0, table.num_rows - 1)) for k in ("task", "problem_id")]
        overlap = pc.less_equal(table["sample_idx_min"].slice(1), table["sample_idx_max"].slice(0, table.num_rows - 1))
        return bool(pc.any(pc.and_(pc.and_(*same), overlap)).as_py())

    def batches(self, columns: Sequence[str], rows: int = 65_536) -> Iterator[pa.Table]:
        """The samples' ``columns``, one row per key, as tables of at most ``rows`` rows, shard by
        shard (in store order, not sorted), holding one batch of texts at a time. A store that may
        hold some key twice (a compaction killed midway: :meth:`_may_repeat`) is read whole instead
        (:meth:`read`, which checks the copies agree)."""
        if self._may_repeat():
            whole = self.read().select(list(columns))
            yield from (whole.slice(i, rows) for i in range(0, whole.num_rows, rows))
            return
        for path in self.shards():
            yield from records.iter_table(path, "samples", columns, rows)


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


def union_samples(sources: Iterable[str | os.PathLike]) -> pa.Table:
    """The samples of several run directories, one row per key; a key with two texts raises."""
    return read_shards([shard for source in sources for shard in SampleStore(source).shards()])


def _texts_by_key(table: pa.Table) -> dict[tuple, str]:
    return dict(zip(zip(*(table[k].to_pylist() for k in KEY), strict=True), table["text"].to_pylist(), strict=True))
