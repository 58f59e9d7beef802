"""One engine per command on the real hf backend (SmolLM2, GSM8K): `t2 sample --with-likelihood`
samples and scores gold NLL with one model load, `t2 likelihood` on an existing run takes the
model, backend and dtype from its run.json, and engine output goes to the run's engine.log."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from harness import records
from harness.store import SampleStore

pytestmark = pytest.mark.slow
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def t2(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def nll_by_problem(run) -> dict[str, tuple[float, int]]:
    t = pq.read_table(run / "problems.parquet").to_pydict()
    return {p: (nll, k) for p, nll, k in zip(t["problem_id"], t["nll"], t["answer_tokens"], strict=True)}


def test_sample_with_likelihood_then_likelihood_from_the_manifest(tmp_path, gsm8k_file):
    run = tmp_path / "run"
    proc = t2("sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
              "--backend", "hf", "--device", "cpu", "--dtype", "bfloat16", "--out", str(run), "--limit", "2",
              "-n", "2", "--max-tokens", "8", "--with-likelihood")
    assert "gold NLL in" in proc.stdout and "bfloat16 on cpu" in proc.stdout
    assert (run / "engine.log").is_file()
    manifest = records.read_json(run / "run.json", "run")
    assert manifest["likelihood"] == {"backend": "hf"} and manifest["model"]["dtype"] == "bfloat16"
    assert SampleStore(run).read().num_rows == 4
    together = nll_by_problem(run)
    assert len(together) == 2 and all(nll > 0 and k > 0 for nll, k in together.values())

    (run / "problems.parquet").unlink()
    t2("likelihood", "--out", str(run))  # no --task, --model, --backend or --dtype: the run's own
    assert nll_by_problem(run) == together  # the same model in the same dtype (bf16, not the float32 default)
