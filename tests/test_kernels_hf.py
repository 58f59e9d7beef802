"""The transformers integration: small randomly initialised Llama / Qwen2 / Mistral models decode
with the prompt's KV stored once ("t2_prefix" attention) and match stock attention over a
DynamicCache that holds the prompt n times; the hf backend's decode loop over it."""

from __future__ import annotations

import json

import pytest
import torch
from harness.kernels import hf_attention as H
from helpers import attributes, tiny_causal_lm
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, MistralConfig, Qwen2Config

from harness.samplers import SamplingSettings
from harness.samplers.hf import HFBackend

SIZES = dict(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
CONFIGS = {
    "llama": lambda: LlamaConfig(**SIZES, num_key_value_heads=2),
    "qwen2": lambda: Qwen2Config(**SIZES, num_key_value_heads=1),
    "mistral": lambda: MistralConfig(**SIZES, num_key_value_heads=4, sliding_window=64),
}


def tiny_model(family: str, attn: str = "sdpa"):
    with torch.random.fork_rng(devices=[]):
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


@pytest.fixture(scope="module")
def backends(tmp_path_factory, gsm8k_file) -> dict[str, HFBackend]:
    """The hf backend on tiny Llama and Qwen2 models (vocab 384, a BPE tokenizer of GSM8K questions)."""
    texts = [json.loads(line)["question"] for line in gsm8k_file.read_text().splitlines()[:200]]
    out = {}
    for family in ("llama", "qwen2"):
        config = CONFIGS[family]()
        config.vocab_size = 384
        folder = tiny_causal_lm(tmp_path_factory.mktemp(family), config, texts)
        out[family] = HFBackend(str(folder), device="cpu")
    return out


PROMPT = "Q: Natalia sold clips to 48 of her friends in April. How many clips did she sell?\nA:"


@pytest.mark.parametrize("family, impl", [("llama", "ref"), ("qwen2", "ref"), ("llama", "triton")])
def test_backend_prefix_decode_matches_stock(backends, family, impl, monkeypatch):
    """Sampled and greedy decoding through the hf backend, with samples leaving the batch at stop
    strings, give the same tokens with the prompt KV stored once as with stock attention over the
    expanded cache."""
    monkeypatch.setenv("TRITON_INTERPRET", "1" if impl == "triton" else "0")
    backend = backends[family]
    steps = 6 if impl == "triton" else 10
    for settings in (SamplingSettings(n=5, max_tokens=steps, seed=11, top_p=0.9, stop=("e", "a", "o")),
                     SamplingSettings(n=5, max_tokens=steps, temperature=0.0)):
        stock = backend.sample([PROMPT], settings)[0]
        if settings.temperature:  # samples leave the batch at different steps
            assert len({c.completion_tokens for c in stock}) > 1 and "stop" in {c.finish_reason for c in stock}
        with attributes(backend, attention="prefix"):
            shared = backend.sample([PROMPT], settings)[0]
        assert [(c.text, c.completion_tokens, c.finish_reason) for c in shared] == \
            [(c.text, c.completion_tokens, c.finish_reason) for c in stock]
        assert [c.cumulative_logprob for c in shared] == pytest.approx([c.cumulative_logprob for c in stock], abs=1e-4)
    assert backend.model.config._attn_implementation == "sdpa"


def test_backend_samples_do_not_depend_on_n(backends):
    """Sample i's tokens depend on its seed (base + i), not on how many samples decode beside it."""
    backend = backends["llama"]
    with attributes(backend, attention="prefix"):
        eight, three, later = (backend.sample([PROMPT], SamplingSettings(n=n, max_tokens=8, seed=seed, stop=("e", "a")))[0]
                               for n, seed in ((8, 5), (3, 5), (2, 11)))
    assert [c.text for c in eight[:3]] == [c.text for c in three]
    assert [c.text for c in eight[6:]] == [c.text for c in later]
    assert {c.finish_reason for c in eight} == {"stop", "length"}  # samples left the batch early
    assert len({c.text for c in eight}) > 1


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
