"""Bad input prints one line ``t2 CMD: error: ...`` and exits 2; a library bug keeps its traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import cli, fit, passk, records
from harness.errors import InvalidSetting, RunMismatch


def one_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith(f"t2 {command}: error: "), err
    return lines[0]


@pytest.fixture
def law_file(tmp_path):
    path = tmp_path / "law.json"
    law = fit.T2LossLaw(np.r_[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28, np.log(2.0), 0.5])
    fit.save_laws(path, {"t": law})
    return path


def test_cost_on_a_config_with_zero_heads_names_file_and_field(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 0,
                                  "num_hidden_layers": 2, "vocab_size": 100, "intermediate_size": 128}))
    assert cli.main(["cost", "--config", str(config), "--prompt-tokens", "8", "--completion-tokens", "8"]) == 2
    line = one_error(capsys, "cost")
    assert str(config) in line and "'num_attention_heads'" in line and "got 0" in line


def test_optimize_budget_below_one_sample_is_one_line(law_file, capsys):
    assert cli.main(["optimize", str(law_file), "--c-train", "1e21", "--c-inf", "1"]) == 2
    line = one_error(capsys, "optimize")
    assert line.startswith("t2 optimize: error: --c-inf: expected a finite inference budget >= 2")
    assert cli.main(["optimize", str(law_file), "--c-train", "1e21", "--c-inf", "2e9"]) == 0


@pytest.mark.parametrize("argv", [
    ["optimize", "LAW", "--c-train", "nan", "--c-inf", "2e9"],
    ["optimize", "LAW", "--c-train", "inf", "--c-inf", "2e9"],
    ["optimize", "LAW", "--c-train", "1e21", "--c-inf=-inf"],
    ["sample", "--task", "gsm8k", "--model", "m", "--out", "o", "--temperature", "nan"],
    ["sample", "--task", "gsm8k", "--model", "m", "--out", "o", "--top-p", "inf"],
    ["validate", "d.parquet", "--holdout-ratio", "nan"],
    ["plot", "LAW", "d.parquet", "--c-inf", "inf"],
])
def test_non_finite_numbers_are_refused_by_the_parser(law_file, capsys, argv):
    argv = [str(law_file) if a == "LAW" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"t2 {argv[0]}: error: argument ") and "expected a finite number" in err


def test_sample_rejects_non_finite_settings_in_the_library_too():
    from harness.samplers import SamplingSettings
    from harness.sampling import check_settings

    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidSetting) as e:
            check_settings(SamplingSettings(temperature=bad), None)
        assert e.value.field == "temperature" and cli.flag_of(e.value.field) == "--temperature"


@pytest.mark.parametrize("name", ["some.csv", "run.json"])
def test_fit_on_a_file_taken_as_a_run_dir(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    assert cli.main(["fit", str(path), "--out", str(tmp_path / "law.json")]) == 2
    assert one_error(capsys, "fit") == f"t2 fit: error: {path}: not a run directory (a file)"
    assert not (tmp_path / "law.json").exists()


def test_unknown_task_option_is_refused_naming_the_valid_ones(tmp_path, gsm8k_file, capsys):
    out = tmp_path / "run"
    argv = ["sample", "--task", "gsm8k", "--data-files", str(gsm8k_file), "--model", "smollm2-135m",
            "--out", str(out), "--limit", "2", "--task-option", "nshot=2"]
    assert cli.main(argv) == 2
    line = one_error(capsys, "sample")
    assert "--task-option: expected an option of task gsm8k" in line and "'nshot'" in line
    assert "num_fewshot" in line and "fewshot_seed" in line and "mode" in line
    assert not out.exists()
    assert cli.main(["sample", "--task", "arithmetic", "--data-files", str(gsm8k_file), "--model", "m",
                     "--out", str(out)]) == 2
    assert "--data-files: expected none: task arithmetic reads no data files" in one_error(capsys, "sample")


def test_unwritable_place_is_one_line_naming_the_path(tmp_path, capsys):
    scored = tmp_path / "run"
    records.write_table(scored / "problems.parquet", "problems", {
        "task": ["t"], "problem_id": ["t/0"], "n": [4], "c": [1], "nll": [None], "answer_tokens": [None]})
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["passk", str(scored), "--out", str(blocker / "passk.parquet"), "--bootstrap", "0"]) == 2
    line = one_error(capsys, "passk")
    assert str(blocker) in line and "Traceback" not in line


def test_run_mismatch_is_shown_with_the_flag():
    line = cli.error_line(RunMismatch("x/run.json: this run has task.options.limit=3 but ...", "task.options.limit"))
    assert "(set by --limit)" in line and "another --out" in line
    assert cli.flag_of("sampler.top_p") == "--top-p" and cli.flag_of("task.options.shift") == "--task-option"
    assert cli.flag_of("task.data_sha256") == "--data-files" and cli.flag_of("model.dtype") == "--dtype"


@pytest.mark.parametrize("bug", [ZeroDivisionError, TypeError, ValueError])
def test_a_library_bug_keeps_its_traceback(tmp_path, monkeypatch, bug):
    records.write_table(tmp_path / "problems.parquet", "problems", {
        "task": ["t"], "problem_id": ["t/0"], "n": [4], "c": [1], "nll": [None], "answer_tokens": [None]})

    def broken(*args, **kwargs):
        raise bug("a bug in the library")

    monkeypatch.setattr(passk, "passk_table", broken)
    with pytest.raises(bug, match="a bug in the library"):
        cli.main(["passk", str(tmp_path), "--bootstrap", "0"])


def test_likelihood_without_a_task_on_a_new_out(tmp_path, capsys):
    out = tmp_path / "new"
    assert cli.main(["likelihood", "--model", "smollm2-135m", "--out", str(out)]) == 2
    assert one_error(capsys, "likelihood").startswith("t2 likelihood: error: --task: expected a task name")
    assert not out.exists()
