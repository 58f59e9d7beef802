"""--wandb PROJECT: tables, summaries and run.json logged to Weights & Biases, in its offline mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness import records, wandb_log
from harness.cli import main

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """W&B offline, writing under tmp_path/wandb (returned)."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_CONFIG_DIR": str(tmp_path / "config"), "WANDB_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    wandb.teardown()  # wandb reads its environment once per process: start afresh with this one
    yield tmp_path / "wandb"
    wandb.teardown()


def logged_run(root: Path) -> Path:
    (run,) = root.glob("offline-run-*")
    return run


def problems_file(tmp_path: Path) -> Path:
    return records.write_table(tmp_path / "p" / "problems.parquet", "problems", {
        "task": ["gsm8k"] * 3, "problem_id": ["a", "b", "c"], "n": [4, 4, 4], "c": [0, 1, 4],
        "nll": [None] * 3, "answer_tokens": [None] * 3, "prompt": ["x"] * 3, "gold": ["1"] * 3})


def test_passk_logs_its_table_and_summary_offline(tmp_path, offline, capsys):
    source = problems_file(tmp_path)
    assert main(["passk", str(source), "-k", "1", "2", "--bootstrap", "20", "--wandb", "t2-test"]) == 0
    assert "logged to W&B project t2-test: run 'passk' (offline)" in capsys.readouterr().out
    run = logged_run(offline)
    (table_file,) = (run / "files" / "media" / "table").glob("passk_*.table.json")
    logged = json.loads(table_file.read_text())
    written = records.read_table(tmp_path / "p" / "passk.parquet", "passk").to_pylist()
    column = logged["columns"].index("pass_at_k")
    assert [row[column] for row in logged["data"]] == pytest.approx([r["pass_at_k"] for r in written])
    assert written[0]["pass_at_k"] == pytest.approx((0 + 0.25 + 1) / 3)
    table = records.read_table(tmp_path / "p" / "passk.parquet", "passk")
    wb = wandb_log.log("t2-test", "passk", tables={"passk": table}, summary=wandb_log.passk_summary(table))
    assert wb["mode"] == "offline" and wb["config"] == {}
    assert wb["summary"]["gsm8k/pass@1"] == pytest.approx(written[0]["pass_at_k"])
    assert wb["summary"]["gsm8k/pass@2"] == pytest.approx(written[1]["pass_at_k"])


def test_missing_wandb_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    source = problems_file(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError, as when not installed
    assert main(["passk", str(source), "--wandb", "t2-test"]) == 2
    assert capsys.readouterr().err == ("t2 passk: error: --wandb: the wandb package is not installed; "
                                       f"{wandb_log.INSTALL_HINT}\n")
    assert not (tmp_path / "p" / "passk.parquet").exists()


@pytest.mark.slow
def test_score_passk_cost_of_a_real_run(tmp_path, offline, gsm8k_file, capsys):
    import harness

    run = harness.evaluate(task="gsm8k", model="smollm2-135m", n=2, limit=2, max_tokens=6, device="cpu",
                           data_files=str(gsm8k_file), out=tmp_path / "run", progress=False)
    for argv in (["score", str(run.path)], ["passk", str(run.path), "--bootstrap", "10"], ["cost", str(run.path)]):
        assert main([*argv, "--wandb", "t2-test"]) == 0
    assert len(list(offline.glob("offline-run-*"))) == 3
    wb = wandb_log.log("t2-test", "score", run_dir=run.path, tables={"problems": run.problems(arrow=True)},
                       summary=wandb_log.accuracy_summary(run.problems(arrow=True)))
    assert wb["config"]["run"]["sampler"]["max_tokens"] == 6
    assert wb["config"]["run"]["model"]["params_total"] == 134515008
    problems = run.problems()
    assert wb["summary"]["gsm8k/pass@1"] == pytest.approx((problems["c"] / problems["n"]).mean())
    assert wb["summary"]["gsm8k/problems"] == 2
    assert Path(wb["dir"]).is_relative_to(offline)
