"""Seeded sampling (the hf backend's sampler): Philox known-answer vectors, uniforms keyed by
(seed, step) alone, token frequencies vs the (filtered) softmax, batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness.kernels import sampling as S
from scipy import stats

SETTINGS = [
    dict(temperature=1.0),
    dict(temperature=0.6),
    dict(temperature=1.5, top_k=4),
    dict(temperature=1.0, top_p=0.7),
    dict(temperature=0.8, top_k=6, top_p=0.9),
]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


@pytest.mark.parametrize("device", DEVICES)
def test_uniforms_are_uniform_and_keyed_by_seed_and_step_only(device):
    seeds = [0, 1, 2**32, 2**63 + 5, 2**64 - 1] + list(range(100, 195))
    u = S.uniforms(seeds, 300, device).cpu()
    assert u.shape == (100, 300) and u.dtype == torch.float32 and (u > 0).all() and (u < 1).all()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3
    # row b is a function of seeds[b] alone, column t of t alone: any subset, order or length agrees
    rows = [7, 3, 99, 3]
    assert torch.equal(S.uniforms([seeds[r] for r in rows], 40, device).cpu(), u[rows, :40])
    assert (u[:, 1:] != u[:, :-1]).float().mean() > 0.99 and (u[1:] != u[:-1]).float().mean() > 0.99
    # the key uses both 32-bit words of the seed: seeds equal mod 2^32 differ
    assert (S.uniforms([5], 50) != S.uniforms([5 + 2**40], 50)).all()
    # the first word of Philox(counter = (t, 0, 0, 0), key = (s mod 2^32, s >> 32)), as documented
    x = S.philox4x32(*(torch.tensor([v]) for v in (3, 0, 0, 0, seeds[3] & 0xFFFFFFFF, seeds[3] >> 32)))[0]
    assert u[3, 3].item() == ((int(x) >> 9) + 0.5) / 2**23
    with pytest.raises(ValueError, match="seeds"):
        S.uniforms([-1], 4)


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
def test_frequencies_match_filtered_softmax(settings):
    """Chi-square goodness of fit of 20,000 draws (distinct seeds, one step) to the target
    distribution; filtered-out tokens never appear."""
    logits = torch.tensor(np.random.default_rng(0).normal(0, 1.5, 12), dtype=torch.float32)
    draws = 20_000
    u = S.uniforms(range(1234, 1234 + draws), 4)[:, 3]
    tokens = S.sample(logits.expand(draws, -1), u, **settings)
    counts = np.bincount(tokens.numpy(), minlength=12)
    target = filtered_softmax(logits.double().numpy(), **settings)
    assert counts[target == 0].sum() == 0
    kept = target > 0
    assert stats.chisquare(counts[kept], draws * target[kept]).pvalue > 1e-3


def test_frequencies_over_steps_of_one_sample():
    """One sample's successive steps are independent draws too."""
    logits = torch.tensor([0.0, 1.0, -0.5, 2.0, 0.3])
    steps = 20_000
    tokens = S.sample(logits.expand(steps, -1), S.uniforms([17], steps)[0])
    counts = np.bincount(tokens.numpy(), minlength=5)
    assert stats.chisquare(counts, steps * torch.softmax(logits.double(), 0).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_batch_invariance(device):
    """A row's token depends only on its logits and its uniform: the same rows in batches of other
    sizes and orders get the same tokens."""
    g = torch.Generator().manual_seed(8)
    b = 16
    logits = (torch.randn(b, 700, generator=g) * 3).to(device)
    u = S.uniforms(torch.randint(0, 2**40, (b,), generator=g).tolist(), 300, device)[:, 299]
    settings = dict(temperature=0.9, top_k=50, top_p=0.95)
    full = S.sample(logits, u, **settings)
    for rows in (torch.randperm(b, generator=g)[:5], torch.arange(b).flip(0), torch.tensor([3])):
        rows = rows.to(device)
        assert torch.equal(S.sample(logits[rows], u[rows], **settings), full[rows])
    assert len(set(full.tolist())) > 1


def test_temperature_zero_is_argmax():
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(2))
    logits[2, 10] = logits[2, 20] = logits[2].max() + 1  # a tie: the first index wins
    tokens = S.sample(logits, None, temperature=0.0, top_k=3)
    assert torch.equal(tokens, logits.argmax(dim=-1)) and tokens[2] == 10


def test_top_k_one_is_argmax():
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(3))
    u = S.uniforms(range(6), 1)[:, 0]
    assert torch.equal(S.sample(logits, u, temperature=2.0, top_k=1), logits.argmax(-1))


def test_bad_arguments_raise():
    u = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match="top_p"):
        S.sample(torch.zeros(2, 5), u, top_p=0.0)
    with pytest.raises(ValueError, match="batch, vocab"):
        S.sample(torch.zeros(5), u)
    with pytest.raises(ValueError, match="one uniform per row"):
        S.sample(torch.zeros(3, 5), u)
