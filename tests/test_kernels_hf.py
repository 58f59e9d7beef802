"""The transformers integration: small randomly initialised Llama / Qwen2 / Mistral models decode
with the prompt's KV stored once ("t2_prefix" attention) and match stock attention over a
DynamicCache that holds the prompt n times."""

from __future__ import annotations

import os


import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, MistralConfig, Qwen2Config

from harness.kernels import hf_attention as H

SIZES = dict(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
CONFIGS = {
    "llama": lambda: LlamaConfig(**SIZES, num_key_value_heads=2),
    "qwen2": lambda: Qwen2Config(**SIZES, num_key_value_heads=1),
    "mistral": lambda: MistralConfig(**SIZES, num_key_value_heads=4, sliding_window=64),
}


def tiny_model(family: str, attn: str = "sdpa"):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(CONFIGS[family](), attn_implementation=attn).eval()


def prompt(length: int = 13) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (length,), generator=torch.Generator().manual_seed(length))


@pytest.mark.parametrize("stock", ["sdpa", "eager"])
@pytest.mark.parametrize("family", list(CONFIGS))
@torch.no_grad()
def test_logits_match_stock_attention_with_expanded_cache(family, stock, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # the torch reference (the CPU path)
    model, n = tiny_model(family, stock), 4
    ids = prompt()[None]
    stock_cache, shared_cache = DynamicCache(config=model.config), H.SharedPrefixCache()
    want = model(input_ids=ids, past_key_values=stock_cache).logits
    stock_cache.batch_repeat_interleave(n)
    H.register()
    with H.attention_implementation(model, H.ATTN_NAME):
        got = model(input_ids=ids, past_key_values=shared_cache).logits
    assert model.config._attn_implementation == stock  # restored
    assert (got - want).abs().max() <= 1e-4
    for step in range(4):
        tokens = torch.randint(0, SIZES["vocab_size"], (n, 1), generator=torch.Generator().manual_seed(step))
        want = model(input_ids=tokens, past_key_values=stock_cache).logits
        with H.attention_implementation(model, H.ATTN_NAME):
            got = model(input_ids=tokens, past_key_values=shared_cache).logits
        assert (got - want).abs().max() <= 1e-4
    assert shared_cache.get_seq_length() == stock_cache.get_seq_length() == ids.shape[1] + 4
    layer = shared_cache.layers[0]
    assert layer.keys.shape[0] == 1 and layer.suffix_keys.shape[0] == n  # the prompt is stored once


@pytest.mark.parametrize("family, impl", [("llama", "ref"), ("qwen2", "ref"), ("llama", "triton")])
def test_decode_tokens_match_stock(family, impl, monkeypatch):
    """Sampled and greedy decoding, with samples leaving the batch at EOS, give the same tokens as
    stock attention over the expanded cache."""
    monkeypatch.setenv("TRITON_INTERPRET", "1" if impl == "triton" else "0")
    model = tiny_model(family)
    steps = 6 if impl == "triton" else 10
    for settings in (dict(temperature=1.0, top_p=0.9, eos_token_ids=(3, 7, 11, 19)), dict(temperature=0.0)):
        shared = H.decode(model, prompt(), 5, steps, seed=11, **settings)
        stock = H.decode(model, prompt(), 5, steps, seed=11, shared_prefix=False, **settings)
        assert [s.tokens for s in shared] == [s.tokens for s in stock]
        assert [s.finish_reason for s in shared] == [s.finish_reason for s in stock]
        assert [s.cumulative_logprob for s in shared] == pytest.approx([s.cumulative_logprob for s in stock], abs=1e-4)
    assert model.config._attn_implementation == "sdpa"


def test_decode_samples_do_not_depend_on_n(monkeypatch):
    """Sample i's tokens depend on (seed, i), not on how many samples decode beside it."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model = tiny_model("llama")
    eight = H.decode(model, prompt(), 8, 8, seed=5, eos_token_ids=(3, 7))
    three = H.decode(model, prompt(), 3, 8, seed=5, eos_token_ids=(3, 7))
    later = H.decode(model, prompt(), 2, 8, seed=5, eos_token_ids=(3, 7), sample_offset=6)
    assert [s.tokens for s in eight[:3]] == [s.tokens for s in three]
    assert [s.tokens for s in eight[6:]] == [s.tokens for s in later]
    stopped = [s for s in eight if s.finish_reason == "stop"]
    assert all(s.tokens[-1] in (3, 7) for s in stopped)
    assert all(len(s.tokens) == 8 for s in eight if s.finish_reason == "length")


def test_prompt_forward_must_be_one_sequence():
    model = tiny_model("llama")
    H.register()
    with H.attention_implementation(model, H.ATTN_NAME), pytest.raises(ValueError, match="batch 1"):
        model(input_ids=prompt()[None].expand(2, -1), past_key_values=H.SharedPrefixCache())


@torch.no_grad()
def test_fork_shares_the_prefix(monkeypatch):
    """Two groups of samples decode from one prompt forward; the fork holds no copy of the prefix."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model = tiny_model("llama")
    H.register()
    ids, tokens = prompt()[None], torch.tensor([[5], [9], [5]])
    with H.attention_implementation(model, H.ATTN_NAME):
        cache = H.SharedPrefixCache()
        model(input_ids=ids, past_key_values=cache)
        fork = cache.fork()
        a = model(input_ids=tokens, past_key_values=cache).logits
        b = model(input_ids=tokens[:2], past_key_values=fork).logits
    assert fork.layers[0].keys.data_ptr() == cache.layers[0].keys.data_ptr()
    assert fork.get_seq_length() == cache.get_seq_length() == ids.shape[1] + 1
    assert (a[:2] - b).abs().max() <= 1e-5 and (a[0] - a[2]).abs().max() <= 1e-5
