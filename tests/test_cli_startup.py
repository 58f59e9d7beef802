"""Commands that run no model start light: ``t2 --help``, show, cost, passk, score, merge, tasks,
fit and optimize import neither torch nor transformers, vllm, ray, lm_eval or matplotlib (3-22 s
of start-up on a 2-core machine); ``import harness.cli`` and ``t2 --help`` not even numpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.rundir import RunDir
from harness.sampling import load_problems, score_run

REPO = Path(__file__).resolve().parents[1]
MODEL_STACK = ("torch", "transformers", "vllm", "ray", "lm_eval", "matplotlib")
DATA_STACK = ("numpy", "pyarrow", "pandas", "scipy")

# Runs each command of argv lists in one process; prints {command: heavy modules it imported first}.
PROBE = """
import contextlib, io, json, sys
from harness.cli import main
heavy, seen, out = {heavy!r}, set(), {{}}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            assert main(argv) == 0, argv
        except SystemExit as e:  # --help
            assert e.code == 0, argv
    new = sorted(m for m in heavy if m in sys.modules and m not in seen)
    seen.update(new)
    out[" ".join(argv[:2])] = new
print(json.dumps(out))
"""


def imported(commands: list[list[str]], heavy: tuple[str, ...]) -> dict[str, list[str]]:
    """{command: the modules of ``heavy`` it imported (none imported by an earlier one)}, all run
    in one fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=heavy), json.dumps(commands)],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> Path:
    """A scored run of the synthetic arithmetic task (4 questions, 3 samples each, every third the
    gold answer) with a cost.json, written through the harness's own record writers."""
    path = tmp_path_factory.mktemp("startup") / "run"
    task, problems, record = load_problems("arithmetic", None, None, None, {"n": 4, "seed": 0})
    run = RunDir(path)
    run.write_manifest({"model": {"id": "m", "params_total": 10, "params_non_embedding": 8}, "task": record,
                        "sampler": {"backend": "hf", "n": 3}, "shard": None})
    run.store.append([{"task": task.name, "problem_id": p.id, "sample_idx": i, "seed": i,
                       "text": f" {p.answer}." if i % 3 == 0 else " banana.", "prompt_tokens": 5,
                       "completion_tokens": 2, "cached_prompt_tokens": 0, "finish_reason": "stop",
                       "cumulative_logprob": -1.0} for p in problems for i in range(3)])
    run.write_cost({"total_flops": 1e6, "prompt_tokens": 20, "completion_tokens": 24, "wall_s": 1.0})
    score_run(path)
    return path


def test_help_and_the_cli_module_import_no_model_or_data_library():
    commands = [["--help"], ["sample", "--help"], ["fit", "--help"], ["demo", "--help"]]
    assert imported(commands, MODEL_STACK + DATA_STACK) == {" ".join(c[:2]): [] for c in commands}


def test_commands_that_run_no_model_import_no_model_library(scored_run, tmp_path):
    run = str(scored_run)
    dataset = str(REPO / "results" / "demo" / "dataset.parquet")
    law = str(tmp_path / "law.json")
    commands = [["show", run], ["cost", run], ["passk", run, "--bootstrap", "10"], ["score", run],
                ["merge", run, "--out", str(tmp_path / "merged")], ["tasks", "arithmetic"],
                ["fit", dataset, "--out", law, "--starts", "2"], ["optimize", law, "--c-train", "1e12", "--c-inf", "1e5"]]
    found = imported(commands, MODEL_STACK)
    assert list(found) == [" ".join(c[:2]) for c in commands]  # every command ran
    assert found == {name: [] for name in found}
