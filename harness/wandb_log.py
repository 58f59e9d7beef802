"""Optional logging of a command's tables and summaries to Weights & Biases (``--wandb PROJECT``).

One W&B run per command call: ``job_type`` is the command (score, passk, cost, fit), the config is
the run's run.json (the model, task, sampler settings and provenance; ``extra_config`` for
commands without a run), every table is logged as a ``wandb.Table`` and the summary numbers go to
the W&B run summary. Works offline (``WANDB_MODE=offline`` keeps everything under ``WANDB_DIR``
for a later ``wandb sync``). Needs the ``wandb`` package (``pip install wandb``, or the
``t2-harness[wandb]`` extra); nothing here runs without ``--wandb``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

INSTALL_HINT = "pip install wandb (or pip install 't2-harness[wandb]')"


def available() -> bool:
    """Whether the wandb package imports."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def log(project: str, command: str, *, run_dir: str | os.PathLike | None = None,
        tables: Mapping[str, pa.Table] | None = None, summary: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None):
    """Log ``tables`` and ``summary`` of ``command`` to W&B project ``project``, with run.json of
    ``run_dir`` (when given) as the config. Returns what the W&B run held before it finished:
    {"name", "mode", "dir", "config", "summary"} (a finished run no longer reads its summary)."""
    import wandb

    from harness.rundir import RunDir

    config: dict[str, Any] = dict(extra_config or {})
    name = command
    if run_dir is not None:
        run = RunDir(run_dir)
        config["run"] = run.manifest() or {}
        config["run_dir"] = str(run.path.resolve())
        name = f"{command} {run.path.name}"
    with wandb.init(project=project, job_type=command, name=name, config=config, reinit="create_new") as wb:
        for key, table in (tables or {}).items():
            wb.log({key: wandb.Table(dataframe=table.to_pandas())})
        wb.summary.update(dict(summary or {}))
        return {"name": wb.name, "mode": wb.settings.mode, "dir": wb.dir, "config": dict(wb.config),
                "summary": dict(wb.summary)}


def passk_summary(table: pa.Table) -> dict[str, float]:
    """{"<task>/pass@<k>": value, "<task>/maj@<k>": ..., "<task>/task_loss@<k>": ...} of a passk table."""
    out = {}
    for r in table.to_pylist():
        for column, label in (("pass_at_k", "pass"), ("maj_at_k", "maj"), ("task_loss", "task_loss")):
            if r.get(column) is not None:
                out[f"{r['task']}/{label}@{r['k']}"] = r[column]
    return out


def accuracy_summary(problems: pa.Table) -> dict[str, float]:
    """{"<task>/pass@1": mean over scored problems of c/n, "<task>/problems": count} of a problems table."""
    scored = problems.filter(pc.greater(problems["n"], 0))
    ratio = pc.divide(pc.cast(scored["c"], pa.float64()), scored["n"])
    grouped = pa.table({"task": scored["task"], "r": ratio}).group_by("task").aggregate([("r", "mean"), ("r", "count")])
    out: dict[str, float] = {}
    for task, mean, count in zip(*(grouped[c].to_pylist() for c in ("task", "r_mean", "r_count"))):
        out.update({f"{task}/pass@1": mean, f"{task}/problems": count})
    return out
