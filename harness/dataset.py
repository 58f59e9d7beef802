"""Fitting datasets: one row per (checkpoint, task, k) with N, D, k, task loss, accuracy, C_train = 6ND
and C_inf = 2Nk (records kind "dataset"), built from run directories and suite files.

N convention: the T² fits use the **non-embedding** parameter count by default (as Kaplan et al. and
the ladder's 6ND do; for small models the embedding matrices would dominate N); pass
``params="total"`` for the Chinchilla convention ("non-embedding" is accepted for "non_embedding").
The choice is stored in each row's ``N_kind`` and carried into the law JSON (``Law.N_kind``).

run.json keys read (by :func:`run_info`; the first one present wins):

- task name: ``task.name`` | ``task`` (a string)
- model id: ``model.id`` | ``model.name`` | ``model.path`` | ``model`` (a string)
- revision: ``model.revision`` | ``revision``
- N: ``model.params_non_embedding`` / ``model.params_total`` | the same keys at the top level |
  ``t2_training.json`` inside a local model folder (the micro-ladder) | the suite file
- D: ``model.tokens_trained`` | ``tokens_trained`` | ``t2_training.json`` | the suite file

A run directory also needs passk.parquet (columns task, k, pass_at_k, task_loss), or a
problems.parquet from which it is computed.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from harness import records
from harness.errors import DataError, InvalidSetting
from harness.models import TRAINING_FILE
from harness.rundir import RunDir

PARAM_KINDS = ("non_embedding", "total")


def param_kind(params: str) -> str:
    """"total" | "non_embedding" (also spelled "non-embedding")."""
    kind = params.replace("-", "_")
    if kind not in PARAM_KINDS:
        raise InvalidSetting("params", params, "total or non-embedding")
    return kind


def load_suite(path: str | Path) -> dict[tuple[str, str], dict[str, float]]:
    """A suite file as {(model id, revision): {"total", "non_embedding", "D"}}.

    YAML: ``tokens_per_step``, ``steps`` (``log``: explicit steps; ``every``/``last``: every
    ``every`` steps up to ``last``) and ``models`` (``id``, ``params_total``,
    ``params_non_embedding``); revision "step{S}" has D = S × tokens_per_step.
    CSV: columns model, revision, D and N (or params_total / params_non_embedding).
    ``path`` may also be the name of a packaged suite ("pythia").
    """
    if str(path) == "pythia":
        path = resources.files("harness") / "data" / "pythia.yaml"
    path = Path(str(path))
    if not path.is_file():
        raise InvalidSetting("suite", str(path), "a suite YAML or CSV file, or 'pythia'")
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        out = {}
        for i, row in enumerate(rows, start=2):
            try:
                total = float(row.get("params_total") or row["N"])
                non_emb = float(row.get("params_non_embedding") or row.get("N") or total)
                out[(row["model"], row.get("revision") or "")] = {"total": total, "non_embedding": non_emb,
                                                                  "D": float(row["D"])}
            except (KeyError, ValueError) as e:
                raise DataError(f"{path}:{i}: expected columns model, revision, N, D with numbers ({e})") from None
        return out
    spec = yaml.safe_load(path.read_text())
    try:
        per_step = float(spec["tokens_per_step"])
        st = spec["steps"]
        steps = sorted(set(st.get("log", [])) | set(range(st["every"], st["last"] + 1, st["every"])))
        return {(m["id"], f"step{s}"): {"total": float(m["params_total"]),
                                        "non_embedding": float(m["params_non_embedding"]), "D": s * per_step}
                for m in spec["models"] for s in steps}
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: expected tokens_per_step, steps.every/last and models[].id/params_total/"
                         f"params_non_embedding ({e!r} missing or malformed)") from None


def _first(*candidates: Any) -> Any:
    return next((c for c in candidates if c not in (None, "")), None)


def run_info(run_dir: str | Path, suite: dict | None = None) -> dict[str, Any]:
    """{checkpoint, task, N_total, N_non_embedding, D} of one run directory (keys: module docstring)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir).require()
    model = run.get("model") if isinstance(run.get("model"), dict) else {"id": run.get("model")}
    task = run["task"].get("name") if isinstance(run.get("task"), dict) else run.get("task")
    model_id = _first(model.get("id"), model.get("name"), model.get("path"))
    revision = _first(model.get("revision"), run.get("revision")) or ""
    ladder = {}
    if model_id and (Path(model_id) / TRAINING_FILE).is_file():
        ladder = json.loads((Path(model_id) / TRAINING_FILE).read_text())
    entry = (suite or {}).get((model_id, revision), {})
    info = {
        "checkpoint": f"{model_id}@{revision}" if revision else str(model_id), "task": task,
        "N_total": _first(model.get("params_total"), run.get("params_total"), ladder.get("params_total"),
                          entry.get("total")),
        "N_non_embedding": _first(model.get("params_non_embedding"), run.get("params_non_embedding"),
                                  ladder.get("params_non_embedding"), entry.get("non_embedding")),
        "D": _first(model.get("tokens_trained"), run.get("tokens_trained"), ladder.get("tokens_trained"),
                    entry.get("D")),
    }
    missing = [key for key in ("task", "N_total", "N_non_embedding", "D") if info[key] is None]
    if missing or not model_id:
        raise DataError(f"{RunDir(run_dir).run_file}: no {', '.join(missing) or 'model id'} for model "
                         f"{model_id!r} revision {revision!r}; give it in run.json or a suite file")
    return info


def _passk(run_dir: Path) -> pa.Table:
    run = RunDir(run_dir)
    if run.passk_file.is_file():
        return records.read_table(run.passk_file, "passk")
    if run.problems_file.is_file():
        from harness.passk import passk_table

        return passk_table(records.read_table(run.problems_file, "problems"), n_boot=0)
    raise DataError(f"{run_dir}: no passk.parquet or problems.parquet (compute pass@k of the run first)")


def build_dataset(run_dirs: Iterable[str | Path], suite: dict | None = None,
                  params: str = "non_embedding") -> pa.Table:
    """One "dataset" table from run directories; checkpoints with D = 0 (untrained) are dropped with
    a warning. ``params`` picks N: "non_embedding" (default) or "total" (:func:`param_kind`)."""
    params = param_kind(params)
    cols: dict[str, list] = {name: [] for name in [*records.COLUMNS["dataset"], "N_kind"]}
    for run_dir in map(Path, run_dirs):
        info = run_info(run_dir, suite)
        if float(info["D"]) == 0:
            warnings.warn(f"{run_dir}: checkpoint {info['checkpoint']} has D = 0 (untrained), dropped", stacklevel=2)
            continue
        N, D = float(info[f"N_{params}"]), float(info["D"])
        passk = _passk(run_dir).to_pydict()
        for task, k, acc, loss in zip(passk["task"], passk["k"], passk["pass_at_k"], passk["task_loss"]):
            cols["checkpoint"].append(info["checkpoint"])
            cols["task"].append(task)
            cols["N_kind"].append(params)
            for name, value in (("N", N), ("D", D), ("k", float(k)), ("task_loss", loss), ("accuracy", acc),
                                ("C_train", 6 * N * D), ("C_inf", 2 * N * k)):
                cols[name].append(value)
    if not cols["checkpoint"]:
        raise DataError("no rows: every run was empty or untrained")
    return records.to_table("dataset", cols)


def task_columns(table: pa.Table, task: str | None = None) -> dict[str, np.ndarray]:
    """The rows of one task as numpy columns (N, D, k, task_loss, accuracy, C_train, C_inf, checkpoint,
    and N_kind when the table has it).
    ``task`` may be None when the table holds a single task."""
    tasks = sorted(set(table.column("task").to_pylist()))
    if task is None:
        if len(tasks) != 1:
            raise InvalidSetting("task", None, f"one of the dataset's tasks {tasks}")
        task = tasks[0]
    if task not in tasks:
        raise InvalidSetting("task", task, f"a task of the dataset ({', '.join(tasks)})")
    mask = np.array(table.column("task").to_pylist()) == task
    out = {name: table.column(name).to_numpy(zero_copy_only=False)[mask]
           for name in ("N", "D", "k", "task_loss", "accuracy", "C_train", "C_inf")}
    for name in [n for n in ("checkpoint", "N_kind") if n in table.column_names]:
        out[name] = np.array(table.column(name).to_pylist(), dtype=object)[mask]
    return out


def tasks_of(table: pa.Table) -> list[str]:
    return sorted(set(table.column("task").to_pylist()))
