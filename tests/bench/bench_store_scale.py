"""Benchmark: the store and the scorer at 10^6 and 10^7 samples (issue 15, item 6).

A run directory of the synthetic arithmetic task (P questions × 10^4 samples, short texts: " 42."
style answers, right on ~1 sample in 4) is written in shards of 100 problems (10^6 samples). Each phase runs in its own child process, which reports its CPU time, wall time and peak
RSS (ru_maxrss): resume start (``SampleStore.stored_counts``, key columns only), compaction
(``SampleStore.compact``, on a copy of the store), ``t2 score`` (streamed,
harness.sampling.SCORE_BATCH rows of texts at a time) and ``t2 passk`` (scores.parquet's vote
columns, harness.passk.VOTE_ROWS rows at a time). Baselines, each run just before its new phase:
resume start and compaction of harness/store.py at git revision ``--baseline`` (loaded from
``git show`` under another name); the previous ``t2 passk``'s table step, passk_table over the whole
scores.parquet read as one table; and, at 10^6 only, the previous scorer's reading, every text of
the store as one Python list (``store.read()...to_pylist()``) before judging. Goal: peak memory <= 2 GB at 10^7.

Run by hand: python tests/bench/bench_store_scale.py [--sizes 100 1000] [--baseline REV]  (problems;
writes results/bench/store_scale.md)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from child import at_revision, measure

from harness import records
from harness.rundir import RunDir
from harness.sampling import load_problems
from harness.store import SampleStore

N = 10_000
BASELINE = "ddadc91"  # the last commit before the streamed compaction and per-batch resume start
NOTES = """
The score baseline row is only the previous scorer's reading step (no judging): its memory grows
with the store's texts, the streamed scorer's does not. Resume start now sums per-shard counts of
the key columns read 2^20 rows at a time (the baseline concatenated every shard's key columns and
grouped them at once); compaction streams 65,536-row batches into the new shard (the baseline read
the whole store, texts included, sorted it and wrote it). `t2 passk` here sees up to 101 distinct
answers per problem (100 wrong numbers + the gold), more than bench_passk.py (<= 10). Its baseline
is the previous command's table step (passk_table over scores.parquet read whole, every column);
the new command reads the four vote columns 65,536 rows at a time into per-answer counts, so its
memory is one batch plus the distinct answers (about 10^5 rows here), not the file. (cost.json
reads the token columns only.)
"""
BASELINE_STORE = "store = load('store_baseline', sys.argv[2])\n"
PHASES = {  # name: (child body, whether it compacts: run on a copy of the store)
    "baseline: previous resume start (stored_counts)": (
        BASELINE_STORE + "store.SampleStore(sys.argv[1]).stored_counts('arithmetic', 10_000)", False),
    "resume start (stored_counts)": ("from harness.store import SampleStore\n"
                                     "SampleStore(sys.argv[1]).stored_counts('arithmetic', 10_000)", False),
    "baseline: previous compaction (whole read)": (
        BASELINE_STORE + "store.SampleStore(sys.argv[1]).compact(at=0)", True),
    "compaction (streamed)": ("from harness.store import SampleStore\nSampleStore(sys.argv[1]).compact(at=0)", True),
    "t2 score (streamed)": ("from harness.cli import main\nmain(['score', sys.argv[1]])", False),
    "baseline: previous t2 passk (whole scores.parquet read)": (
        "from harness import passk, records\nfrom harness.rundir import RunDir\nrun = RunDir(sys.argv[1])\n"
        "passk.passk_table(records.read_table(run.problems_file, 'problems'), "
        "records.read_table(run.scores_file, 'scores'), n_boot=200)", False),
    "t2 passk (vote columns streamed)": (
        "from harness.cli import main\nmain(['passk', sys.argv[1], '--bootstrap', '200'])", False),
    "baseline: previous score's read (all texts as Python lists)": (
        "from harness.store import SampleStore\n"
        "rows = SampleStore(sys.argv[1]).read().select(['task', 'problem_id', 'sample_idx', 'text']).to_pylist()",
        False),
}


def write_run(path: Path, problems: int, per_shard: int = 100) -> None:
    """The run directory: run.json of the arithmetic task, shards of ``per_shard`` problems × N samples."""
    task, chosen, record = load_problems("arithmetic", None, None, None, {"n": problems, "seed": 0})
    RunDir(path).write_manifest({"task": record, "sampler": None, "shard": None})
    rng, store, idx = np.random.default_rng(0), SampleStore(path), np.arange(N)
    for first in range(0, len(chosen), per_shard):
        group = chosen[first:first + per_shard]
        right = rng.random((len(group), N)) < 0.25
        wrong = np.char.add(np.char.add(" ", rng.integers(0, 100, (len(group), N)).astype(str)), ".")
        texts = np.where(right, np.array([f" {p.answer}." for p in group])[:, None], wrong).ravel()
        rows = len(group) * N
        store.append(pa.table({
            "task": pa.array([task.name] * rows), "problem_id": pa.array(np.repeat([p.id for p in group], N)),
            "sample_idx": np.tile(idx, len(group)), "seed": np.tile(idx, len(group)), "text": pa.array(texts),
            "prompt_tokens": np.full(rows, 20), "completion_tokens": np.full(rows, 2),
            "cached_prompt_tokens": np.tile(np.where(idx == 0, 0, 20), len(group)),
            "finish_reason": pa.array(["stop"] * rows), "cumulative_logprob": np.full(rows, -1.0)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="problems (× 10^4 samples)")
    parser.add_argument("--baseline-up-to", type=int, default=100,
                        help="run the score-read baseline up to this many problems")
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose harness/store.py is the baseline")
    args = parser.parse_args()
    lines = ["| samples | phase | CPU s | wall s | peak RSS (GiB) |", "|---:|---|---:|---:|---:|"]
    for problems in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            run, baseline = Path(tmp) / "run", Path(tmp) / "store_baseline.py"
            baseline.write_text(at_revision(args.baseline, "harness/store.py"))
            start = time.perf_counter()
            write_run(run, problems)
            lines.append(f"| {problems * N:,} | (writing the store: {-(-problems // 100)} shards of 100 problems) | | "
                         f"{time.perf_counter() - start:.0f} | |")
            for name, (body, compacts) in PHASES.items():
                if name.startswith("baseline: previous score") and problems > args.baseline_up_to:
                    continue
                target = Path(tmp) / "copy" if compacts else run
                if compacts:
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(run, target)
                m = measure(body, target, baseline)
                if compacts:  # one shard, every sample once
                    assert len(SampleStore(target).shards()) == 1
                    assert sum(SampleStore(target).stored_counts("arithmetic", N).values()) == problems * N
                lines.append(f"| {problems * N:,} | {name} | {m['cpu']:.1f} | {m['wall']:.1f} | **{m['rss_gib']:.2f}** |")
                print(lines[-1], flush=True)
            scored = records.read_table(run / "problems.parquet", "problems", ["n"])["n"].to_numpy()
            assert scored.sum() == problems * N, "score missed samples"
    load = os.getloadavg()
    cores = sorted(os.sched_getaffinity(0))
    pinned = f"taskset -c {','.join(map(str, cores))} " if len(cores) < os.cpu_count() else ""
    text = ("# Store and scorer at 10^6 and 10^7 samples\n\n"
            f"Command: `{pinned}python tests/bench/bench_store_scale.py --sizes {' '.join(map(str, args.sizes))} "
            f"--baseline {args.baseline}` on the "
            "2-core development CPU shared with other jobs (load average at the end: "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over 1 / 5 / 15 min), each phase a child process "
            "(peak RSS = its VmHWM, which, unlike ru_maxrss, does not start at the parent's peak: the previous "
            "table's 10^6 rows all showed the parent's 0.41 GiB). Synthetic arithmetic task, 10^4 samples per problem, texts of 3-5 "
            "characters, in shards of 100 problems (10^6 samples). Goal: peak <= 2 GB at 10^7.\n\n"
            + "\n".join(lines) + "\n" + NOTES)
    out = Path(__file__).resolve().parents[2] / "results" / "bench" / "store_scale.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
