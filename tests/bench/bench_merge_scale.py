"""Benchmark: `t2 merge` at 10^6 and 10^7 samples, streamed against the previous whole read.

Two shard runs of the synthetic arithmetic task (bench_store_scale.write_run's store, P problems ×
10^4 samples, short texts, shards of 50 problems split alternately between the runs) are merged
(``RunDir.merge``, what ``t2 merge`` calls) into a new directory, then merged again into the merged
run (every sample already there: every problem is held twice, the streamed merge's worst case).
Each phase runs in its own child process (CPU, wall, peak RSS = VmHWM). Baseline: harness/rundir.py
and harness/store.py at git revision ``--baseline`` (loaded from ``git show`` in place of the
installed ones), whose merge read the sources whole (``union_samples``). Baseline and new phases
alternate (A B A B) so that the machine's load hits both alike.

Run by hand from the repository root: python tests/bench/bench_merge_scale.py [--sizes 100 1000]
[--baseline REV]  (problems; writes results/bench/merge_scale.md)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from bench_store_scale import N, write_run
from child import REPO, baseline_modules, measure

from harness.rundir import RunDir
from harness.store import SampleStore

BASELINE = "61d06a3"  # the last commit whose merge read the sources whole
LOAD = ("import harness\nload('harness.store', sys.argv[2] + '/store.py')\n"
        "rundir = load('harness.rundir', sys.argv[2] + '/rundir.py')\n")
MERGE = "rundir.RunDir(sys.argv[1] + '/out').merge([rundir.RunDir(sys.argv[1] + '/' + s) for s in 'ab'])"
NOTES = """
The baseline's merge again into the merged run at 10^7 is left out: in an earlier run of this script
(same machine, same data) it was stopped after 3 min 46 s wall (3 min 36 s CPU) unfinished, its peak
RSS 3.77 GiB by then (it read both sources whole, then joined the store's batches one by one against
that table). Merging again is the streamed merge's worst case: every problem is held twice, so
every row goes through the group-at-a-time deduplication (groups of up to 2^21 stored rows, texts
included), whose memory is bounded by a group, not by the store.
"""
PHASES = {  # name: (child body, whether it merges into a new directory)
    "baseline: previous merge into a new directory (sources read whole)": (LOAD + MERGE, True),
    "merge into a new directory (streamed)": ("from harness import rundir\n" + MERGE, True),
    "baseline: previous merge again into the merged run": (LOAD + MERGE, False),
    "merge again into the merged run (streamed)": ("from harness import rundir\n" + MERGE, False),
}


def shard_runs(tmp: Path, problems: int) -> None:
    """tmp/a and tmp/b: shard runs 0/2 and 1/2 holding alternate shards of one written run."""
    whole = tmp / "whole"
    write_run(whole, problems, per_shard=50)
    manifest = RunDir(whole).require()
    for i, name in enumerate("ab"):
        part = RunDir(tmp / name)
        part.write_manifest({**manifest, "shard": f"{i}/2"})
        part.store.dir.mkdir(parents=True)
        for shard in SampleStore(whole).shards()[i::2]:
            os.link(shard, part.store.dir / shard.name)
    shutil.rmtree(whole)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="problems (× 10^4 samples)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose merge is the baseline")
    parser.add_argument("--repeats", type=int, default=2, help="baseline/new pairs per phase")
    parser.add_argument("--baseline-again-up-to", type=int, default=100,
                        help="run the baseline's merge again into the merged run up to this many problems")
    args = parser.parse_args()
    lines = ["| samples | phase | CPU s | wall s | peak RSS (GiB) |", "|---:|---|---:|---:|---:|"]
    for problems in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            baseline_modules(args.baseline, ["store", "rundir"], tmp / "baseline")
            shard_runs(tmp, problems)
            for pair in [list(PHASES.items())[i:i + 2] for i in (0, 2)]:
                for _ in range(args.repeats):
                    for name, (body, fresh) in pair:
                        if name == "baseline: previous merge again into the merged run" and (
                                problems > args.baseline_again_up_to):
                            continue
                        if fresh:
                            shutil.rmtree(tmp / "out", ignore_errors=True)
                        m = measure(body, tmp, tmp / "baseline")
                        counts = SampleStore(tmp / "out").stored_counts("arithmetic", N)
                        assert sum(counts.values()) == problems * N and len(counts) == problems
                        lines.append(f"| {problems * N:,} | {name} | {m['cpu']:.1f} | {m['wall']:.1f} | "
                                     f"**{m['rss_gib']:.2f}** |")
                        print(lines[-1], flush=True)
    load = os.getloadavg()
    text = ("# `t2 merge` at 10^6 and 10^7 samples\n\n"
            f"Command: `python tests/bench/bench_merge_scale.py --sizes {' '.join(map(str, args.sizes))} "
            f"--baseline {args.baseline} --repeats {args.repeats} --baseline-again-up-to "
            f"{args.baseline_again_up_to}` on the 2-core development CPU shared with "
            f"other jobs (load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over "
            "1 / 5 / 15 min), each phase a child process (peak RSS = its VmHWM), baseline and new phase "
            "alternating. Two shard runs of the synthetic arithmetic task, 10^4 samples per problem, texts of "
            "3-5 characters, shards of 50 problems.\n\n" + "\n".join(lines) + "\n" + NOTES)
    out = REPO / "results" / "bench" / "merge_scale.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
