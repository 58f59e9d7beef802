"""The inference-cost meter against real models: parameter counts against sum(p.numel()) and FLOPs
against torch's FlopCounterMode on forward passes of small randomly initialised models."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from harness import cli
from harness.cost import (
    decode_flops,
    forward_flops,
    load_config,
    model_shape,
    param_counts,
    prefill_flops,
    sampling_cost,
    train_flops,
)

_LLAMA_LIKE = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, max_position_embeddings=1024)

# Tiny configs of each family; each exercises what changes its counts (biases, tying, GQA,
# head_dim != hidden/heads, q/k norms, extra norms, sliding windows, learned positions).
TINY: dict[str, tuple[str, dict]] = {
    "llama-bias-untied": ("llama", dict(_LLAMA_LIKE, attention_bias=True, mlp_bias=True, tie_word_embeddings=False)),
    "mistral-window": ("mistral", dict(_LLAMA_LIKE, sliding_window=256)),
    "qwen2-tied": ("qwen2", dict(_LLAMA_LIKE, tie_word_embeddings=True)),
    "qwen3": ("qwen3", dict(_LLAMA_LIKE, head_dim=32)),
    "gemma-mqa": ("gemma", dict(_LLAMA_LIKE, num_key_value_heads=1, head_dim=24)),
    "gemma2": ("gemma2", dict(_LLAMA_LIKE, head_dim=16, sliding_window=4096)),
    "gemma3": ("gemma3_text", dict(_LLAMA_LIKE, head_dim=16, sliding_window=4096)),
    "pythia": ("gpt_neox", dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=256, rotary_pct=0.25)),
    "gpt2": ("gpt2", dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=1024,
                          bos_token_id=0, eos_token_id=0)),
}


def tiny_config(name: str) -> PretrainedConfig:
    model_type, kwargs = TINY[name]
    return AutoConfig.for_model(model_type, **kwargs)


def smollm2_config() -> PretrainedConfig:
    """SmolLM2-135M-Instruct's architecture (from its published HF config.json)."""
    return AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                tie_word_embeddings=True, max_position_embeddings=8192)


@functools.cache
def tiny_model(name: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(tiny_config(name), attn_implementation="eager").eval()


def counted(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_tiny_configs_cover_every_family():
    from harness.cost import FAMILIES

    assert {model_type for model_type, _ in TINY.values()} == set(FAMILIES)


@pytest.mark.parametrize("name", TINY)
def test_param_counts_exact(name):
    model = tiny_model(name)
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    head = model.get_output_embeddings().weight
    untied_head = 0 if head is model.get_input_embeddings().weight else head.numel()
    counts = param_counts(tiny_config(name))
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["embedding"] == embeddings + untied_head
    assert counts["non_embedding"] == counts["total"] - counts["embedding"]


@pytest.mark.parametrize("model_type, kwargs", [
    ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)),  # SmolLM2-135M
    ("gpt2", {}),  # GPT-2 small
    ("gpt_neox", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      vocab_size=50304, rotary_pct=0.25)),  # Pythia-160m
    ("qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                   num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)),  # Qwen3-0.6B
    ("gemma2", dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                    num_key_value_heads=4, head_dim=256, vocab_size=256000)),  # Gemma-2-2B
])
def test_param_counts_exact_at_full_size(model_type, kwargs):
    config = AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert param_counts(config)["total"] == sum(p.numel() for p in model.parameters())
    assert param_counts(config.to_dict()) == param_counts(config)


@pytest.mark.parametrize("name", TINY)
def test_decode_step_flops_match_flop_counter(name):
    """One decode step after a 384-token KV cache; the attention term is a large share of it."""
    config, model = tiny_config(name), tiny_model(name)
    cache_len = 384
    with torch.no_grad():
        cache = model(torch.randint(0, 1000, (1, cache_len)), use_cache=True).past_key_values
    step = torch.randint(0, 1000, (1, 1))
    measured = counted(lambda: model(step, past_key_values=cache, use_cache=True))
    assert measured == pytest.approx(forward_flops(config, cache_len), rel=0.02)
    assert measured > 1.25 * forward_flops(config, 0)  # without the attention term it would be far off


def test_sliding_window_caps_the_decode_attention():
    config = tiny_config("mistral-window")
    full = AutoConfig.for_model("mistral", **dict(TINY["mistral-window"][1], sliding_window=None))
    assert forward_flops(config, 255) == forward_flops(full, 255)
    assert forward_flops(config, 384) == forward_flops(config, 255) < 0.9 * forward_flops(full, 384)


@pytest.mark.parametrize("name", TINY)
def test_prefill_flops_match_flop_counter(name):
    """A real prefill (LM head on the last position only). Eager attention multiplies the full
    P x P score matrix and masks the upper triangle; FlopCounterMode counts that masked half too,
    which is P(P-1)/2 key-products more than the causal count the meter reports."""
    config, model = tiny_config(name), tiny_model(name)
    prompt_len = 200
    ids = torch.randint(0, 1000, (1, prompt_len))
    measured = counted(lambda: model(ids, logits_to_keep=1))
    per_key = forward_flops(config, 1) - forward_flops(config, 0)  # one more key, all layers
    masked = per_key * prompt_len * (prompt_len - 1) / 2
    assert measured == pytest.approx(prefill_flops(config, prompt_len) + masked, rel=0.02)


@pytest.mark.parametrize("name", ["llama-bias-untied", "gemma2", "gpt2"])
def test_causal_prefill_matches_token_by_token_flop_counter(name):
    """Feeding the prompt one token at a time through the KV cache does exactly the causal work;
    it runs the LM head at every position, P-1 more times than a prefill."""
    config, model = tiny_config(name), tiny_model(name)
    prompt_len, head = 64, 2 * model_shape(config).head_params
    ids, cache, measured = torch.randint(0, 1000, (1, prompt_len)), None, 0
    for t in range(prompt_len):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            cache = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True).past_key_values
        measured += counter.get_total_flops()
    assert measured == pytest.approx(prefill_flops(config, prompt_len) + (prompt_len - 1) * head, rel=0.02)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["llama-bias-untied", "mistral-window", "gemma2"]),
       prompt_len=st.integers(0, 600), completion_len=st.integers(0, 300))
def test_closed_forms_equal_the_sum_over_tokens(name, prompt_len, completion_len):
    config = tiny_config(name)
    head = 2 * model_shape(config).head_params
    per_token = forward_flops(config, np.arange(prompt_len + max(completion_len - 1, 0)))
    expected_prefill = per_token[:prompt_len].sum() - max(prompt_len - 1, 0) * head
    assert prefill_flops(config, prompt_len) == pytest.approx(expected_prefill, rel=1e-12, abs=0)
    assert decode_flops(config, prompt_len, completion_len) == pytest.approx(per_token[prompt_len:].sum(), rel=1e-12)


def test_flops_grow_with_context():
    config = tiny_config("qwen3")
    contexts = np.arange(0, 2000, 7)
    assert np.all(np.diff(forward_flops(config, contexts)) > 0)
    assert np.all(np.diff(prefill_flops(config, contexts)) > 0)
    assert np.all(np.diff(decode_flops(config, 100, contexts[1:])) > 0)
    assert np.all(np.diff(decode_flops(config, contexts, 50)) > 0)


def test_prefix_sharing_saves_exactly_n_minus_one_prefills():
    config = tiny_config("qwen2-tied")
    prompts = [17, 300, 0, 5]
    completions = [[1, 40, 40], [250] * 7, [3, 9], [0]]
    cost = sampling_cost(config, prompts, completions)
    saved = sum((len(c) - 1) * prefill_flops(config, p) for p, c in zip(prompts, completions))
    assert cost["total_flops_unshared"] - cost["total_flops"] == pytest.approx(saved, rel=1e-12)
    assert cost["prefill_flops"] == pytest.approx(sum(prefill_flops(config, p) for p in prompts), rel=1e-12)
    decode = sum(decode_flops(config, p, t) for p, c in zip(prompts, completions) for t in c)
    assert cost["decode_flops"] == pytest.approx(decode, rel=1e-12)
    assert cost["completions"] == 13 and cost["completion_tokens"] == sum(map(sum, completions))
    assert cost["prompt_tokens"] == 322 and cost["prompt_tokens_unshared"] == 17 * 3 + 300 * 7 + 5
    n_params = param_counts(config)["total"]
    assert cost["flops_2N_total"] == 2 * n_params * (cost["prompt_tokens"] + cost["completion_tokens"])
    assert json.loads(json.dumps(cost)) == cost


def test_sampling_cost_vectorised_over_a_million_completions():
    rng = np.random.default_rng(0)
    prompts = rng.integers(10, 2000, size=1000)
    completions = rng.integers(0, 512, size=(1000, 1000))
    config = smollm2_config()
    cost = sampling_cost(config, prompts.tolist(), completions.tolist())
    decode = decode_flops(config, prompts[:, None], completions).sum()
    assert cost["completions"] == 10**6
    assert cost["decode_flops"] == pytest.approx(decode, rel=1e-12)
    assert cost["total_flops_unshared"] - cost["total_flops"] == pytest.approx(
        999 * prefill_flops(config, prompts).sum(), rel=1e-12)


def test_training_convention():
    assert train_flops(1e8, 2e9) == 6 * 1e8 * 2e9


@pytest.mark.parametrize("bad, message", [
    ({"hidden_size": 8}, "model_type"),
    ({"model_type": "bert"}, "'bert' is not metered"),
    ({"model_type": "no-such-architecture"}, "unknown model_type"),
])
def test_bad_configs_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        param_counts(bad)


def test_bad_counts_are_rejected():
    config = tiny_config("gpt2")
    with pytest.raises(ValueError, match="context_len"):
        forward_flops(config, -1)
    with pytest.raises(ValueError, match="completion_tokens: expected one list per problem"):
        sampling_cost(config, [3, 4], [[1]])
    with pytest.raises(ValueError, match="completion_tokens"):
        sampling_cost(config, [3], [[1, -2]])


def test_load_config_from_file_and_folder(tmp_path):
    config = tiny_config("qwen3")
    config.save_pretrained(tmp_path / "model")
    from_folder = load_config(tmp_path / "model")
    from_file = load_config(tmp_path / "model" / "config.json")
    assert param_counts(from_folder) == param_counts(from_file) == param_counts(config)
    with pytest.raises(ValueError, match="no such config file"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        load_config(tmp_path / "empty")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a JSON model config"):
        load_config(tmp_path / "broken.json")


def test_cli_cost_table_and_json(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(smollm2_config().to_json_string())
    args = ["cost", "--config", str(path), "--prompt-tokens", "512", "--completion-tokens", "256", "-n", "64"]
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    counts = param_counts(smollm2_config())
    assert f"{counts['total']:,} parameters" in table and f"{counts['non_embedding']:,} non-embedding" in table
    assert "prompt n times" in table and "exact / 2N·tokens" in table
    assert cli.main(args + ["--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == sampling_cost(smollm2_config(), [512], [[256] * 64])
    assert f"{record['total_flops']:.4g}" in table


def test_cli_cost_bad_input(tmp_path, capsys):
    missing = tmp_path / "nope" / "config.json"
    assert cli.main(["cost", "--config", str(missing), "--prompt-tokens", "8", "--completion-tokens", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and len(err.splitlines()) == 1
    path = tmp_path / "config.json"
    path.write_text(tiny_config("gpt2").to_json_string())
    assert cli.main(["cost", "--config", str(path), "--prompt-tokens", "8", "--completion-tokens", "8",
                     "-n", "0"]) == 2
    assert "-n: expected an integer >= 1" in capsys.readouterr().err
    assert cli.main(["cost", "--prompt-tokens", "8", "--completion-tokens", "8"]) == 2
    assert "--config: required without a run directory" in capsys.readouterr().err
    assert cli.main(["cost", str(tmp_path)]) == 2  # not a run directory
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run directory" in err


def test_cli_cost_reads_a_run_directory(tmp_path, capsys):
    from harness.rundir import RunDir

    run = RunDir(tmp_path / "run")
    record = sampling_cost(smollm2_config(), [20, 30], [[5, 7], [9]])
    run.write_manifest({"task": {"name": "toy"}})
    run.write_cost(record)
    assert cli.main(["cost", str(run.path)]) == 0
    shown = capsys.readouterr().out
    assert f"{record['total_flops']:.4g}" in shown and "completion_tokens" in shown
    assert cli.main(["cost", str(run.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert cli.main(["cost", str(run.path), "--config", "x.json"]) == 2
