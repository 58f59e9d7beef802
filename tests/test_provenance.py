"""run.json's provenance helpers on real folders: the model commit of an HF-cache snapshot, a git
work tree and a plain folder; the harness's own source."""

from __future__ import annotations

import subprocess

from harness.provenance import harness_source, model_commit, package_versions


def test_model_commit_of_snapshot_git_and_plain_folders(tmp_path):
    snapshot = tmp_path / "models--org--m" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert model_commit("org/m", str(snapshot)) == "a" * 40

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text("{}")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "config.json"], check=True)
    subprocess.run([*git, "commit", "-qm", "m"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert model_commit(str(repo), str(repo)) == head

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"hidden_size": 8}')
    (plain / "model.safetensors").write_bytes(b"x" * 10)
    first = model_commit(str(plain), str(plain))
    assert first.startswith("folder-sha256:") and model_commit(str(plain), str(plain)) == first
    (plain / "model.safetensors").write_bytes(b"x" * 11)  # another size: another fingerprint
    assert model_commit(str(plain), str(plain)) != first
    assert model_commit("no-such-org/no-such-model", "no-such-org/no-such-model") is None  # not cached, no network


def test_harness_source_and_versions():
    source, versions = harness_source(), package_versions()
    assert source["version"] == versions["harness"]
    assert (source["git_commit"] is None) == (source["git_dirty"] is None)
    assert set(versions) == {"harness", "lm_eval", "datasets", "vllm", "torch", "transformers", "numpy"}
    assert versions["numpy"] and versions["torch"]
