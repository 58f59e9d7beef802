"""Benchmark: `t2 reliability` at 10^6 and 10^7 scored samples, peak memory and time.

A run directory (run.json, problems.parquet, scores.parquet) of P problems × n = 10^4 samples with
<= 10 answers each (Dirichlet(1) shares; ``bench_passk.scores_table``) is written once per size;
``t2 reliability RUN -k 1 4 16 64 256 1024 4096 10000`` then runs in a child process, baseline then new,
reporting its CPU and wall seconds and peak RSS (VmHWM). Baseline: harness/reliability.py and
harness/passk.py at git revision ``--baseline`` (loaded from ``git show`` in place of the current
modules): per-sample answers as Python lists and every problem's [K, k + 1] distributions held at
once. New: answer groups counted by an arrow group-by, one problem's distributions at a time. The
two reports must be equal (checked to 1e-12).

Run by hand: python tests/bench/bench_reliability_scale.py [--sizes 100 1000] [--baseline REV]
(problems; writes results/bench/reliability_scale.md)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_passk import scores_table  # noqa: E402
from child import REPO, baseline_modules, measure  # noqa: E402

from harness import records  # noqa: E402

N, KS = 10_000, ["1", "4", "16", "64", "256", "1024", "4096", "10000"]
BASELINE = "e03f150"  # the last commit before reliability counted answer groups
SETUP = """
import harness.plots, harness.report  # before the baseline's passk: they import the current one (via harness.fit)
from harness.cli import main
old = sys.argv.pop(1)
if old:
    import harness
    for name in ("passk", "reliability"):
        setattr(harness, name, load(f"harness.{name}", f"{old}/{name}.py"))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="problems (× 10^4 samples)")
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    lines = ["| samples | version | CPU s | wall s | peak RSS (GiB) |", "|---:|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_modules(args.baseline, ["passk", "reliability"], Path(tmp) / "old")
        for problems in args.sizes:
            run = Path(tmp) / f"run{problems}"
            problems_table, scores = scores_table(np.random.default_rng(5), problems, N, 10, 1.0)
            records.write_json(run / "run.json", "run", {"model": {"id": "bench"}, "task": {"name": "bench"}})
            records.write_table(run / "problems.parquet", "problems", problems_table)
            records.write_table(run / "scores.parquet", "scores", scores)
            del scores
            reports = {}
            for version, path in (("baseline", str(old)), ("new", "")):
                m = measure("code = main(sys.argv[1:])\nassert not code, code", path, "reliability", run, "-k", *KS,
                            "--out", Path(tmp) / f"{version}{problems}", setup=SETUP)
                reports[version] = records.read_table(Path(tmp) / f"{version}{problems}" / "reliability.parquet",
                                                      "reliability").to_pydict()
                lines.append(f"| {problems * N:,} | {version} | {m['cpu']:.1f} | {m['wall']:.1f} | "
                             f"**{m['rss_gib']:.2f}** |")
                print(lines[-1], flush=True)
            for column in ("accuracy", "confidence", "ece", "brier", "aurc"):
                np.testing.assert_allclose(reports["new"][column], reports["baseline"][column], rtol=0, atol=1e-12)
    load = os.getloadavg()
    text = ("# `t2 reliability` at 10^6 and 10^7 scored samples\n\n"
            f"Command: `python tests/bench/bench_reliability_scale.py --sizes {' '.join(map(str, args.sizes))} "
            f"--baseline {args.baseline}`, each run a child process (peak RSS = its VmHWM), baseline then new, "
            f"on the 2-core development CPU shared with other jobs (load average at the end: {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f}). Synthetic scores, 10^4 samples per problem, <= 10 answers each, "
            f"k = {', '.join(KS)}. Baseline: harness/reliability.py and harness/passk.py at {args.baseline} "
            "(per-sample Python lists, every problem's distributions held at once); the reports of both are "
            "equal to 1e-12 in accuracy, confidence, ECE, Brier and AURC.\n\n" + "\n".join(lines) + "\n")
    (REPO / "results" / "bench" / "reliability_scale.md").write_text(text)
    print(json.dumps({"written": "results/bench/reliability_scale.md"}))


if __name__ == "__main__":
    main()
