"""The run directory owner: identity, lock, all-or-nothing merge, file modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from harness import records
from harness.errors import DataError, RunLocked, RunMismatch
from harness.rundir import RunDir, differences
from harness.store import HOST, SampleStore


def manifest(**changes) -> dict:
    run = {"model": {"id": "m", "revision": None, "dtype": "float32"},
           "task": {"name": "gsm8k", "version": "1", "template": "Q", "n_problems": 2, "problems_sha256": "p0",
                    "data_sha256": "d0", "options": {"limit": 2, "data_files": "/a/test.jsonl"}},
           "sampler": {"backend": "hf", "n": 2, "temperature": 1.0, "seed": 0}, "shard": None}
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = run
        for key in path:
            target = target[key]
        target[last] = value
    return run


def rows(problem: str, n: int, text: str = "t{i}") -> list[dict]:
    return [{"task": "gsm8k", "problem_id": problem, "sample_idx": i, "seed": i, "text": text.format(i=i),
             "prompt_tokens": 5, "completion_tokens": 3, "cached_prompt_tokens": 0, "finish_reason": "stop",
             "cumulative_logprob": -1.0} for i in range(n)]


def make_run(path, problems: dict[str, str], shard: str | None = None, **changes) -> RunDir:
    run = RunDir(path)
    run.write_manifest({**manifest(**changes), "shard": shard})
    for problem, text in problems.items():
        run.store.append(rows(problem, 2, text))
    return run


@pytest.mark.parametrize("change, field", [
    ({"task__data_sha256": "d1"}, "task.data_sha256"),
    ({"task__problems_sha256": "p1"}, "task.problems_sha256"),
    ({"task__options": {"limit": 3, "data_files": "/a/test.jsonl"}}, "task.options.limit"),
    ({"task__options": {"limit": 2, "data_files": "/a/test.jsonl", "n_shot": 2}}, "task.options.n_shot"),
    ({"model__dtype": "bfloat16"}, "model.dtype"),
    ({"sampler__temperature": 0.5}, "sampler.temperature"),
    ({"shard": "0/2"}, "shard"),
])
def test_identity_names_the_first_difference(tmp_path, change, field):
    run = RunDir(tmp_path)
    run.write_manifest(manifest())
    before = run.run_file.read_bytes()
    with pytest.raises(RunMismatch) as e:
        run.verify(manifest(**change))
    assert e.value.field == field and field in str(e.value) and str(run.run_file) in str(e.value)
    assert run.run_file.read_bytes() == before


def test_identity_ignores_the_data_path_and_fields_an_old_run_lacks(tmp_path):
    moved = manifest(task__options={"limit": 2, "data_files": "/elsewhere/copy.jsonl"})
    assert differences(manifest(), moved) == []
    old = manifest()
    del old["task"]["data_sha256"]  # a schema-v1 run.json from before the data hash
    assert differences(old, manifest()) == []
    likelihood_only = manifest(sampler=None)
    assert differences(likelihood_only, manifest(sampler__seed=5)) == []
    assert differences(manifest(), manifest(sampler__seed=5), parts=("model", "task")) == []


def test_a_second_writer_is_refused_at_once_naming_the_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.locked():
        with pytest.raises(RunLocked, match=str(run.path)):
            with RunDir(run.path).locked():
                pass
        code = ("import sys; from harness.rundir import RunDir; from harness.errors import RunLocked\n"
                "try:\n    RunDir(sys.argv[1]).locked().__enter__()\nexcept RunLocked as e:\n"
                "    print(e); sys.exit(3)")
        other = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True)
        assert other.returncode == 3 and "another t2 process" in other.stdout
    with run.locked():  # released on exit
        pass


def test_not_a_run_directory(tmp_path):
    with pytest.raises(DataError, match="not a run directory"):
        RunDir(tmp_path).require()
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(DataError, match=r"x\.csv: not a run directory \(a file\)"):
        RunDir(tmp_path / "x.csv").require()


def test_conflicting_merge_leaves_out_untouched(tmp_path):
    a = make_run(tmp_path / "a", {"gsm8k/0": "t{i}"}, shard="0/2")
    b = make_run(tmp_path / "b", {"gsm8k/0": "other{i}", "gsm8k/1": "t{i}"}, shard="1/2")
    out = RunDir(tmp_path / "out")
    with pytest.raises(DataError, match="differs"):
        out.merge([a, b])
    assert not out.path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    # into an existing merged run: a conflict with what it holds changes nothing either
    c = make_run(tmp_path / "c", {"gsm8k/1": "t{i}"}, shard="1/2")
    assert out.merge([a, c]) == 4
    before = {p.name: p.read_bytes() for p in out.path.rglob("*") if p.is_file()}
    d = make_run(tmp_path / "d", {"gsm8k/1": "changed{i}"}, shard="1/2")
    with pytest.raises(DataError, match="differs"):
        out.merge([a, d])
    assert {p.name: p.read_bytes() for p in out.path.rglob("*") if p.is_file()} == before


def test_merge_into_a_non_run_directory_changes_nothing(tmp_path):
    a = make_run(tmp_path / "a", {"gsm8k/0": "t{i}"}, shard="0/2")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OSError):
        RunDir(out).merge([a])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "out"]  # no staging left behind


MERGER = """
import sys, time
from harness import records
from harness.rundir import RunDir

write_batches = records.write_batches

def stalled(path, kind, batches, metadata=None):
    def then_stall():
        yield from batches
        print("writing", flush=True)  # the staging shard's temporary holds every batch; the merge stalls
        time.sleep(600)
    return write_batches(path, kind, then_stall(), metadata)

records.write_batches = stalled
RunDir(sys.argv[1]).merge([RunDir(p) for p in sys.argv[2:]])
"""


def start_merge(out, sources) -> subprocess.Popen:
    """A real merge process into ``out``, stopped while writing its staging folder's shard."""
    proc = subprocess.Popen([sys.executable, "-c", MERGER, str(out), *map(str, sources)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_a_sigkilled_merges_staging_goes_at_the_next_merge_and_a_live_ones_stays(tmp_path):
    """A merge into a new directory killed by SIGKILL leaves .RUN.merging-HOST-PID beside RUN; the
    next merge into RUN removes it (and an older pid-only name of a dead pid), keeps a live merge's
    and another host's, and once the live one is killed, the next merge removes its staging too."""
    a = make_run(tmp_path / "a", {"gsm8k/0": "t{i}"}, shard="0/2")
    b = make_run(tmp_path / "b", {"gsm8k/1": "t{i}"}, shard="1/2")
    out = RunDir(tmp_path / "out")
    killed, live = start_merge(out.path, [a.path, b.path]), start_merge(out.path, [a.path, b.path])

    def stagings() -> list[str]:
        return sorted(p.name for p in tmp_path.glob(".out.merging-*"))

    try:
        killed.kill()
        killed.wait()
        dead, alive = (tmp_path / f".out.merging-{HOST}-{p.pid}" for p in (killed, live))
        assert list(dead.glob("samples/.*.tmp")) and stagings() == sorted([dead.name, alive.name])
        (tmp_path / f".out.merging-{killed.pid}").mkdir()  # the name merges gave before hosts were named
        (tmp_path / f".out.merging-elsewhere-{killed.pid}").mkdir()  # another host's: its pid says nothing here
        assert out.merge([a]) == 2
        assert stagings() == sorted([alive.name, f".out.merging-elsewhere-{killed.pid}"])
    finally:
        live.kill()
        live.wait()
    assert out.merge([a, b]) == 2 and out.require()["task"]["n_problems"] == 2  # into the existing run
    assert stagings() == [f".out.merging-elsewhere-{killed.pid}"]
    assert sorted(p.name for p in out.path.rglob("*")) == sorted(
        [".t2-lock", "run.json", "samples", *(p.name for p in out.store.shards())])


def test_merge_refuses_runs_of_other_data(tmp_path):
    a = make_run(tmp_path / "a", {"gsm8k/0": "t{i}"}, shard="0/2")
    b = make_run(tmp_path / "b", {"gsm8k/1": "t{i}"}, shard="1/2", task__data_sha256="other")
    with pytest.raises(RunMismatch, match="task.data_sha256.*only shards of one run"):
        RunDir(tmp_path / "out").merge([a, b])
    assert not (tmp_path / "out").exists()


def test_overlapping_merge_counts_each_problem_once(tmp_path):
    a = make_run(tmp_path / "a", {"gsm8k/0": "t{i}", "gsm8k/1": "t{i}"}, shard="0/1")
    b = make_run(tmp_path / "b", {"gsm8k/1": "t{i}", "gsm8k/2": "t{i}"}, shard="0/1")
    out = RunDir(tmp_path / "out")
    assert out.merge([a, b, a]) == 6
    merged = out.require()
    assert merged["task"]["n_problems"] == 3 and merged["shard"] is None
    assert out.merge([b]) == 0 and out.require()["task"]["n_problems"] == 3


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_records_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = make_run(tmp_path / "run", {"gsm8k/0": "t{i}"})
        run.write_problems({("gsm8k", "gsm8k/0"): {"task": "gsm8k", "problem_id": "gsm8k/0", "n": 2, "c": 1}})
        files = [run.run_file, run.problems_file, *SampleStore(run.path).shards()]
        records.write_json(tmp_path / "cost.json", "cost", {"wall_s": 1.0})
        files.append(tmp_path / "cost.json")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}


def test_problems_written_before_prompt_and_gold_read_with_them_null(tmp_path):
    """problems.parquet gained nullable prompt and gold columns: an older file (without them) reads,
    and rows written with them keep them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = pa.table({"task": ["t"], "problem_id": ["t/0"], "n": [4], "c": [1], "nll": [None], "answer_tokens": [None]})
    old = old.replace_schema_metadata({b"t2_kind": b"problems", b"t2_schema_version": str(records.SCHEMA_VERSION).encode()})
    run = RunDir(tmp_path)
    pq.write_table(old, run.problems_file)
    rows = run.read_problems()
    assert rows[("t", "t/0")]["prompt"] is None and rows[("t", "t/0")]["gold"] is None and rows[("t", "t/0")]["c"] == 1
    rows[("t", "t/0")].update(prompt="Q: 1+1?", gold="2")
    run.write_problems(rows)
    assert run.read_problems()[("t", "t/0")] == {"task": "t", "problem_id": "t/0", "n": 4, "c": 1, "nll": None,
                                                 "answer_tokens": None, "prompt": "Q: 1+1?", "gold": "2"}
