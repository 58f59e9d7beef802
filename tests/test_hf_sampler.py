"""The transformers backend on the real SmolLM2-135M-Instruct: well-formed, reproducible,
batch-invariant samples; greedy = model.generate; sampling frequencies agree with gold NLL."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harness.samplers import SamplingSettings, get_backend
from harness.samplers.hf import HFBackend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend() -> HFBackend:
    torch.set_num_threads(1)  # 2 shared cores: one thread per process avoids oversubscription
    return get_backend("hf", "smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def prompts(gsm8k_file) -> list[str]:
    lines = gsm8k_file.read_text().splitlines()[:2]
    return [f"Question: {json.loads(line)['question']}\nAnswer:" for line in lines]


def test_samples_are_well_formed(backend, prompts):
    s = SamplingSettings(n=4, max_tokens=12, seed=7, stop=("Question:", "\n\n"))
    out = backend.sample(prompts, s)
    assert len(out) == len(prompts)
    for prompt, completions in zip(prompts, out):
        n_prompt = len(backend.tokenizer(prompt).input_ids)
        assert [c.sample_idx for c in completions] == [0, 1, 2, 3]
        assert [c.seed for c in completions] == [7, 8, 9, 10]
        for c in completions:
            assert c.prompt_tokens == n_prompt
            assert c.cached_prompt_tokens == (0 if c.sample_idx == 0 else n_prompt)
            assert 1 <= c.completion_tokens <= 12
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert c.completion_tokens == 12
                # no stop was hit: the text is exactly the decoded tokens, which re-encode to <= 12
                assert len(backend.tokenizer(c.text, add_special_tokens=False).input_ids) <= 12
            assert not any(stop in c.text for stop in s.stop)
            assert c.cumulative_logprob < 0


def test_same_seed_same_text_and_batch_invariance(backend, prompts):
    s8 = SamplingSettings(n=8, max_tokens=16, seed=3)
    a = backend.sample(prompts[:1], s8)[0]
    backend.max_batch = 3  # groups of 3: different batch compositions and a shared prefill
    try:
        b = backend.sample(prompts[:1], SamplingSettings(n=4, max_tokens=16, seed=3))[0]
    finally:
        backend.max_batch = 64
    assert [c.text for c in b] == [c.text for c in a[:4]]
    assert [c.completion_tokens for c in b] == [c.completion_tokens for c in a[:4]]
    assert len({c.text for c in a}) > 1  # it does sample
    assert [c.text for c in backend.sample(prompts[:1], s8)[0]] == [c.text for c in a]
    other = backend.sample(prompts[:1], SamplingSettings(n=8, max_tokens=16, seed=4))[0]
    assert [c.text for c in other[:7]] == [c.text for c in a[1:]]  # sample i uses seed base+i


def test_temperature_zero_is_model_generate_greedy(backend, prompts):
    out = backend.sample(prompts, SamplingSettings(n=2, temperature=0.0, max_tokens=20))
    for prompt, completions in zip(prompts, out):
        ids = backend.tokenizer(prompt, return_tensors="pt").input_ids
        ref = backend.model.generate(ids, do_sample=False, max_new_tokens=20)[0, ids.shape[1]:]
        text = backend.tokenizer.decode(ref, skip_special_tokens=True)
        assert completions[0].text == completions[1].text == text
        assert completions[0].completion_tokens == len(ref)


def test_top_k_one_is_greedy(backend, prompts):
    greedy = backend.sample(prompts[:1], SamplingSettings(n=1, temperature=0.0, max_tokens=10))[0][0]
    top1 = backend.sample(prompts[:1], SamplingSettings(n=3, temperature=1.0, top_k=1, max_tokens=10))[0]
    assert {c.text for c in top1} == {greedy.text}
    assert top1[0].cumulative_logprob == pytest.approx(greedy.cumulative_logprob, abs=1e-4)


def test_gold_nll_matches_full_forward(backend, prompts):
    answer = " She sells 16 - 3 - 4 = 9 eggs."
    (nll, n_tokens), = backend.gold_nll(prompts[:1], [answer])
    ids = backend.tokenizer(prompts[0] + answer, return_tensors="pt").input_ids
    n_prompt = len(backend.tokenizer(prompts[0]).input_ids)
    with torch.inference_mode():
        logits = backend.model(ids).logits[0, n_prompt - 1:-1]
    ref = torch.nn.functional.cross_entropy(logits, ids[0, n_prompt:], reduction="sum").item()
    assert n_tokens == ids.shape[1] - n_prompt > 5
    assert nll == pytest.approx(ref, rel=1e-4)
    with pytest.raises(ValueError, match="adds no tokens"):
        backend.gold_nll(prompts[:1], [""])


@pytest.mark.parametrize("answer", [" Heads", " Heads."])
def test_sampling_frequency_matches_likelihood(backend, answer):
    """P(sample == gold) at temperature 1 with no filters is exp(-NLL): binomial 4-sigma bound."""
    prompt = "Question: Flip a coin. Heads or tails?\nAnswer:"
    (nll, n_tokens), = backend.gold_nll([prompt], [answer])
    p = math.exp(-nll)
    assert 0.02 < p < 0.98, "the test needs an uncertain answer"
    n = 320
    samples = backend.sample([prompt], SamplingSettings(n=n, max_tokens=n_tokens, seed=11))[0]
    hits = sum(c.text == answer for c in samples)
    assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n), (hits, n, p)
    # the recorded log-probability of a reproduced answer is its gold log-likelihood
    hit = next(c for c in samples if c.text == answer)
    assert hit.cumulative_logprob == pytest.approx(-nll, abs=1e-3)
