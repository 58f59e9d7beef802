"""The sample store: append-only shards, dedup by (task, problem_id, sample_idx), merge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import records
from harness import store as store_module
from harness.errors import DataError
from harness.rundir import RunDir
from harness.store import SampleStore, read_shards


def rows(problem: str, n: int, text: str = "t{i}", task: str = "gsm8k") -> list[dict]:
    return [{"task": task, "problem_id": problem, "sample_idx": i, "seed": i, "text": text.format(i=i),
             "prompt_tokens": 5, "completion_tokens": 3, "cached_prompt_tokens": 5 if i else 0,
             "finish_reason": "stop", "cumulative_logprob": -1.5 * i} for i in range(n)]


def test_append_read_roundtrip_sorted(tmp_path):
    store = SampleStore(tmp_path)
    store.append(rows("p2", 3))
    store.append(rows("p1", 3))
    table = store.read()
    assert table.num_rows == 6
    assert table["problem_id"].to_pylist() == ["p1"] * 3 + ["p2"] * 3
    assert table["sample_idx"].to_pylist() == [0, 1, 2] * 2
    assert table["cumulative_logprob"].to_pylist()[:3] == [0.0, -1.5, -3.0]
    assert len(store.shards()) == 2


def test_duplicates_with_same_text_are_kept_once(tmp_path):
    store = SampleStore(tmp_path)
    store.append(rows("p1", 4))
    store.append(rows("p1", 4))  # a rerun that re-wrote a shard before noticing
    table = store.read()
    assert table.num_rows == 4
    assert table["text"].to_pylist() == ["t0", "t1", "t2", "t3"]


def test_duplicates_with_different_text_fail_naming_both_shards(tmp_path):
    store = SampleStore(tmp_path)
    first = store.append(rows("p1", 2))
    second = store.append(rows("p1", 2, text="other{i}"))
    with pytest.raises(ValueError) as e:
        store.read()
    assert first.name in str(e.value) and second.name in str(e.value)


def test_temporary_files_are_ignored(tmp_path):
    store = SampleStore(tmp_path)
    store.append(rows("p1", 2))
    (store.dir / ".part-999.parquet.abc.tmp").write_bytes(b"torn write")
    (store.dir / ".part-1000.parquet").write_bytes(b"torn write")
    assert store.read().num_rows == 2


def test_done_problems_needs_all_n_samples(tmp_path):
    store = SampleStore(tmp_path)
    assert store.done_problems("gsm8k", 3) == set()
    store.append(rows("p1", 3) + rows("p2", 2) + rows("p3", 3, task="math"))
    assert store.done_problems("gsm8k", 3) == {"p1"}
    assert store.done_problems("gsm8k", 2) == {"p1", "p2"}
    assert store.done_problems("math", 3) == {"p3"}


def test_stored_counts_read_keys_only_and_count_each_sample_once(tmp_path):
    store = SampleStore(tmp_path)
    store.append(rows("p1", 4) + rows("p2", 1))
    store.append(rows("p1", 2))  # a rewritten shard: the same keys again
    assert store.stored_counts("gsm8k", 8) == {"p1": 4, "p2": 1}
    assert store.stored_counts("gsm8k", 3) == {"p1": 3, "p2": 1}
    assert store.stored_counts("math", 8) == {}
    reads = []
    whole, batched = records.read_table, records.iter_table
    with pytest.MonkeyPatch.context() as patch:  # resume start must not load texts (10⁷ samples)
        patch.setattr(records, "read_table", lambda path, kind, columns=None: reads.append(columns)
                      or whole(path, kind, columns))
        patch.setattr(records, "iter_table", lambda path, kind, columns, rows: reads.append(columns)
                      or batched(path, kind, columns, rows))
        assert store.stored_counts("gsm8k", 8) == {"p1": 4, "p2": 1}  # p1 is repeated: counted key by key
    assert reads and all(c is not None and "text" not in c for c in reads)


def merge_stores(sources, out) -> int:
    return SampleStore(out).append_new([shard for source in sources for shard in SampleStore(source).shards()])


def test_merge_is_idempotent(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    SampleStore(a).append(rows("p1", 3))
    SampleStore(b).append(rows("p2", 3) + rows("p1", 3))  # overlapping, identical
    assert merge_stores([a, b], out) == 6
    once = SampleStore(out).read()
    assert merge_stores([a, b], out) == 0
    assert SampleStore(out).read().equals(once)
    assert once.num_rows == 6


def test_merge_refuses_conflicting_samples(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    SampleStore(a).append(rows("p1", 2))
    SampleStore(b).append(rows("p1", 2, text="x{i}"))
    with pytest.raises(ValueError, match="differs"):
        merge_stores([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # every conflict is found before anything is written
    SampleStore(tmp_path / "c").append(rows("p1", 2))
    SampleStore(tmp_path / "c").append(rows("p2", 2))
    before = SampleStore(tmp_path / "c").shards()
    with pytest.raises(ValueError, match=r"sample \('gsm8k', 'p1', [01]\) differs between them"):
        merge_stores([b], tmp_path / "c")
    assert sorted(SampleStore(tmp_path / "c").dir.iterdir()) == before  # no shard, no temporary


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 4)), min_size=1, max_size=8))
def test_any_flush_sequence_reads_back_each_key_once(tmp_path_factory, flushes):
    store = SampleStore(tmp_path_factory.mktemp("run"))
    for problem, n in flushes:
        store.append(rows(f"p{problem}", n))
    table = store.read()
    expected = {(f"p{p}", i) for p, n in flushes for i in range(n)}
    got = list(zip(table["problem_id"].to_pylist(), table["sample_idx"].to_pylist(), strict=True))
    assert len(got) == len(set(got)) and set(got) == expected


def test_compact_keeps_every_row_in_one_shard(tmp_path):
    store = SampleStore(tmp_path)
    for k in range(5):
        store.append(rows(f"p{k}", 3))
    before = store.read()
    store.compact(at=5)
    assert len(store.shards()) == 5  # not past the threshold
    store.compact(at=4)
    assert len(store.shards()) == 1 and store.read().equals(before)
    first = store.shards()[0]
    for k in range(5):  # as if a kill came after the new shard was written, before the old went
        store.append(rows(f"p{k}", 3))
    assert store.read().equals(before) and first in store.shards()


def _no_whole_reads(patch: pytest.MonkeyPatch) -> None:
    """Make reading a whole shard (texts included) or the whole store fail: only streamed reads work."""
    whole = records.read_table

    def keys_only(path, kind, columns=None):
        assert columns is not None and "text" not in columns, "a whole shard was read"
        return whole(path, kind, columns)

    patch.setattr(records, "read_table", keys_only)
    patch.setattr(store_module, "read_shards", lambda shards: pytest.fail("the whole store was read"))


@pytest.mark.parametrize("dedup_rows", [1, 4, 1 << 21])
def test_compact_streams_and_drops_repeats_group_by_group(tmp_path, monkeypatch, dedup_rows):
    """Compaction reads the shards batch by batch (never a whole shard with texts, never the whole
    store), also when keys repeat (a compaction killed after its rename): repeated problems are
    deduplicated ``dedup_rows`` stored rows at a time; every key ends up once, same columns."""
    store = SampleStore(tmp_path)
    for k in range(6):
        store.append(rows(f"p{k}", 5))
    before = store.read()
    store.append(rows("p1", 5) + rows("p4", 3))  # repeats of two problems
    store.append(rows("p1", 2))
    monkeypatch.setattr(store_module, "_KEY_ROWS", 2)  # key columns read two rows at a time
    monkeypatch.setattr(store_module, "_DEDUP_ROWS", dedup_rows)
    with pytest.MonkeyPatch.context() as patch:
        _no_whole_reads(patch)
        store.compact(at=2)
        keys = [(r["problem_id"], r["sample_idx"]) for b in store.batches(["problem_id", "sample_idx"], 3)
                for r in b.to_pylist()]
        assert store.stored_counts("gsm8k", 4) == {f"p{k}": 4 for k in range(6)}
    assert len(store.shards()) == 1 and store.read().equals(before)
    assert sorted(keys) == [(f"p{k}", i) for k in range(6) for i in range(5)]


def test_compact_refuses_conflicting_repeats_and_changes_nothing(tmp_path):
    store = SampleStore(tmp_path)
    for k in range(3):
        store.append(rows(f"p{k}", 3))
    first = store.append(rows("p1", 3))
    second = store.append(rows("p1", 3, text="other{i}"))
    shards = store.shards()
    with pytest.raises(ValueError) as e:
        store.compact(at=2)
    assert first.name in str(e.value) and second.name in str(e.value)
    assert store.shards() == shards and sorted(p.name for p in store.dir.iterdir()) == sorted(p.name for p in shards)


@pytest.mark.parametrize("kill_after_unlinks", [None, 0, 2])
def test_a_compaction_stopped_midway_loses_nothing(tmp_path, monkeypatch, kill_after_unlinks):
    """Stopped while writing (None: the writer dies after its first batch) or after the rename with
    some old shards left: the store reads back the same rows, and the next compaction finishes."""
    store = SampleStore(tmp_path)
    for k in range(5):
        store.append(rows(f"p{k}", 4))
    before = store.read()
    with pytest.MonkeyPatch.context() as patch:
        if kill_after_unlinks is None:
            real = store._unique_batches

            def dying(shards, columns, rows=65_536):
                yield next(real(shards, columns, rows))
                raise KeyboardInterrupt
            patch.setattr(store, "_unique_batches", dying)
        else:
            unlinks, real_unlink = [], Path.unlink

            def unlink_then_die(path, *args, **kwargs):  # recorded, done for real after the "kill"
                if len(unlinks) == kill_after_unlinks:
                    raise KeyboardInterrupt
                unlinks.append(path)
            patch.setattr(Path, "unlink", unlink_then_die)
        with pytest.raises(KeyboardInterrupt):
            store.compact(at=2)
        if kill_after_unlinks is not None:  # the unlinks that "happened" before the kill
            for path in unlinks:
                real_unlink(path)
    assert store.read().equals(before)
    store.compact(at=2)
    assert len(store.shards()) == 1 and store.read().equals(before)


def test_compact_keeps_a_column_only_some_shards_hold(tmp_path):
    store = SampleStore(tmp_path)
    store.append(rows("p1", 2))
    store.append([{**r, "extra": 7} for r in rows("p2", 2)])
    store.append(rows("p3", 2))
    before = store.read()
    store.compact(at=2)
    after = store.read()
    assert len(store.shards()) == 1 and after.equals(before.select(after.column_names))
    assert after.sort_by("problem_id")["extra"].to_pylist() == [None, None, 7, 7, None, None]


WRITER = """
import sys, time
import pyarrow as pa
from harness import records
from harness.store import SampleStore

store, target = SampleStore(sys.argv[1]), sys.argv[2]
path = store.dir / store._new_name() if target == "shard" else store.run_dir / target

def batches():
    yield pa.Table.from_pylist([dict(r, sample_idx=i) for i, r in enumerate([{rows}] * 1000)])
    print("writing", flush=True)  # the temporary holds a batch; the writer now stalls mid-write
    time.sleep(600)

records.write_batches(path, "scores" if target == "scores.parquet" else "samples", batches())
"""


def start_writer(run: Path, target: str) -> subprocess.Popen:
    """A real process streaming a shard (``target`` "shard") or a run file (e.g. "scores.parquet")
    through records.write_batches, stopped after its first batch: its temporary is on disk."""
    row = rows("p9", 1)[0] if target != "scores.parquet" else {
        "task": "gsm8k", "problem_id": "p9", "sample_idx": 0, "answer": "1", "correct": True, "verifier_message": ""}
    proc = subprocess.Popen([sys.executable, "-c", WRITER.replace("{rows}", repr(row)), str(run), target],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


@pytest.mark.parametrize("target", ["shard", "scores.parquet"])
def test_a_sigkilled_writers_temporary_goes_when_the_run_is_next_locked(tmp_path, target):
    """A writer killed by SIGKILL mid-write leaves its .NAME.PID.TAG.tmp; the next lock holder
    removes it (dead writer, older than the lock), keeps a live writer's, and loses no shard."""
    store = SampleStore(tmp_path)
    store.append(rows("p1", 3))
    killed, live = start_writer(tmp_path, target), start_writer(tmp_path, target)

    def temporaries() -> list[Path]:
        return sorted([*tmp_path.glob(".*.tmp"), *store.dir.glob(".*.tmp")])

    try:
        killed.kill()
        killed.wait()  # reaped (an unreaped zombie counts as gone too)
        dead = [p for p in temporaries() if f".{killed.pid}." in p.name]
        assert len(dead) == 1 and len(temporaries()) == 2
        assert store.remove_stale_temporaries(before=dead[0].stat().st_mtime - 60) == []  # newer: kept
        with RunDir(tmp_path).locked():
            left = temporaries()
        assert len(left) == 1 and f".{live.pid}." in left[0].name  # a live writer's stays
        assert store.read().num_rows == 3 and len(store.shards()) == 1
    finally:
        live.kill()
        live.wait()
    with RunDir(tmp_path).locked():
        assert temporaries() == []


def test_append_new_streams_and_writes_exactly_the_unstored_keys(tmp_path, monkeypatch):
    """The merge path's append_new reads the store and the sources batch by batch (no whole read;
    problems repeated in the store and in the sources included): one new shard of exactly the keys
    not stored yet; a key stored with another text raises naming both shards and writes nothing."""
    store, source, other = (SampleStore(tmp_path / name) for name in ("run", "src", "other"))
    store.append(rows("p1", 3))
    store.append(rows("p2", 2))
    store.append(rows("p1", 3))  # p1 stored twice: read through the deduplicating group read
    source.append(rows("p1", 5) + rows("p3", 2))
    source.append(rows("p2", 2) + rows("p3", 3))  # p3 in two source shards
    other.append(rows("p3", 1) + rows("p2", 2, text="x{i}"))
    expected = read_shards([*store.shards(), *source.shards()])
    monkeypatch.setattr(store_module, "_KEY_ROWS", 2)
    with pytest.MonkeyPatch.context() as patch:
        _no_whole_reads(patch)
        assert store.append_new(source.shards()) == 5  # p1 3-4, p3 0-2
        shards = store.shards()
        assert store.append_new(source.shards()) == 0 and store.shards() == shards
        with pytest.raises(DataError, match=r"and .*: sample \('gsm8k', 'p2', [01]\) differs between them"):
            store.append_new(other.shards())
        assert sorted(store.dir.iterdir()) == shards
    assert len(shards) == 4 and store.read().equals(expected)


def shard_run(path: Path, shard: str, *problems: tuple[str, int, str]) -> RunDir:
    """A shard run directory holding ``problems`` ((id, samples, text pattern), one flush each)."""
    run = RunDir(path)
    run.write_manifest({"model": {"id": "m"}, "task": {"name": "gsm8k"}, "sampler": {"n": 5, "seed": 0},
                        "shard": shard})
    for problem, n, text in problems:
        run.store.append(rows(problem, n, text))
    return run


def test_merge_streams_all_or_nothing_into_a_new_and_an_existing_run(tmp_path, monkeypatch):
    """RunDir.merge (t2 merge) with whole reads failing: into a new directory, then into the
    existing run with overlapping shards; a conflicting text is refused and leaves no trace."""
    a = shard_run(tmp_path / "a", "0/2", ("p1", 3, "t{i}"), ("p2", 2, "t{i}"))
    b = shard_run(tmp_path / "b", "1/2", ("p3", 2, "t{i}"), ("p1", 5, "t{i}"))
    c = shard_run(tmp_path / "c", "1/2", ("p4", 1, "t{i}"), ("p2", 2, "x{i}"))
    expected = read_shards([*a.store.shards(), *b.store.shards()])
    out = RunDir(tmp_path / "out")
    monkeypatch.setattr(store_module, "_KEY_ROWS", 2)
    with pytest.MonkeyPatch.context() as patch:
        _no_whole_reads(patch)
        with pytest.raises(DataError, match="differs between them"):
            RunDir(tmp_path / "new").merge([a, c])
        assert out.merge([a]) == 5 and out.merge([a, b]) == 4  # p1 3-4, p3 0-1
        files = {p: p.read_bytes() for p in out.path.rglob("*") if p.is_file()}
        with pytest.raises(DataError, match="differs between them"):
            out.merge([c])
        assert {p: p.read_bytes() for p in out.path.rglob("*") if p.is_file()} == files
    assert out.store.read().equals(expected) and out.require()["task"]["n_problems"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "out"]
