"""The notebook API (harness.evaluate / open_run) and `t2 show`, on the real SmolLM2-135M and GSM8K."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import harness
from harness import records
from harness.api import default_out
from harness.cli import main
from harness.errors import DataError


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gsm8k_file):
    """One run made in two calls: n=3 with likelihood, then grown to n=4 (a resume)."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T2_RUNS", str(root))
        kwargs = dict(task="gsm8k", model="smollm2-135m", limit=2, max_tokens=8, data_files=str(gsm8k_file),
                      device="cpu", progress=False)
        first = harness.evaluate(n=3, likelihood=True, **kwargs)
        counts_at_3 = first.problems()[["problem_id", "n", "c"]]
        grown = harness.evaluate(n=4, **kwargs)
    return root, first, counts_at_3, grown


@pytest.mark.slow
def test_evaluate_writes_a_scored_run_in_the_default_place(runs):
    root, first, counts_at_3, grown = runs
    assert grown.path == first.path and first.path.parent == root
    assert first.path.name.startswith("gsm8k__smollm2-135m__")
    assert counts_at_3["n"].tolist() == [3, 3]
    samples = grown.samples()
    assert isinstance(samples, pd.DataFrame) and len(samples) == 8
    assert samples.groupby("problem_id")["sample_idx"].apply(sorted).tolist() == [[0, 1, 2, 3]] * 2
    scores = grown.scores()
    assert len(scores) == 8 and scores["correct"].dtype == bool
    problems = grown.problems()
    assert problems["n"].tolist() == [4, 4] and problems["nll"].notna().all()  # likelihood kept on regrowth
    assert problems["c"].tolist() == scores.groupby("problem_id")["correct"].sum().tolist()


@pytest.mark.slow
def test_passk_cost_and_summary_agree_with_the_records(runs):
    run = harness.open_run(runs[3].path)
    table = run.passk(bootstrap=50)
    problems = run.problems()
    at1 = table[table["k"] == 1]["pass_at_k"].item()
    assert at1 == pytest.approx((problems["c"] / problems["n"]).mean())
    assert sorted(table["k"]) == [1, 2, 4]
    assert records.read_table(run.path / "passk.parquet", "passk").num_rows == 3
    cost = run.cost()
    on_disk = json.loads((run.path / "cost.json").read_text())
    assert cost["total_flops"].item() == on_disk["total_flops"] > 0
    assert run.passk(arrow=True).num_rows == 3
    s = run.summary()
    assert (s["samples"]["samples"], s["samples"]["n_min"], s["samples"]["n_max"]) == (8, 4, 4)
    assert s["scores"]["pass@1"] == pytest.approx(at1)
    assert s["scores"]["nll_per_token"] == pytest.approx(problems["nll"].sum() / problems["answer_tokens"].sum())
    assert s["model"]["params_total"] == 134515008 and s["harness"]["version"] == harness.__version__


@pytest.mark.slow
def test_t2_show_prints_one_screen(runs, capsys):
    path = runs[3].path
    assert main(["show", str(path)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) <= 16 and max(map(len, lines)) < 240
    assert lines[1].startswith("model    smollm2-135m  134,515,008 params")
    assert "samples  8 over 2 problems, n = 4 per problem" in text
    assert "scored   pass@1 " in text and "gold NLL " in text and "pass@k   k=1:" in text
    assert "FLOPs" in text and "torch 2." in text
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["task"]["name"] == "gsm8k"


def test_open_run_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(DataError, match="not a run directory"):
        harness.open_run(tmp_path)


@pytest.mark.parametrize("change", [{"temperature": 0.5}, {"limit": 3}, {"min_p": 0.1}])
def test_default_out_changes_with_identity_not_with_n(change, tmp_path, monkeypatch):
    monkeypatch.setenv("T2_RUNS", str(tmp_path))
    base = {"temperature": 1.0, "limit": 2, "min_p": 0.0, "n": None}
    assert default_out("gsm8k", "org/model", base) == default_out("gsm8k", "org/model", dict(base))
    assert default_out("gsm8k", "org/model", base) != default_out("gsm8k", "org/model", {**base, **change})
    assert default_out("gsm8k", "org/model", base).parent == tmp_path
