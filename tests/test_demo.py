"""The embedded default end to end on the reduced ("tiny") ladder: every stage runs for real
(training, hf sampling, likelihood, scoring, pass@k, cost, dataset, both T² fits, validation,
report) and the stages' outputs agree with each other."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness import records
from harness.cost import sampling_cost
from harness.demo import (
    POOLED,
    PRESETS,
    TASKS,
    bracketing_widths,
    fitted_names,
    forecast_budget,
    ladder_rungs,
    non_embedding_params,
    run_demo,
    slice_rungs,
    trained_choice,
)
from harness.fit import load_laws
from harness.passk import pass_at_k
from harness.store import SampleStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, preset="tiny", seed=0)
    return out


def _runs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "cache" / "runs").glob("*/*") if p.is_dir())


def test_every_stage_wrote_its_records(demo):
    rungs = ladder_rungs(PRESETS["tiny"])
    models = [d for d in (demo / "cache" / "models").iterdir() if not d.name.startswith("validate-")]
    assert len(models) == len(rungs) >= 7
    validation = [d for d in (demo / "cache" / "models").iterdir() if d.name.startswith("validate-")]
    runs = _runs(demo)
    assert 1 <= len(validation) <= 4 and len(runs) == (len(rungs) + len(validation)) * len(TASKS)
    for run in runs:
        for name in ("run.json", "cost.json", "scores.parquet", "problems.parquet", "passk.parquet"):
            assert (run / name).is_file(), f"{run}/{name}"
    dataset = records.read_table(demo / "dataset.parquet", "dataset").to_pydict()
    assert set(dataset["task"]) == {POOLED, *TASKS}


def test_training_records_its_flops(demo):
    for model in (demo / "cache" / "models").iterdir():
        t = json.loads((model / "t2_training.json").read_text())
        assert t["training_flops_6nd"] == 6.0 * t["params_non_embedding"] * t["tokens_trained"]
        # measured matmul FLOPs (forward + backward) exceed 6ND (N non-embedding) by the LM head's and
        # attention's terms: ≈ 6·N_total·D, every weight in one matmul (the embedding through the tied
        # head); 6ND alone is 3.3x short for the 8-wide validation model a fit can ask for
        assert t["training_flops_measured"] > t["training_flops_6nd"]
        assert 0.95 < t["training_flops_measured"] / (6.0 * t["params_total"] * t["tokens_trained"]) < 1.1


def test_cost_totals_equal_the_meter_on_the_stored_samples(demo):
    for run in _runs(demo)[:8]:
        manifest = records.read_json(run / "run.json", "run")
        samples = SampleStore(run).read().to_pydict()
        per_problem: dict[str, list[int]] = {}
        prompt: dict[str, int] = {}
        for pid, p, c in zip(samples["problem_id"], samples["prompt_tokens"], samples["completion_tokens"]):
            per_problem.setdefault(pid, []).append(c)
            prompt[pid] = p
        ids = sorted(per_problem)
        config = json.loads((Path(manifest["model"]["path"]) / "config.json").read_text())
        expected = sampling_cost(config, [prompt[i] for i in ids], [per_problem[i] for i in ids])
        cost = records.read_json(run / "cost.json", "cost")
        for key in ("total_flops", "total_flops_unshared", "prefill_flops", "decode_flops", "completion_tokens"):
            assert cost[key] == pytest.approx(expected[key], rel=1e-12), (run, key)


def test_sampled_pass_at_k_agrees_with_likelihood(demo):
    """Per question, a sample is correct with probability q_i ≈ p_i = exp(−NLL of the gold span)
    (they differ only by non-canonical tokenisations and the word boundary after the span). Pooled
    over all runs, the unbiased sampled pass@k must lie within 4 standard errors of the likelihood's
    mean of 1 − (1 − p_i)^k, the standard error from Hoeffding's bound Var(U) ≤ (k/n)·p_k(1 − p_k)
    for the U-statistic; and the questions the samples solve must be the likelier ones."""
    n, c, p = [], [], []
    for run in _runs(demo):
        pr = records.read_table(run / "problems.parquet", "problems").to_pydict()
        n += pr["n"]
        c += pr["c"]
        p += list(np.exp(-np.array(pr["nll"])))
    n, c, p = np.array(n), np.array(c), np.array(p)
    assert p.mean() > 2e-3, "the ladder learned nothing: the comparison would be vacuous"
    for k in (1, 4, 16):
        sampled = pass_at_k(n, c, k)[:, 0].mean()
        p_k = -np.expm1(k * np.log1p(-p))
        se = np.sqrt((k / n * p_k * (1 - p_k)).sum()) / len(n)
        assert abs(sampled - p_k.mean()) <= 4 * se, (k, sampled, p_k.mean(), se)
    assert p[c > 0].mean() > 2 * p[c == 0].mean()


def test_fits_converge_and_the_report_renders(demo):
    for name in ("law-loss.json", "law-accuracy.json"):
        laws = load_laws(demo / name)
        assert set(laws) == {POOLED, *TASKS}
        assert laws[POOLED].info["converged"]
    report = (demo / "report.md").read_text()
    for heading in ("## Ladder", "## T² fits", "## Held-out validation", "## Did the forecast hold?"):
        assert heading in report
    verdicts = report.split("## Did the forecast hold?")[1].split("## Plots")[0]
    for approach in (1, 2):
        line = next(v for v in verdicts.splitlines() if v.startswith(f"- Approach {approach}: "))
        assert "**held**" in line or "**did not hold**" in line or "**indistinguishable**" in line
    for line in report.splitlines():
        if line.startswith("![") and "](" in line:
            assert (demo / line.split("](")[1].rstrip(")")).is_file(), line


def test_validation_json_has_the_promised_schema(demo):
    """validation.json: held-out errors per task and approach (the report's numbers), one verdict per
    approach that agrees with the measured numbers, bound flags per fitted law, learnability per task
    and the training speed against the measured matmul peak."""
    v = json.loads((demo / "validation.json").read_text())
    keys = {(r["task"], r["approach"]) for r in v["heldout"]}
    assert keys == {(t, a) for t in (POOLED, *TASKS) for a in (1, 2)}
    for r in v["heldout"]:
        assert 0 <= r["test_median_rel_error"] <= r["test_max_rel_error"]
        assert r["test_mean_rel_error"] <= r["test_max_rel_error"] and r["test_checkpoints"] >= 1
    assert [f["approach"] for f in v["forecast"]] == [1, 2]
    for f in v["forecast"]:
        assert f["C_train"] in PRESETS["tiny"].budgets  # the forecast budget is one of the ladder's
        assert f["verdict"] in ("held", "not held", "indistinguishable")
        sign = -1 if f["metric"] == "loss" else 1
        assert f["t2_advantage"] == pytest.approx(sign * (f["t2_measured"] - f["chinchilla_measured"]), abs=1e-9)
        if f["verdict"] != "indistinguishable":
            assert abs(f["t2_advantage"]) > f["z"] * f["standard_error"]
            assert (f["t2_advantage"] > 0) == (f["verdict"] == "held")
    assert set(v["optimum_at_bound"]) == {f"{t}/{a}" for t in (POOLED, *TASKS) for a in (1, 2)}
    assert all(isinstance(flag, bool) for flag in v["optimum_at_bound"].values())
    assert set(v["parameters_at_bound"]) == set(v["optimum_at_bound"]) == set(v["optimum_interval"])
    for law in ("law-loss.json", "law-accuracy.json"):  # the interval is over the saved laws' refits
        for task, fitted in load_laws(demo / law).items():
            approach = 1 if law == "law-loss.json" else 2
            iv = fitted.optimum_interval(PRESETS["tiny"].C_train, PRESETS["tiny"].C_inf)
            assert len(fitted.samples) == PRESETS["tiny"].bootstrap
            assert v["optimum_interval"][f"{task}/{approach}"]["N"] == pytest.approx(list(iv["N"]))
            assert all(0 < lo <= hi for lo, hi in v["optimum_interval"][f"{task}/{approach}"].values())
    assert [t["task"] for t in v["tasks"]] == list(TASKS)
    for t in v["tasks"]:
        assert 0 < t["chance"] <= 1 and 0 <= t["worst_pass@1"] <= t["best_pass@1"] <= 1
    speed = v["training"]
    assert speed["training_flops_per_cpu_s"] == pytest.approx(speed["training_flops"] / speed["training_cpu_s"])
    assert 0 < speed["fraction_of_peak"] < 1.5 and speed["matmul_peak_flops_per_cpu_s"] > 1e9
    report = (demo / "report.md").read_text()
    assert "## Time and training speed" in report and "## Learnability" in report and "| N* 90% |" in report
    points = [r["checkpoint"] for h in v["heldout"] for r in h["test_points"]]
    assert points and all(c.startswith("cache/models/") for c in points)  # no machine's folders


def test_validation_json_states_the_measured_limits(demo):
    """Per task and approach the form limit (the law fitted to every checkpoint, scored on the test rows),
    for Approach 2 the stage-1-free error and the option rule (every candidate with its training LOO and
    test error, exactly one chosen, the laws fitted with it), for Approach 1 the α profile; the report
    renders them."""
    from harness.fit import ACCURACY_CANDIDATES

    v = json.loads((demo / "validation.json").read_text())
    laws = load_laws(demo / "law-accuracy.json")
    for r in v["heldout"]:
        assert r["form_limit_checkpoints"] == r["test_checkpoints"] and r["form_limit_mean_rel_error"] >= 0
        assert r["form_limit_median_rel_error"] <= r["form_limit_max_rel_error"]
        if r["approach"] == 2:
            assert 0 <= r["stage1_free_mean_rel_error"] <= r["stage1_free_max_rel_error"]
            options = [{key: c[key] for key in ACCURACY_CANDIDATES[i]} for i, c in enumerate(r["candidates"])]
            assert options == [dict(c) for c in ACCURACY_CANDIDATES]
            assert [c["chosen"] for c in r["candidates"]].count(True) == 1
            chosen = next(c for c in r["candidates"] if c["chosen"])
            assert r["options"] == {key: chosen[key] for key in r["options"]}
            assert chosen["loo_mean_rel_error"] <= min(c["loo_mean_rel_error"] for c in r["candidates"]) * 1.001
            assert chosen["test_mean_rel_error"] == pytest.approx(r["test_mean_rel_error"])
            law = laws[r["task"]]
            assert (law.info["stage1"], law.info["form"]) == (r["options"]["stage1"], r["options"]["form"])
        else:
            profile = r["alpha_profile"]
            assert [a["alpha"] for a in profile] == sorted(a["alpha"] for a in profile) and len(profile) >= 5
            fitted = load_laws(demo / "law-loss.json")[r["task"]].info["sse"]
            for a in profile:
                assert a["sse"] > 0 and a["N*"] > 0 and a["sse_excess"] == pytest.approx(a["sse"] / fitted - 1)
    report = (demo / "report.md").read_text()
    assert "## Measured limits of the held-out error" in report and "train LOO mean rel" in report


def test_rung_batch_size_and_learning_rate_set_the_training(tmp_path):
    """A rung trains exactly ceil(D / (batch·SEQ_LEN)) steps of ``batch_size`` sequences at its peak
    learning rate, records them with its CPU time, and its folder name carries a batch and a learning
    rate other than the defaults."""
    from harness.tasks import get_task

    from harness.ladder import SEQ_LEN, Rung, build_tokenizer, encode_corpus, matmul_peak_flops, train

    docs = get_task("causal", n=10).corpus(40)
    tokenizer = build_tokenizer(docs, 300, tmp_path / "tok")
    stream = encode_corpus(docs, tokenizer)
    rung = Rung(8, 1, 10 * 4 * SEQ_LEN - 5, batch_size=4, lr=1e-2)
    assert rung.name.endswith("-b4-lr0.01") and Rung(8, 1, 100).name == "d8-l1-D100"
    record = train(rung, stream, tokenizer, tmp_path / rung.name)
    assert record["steps"] == 10 and record["batch_size"] == 4 and record["tokens_trained"] == 10 * 4 * SEQ_LEN
    default_lr = Rung(8, 1, rung.tokens, batch_size=4)  # same seed and windows, AdamW at 3e-3
    assert record["rung"]["lr"] == 1e-2 and train(default_lr, stream, tokenizer, tmp_path / default_lr.name
                                                  )["final_loss"] != record["final_loss"]
    assert 0 < record["cpu_s"] and (tmp_path / rung.name / "config.json").is_file()
    assert matmul_peak_flops(size=256, repeats=2, trials=2) > 1e8


def test_min_steps_and_head_dim_set_the_rungs():
    """With min_steps a rung takes fewer sequences per step (>= 1) where p.batch_size would give it fewer
    steps; the others, and every rung without min_steps, keep p.batch_size and their names (so caches hold).
    head_dim sets d_model/head_dim heads, named where they differ from the default 4."""
    from harness.demo import preset_rung
    from harness.ladder import SEQ_LEN

    p = dataclasses.replace(PRESETS["cpu"], min_steps=500)
    assert ladder_rungs(dataclasses.replace(p, min_steps=0)) == ladder_rungs(PRESETS["cpu"])
    changed = 0
    for before, after in zip(ladder_rungs(PRESETS["cpu"]), ladder_rungs(p)):
        assert (before.d_model, before.tokens) == (after.d_model, after.tokens)
        steps = before.tokens // (SEQ_LEN * before.batch_size)
        if steps >= 500:
            assert after == before
        else:
            changed += 1
            assert 1 <= after.batch_size < before.batch_size and after.tokens // (SEQ_LEN * after.batch_size) >= 500
    assert changed >= 3 and preset_rung(p, 16, 100).batch_size == 1
    heads = dataclasses.replace(PRESETS["cpu"], head_dim=8)
    assert [r.n_heads for r in ladder_rungs(heads)] == [r.d_model // 8 for r in ladder_rungs(heads)]
    assert preset_rung(heads, 16, 100).name == "d16-l2-h2-D100-b8-lr0.01" and preset_rung(heads, 32, 100).n_heads == 4
    with pytest.raises(ValueError, match="head_dim"):
        preset_rung(dataclasses.replace(heads, head_dim=12), 16, 100)


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_full_ladders_span_four_isoflop_slices_that_bracket_their_minimum(preset):
    """Issue 18, item 3, for the presets a user runs (the gpu one included, which no test trains): >= 4
    isoFLOP slices of >= 5 checkpoints, each checkpoint on its slice (6ND = C to the rounding of D),
    D/N inside p.tpp, and every slice with widths on both sides of p.tpp_center, so its loss can have an
    interior minimum."""
    p = PRESETS[preset]
    budgets = (*p.chance_budgets, *p.budgets)
    slices: dict[float, list[float]] = {C: [] for C in budgets}
    for rung in ladder_rungs(p):
        N = non_embedding_params(rung.d_model, p.n_layers, p.vocab)
        C = min(budgets, key=lambda b: abs(6 * N * rung.tokens / b - 1))
        assert 6 * N * rung.tokens == pytest.approx(C, rel=1e-4)
        slices[C].append(rung.tokens / N)
    assert len(p.budgets) >= 4 and all(C < min(p.budgets) for C in p.chance_budgets)
    for ratios in slices.values():
        assert len(ratios) >= 5 and all(p.tpp[0] <= r <= p.tpp[1] for r in ratios)
        assert min(ratios) < p.tpp_center < max(ratios)


def test_the_chance_slice_is_evaluated_but_not_fitted(demo):
    """The tiny preset's chance slice is trained and evaluated (its runs, its rows in the report's
    ladder and evaluation tables, so in the learnability table) but is not in the fitting dataset, and
    the laws' fitted ranges are those of the fitted slices alone."""
    p = PRESETS["tiny"]
    chance = [rung for C in p.chance_budgets for rung in slice_rungs(p, C)]
    assert len(chance) >= 2 and not {r.name for r in chance} & fitted_names(p)
    dataset = records.read_table(demo / "dataset.parquet", "dataset").to_pydict()
    assert {Path(c).name for c in dataset["checkpoint"]} == fitted_names(p)
    report = (demo / "report.md").read_text()
    assert "C_train ∈ {5e+09}, trained and evaluated but not fitted" in report
    for rung in chance:
        assert all((demo / "cache" / "runs" / rung.name / task / "passk.parquet").is_file() for task in TASKS)
        assert f"| {rung.name} | no (chance slice) |" in report
        assert report.count(f"| {rung.name} | {TASKS[0]} |") == 1  # its evaluation row
    D_fitted = [json.loads((demo / "cache" / "models" / name / "t2_training.json").read_text())["tokens_trained"]
                for name in fitted_names(p)]
    for law in load_laws(demo / "law-loss.json").values():
        assert law.ranges["D"] == pytest.approx([min(D_fitted), max(D_fitted)])


def test_checkpoints_are_named_relative_to_the_report_folder_even_from_a_moved_cache(tmp_path):
    """A run reused from a cache that was moved names its old model folder: the dataset still names
    the checkpoint cache/models/NAME; a checkpoint that is no ladder folder keeps its name."""
    import pyarrow as pa

    from harness.demo import relative_checkpoints

    folders = [tmp_path / "out" / "cache" / "models" / name for name in ("d8-l1-D100", "d16-l1-D50")]
    table = pa.table({"checkpoint": [str(folders[0]), "/moved/away/cache/models/d16-l1-D50", "hub/some-model"],
                      "k": [1, 1, 1]})
    named = relative_checkpoints(table, tmp_path / "out", folders).column("checkpoint").to_pylist()
    assert named == ["cache/models/d8-l1-D100", "cache/models/d16-l1-D50", "hub/some-model"]


def test_train_many_in_worker_processes_equals_training_one_after_another(tmp_path):
    """Rungs trained side by side in two spawned workers are byte for byte the models trained one
    after another in this process; a folder with a record is not trained again."""
    from harness.tasks import get_task

    from harness.ladder import Rung, build_tokenizer, encode_corpus, train, train_many

    docs = get_task("causal", n=10).corpus(40)
    tokenizer = build_tokenizer(docs, 300, tmp_path / "tok")
    stream = encode_corpus(docs, tokenizer)
    rungs = [Rung(8, 1, 2000, batch_size=4), Rung(16, 1, 1500, batch_size=4), Rung(8, 2, 1000, batch_size=4)]
    for rung in rungs:
        train(rung, stream, tokenizer, tmp_path / "one" / rung.name)
    train_many([(rung, tmp_path / "many" / rung.name) for rung in rungs], stream, tokenizer, workers=2)
    for rung in rungs:
        one, many = (tmp_path / side / rung.name / "model.safetensors" for side in ("one", "many"))
        assert one.read_bytes() == many.read_bytes()
    stamp = (tmp_path / "many" / rungs[0].name / "model.safetensors").stat().st_mtime_ns
    train_many([(rungs[0], tmp_path / "many" / rungs[0].name)], stream, tokenizer, workers=2)
    assert (tmp_path / "many" / rungs[0].name / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.vllm
def test_real_demo_runs_smollm2_on_humaneval_with_vllm(tmp_path):
    """`t2 demo --real` on one HumanEval problem: vLLM samples n = 64, the sandbox judges them, the
    pass@k curve and its Beta extrapolation are written, and cost.json equals the meter."""
    from harness.demo import run_real

    report = run_real(tmp_path, limit=1, n=64, max_tokens=32)
    run = tmp_path / "real" / "run"
    problems = records.read_table(run / "problems.parquet", "problems").to_pydict()
    assert problems["n"] == [64] and 0 <= problems["c"][0] <= 64
    scores = records.read_table(run / "scores.parquet", "scores").to_pydict()
    assert len(scores["correct"]) == 64 and sum(scores["correct"]) == problems["c"][0]
    text = report.read_text()
    assert "| 64 |" in text and "Beta-binomial fit" in text and (tmp_path / "real" / "passk.png").is_file()
    samples = SampleStore(run).read().to_pydict()
    config = json.loads((Path(records.read_json(run / "run.json", "run")["model"]["path"]) / "config.json").read_text())
    expected = sampling_cost(config, [samples["prompt_tokens"][0]], [samples["completion_tokens"]])
    assert records.read_json(run / "cost.json", "cost")["total_flops"] == pytest.approx(expected["total_flops"])


def test_forecast_budget_is_where_the_law_predicts_the_largest_t2_advantage():
    """The rule that picks the forecast validation's C_train reads only the law: of the ladder's budgets,
    the one where the law predicts its T² optimum beats its Chinchilla choice by the most, each realised
    at the bracketing width its own criterion ranks better (D = C/(6N), integer k). Checked on the
    committed demo's pooled laws (fitted on the measured cpu ladder)."""
    p = PRESETS["cpu"]
    root = Path(__file__).parents[1] / "results" / "demo"
    for name in ("law-loss.json", "law-accuracy.json"):
        law = load_laws(root / name)[POOLED]
        sign = -1 if law.METRIC == "loss" else 1  # advantage = sign · (T² − Chinchilla)
        C, gap = forecast_budget(law, p)
        assert C in p.budgets and sign * gap > 0
        for budget in p.budgets:
            t2, chin = (trained_choice(law, which, budget, p) for which in ("t2", "chinchilla"))
            assert t2[1] * t2[2] == pytest.approx(budget / 6, rel=1e-3) and 1 <= t2[3] <= p.n
            diff = float(law.predict(*t2[1:]) - law.predict(*chin[1:]))
            assert sign * diff <= sign * gap + 1e-12
            if budget == C:
                assert diff == pytest.approx(gap)
            # each side's width brackets its choice's N and is the better of the two by its own criterion
            for which, (width, N, D, k) in (("t2", t2), ("chinchilla", chin)):
                choice = law.optimum(budget, p.C_inf) if which == "t2" else law.chinchilla_choice(budget, p.C_inf)
                widths = bracketing_widths(choice["N"], p)
                assert width in widths and len(widths) <= 2
                for other in widths:
                    No = non_embedding_params(other, p.n_layers, p.vocab)
                    Do, ko = round(budget / (6 * No)), min(p.n, max(1, round(p.C_inf / (2 * No))))
                    if which == "t2":
                        assert sign * law.predict(N, D, k) >= sign * law.predict(No, Do, ko) - 1e-12
                    else:
                        assert law.chinchilla_law.predict(N, D) <= law.chinchilla_law.predict(No, Do) + 1e-12
