"""Benchmark: adaptive allocation (harness.adaptive) against uniform allocation, error of pass@K at
K = 10^4.

1. Simulated populations (those of bench_extrapolate.py, 500 problems): per seed, uniform runs at
   n = 5 .. 800 per problem (estimate: extrapolate_pass_at_k) and adaptive runs at budgets of
   5 .. 80 samples per problem on average (estimate: the posterior means, harness.adaptive.estimate),
   each against the seed's own truth mean_i 1 − (1 − p_i)^K. "Uniform samples for the same error":
   the fewest uniform samples in the grid whose mean absolute error is <= the adaptive run's
   (">" when none in the grid reaches it); the saving is that over the adaptive budget ("none" when
   uniform allocation at the same or a smaller budget already does as well).
2. A real run: a micro-ladder model (2 layers, width 48, trained here on the synthetic knowledge
   task's corpus) on P knowledge questions, hf backend on CPU, temperature 1. A uniform run at
   n = 4,096 per problem is the reference (its pass@K estimate); uniform prefixes n' < 4,096 of it
   and real adaptive runs (``run_sample(..., allocator=Allocator(...))``, capped at 4,096 per
   problem) are compared with it. Every adaptive sample is checked equal to the uniform run's
   sample of the same key.

Run by hand: python tests/bench/bench_adaptive.py [--seeds 10] [--problems 50] [--skip-real]
(writes results/bench/adaptive.md)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from bench_extrapolate import POPULATIONS, PROBLEMS, population  # noqa: E402

from harness import adaptive  # noqa: E402
from harness.passk import extrapolate_pass_at_k  # noqa: E402

K, MAX_N = 10_000, 4_096
UNIFORM_N = (5, 10, 20, 40, 80, 160, 320, 800)
BUDGET_PER_PROBLEM = (5, 10, 20, 40, 80)

REAL_PREFIX_N = (16, 64, 256, 1024, 4096)
REAL_BUDGET_PER_PROBLEM = (16, 64, 256)


def scored(run: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """(rows by key, n, c per problem in id order) of a run scored by ``t2 score``'s code."""
    from harness import records
    from harness.sampling import score_run
    from harness.store import SampleStore

    _, problems_file = score_run(run)
    table = records.read_table(problems_file, "problems").sort_by("problem_id").to_pydict()
    rows = SampleStore(run).read().select(["problem_id", "sample_idx", "seed", "text"]).to_pylist()
    return ({(r["problem_id"], r["sample_idx"]): r for r in rows}, np.array(table["n"]), np.array(table["c"]))


def real_section(cache: Path, problems: int, max_n: int = MAX_N) -> str:
    """The real-run table (see the module docstring)."""
    from helpers import knowledge_rung

    from harness import records
    from harness.samplers import SamplingSettings
    from harness.sampling import run_sample

    model = knowledge_rung(cache / "rung", d_model=48, tokens=900_000, questions=problems)
    kwargs = {"task_options": {"n": problems, "seed": 0}, "backend_options": {"device": "cpu"}, "progress": False}
    settings = SamplingSettings(n=max_n, max_tokens=6, seed=0)
    start = time.perf_counter()
    run_sample("knowledge", str(model), cache / "uniform", settings, **kwargs)
    uniform_wall = time.perf_counter() - start
    rows, n_full, c_full = scored(cache / "uniform")
    ids = sorted({pid for pid, _ in rows})
    correct = records.read_table(cache / "uniform" / "scores.parquet", "scores").sort_by(
        [("problem_id", "ascending"), ("sample_idx", "ascending")])["correct"].to_numpy(zero_copy_only=False)
    correct = correct.reshape(len(ids), max_n)
    ref = extrapolate_pass_at_k(n_full, c_full, [K])
    lines = ["| allocation | samples | pass@10^4 estimate [95% interval] | \\|error\\| vs reference | model |",
             "|---|---:|---|---:|---|"]

    def line(label: str, est, samples: int) -> None:
        lines.append(f"| {label} | {samples:,} | {est.pass_at_k[0]:.3f} [{est.low[0]:.3f}, {est.high[0]:.3f}] | "
                     f"{abs(est.pass_at_k[0] - ref.pass_at_k[0]):.3f} | {est.model} |")

    for n in [m for m in REAL_PREFIX_N if m <= max_n]:
        line(f"uniform n = {n:,} (first n samples of the reference run)" + (" = reference" if n == max_n else ""),
             extrapolate_pass_at_k(np.full(len(ids), n), correct[:, :n].sum(axis=1), [K]), n * len(ids))
    walls = []
    for per in REAL_BUDGET_PER_PROBLEM:
        from harness.adaptive import Allocator

        out, budget = cache / f"adaptive-{per}", per * len(ids)
        start = time.perf_counter()
        run_sample("knowledge", str(model), out, settings, allocator=Allocator(budget, K, max_n), **kwargs)
        walls.append(time.perf_counter() - start)
        got, n, c = scored(out)
        assert n.sum() == budget and all(rows[key] == row for key, row in got.items()), "adaptive ≠ uniform samples"
        rounds = len(records.read_json(out / "run.json", "run")["adaptive"]["rounds"])
        line(f"adaptive, budget {per} per problem ({rounds} rounds, n_i from {n.min()} to {n.max():,})",
             adaptive.estimate(n, c, [K]), budget)
    return (f"### A real run ({len(ids)} knowledge questions, micro-ladder d48-l2 trained on 900k tokens, hf on CPU, "
            f"temperature 1, 6 new tokens)\n\n"
            f"Reference: the uniform run at n = {max_n:,} ({max_n * len(ids):,} samples, {uniform_wall:.0f} s wall; "
            f"{int((c_full > 0).sum())} of {len(ids)} questions solved at least once, c from {c_full.min()} to "
            f"{c_full.max()}). Every adaptive run's samples were checked equal to the reference run's samples of "
            f"the same keys (same seeds); adaptive wall times: {', '.join(f'{w:.0f} s' for w in walls)}. One "
            "realisation: the errors are against the reference estimate, itself extrapolated from 4,096 to 10^4.\n\n"
            + "\n".join(lines) + "\n")


NOTES = """
Reading (8 seeds, so MAEs are noisy to about ±0.01): the issue's goal, the same error at K = 10^4 as
uniform allocation with >= 5× fewer samples, is **not met**. Where the fitted family holds the truth
(beta, half-unsolvable, never / Beta / always), adaptive allocation helps only at the smallest budgets
(5-10 samples per problem: 2-4×) and is worse than uniform at the same budget from 20 per problem on,
most in half-unsolvable. The cause: the problems it stops sampling early (solved ones) are those whose
c/n pins the Beta's shape; without them the BIC cannot tell a Beta with a small a (mass piled near
p = 0) from a point mass at 0, and that choice decides pass@10^4. Where the family is wrong (never /
hard Beta / easy Beta) the deep samples of unsolved problems measure what the fit would otherwise
extrapolate, and adaptive reaches errors uniform reaches only at n = 800 (the large "savings" there
are against a non-monotone uniform curve). Neither allocation fixes the power-law tail. Coverage of
the adaptive 95% interval falls to 0.62-0.75 in places.
"""


def simulated(name: str, seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uniform |error| [seeds, n], adaptive |error| [seeds, budget], adaptive coverage [seeds, budget])."""
    uniform, adapt, cover = [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(20_000 + seed)
        p = population(name, rng)
        truth = float((1 - (1 - p) ** K).mean())
        row = []
        for n in UNIFORM_N:
            c = rng.binomial(np.full(p.size, n), p)
            row.append(abs(extrapolate_pass_at_k(np.full(p.size, n), c, [K]).pass_at_k[0] - truth))
        uniform.append(row)
        row, hit = [], []
        for per in BUDGET_PER_PROBLEM:
            n, c = adaptive.simulate(p, per * p.size, K, rng, MAX_N)
            est = adaptive.estimate(n, c, [K])
            row.append(abs(est.pass_at_k[0] - truth))
            hit.append(bool(est.low[0] <= truth <= est.high[0]))
        adapt.append(row)
        cover.append(hit)
    return np.array(uniform), np.array(adapt), np.array(cover)


def saving(uniform_mae: np.ndarray, target: float, per: int) -> tuple[str, str]:
    """(the fewest uniform samples per problem in the grid whose MAE <= target, that over the adaptive
    budget ``per`` per problem): "no saving" when uniform at <= the same budget already does as well."""
    ok = [n for n, e in zip(UNIFORM_N, uniform_mae, strict=True) if e <= target]
    if not ok:
        return f"> {UNIFORM_N[-1]}", f"> {UNIFORM_N[-1] / per:.0f}×"
    return str(min(ok)), (f"{min(ok) / per:.1f}×" if min(ok) > per else "none")


def simulated_section(seeds: int) -> str:
    head = ["population", *[f"uniform n={n}" for n in UNIFORM_N]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    saves = ["| population | adaptive budget per problem (samples) | MAE | 95% coverage | uniform MAE at the same budget "
             "| uniform n per problem for the same MAE | saving |", "|---|---:|---:|---:|---:|---:|---:|"]
    start = time.process_time()
    for name in POPULATIONS:
        uniform, adapt, cover = simulated(name, seeds)
        mae = uniform.mean(axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{e:.3f}" for e in mae) + " |")
        for j, per in enumerate(BUDGET_PER_PROBLEM):
            target = float(adapt[:, j].mean())
            match, ratio = saving(mae, target, per)
            same = f"{mae[UNIFORM_N.index(per)]:.3f}" if per in UNIFORM_N else "–"
            saves.append(f"| {name} | {per} ({per * PROBLEMS:,}) | {target:.3f} | {cover[:, j].mean():.2f} | {same} | "
                         f"{match} | **{ratio}** |")
        print(lines[-1], flush=True)
    seconds = time.process_time() - start
    return (f"### Simulated populations ({PROBLEMS} problems, {seeds} seeds, K = {K:,}; {seconds:.0f} CPU s)\n\n"
            "Mean absolute error of pass@K, uniform allocation (extrapolate_pass_at_k) at n per problem "
            f"({', '.join(f'{n * PROBLEMS:,}' for n in UNIFORM_N)} samples):\n\n" + "\n".join(lines)
            + "\n\nAdaptive allocation (posterior means, capped at 4,096 per problem):\n\n" + "\n".join(saves) + "\n"
            + NOTES)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["simulated", "real"], required=True,
                        help="which section of results/bench/adaptive.md to (re)write")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", type=int, default=50, help="real run: knowledge questions")
    parser.add_argument("--cache", default="/tmp/t2-bench-adaptive", help="real run: model and runs")
    parser.add_argument("--max-n", type=int, default=MAX_N, help="real run: the reference run's n")
    args = parser.parse_args()
    section = simulated_section(args.seeds) if args.part == "simulated" else real_section(Path(args.cache), args.problems, args.max_n)
    load = os.getloadavg()
    command = (f"python tests/bench/bench_adaptive.py --part {args.part} "
               + (f"--seeds {args.seeds}" if args.part == "simulated" else f"--problems {args.problems} --max-n {args.max_n}"))
    section += (f"\nCommand: `{command}`, on the 2-core development CPU shared with other jobs (load average "
                f"at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over 1 / 5 / 15 min).\n")
    out = Path(__file__).resolve().parents[2] / "results" / "bench" / "adaptive.md"
    sections = dict.fromkeys(["simulated", "real"], "")
    if out.is_file():
        for chunk in out.read_text().split("\n<!-- part: ")[1:]:
            key, body = chunk.split(" -->\n", 1)
            sections[key] = body
    sections[args.part] = section
    out.write_text("# Adaptive allocation against uniform allocation, pass@K at K = 10^4\n"
                   + "".join(f"\n<!-- part: {key} -->\n{body}" for key, body in sections.items() if body))
    print(section)


if __name__ == "__main__":
    main()
