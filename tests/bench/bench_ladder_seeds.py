"""Benchmark: how much of the demo's held-out error is the ladder's own training noise.

Retrains checkpoints of the `cpu` demo ladder with other training seeds (same corpus, same rung,
same held-out questions; only the initialisation and the batch order change) and measures each
replicate as the demo does: pooled task loss (nats, from the gold answers' likelihood) and unbiased
pass@k (from n = 64 samples) at k = 1, 2, 4, ..., 64. Baseline: the demo's own checkpoint (training
seed 0, from the demo cache). The ratio printed is a replicate's relative difference from the
baseline, |y_s − y_0| / |y_0|, averaged over rows: the error a perfect law would still show against
one training run, since the law can at best predict the mean over seeds. When every checkpoint of
the demo's dataset was retrained, the held-out validation (``harness.fit.validate``, task "all") is
run again on the seed-averaged values beside the demo's own (seed 0).

Run by hand (after `make demo`, whose cache holds seed 0):
  python tests/bench/bench_ladder_seeds.py [--cache results/demo/cache] [--seeds 1,2]
writes results/bench/ladder_seeds.md. Each retrained checkpoint takes its ladder training time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from harness.tasks import get_task

from harness import demo, records
from harness.ladder import encode_corpus, train
from harness.passk import log_pass_at_k_from_nll, pass_at_k

KS = np.array([1, 2, 4, 8, 16, 32, 64])
FLOOR = 0.05  # as harness.fit.validate: rows whose |measured| < FLOOR are counted apart


def test_checkpoints(validation: Path) -> set[str]:
    """The names of the demo's held-out test checkpoints (task "all", inside the fitted N range), from its
    validation.json."""
    held = next(h for h in json.loads(validation.read_text())["heldout"] if h["task"] == "all")
    return {Path(p["checkpoint"]).name for p in held["test_points"] if p["N_inside"]}


def corpus(p: demo.Preset, tokenizer) -> np.ndarray:
    """The demo's token stream for seed 0 (build_ladder's corpus, same order)."""
    tasks = [get_task(name, **demo.task_options(name, p, 0)) for name in demo.TASKS]
    docs = [doc for task in tasks for doc in task.corpus(p.corpus_docs, seed=0)]
    np.random.default_rng(0).shuffle(docs)
    return encode_corpus(docs, tokenizer)


def curves(model: Path, cache: Path, p: demo.Preset) -> tuple[np.ndarray, np.ndarray]:
    """Pooled task loss (nats) and pass@k over KS of one checkpoint, evaluated as the demo does."""
    loss, acc = [], []
    for task in demo.TASKS:
        run = demo.evaluate(model, task, cache / "runs" / model.name / task, p, 0, "cpu")
        pr = records.read_table(run / "problems.parquet", "problems").to_pydict()
        loss.append(-log_pass_at_k_from_nll(np.array(pr["nll"]), KS))
        acc.append(pass_at_k(pr["n"], pr["c"], KS))
    return np.concatenate(loss).mean(0), np.concatenate(acc).mean(0)


def rel(y: np.ndarray, y0: np.ndarray) -> np.ndarray:
    return np.abs(y - y0) / np.maximum(np.abs(y0), 1e-12)


def main() -> None:
    from transformers import PreTrainedTokenizerFast

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=Path("results/demo/cache"))
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--dataset", type=Path, default=Path("results/demo/dataset.parquet"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/t2-bench-ladder-seeds"))
    ap.add_argument("--budgets", default="3e10,8e10", help="isoFLOP slices retrained whole (the test checkpoints always)")
    args = ap.parse_args()
    p, seeds = demo.PRESETS["cpu"], [int(s) for s in args.seeds.split(",")]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(args.cache / "tokenizer")
    stream, budgets = corpus(p, tokenizer), [float(b) for b in args.budgets.split(",")]
    rows, t0, tests = [], time.perf_counter(), test_checkpoints(args.dataset.with_name("validation.json"))
    for rung in demo.ladder_rungs(p):
        C = 6 * demo.non_embedding_params(rung.d_model, p.n_layers, p.vocab) * rung.tokens
        test = rung.name in tests
        if not (test or any(abs(C / b - 1) < 0.05 for b in budgets)):
            continue
        base = args.cache / "models" / rung.name
        if not (base / "t2_training.json").is_file():
            raise SystemExit(f"{base}: no seed-0 checkpoint; run `make demo` first or pass --cache")
        loss0, acc0 = curves(base, args.cache, p)
        for s in seeds:
            cache = args.work / f"seed{s}"
            train(rung, stream, tokenizer, cache / "models" / rung.name, seed=s)
            loss, acc = curves(cache / "models" / rung.name, cache, p)
            rows.append({"checkpoint": rung.name, "C": C, "test": test, "seed": s, "loss0": loss0, "loss": loss,
                         "acc0": acc0, "acc": acc})
            print(json.dumps({"checkpoint": rung.name, "seed": s, "nll": [loss0[0], loss[0]],
                              "pass@1": [acc0[0], acc[0]]}), flush=True)
    write(rows, args, time.perf_counter() - t0, averaged_validation(rows, args.dataset))


def averaged_validation(rows: list[dict], dataset: Path) -> list[str]:
    """Held-out validation of task "all" on the demo's values (seed 0) and on the mean over seed 0 and
    the retrained seeds, when every checkpoint of ``dataset`` was retrained; else no lines."""
    from harness import fit

    table = records.read_table(dataset, "dataset").to_pydict()
    keep = [i for i, task in enumerate(table["task"]) if task == "all"]
    cols = {name: np.array([table[name][i] for i in keep]) for name in ("checkpoint", "N", "D", "k", "task_loss",
                                                                         "accuracy")}
    names = {Path(c).name for c in cols["checkpoint"]}
    if not names <= {r["checkpoint"] for r in rows}:
        return []
    replicates = {name: [r for r in rows if r["checkpoint"] == name] for name in names}
    averaged = {name: {m: np.mean([reps[0][m + "0"]] + [r[m] for r in reps], axis=0) for m in ("loss", "acc")}
                for name, reps in replicates.items()}
    at_k = [np.flatnonzero(KS == k)[0] for k in cols["k"]]
    mean = dict(cols, task_loss=np.array([averaged[Path(c).name]["loss"][j] for c, j in zip(cols["checkpoint"], at_k)]),
                accuracy=np.array([averaged[Path(c).name]["acc"][j] for c, j in zip(cols["checkpoint"], at_k)]))
    lines = ["Held-out validation of task \"all\" (`harness.fit.validate`, default cut), the demo's checkpoints "
             "against the seed-averaged ones:", "",
             "| approach | values | train mean rel | test mean rel | test rel, rows >= 0.05 |", "|---|---|---:|---:|---:|"]
    for approach in (1, 2):
        for label, c in (("seed 0 (the demo's)", cols), (f"mean of {1 + len(rows) // len(names)} seeds", mean)):
            r = fit.validate(c, approach)
            lines.append(f"| {approach} | {label} | {r['train_mean']:.4g} | {r['test_mean']:.4g} | "
                         f"{r['test_mean_above_floor']:.4g} |")
    return lines + [""]


def summary(rows: list[dict], which: str) -> str:
    """Mean relative replicate difference over rows (checkpoint × seed × k), as validate counts them."""
    cells = []
    for name, pick in (("all retrained", lambda r: True), ("test checkpoints", lambda r: r["test"])):
        sel = [r for r in rows if pick(r)]
        y0 = np.concatenate([r[which + "0"] for r in sel])
        d = np.concatenate([rel(r[which], r[which + "0"]) for r in sel])
        cells.append(f"{name}: {d.mean():.3f} (rows with |y0| >= {FLOOR}: {d[np.abs(y0) >= FLOOR].mean():.3f}, "
                     f"{len(sel)} replicates)")
    return "; ".join(cells)


def write(rows: list[dict], args, wall: float, validation: list[str]) -> None:
    lines = ["# Training-seed noise of the demo ladder, and the held-out errors on seed-averaged checkpoints", "",
             f"Retrained with training seeds {args.seeds} (same corpus, rungs and questions); seed 0 = the demo's "
             f"checkpoints. {wall:.0f} s wall in this invocation (replicates already trained and evaluated under --work "
             f"are reused; training one costs its ladder training time); load {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} at the end. "
             f"Command: `python tests/bench/bench_ladder_seeds.py --seeds {args.seeds} --budgets {args.budgets}`.", "",
             "| checkpoint | test | seed | NLL k=1, seed 0 | NLL k=1 | loss k=64, seed 0 | loss k=64 | pass@1, seed 0 "
             "| pass@1 | mean rel. diff, loss (k=1..64) | mean rel. diff, pass@k (k=1..64) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['checkpoint']} | {'yes' if r['test'] else ''} | {r['seed']} | {r['loss0'][0]:.3f} | "
                     f"{r['loss'][0]:.3f} | {r['loss0'][-1]:.2e} | {r['loss'][-1]:.2e} | {r['acc0'][0]:.3f} | "
                     f"{r['acc'][0]:.3f} | {rel(r['loss'], r['loss0']).mean():.3f} | "
                     f"{rel(r['acc'], r['acc0']).mean():.3f} |")
    lines += ["", "Mean relative difference of a replicate from the demo's checkpoint, over every (checkpoint, k) row:",
              "", f"- task loss (Approach 1's metric): {summary(rows, 'loss')}",
              f"- pass@k (Approach 2's metric): {summary(rows, 'acc')}", "", *validation]
    Path("results/bench/ladder_seeds.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
