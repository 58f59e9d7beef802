"""``t2 show RUN``: a one-screen summary of a run directory, from its manifests and key columns.

Reads run.json, cost.json, the samples' key and token columns (never their texts),
problems.parquet's counts and NLLs, and passk.parquet when present; so it stays fast at 10^7
samples. :func:`run_summary` returns the numbers as a dict (JSON-ready), :func:`summary_text`
renders them.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from harness import records
from harness.rundir import RunDir
from harness.samplers import LATER_SETTINGS

SAMPLE_COLUMNS = ["task", "problem_id", "sample_idx", "completion_tokens", "finish_reason"]
SAMPLER_FIELDS = ("backend", "n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                  "presence_penalty", "frequency_penalty", "max_tokens", "seed", "seed_rule", "chat")


def _samples(run: RunDir) -> dict[str, Any] | None:
    """Problems, samples, per-problem n range, completion tokens and finish reasons of the store."""
    shards = run.store.shards()
    if not shards:
        return None
    table = pa.concat_tables(records.read_table(p, "samples", SAMPLE_COLUMNS) for p in shards)
    per = table.group_by(["task", "problem_id"]).aggregate([("sample_idx", "count_distinct")])
    counts = per["sample_idx_count_distinct"]
    reasons = table.group_by("finish_reason").aggregate([("finish_reason", "count")])
    return {"problems": per.num_rows, "samples": int(pc.sum(counts).as_py()),
            "n_min": pc.min(counts).as_py(), "n_max": pc.max(counts).as_py(), "files": len(shards),
            "completion_tokens_mean": pc.mean(table["completion_tokens"]).as_py(),
            "finish": dict(zip(reasons["finish_reason"].to_pylist(), reasons["finish_reason_count"].to_pylist()))}


def _scores(run: RunDir) -> dict[str, Any] | None:
    """pass@1 (mean over scored problems of c/n) and the gold NLL (mean nats, per answer token)."""
    if not run.problems_file.is_file():
        return None
    t = records.read_table(run.problems_file, "problems", ["n", "c", "nll", "answer_tokens"])
    scored = t.filter(pc.greater(t["n"], 0))
    out: dict[str, Any] = {"problems": t.num_rows, "scored": scored.num_rows}
    if scored.num_rows:
        out["pass@1"] = pc.mean(pc.divide(pc.cast(scored["c"], pa.float64()), scored["n"])).as_py()
        out["solved"] = int(pc.sum(pc.greater(scored["c"], 0)).as_py())
    with_nll = t.filter(pc.is_valid(t["nll"]))
    if with_nll.num_rows:
        out["nll_mean"] = pc.mean(with_nll["nll"]).as_py()
        out["nll_per_token"] = pc.sum(with_nll["nll"]).as_py() / pc.sum(with_nll["answer_tokens"]).as_py()
        out["likelihood_problems"] = with_nll.num_rows
    return out


def run_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The summary of run directory ``path`` (see the module docstring)."""
    run = RunDir(path)
    manifest = run.require()
    sampler = manifest.get("sampler")
    summary: dict[str, Any] = {
        "run": str(run.path), "model": manifest.get("model") or {}, "task": manifest.get("task") or {},
        "sampler": {k: sampler.get(k) for k in SAMPLER_FIELDS if k in sampler} if sampler else None,
        "stop": sampler.get("stop") if sampler else None,
        "system_prompt": sampler.get("system_prompt") if sampler else None,
        "shard": manifest.get("shard"), "merged_from": manifest.get("merged_from"),
        "harness": manifest.get("harness"), "versions": manifest.get("versions") or {},
        "device": manifest.get("device"), "start_time": manifest.get("start_time"),
        "end_time": manifest.get("end_time"), "wall_s": manifest.get("wall_s"),
        "samples": _samples(run), "scores": _scores(run),
        "cost": records.read_json(run.cost_file, "cost") if run.cost_file.is_file() else None,
        "passk": records.read_table(run.passk_file, "passk").to_pylist() if run.passk_file.is_file() else None,
    }
    return summary


def _g(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _model_line(s: dict[str, Any]) -> str:
    m = s["model"]
    params = f"{m['params_total']:,} params ({m['params_non_embedding']:,} non-embedding)" \
        if m.get("params_total") else "params unknown"
    return f"model    {m.get('id')}  {params}  {m.get('dtype') or ''}  revision {m.get('revision')}  " \
           f"commit {str(m.get('commit'))[:22]}"


def _task_lines(s: dict[str, Any]) -> list[str]:
    t = s["task"]
    options = {k: v for k, v in (t.get("options") or {}).items() if v is not None and k != "data_files"}
    lines = [f"task     {t.get('name')} v{t.get('version')}  {t.get('n_problems')} problems  few-shot "
             f"{t.get('few_shot', 0)}  source {t.get('source')}" + (f"  options {options}" if options else "")]
    if s["shard"] or s["merged_from"]:
        lines.append(f"shards   this is shard {s['shard']}" if s["shard"] else
                     f"shards   merged from {len(s['merged_from'])} run(s)")
    return lines


def _result_lines(s: dict[str, Any]) -> list[str]:
    lines = []
    if s["samples"]:
        x = s["samples"]
        n = str(x["n_min"]) if x["n_min"] == x["n_max"] else f"{x['n_min']}..{x['n_max']}"
        finish = ", ".join(f"{k} {v:,}" for k, v in sorted(x["finish"].items()))
        lines.append(f"samples  {x['samples']:,} over {x['problems']:,} problems, n = {n} per problem; "
                     f"{_g(x['completion_tokens_mean'], '.1f')} tokens per completion ({finish}); "
                     f"{x['files']} store file(s)")
    sc = s["scores"]
    if sc and "pass@1" in sc:
        lines.append(f"scored   pass@1 {sc['pass@1']:.4f} (mean correct over {sc['scored']} problems); "
                     f"{sc['solved']} solved at least once")
    elif s["samples"]:
        lines.append("scored   not yet (t2 score RUN)")
    if sc and "nll_mean" in sc:
        lines.append(f"gold NLL {sc['nll_mean']:.4g} nats per answer, {sc['nll_per_token']:.4g} per token "
                     f"({sc['likelihood_problems']} problems)")
    if s["passk"]:
        ks = {r["k"]: r["pass_at_k"] for r in s["passk"]}
        lines.append("pass@k   " + "  ".join(f"k={k}: {v:.4f}" for k, v in sorted(ks.items())))
    if s["cost"]:
        c = s["cost"]
        lines.append(f"cost     {_g(c.get('total_flops'), '.3g')} FLOPs ({_g(c.get('prefill_flops'), '.3g')} prefill, "
                     f"{_g(c.get('decode_flops'), '.3g')} decode), {_g(c.get('completion_tokens'), ',')} completion + "
                     f"{_g(c.get('prompt_tokens'), ',')} prompt tokens, {_g(c.get('wall_s'), '.1f')} s")
    return lines


def summary_text(s: dict[str, Any]) -> str:
    """The summary as about 12 lines of text."""
    lines = [f"run      {s['run']}", _model_line(s), *_task_lines(s)]
    if s["sampler"]:
        shown = {k: v for k, v in s["sampler"].items() if LATER_SETTINGS.get(k, not v) != v}
        lines.append("sampler  " + "  ".join(f"{k}={v}" for k, v in shown.items()) + "  (min_p, penalties: off "
                     "unless shown)")
        system = f"  system prompt {s['system_prompt']!r}" if s["system_prompt"] else ""
        lines.append(f"stop     {s['stop']}{system}")
    lines += _result_lines(s)
    h, v = s["harness"] or {}, s["versions"]
    commit = f" git {h['git_commit'][:12]}{' (dirty)' if h.get('git_dirty') else ''}" if h.get("git_commit") else ""
    lines.append(f"made by  t2-harness {h.get('version', v.get('harness'))}{commit} on {s['device']}, "
                 f"{s['start_time']} .. {s['end_time']} ({_g(s['wall_s'], '.1f')} s)")
    lines.append("versions " + "  ".join(f"{k} {val}" for k, val in v.items() if val and k != "harness"))
    return "\n".join(lines)
