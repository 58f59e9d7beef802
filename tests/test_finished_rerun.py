"""Rerunning a finished run loads no model: ``t2 sample`` into a run whose every problem holds its n
samples (and, with ``--with-likelihood``, its gold NLL) starts no engine, imports no torch and
leaves every file as it was; a rerun that has something to add still loads the model and adds it.
Real SmolLM2-135M-Instruct (hf backend) on real GSM8K."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import records

pytestmark = pytest.mark.slow

# `t2 ARGS...` in a fresh interpreter; the last line printed says whether torch was imported
PROBE = """
import sys
from harness.cli import main
code = main(sys.argv[1:])
print("torch imported:", "torch" in sys.modules)
sys.exit(code)
"""


def t2(*args: str) -> tuple[str, bool]:
    """(stdout, whether torch was imported) of ``t2 args`` in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    *out, last = proc.stdout.splitlines()
    return "\n".join(out), last == "torch imported: True"


def sample_args(gsm8k_file: Path, out: Path, n: int, *extra: str) -> list[str]:
    return ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--backend", "hf", "--device", "cpu", "--out", str(out), "--limit", "2", "-n", str(n),
            "--max-tokens", "8", *extra]


def files_of(run: Path) -> dict[str, bytes]:
    """Every file of the run directory (the lock excepted) by relative path → its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".t2-lock"}


def test_rerun_of_a_finished_run_loads_no_model_and_changes_nothing(tmp_path, gsm8k_file):
    out = tmp_path / "run"
    _, loaded = t2(*sample_args(gsm8k_file, out, 3))
    assert loaded
    before = files_of(out)
    for n in (3, 2):  # the same n, and a smaller one: nothing to sample either way
        text, loaded = t2(*sample_args(gsm8k_file, out, n))
        assert not loaded
        assert "nothing to sample" in text and "2 problems, 6 samples" in text
        assert files_of(out) == before  # samples, run.json, cost.json, engine.log untouched
    text, loaded = t2(*sample_args(gsm8k_file, out, 4))  # grown: the model is loaded again
    assert loaded and "nothing to sample" not in text
    assert records.read_json(out / "cost.json", "cost")["completion_tokens"] > \
        json.loads(before["cost.json"])["completion_tokens"]


def test_with_likelihood_loads_only_while_a_gold_nll_is_missing(tmp_path, gsm8k_file):
    out = tmp_path / "run"
    _, loaded = t2(*sample_args(gsm8k_file, out, 2))
    assert loaded and not (out / "problems.parquet").exists()
    text, loaded = t2(*sample_args(gsm8k_file, out, 2, "--with-likelihood"))  # samples done, NLL missing
    assert loaded and "nothing to sample" not in text
    nll = records.read_table(out / "problems.parquet", "problems")["nll"].to_pylist()
    assert len(nll) == 2 and all(v is not None and v > 0 for v in nll)
    before = files_of(out)
    text, loaded = t2(*sample_args(gsm8k_file, out, 2, "--with-likelihood"))
    assert not loaded and "nothing to sample (every problem has its n=2 samples and a gold NLL)" in text
    assert files_of(out) == before
