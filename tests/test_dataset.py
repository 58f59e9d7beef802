"""Fitting-dataset builder, suite files, and the fit/optimize/validate/plot commands end to end."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TRUE1, TRUE2, simulate

from harness import cli, cost, dataset, fit, records


def test_pythia_suite_counts_match_the_gpt_neox_architecture():
    suite = dataset.load_suite("pythia")
    from importlib import resources

    import yaml

    spec = yaml.safe_load((resources.files("harness") / "data" / "pythia.yaml").read_text())
    for m in spec["models"]:
        h = m["hidden"]
        config = {"model_type": "gpt_neox", "hidden_size": h, "num_hidden_layers": m["layers"],
                  "num_attention_heads": max(h // 64, 1), "intermediate_size": 4 * h, "vocab_size": m["vocab"],
                  "tie_word_embeddings": False, "max_position_embeddings": 2048}
        counts = cost.param_counts(config)
        assert (counts["total"], counts["non_embedding"]) == (m["params_total"], m["params_non_embedding"])
        assert suite[(m["id"], "step143000")]["D"] == 299_892_736_000  # 143,000 × 1,024 × 2,048
    assert sum(1 for key in suite if key[0] == "EleutherAI/pythia-70m") == 154


def _write_run(root, name, model, task, ks, loss, acc):
    run = root / name
    records.write_json(run / "run.json", "run", {"model": model, "task": {"name": task}})
    records.write_table(run / "passk.parquet", "passk", {
        "task": [task] * len(ks), "k": ks, "pass_at_k": acc, "pass_at_k_low": acc, "pass_at_k_high": acc,
        "maj_at_k": acc, "task_loss": loss, "n_problems": [100] * len(ks), "n_smoothed": [0] * len(ks)})
    return run


def test_build_dataset_from_runs_and_suite(tmp_path):
    ks = [1, 2, 4]
    runs = [
        _write_run(tmp_path, "a", {"id": "m", "params_total": 300, "params_non_embedding": 100,
                                   "tokens_trained": 5e4}, "arith", ks, [3.0, 2.5, 2.0], [0.1, 0.2, 0.3]),
        _write_run(tmp_path, "b", {"id": "EleutherAI/pythia-70m", "revision": "step1000"}, "arith", ks,
                   [2.0, 1.5, 1.0], [0.3, 0.4, 0.5]),
        _write_run(tmp_path, "c", {"id": "EleutherAI/pythia-70m", "revision": "step0"}, "arith", ks,
                   [9.0, 9.0, 9.0], [0.0, 0.0, 0.0]),
    ]
    with pytest.warns(UserWarning, match="step0 has D = 0"):
        table = dataset.build_dataset(runs, dataset.load_suite("pythia"))
    cols = dataset.task_columns(table)
    assert table.num_rows == 6 and set(cols["checkpoint"]) == {"m", "EleutherAI/pythia-70m@step1000"}
    pythia = cols["checkpoint"] == "EleutherAI/pythia-70m@step1000"
    assert np.all(cols["N"][pythia] == 18915328) and np.all(cols["D"][pythia] == 1000 * 2097152)
    np.testing.assert_allclose(cols["C_train"], 6 * cols["N"] * cols["D"])
    np.testing.assert_allclose(cols["C_inf"], 2 * cols["N"] * cols["k"])
    total = dataset.task_columns(dataset.build_dataset(runs[:1], params="total"))
    assert np.all(total["N"] == 300) and set(total["N_kind"]) == {"total"}
    non_emb = dataset.task_columns(dataset.build_dataset(runs[:1], params="non-embedding"))
    assert np.all(non_emb["N"] == 100) and set(non_emb["N_kind"]) == {"non_embedding"}
    with pytest.raises(ValueError, match="params: expected total or non-embedding, got 'embedding'"):
        dataset.build_dataset(runs[:1], params="embedding")
    with pytest.raises(ValueError, match="no N_total, N_non_embedding, D for model 'EleutherAI/pythia-70m'"):
        dataset.build_dataset(runs[1:2])  # no suite: N and D unknown
    csv = tmp_path / "suite.csv"
    csv.write_text("model,revision,N,D\nEleutherAI/pythia-70m,step1000,123,4.5e6\n")
    assert dataset.task_columns(dataset.build_dataset(runs[1:2], dataset.load_suite(csv)))["N"][0] == 123
    csv.write_text("model,revision,N\nx,y,1\n")
    with pytest.raises(ValueError, match="suite.csv:2: expected columns model, revision, N, D"):
        dataset.load_suite(csv)


def test_cli_fit_optimize_validate_plot(tmp_path, capsys):
    N, D, k, loss, acc, nll = simulate()
    loss_k1 = np.where(k == 1, nll, loss)  # Approach 2 reads the task NLL from the k = 1 rows
    ds = tmp_path / "dataset.parquet"
    ckpt = [f"n{n:.3g}-d{d:.3g}" for n, d in zip(N, D)]
    records.write_table(ds, "dataset", {
        "checkpoint": ckpt * 2, "task": ["loss_task"] * N.size + ["acc_task"] * N.size,
        "N": np.r_[N, N], "D": np.r_[D, D], "k": np.r_[k, k], "task_loss": np.r_[loss, loss_k1],
        "accuracy": np.r_[acc, acc], "C_train": 6 * np.r_[N, N] * np.r_[D, D], "C_inf": 2 * np.r_[N, N] * np.r_[k, k],
        "N_kind": ["total"] * (2 * N.size)})
    law1, law2 = tmp_path / "law1.json", tmp_path / "law2.json"
    assert cli.main(["fit", str(ds), "--task", "loss_task", "--starts", "60", "--bootstrap", "3", "--out", str(law1)]) == 0
    # Approach 2 at its default 8 starts (cli's --starts default of 500 is meant for Approach 1)
    assert cli.main(["fit", str(ds), "--task", "acc_task", "--approach", "2", "--starts", "8", "--out", str(law2)]) == 0
    assert abs(fit.load_laws(law2)["acc_task"].params["theta1"] / TRUE2.params["theta1"] - 1) < 0.05
    fitted = fit.load_laws(law1)["loss_task"]
    assert abs(fitted.params["alpha"] - TRUE1.params["alpha"]) < 0.02
    assert fitted.N_kind == "total" and fitted.ranges["N"] == [N.min(), N.max()]  # the law JSON states both
    capsys.readouterr()
    assert cli.main(["optimize", str(law1), "--c-train", "1e19", "--c-inf", "2e9"]) == 0
    out = capsys.readouterr().out
    want = TRUE1.optimum(1e19, 2e9)
    line = next(l for l in out.splitlines() if "continuous k" in l)
    assert float(line.split()[4]) == pytest.approx(want["N"], rel=0.1)
    assert "Chinchilla-only choice" in out and "bootstrap interval (3 refits)" in out
    assert f"search box: N in [{N.min() / 4:.3g}, {4 * N.max():.3g}], k <= {16 * k.max():.3g}" in out
    assert cli.main(["optimize", str(law1), "--c-train", "1e25", "--c-inf", "2e13", "--n-factor", "2"]) == 0
    out = capsys.readouterr().out
    assert "on the search bound of N" in out and f"N in [{N.min() / 2:.3g}, {2 * N.max():.3g}]" in out
    assert cli.main(["validate", str(ds), "--task", "loss_task", "--starts", "40"]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("loss_task"))
    assert float(row.split()[5].rstrip("%")) < 3  # held-out (most overtrained) mean relative error < 3%
    v = fit.validate(dataset.task_columns(records.read_table(ds, "dataset"), "loss_task"), 1, starts=40)
    cells = row.split()  # then the absolute error, rows below the floor, their complement, outside N range
    assert float(cells[8]) == pytest.approx(v["test_mean_abs"], rel=1e-3)
    assert [int(cells[9]), int(cells[11])] == [v["test_below_floor"], v["outside_checkpoints"]]
    assert float(cells[13].rstrip("%")) == pytest.approx(100 * v["form_limit_mean"], abs=0.01)
    assert cells[14] == "-"  # stage-1-free: Approach 2 only
    # the options rule refits every candidate per left-out checkpoint: on 16 of the 192 checkpoints, k <= 64
    C = np.round(np.log2(6 * N * D))
    pick = np.isin(N, np.unique(N)[::4]) & np.isin(C, np.unique(C)[::3]) & (k <= 64)
    small = tmp_path / "small.parquet"
    records.write_table(small, "dataset", {name: np.asarray(col)[np.r_[np.zeros(N.size, bool), pick]]
                                           for name, col in records.read_table(ds, "dataset").to_pydict().items()})
    assert cli.main(["validate", str(small), "--approach", "2", "--choose-options", "--starts", "4"]) == 0
    out = capsys.readouterr().out
    v2 = fit.validate(dataset.task_columns(records.read_table(small, "dataset")), 2, starts=4,
                      candidates=fit.ACCURACY_CANDIDATES)
    row = next(l for l in out.splitlines() if l.startswith("acc_task")).split()
    assert float(row[14].rstrip("%")) == pytest.approx(100 * v2["stage1_free_mean"], abs=0.01)
    chosen = [l for l in out.splitlines() if l.startswith("  * ")]
    assert len(chosen) == 1 and f"--stage1 {v2['options']['stage1']} " in chosen[0]
    assert sum("training leave-one-out" in l for l in out.splitlines()) == len(fit.ACCURACY_CANDIDATES)
    law3 = tmp_path / "law3.json"
    assert cli.main(["fit", str(ds), "--task", "acc_task", "--approach", "2", "--stage1", "isoflop", "--form", "beta",
                     "--out", str(law3)]) == 0
    assert fit.load_laws(law3)["acc_task"].info["stage1"] == "isoflop"
    assert cli.main(["fit", str(ds), "--task", "loss_task", "--form", "beta", "--out", str(law3)]) == 2
    assert "--form: an Approach 2 option; give --approach 2" in capsys.readouterr().err
    assert cli.main(["plot", str(law2), str(ds), "--out", str(tmp_path / "plots")]) == 0
    for name in ("isoflop", "passk", "predicted"):
        assert (tmp_path / "plots" / f"acc_task-{name}.png").stat().st_size > 1000
        assert (tmp_path / "plots" / f"acc_task-{name}.pdf").is_file()
    assert cli.main(["optimize", str(law1), "--c-train", "-1", "--c-inf", "2e9"]) == 2
    assert cli.main(["fit", str(ds), "--out", str(law1), "--task", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--task: expected a task of the dataset" in err and "got 'nope'" in err


def test_cli_fit_from_runs_records_the_parameter_count(tmp_path):
    ks = [1, 2, 4, 8, 16]
    runs = []
    for i, (n, d) in enumerate([(n, d) for n in (2e7, 8e7, 3e8) for d in (4e8, 2e9, 1e10)]):
        loss = TRUE1.predict(n, d, np.array(ks, dtype=float))  # N here is the non-embedding count
        runs.append(_write_run(tmp_path, f"r{i}", {"id": f"m{i}", "params_total": 3 * n, "params_non_embedding": n,
                                                   "tokens_trained": d}, "arith", ks, loss.tolist(), [0.5] * len(ks)))
    for flag, kind, scale in (("non-embedding", "non_embedding", 1), ("total", "total", 3)):
        out = tmp_path / f"law-{kind}.json"
        assert cli.main(["fit", *map(str, runs), "--params", flag, "--starts", "30", "--out", str(out)]) == 0
        law = fit.load_laws(out)["arith"]
        assert law.N_kind == kind and law.ranges["N"] == [scale * 2e7, scale * 3e8]
    assert abs(fit.load_laws(tmp_path / "law-non_embedding.json")["arith"].params["alpha"] - 0.34) < 0.02
