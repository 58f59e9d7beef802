"""Shared-prefix decode attention: Triton (interpreted on CPU) and torch reference vs SDPA over the
expanded KV cache (prefix repeated n times ++ suffix), and the exactness of the log-sum-exp merge."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from harness.kernels import prefix_attention as pa

# (n, heads, kv_heads, d, prefix_len, suffix_len): GQA groups 1/2/4, prefix lengths off the
# 32/64 block sizes, suffix length 1 (first decode step) and > 1, head dims not a power of two.
SHAPES = [
    (3, 4, 4, 16, 37, 1),
    (5, 8, 4, 32, 100, 3),
    (4, 8, 2, 64, 130, 1),
    (2, 8, 2, 24, 70, 5),
    (9, 8, 2, 16, 1, 2),
    (20, 4, 1, 32, 65, 4),
]



def random_inputs(n, heads, kv_heads, d, prefix_len, suffix_len, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g).to(dtype)
    return (r(n, heads, d), r(prefix_len, kv_heads, d), r(prefix_len, kv_heads, d),
            r(n, suffix_len, kv_heads, d), r(n, suffix_len, kv_heads, d))


def sdpa_expanded(q, pk, pv, sk, sv, scale=None):
    """What stock decoding computes: every sample holds its own copy of the prefix."""
    n = q.shape[0]
    expand = lambda p, s: torch.cat([p[None].expand(n, -1, -1, -1), s], dim=1).permute(0, 2, 1, 3).double()
    o = F.scaled_dot_product_attention(q[:, :, None].double(), expand(pk, sk), expand(pv, sv),
                                       scale=scale, enable_gqa=True)
    return o[:, :, 0]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_sdpa_over_expanded_cache_fp32(impl, shape):
    inputs = random_inputs(*shape, seed=hash(shape) % 1000)
    o, lse = pa.shared_prefix_attention(*inputs)
    assert o.dtype == torch.float32 and o.shape == inputs[0].shape and lse.shape == o.shape[:2]
    assert rel_err(o, sdpa_expanded(*inputs)) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES[1:4])
def test_matches_sdpa_low_precision(impl, shape, dtype):
    inputs = random_inputs(*shape, dtype=dtype, seed=7)
    o, _ = pa.shared_prefix_attention(*inputs)
    assert o.dtype == dtype
    assert rel_err(o, sdpa_expanded(*inputs)) <= 1e-2


def test_custom_scale(impl):
    inputs = random_inputs(4, 8, 2, 32, 50, 2, seed=3)
    o, _ = pa.shared_prefix_attention(*inputs, scale=0.05)
    assert rel_err(o, sdpa_expanded(*inputs, scale=0.05)) <= 1e-5


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_triton_matches_reference_parts(shape, monkeypatch):
    """Each part (o and lse) separately, including the flash-decoding split of the prefix."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    q, pk, pv, sk, sv = random_inputs(*shape, seed=11)
    for chunks in (1, 3):
        o, lse = pa.prefix_attention(q, pk, pv, num_chunks=chunks)
        o_ref, lse_ref = pa.prefix_attention_ref(q, pk, pv)
        assert rel_err(o, o_ref) <= 1e-5 and (lse - lse_ref).abs().max() <= 1e-5
    o, lse = pa.suffix_attention(q, sk, sv)
    o_ref, lse_ref = pa.suffix_attention_ref(q, sk, sv)
    assert rel_err(o, o_ref) <= 1e-5 and (lse - lse_ref).abs().max() <= 1e-5


def test_lse_is_logsumexp_of_scores(impl):
    q, pk, pv, sk, sv = random_inputs(3, 4, 2, 16, 40, 3, seed=5)
    _, lse = pa.shared_prefix_attention(q, pk, pv, sk, sv)
    keys = torch.cat([pk[None].expand(3, -1, -1, -1), sk], dim=1).repeat_interleave(2, dim=2)  # [n, L, heads, d]
    scores = torch.einsum("nhd,nlhd->nhl", q.double(), keys.double()) / 4.0
    assert torch.allclose(lse.double(), torch.logsumexp(scores, dim=-1), atol=1e-5)


def test_merge_is_exact_over_any_split():
    """Attention over keys split into m disjoint parts, merged, equals attention over all keys."""
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(6, 4, 16, generator=g), torch.randn(90, 4, 16, generator=g), torch.randn(90, 4, 16, generator=g)
    full_o, full_lse = pa.prefix_attention_ref(q, k, v)
    cuts = [0, 13, 14, 50, 90]
    parts = [pa.prefix_attention_ref(q, k[a:b], v[a:b]) for a, b in zip(cuts, cuts[1:])]
    o, lse = pa.merge_attention(torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]))
    assert rel_err(o, full_o) <= 1e-6 and torch.allclose(lse, full_lse, atol=1e-6)
    o2, lse2 = pa.merge_two(*pa.merge_two(*parts[0], *parts[1]), *pa.merge_two(*parts[2], *parts[3]))
    assert rel_err(o2, full_o) <= 1e-6 and torch.allclose(lse2, full_lse, atol=1e-6)


def test_merge_with_empty_part_is_identity():
    o = torch.randn(3, 2, 8)
    lse = torch.randn(3, 2)
    m_o, m_lse = pa.merge_two(o, lse, torch.zeros_like(o), torch.full_like(lse, float("-inf")))
    assert torch.equal(m_lse, lse) and torch.allclose(m_o, o, atol=1e-7)


def test_strided_views_are_accepted(impl):
    """The transformers cache hands over [n, kv_heads, S, d] tensors as permuted views."""
    q, pk, pv, sk, sv = random_inputs(4, 8, 2, 32, 33, 3, seed=2)
    hf_k, hf_v = sk.permute(0, 2, 1, 3).contiguous(), sv.permute(0, 2, 1, 3).contiguous()
    o, _ = pa.shared_prefix_attention(q, pk, pv, hf_k.transpose(1, 2), hf_v.transpose(1, 2))
    assert rel_err(o, sdpa_expanded(q, pk, pv, sk, sv)) <= 1e-5


def test_bad_head_counts_raise():
    q, pk, pv, sk, sv = random_inputs(2, 6, 4, 16, 10, 1)
    with pytest.raises(ValueError, match="not a multiple"):
        pa.shared_prefix_attention(q, pk, pv, sk, sv)
