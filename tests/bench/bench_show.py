"""Benchmark: ``t2 show`` (harness.show.run_summary, key columns only) on a run of 10^6 samples,
against the baseline a summary would otherwise need: reading the whole store (``SampleStore.read``,
texts included) for the same counts.

The run is synthetic but in the real record formats: 1,000 problems × 1,000 samples with
200-character texts in 20 store files, a scored problems.parquet, run.json and cost.json. Timings
are interleaved (show, baseline, show, baseline, ...), CPU seconds of this process and wall
seconds, with the load average printed beside them.

Run by hand: OMP_NUM_THREADS=1 python tests/bench/bench_show.py  (writes results/bench/show.md)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from harness import records
from harness.rundir import RunDir
from harness.show import run_summary, summary_text

PROBLEMS, N, FILES, TEXT, REPS = 1_000, 1_000, 20, 200, 3
OUT = Path(__file__).resolve().parents[2] / "results" / "bench" / "show.md"


def make_run(path: Path) -> RunDir:
    run = RunDir(path)
    rng = np.random.default_rng(0)
    per_file = PROBLEMS // FILES
    for f in range(FILES):
        ids = np.repeat([f"p{f * per_file + i:05d}" for i in range(per_file)], N)
        rows = len(ids)
        run.store.append(pa.table({
            "task": ["gsm8k"] * rows, "problem_id": ids, "sample_idx": np.tile(np.arange(N), per_file),
            "seed": np.arange(rows), "text": ["x" * TEXT] * rows, "prompt_tokens": np.full(rows, 100),
            "completion_tokens": rng.integers(1, 256, rows), "cached_prompt_tokens": np.full(rows, 100),
            "finish_reason": np.where(rng.random(rows) < 0.8, "stop", "length"),
            "cumulative_logprob": -rng.random(rows)}))
    c = rng.integers(0, N + 1, PROBLEMS)
    records.write_table(run.problems_file, "problems", {
        "task": ["gsm8k"] * PROBLEMS, "problem_id": [f"p{i:05d}" for i in range(PROBLEMS)], "n": [N] * PROBLEMS,
        "c": c.tolist(), "nll": [None] * PROBLEMS, "answer_tokens": [None] * PROBLEMS})
    run.write_manifest({"model": {"id": "smollm2-135m", "params_total": 134515008, "params_non_embedding": 106203456},
                        "task": {"name": "gsm8k", "version": "1", "n_problems": PROBLEMS},
                        "sampler": {"backend": "hf", "n": N, "temperature": 1.0, "stop": []},
                        "harness": {"version": "0.1.0"}, "versions": {}, "device": "cpu"})
    run.write_cost({"total_flops": 1e15, "prompt_tokens": 100 * PROBLEMS, "completion_tokens": 128 * N * PROBLEMS})
    return run


def timed(fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run")
        print(summary_text(run_summary(run.path)))
        show, full = [], []
        for _ in range(REPS):  # interleaved: A B A B
            show.append(timed(lambda: run_summary(run.path)))
            full.append(timed(lambda: run.store.read()))
    load = os.getloadavg()
    best_show, best_full = min(show), min(full)
    table = ["| quantity | value |", "|---|---:|",
             f"| run | {PROBLEMS:,} problems × {N:,} samples = {PROBLEMS * N:,} samples, {TEXT}-char texts, "
             f"{FILES} store files |",
             f"| `t2 show` summary (run_summary), best of {REPS}: CPU s (wall s) | **{best_show[0]:.2f}** "
             f"({best_show[1]:.2f}) |",
             f"| baseline: read the whole store (SampleStore.read), best of {REPS}: CPU s (wall s) | "
             f"{best_full[0]:.2f} ({best_full[1]:.2f}) |",
             f"| ratio baseline / show (CPU) | **{best_full[0] / best_show[0]:.1f}×** |",
             f"| load average at the end (1 / 5 / 15 min, 2 cores) | {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} |"]
    text = ("# t2 show on a large run\n\nRun by hand with `OMP_NUM_THREADS=1 python tests/bench/bench_show.py` "
            "on the 2-core development machine, shared with other jobs; timings interleaved.\n\n"
            + "\n".join(table) + "\n")
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
