"""Seeded sampling: Philox known-answer vectors, token frequencies vs the (filtered) softmax,
batch invariance, and identical tokens from the Triton kernel (interpreted) and the reference."""

from __future__ import annotations

import os


import numpy as np
import pytest
import torch
from scipy import stats

from harness.kernels import sampling as S

SETTINGS = [
    dict(temperature=1.0),
    dict(temperature=0.6),
    dict(temperature=1.5, top_k=4),
    dict(temperature=1.0, top_p=0.7),
    dict(temperature=0.8, top_k=6, top_p=0.9),
]



def test_philox_known_answers():
    """Philox4x32-10 known-answer vectors of Random123 (Salmon et al. 2011)."""
    m = 0xFFFFFFFF
    cases = [
        ((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((m, m, m, m, m, m), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for inputs, want in cases:
        got = S.philox4x32(*(torch.tensor([x]) for x in inputs))
        assert tuple(int(x) for x in got) == want


def test_uniforms_are_uniform_and_keyed():
    seeds = torch.full((64,), 99)
    u = S.uniforms(seeds, torch.arange(64), torch.zeros(64), 500)
    assert u.dtype == torch.float32 and (u > 0).all() and (u < 1).all()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3
    other_step = S.uniforms(seeds, torch.arange(64), torch.ones(64), 500)
    other_seed = S.uniforms(seeds + 1, torch.arange(64), torch.zeros(64), 500)
    assert (u != other_step).float().mean() > 0.99 and (u != other_seed).float().mean() > 0.99


def filtered_softmax(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """The target distribution, straight from the definition: softmax(logits / T) restricted to the
    top-k tokens, renormalised, then to the shortest most-likely prefix with mass >= top_p."""
    p = np.exp(logits / temperature - (logits / temperature).max())
    p /= p.sum()
    order = np.argsort(-p)
    keep = np.zeros_like(p, dtype=bool)
    keep[order[: top_k or len(p)]] = True
    q = np.where(keep, p, 0.0) / p[keep].sum()
    mass_before = np.cumsum(q[order]) - q[order]
    keep[order[mass_before >= top_p]] = False
    q = np.where(keep, p, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_frequencies_match_filtered_softmax(settings, monkeypatch):
    """Chi-square goodness of fit of 20,000 draws (distinct sample_idx) to the target distribution;
    filtered-out tokens never appear. The Triton path gives the same tokens (tested below)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    logits = torch.tensor(np.random.default_rng(0).normal(0, 1.5, 12), dtype=torch.float32)
    draws = 20_000
    tokens = S.sample(logits.expand(draws, -1), 1234, torch.arange(draws), 3, **settings)
    counts = np.bincount(tokens.numpy(), minlength=12)
    target = filtered_softmax(logits.double().numpy(), **settings)
    assert counts[target == 0].sum() == 0
    kept = target > 0
    assert stats.chisquare(counts[kept], draws * target[kept]).pvalue > 1e-3


def test_frequencies_over_steps_of_one_sample(monkeypatch):
    """One sample's successive steps are independent draws too."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    logits = torch.tensor([0.0, 1.0, -0.5, 2.0, 0.3])
    steps = 20_000
    tokens = S.sample(logits.expand(steps, -1), 5, 17, torch.arange(steps))
    counts = np.bincount(tokens.numpy(), minlength=5)
    assert stats.chisquare(counts, steps * torch.softmax(logits.double(), 0).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("settings", SETTINGS + [dict(temperature=0.0)], ids=str)
def test_triton_matches_reference(settings, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(12, 5000, generator=g) * 2  # 5000 > one 4096-token block
    idx = torch.arange(12) + 2**33  # sample_idx above 32 bits uses both counter words
    steps = torch.arange(12) * 7
    assert torch.equal(S.sample(logits, 2**40 + 3, idx, steps, **settings),
                       S.sample_ref(logits, 2**40 + 3, idx, steps, **settings))


def test_batch_invariance(impl):
    """A row's token depends only on its logits and its (seed, sample_idx, step): the same rows in
    batches of other sizes and orders get the same tokens."""
    g = torch.Generator().manual_seed(8)
    b = 16
    logits = torch.randn(b, 700, generator=g)
    seeds = torch.randint(0, 2**40, (b,), generator=g)
    idx = torch.randint(0, 1000, (b,), generator=g)
    steps = torch.randint(0, 300, (b,), generator=g)
    settings = dict(temperature=0.9, top_k=50, top_p=0.95)
    full = S.sample(logits, seeds, idx, steps, **settings)
    for rows in (torch.randperm(b, generator=g)[:5], torch.arange(b).flip(0), torch.tensor([3])):
        assert torch.equal(S.sample(logits[rows], seeds[rows], idx[rows], steps[rows], **settings), full[rows])


def test_temperature_zero_is_argmax(impl):
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(2))
    logits[2, 10] = logits[2, 20] = logits[2].max() + 1  # a tie: the first index wins
    tokens = S.sample(logits, 0, torch.arange(6), 0, temperature=0.0, top_k=3)
    assert torch.equal(tokens, logits.argmax(dim=-1)) and tokens[2] == 10


def test_top_k_one_is_argmax(impl):
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(3))
    assert torch.equal(S.sample(logits, 1, torch.arange(6), 4, temperature=2.0, top_k=1), logits.argmax(-1))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="top_p"):
        S.sample(torch.zeros(2, 5), 0, 0, 0, top_p=0.0)
    with pytest.raises(ValueError, match="batch, vocab"):
        S.sample(torch.zeros(5), 0, 0, 0)
