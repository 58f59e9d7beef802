"""The Python API a notebook uses: sample, score and summarise a run in three lines.

    import harness
    run = harness.evaluate(task="gsm8k", model="smollm2-135m", n=64, limit=32)
    run.passk(), run.cost(), run.scores()        # pandas DataFrames

:func:`evaluate` is ``t2 sample`` (``--with-likelihood`` when asked) + ``t2 score`` into one run
directory, resumable like them: calling it again with the same arguments samples only what is
missing (a larger ``n`` grows the run), loads no model when nothing is, and rescores only samples
or settings the scores file has not judged; a killed call loses at most the chunk in flight. The
directory is ``out``, or by default ``$T2_RUNS`` (else ``results/runs``) /
``<task>__<model>__<hash>``, the hash over every setting of the run's identity except ``n``, so
the same call always lands in the same run and a change of settings in a new one.
:func:`open_run` opens an existing run directory (made by the CLI or by :func:`evaluate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from harness import gen_kwargs as gen
from harness import records
from harness.rundir import RunDir
from harness.samplers import SamplingSettings

RUNS_ENV, RUNS_DEFAULT = "T2_RUNS", "results/runs"


def default_out(task: str, model: str, identity: dict[str, Any]) -> Path:
    """``$T2_RUNS``/``<task>__<model>__<first 10 hex of sha256(identity as JSON)>``."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    slug = "__".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-") for part in (task, model))
    return Path(os.environ.get(RUNS_ENV) or RUNS_DEFAULT) / f"{slug}__{digest}"


def evaluate(task: str, model: str, n: int = 64, *, out: str | os.PathLike | None = None, backend: str = "hf",
             limit: int | None = None, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             max_tokens: int = 256, seed: int = 0, gen_kwargs: str | dict[str, Any] | None = None,
             chat: bool = False, system_prompt: str | None = None, data_files: str | None = None,
             task_options: dict[str, Any] | None = None, likelihood: bool = False, score: bool = True,
             progress: bool = True, **backend_options: Any) -> Run:
    """Sample ``n`` completions per problem of ``task`` from ``model``, score them with the task's
    verifier (``score``) and, with ``likelihood``, the gold-answer NLL; returns the :class:`Run`.

    Arguments are those of ``t2 sample`` (``gen_kwargs``: lm-eval's string or a dict);
    ``backend_options`` go to the backend (hf: device, dtype, revision, attention, max_batch;
    vllm: dtype, revision, max_model_len, gpu_memory_utilization, tensor_parallel_size).
    A call with nothing new to do does no work: a finished run loads no model (the sample and
    likelihood share one engine, see :func:`harness.sampling.run_sample`), and scores.parquet is
    kept when it judged exactly the stored samples with the same scorer settings
    (:func:`harness.sampling.scores_current`), else written again."""
    from harness import sampling

    settings = SamplingSettings(n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens,
                                seed=seed)
    settings = gen.apply(settings, gen.parse(gen_kwargs) if isinstance(gen_kwargs, str) else gen_kwargs or {},
                         backend)
    if out is None:
        identity = {"backend": backend, **dataclasses.asdict(settings), "n": None, "limit": limit, "chat": chat,
                    "system_prompt": system_prompt, "data_files": data_files, "task_options": task_options,
                    "backend_options": backend_options}
        out = default_out(task, model, identity)
    sampling.run_sample(task, model, out, settings, backend=backend, limit=limit, chat=chat, data_files=data_files,
                        system_prompt=system_prompt, task_options=task_options, backend_options=backend_options,
                        progress=progress, with_likelihood=likelihood)
    run = Run(out)
    if score and not sampling.scores_current(out):
        run.score()
    return run


def open_run(path: str | os.PathLike) -> Run:
    """The run in directory ``path`` (:class:`harness.errors.DataError` if it holds none)."""
    return Run(path)


class Run:
    """A run directory, read as pandas DataFrames (``arrow=True``: pyarrow Tables)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.dir = RunDir(path)
        self.path = self.dir.path
        self.manifest = self.dir.require()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @staticmethod
    def _out(table: pa.Table, arrow: bool) -> pd.DataFrame | pa.Table:
        return table if arrow else table.to_pandas()

    def score(self, workers: int | None = None) -> Run:
        """Judge every stored sample (``t2 score``): scores.parquet and problems.parquet's n and c."""
        from harness.sampling import score_run

        score_run(self.path, {"workers": workers} if workers else None)
        return self

    def samples(self, text: bool = True, arrow: bool = False) -> pd.DataFrame | pa.Table:
        """One row per completion (records "samples" columns; ``text=False`` leaves the texts out)."""
        table = self.dir.store.read()
        return self._out(table if text else table.drop_columns(["text"]), arrow)

    def scores(self, arrow: bool = False) -> pd.DataFrame | pa.Table:
        """One row per judged completion: task, problem_id, sample_idx, answer, correct, verifier_message."""
        return self._out(records.read_table(self.dir.scores_file, "scores"), arrow)

    def problems(self, arrow: bool = False) -> pd.DataFrame | pa.Table:
        """One row per problem: n, c, gold NLL, answer tokens, prompt, gold."""
        return self._out(records.read_table(self.dir.problems_file, "problems"), arrow)

    def passk(self, k: list[int] | None = None, bootstrap: int = 1000, seed: int = 0,
              arrow: bool = False) -> pd.DataFrame | pa.Table:
        """pass@k (95% bootstrap interval), maj@k and task loss (nats) per task and k, as ``t2 passk``
        (also written to the run's passk.parquet). Default k: powers of 2 up to n."""
        from harness.passk import passk_table, vote_batches

        scores = vote_batches(self.dir.scores_file) if self.dir.scores_file.is_file() else None
        table = passk_table(records.read_table(self.dir.problems_file, "problems"), scores, ks=k, n_boot=bootstrap,
                            seed=seed)
        records.write_table(self.dir.passk_file, "passk", table)
        return self._out(table, arrow)

    def cost(self, arrow: bool = False) -> pd.DataFrame | pa.Table:
        """cost.json as one row: FLOPs (prefill, decode, total; prompt shared and not), tokens, seconds."""
        record = records.read_json(self.dir.cost_file, "cost")
        return self._out(pa.Table.from_pylist([record]), arrow)

    def summary(self) -> dict[str, Any]:
        """``t2 show``'s summary as a dict (model, task, sampler, counts, pass@1, NLL, cost, provenance)."""
        from harness.show import run_summary

        return run_summary(self.path)
