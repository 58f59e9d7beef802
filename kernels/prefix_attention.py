"""Decode attention with a shared prefix (Hydragen, Juravsky et al. 2024, arXiv 2402.05099).

n samples of one problem decode one token each against the problem's prompt (the *prefix*, one KV
for all samples) plus their own generated tokens (the *suffix*, one KV per sample; it includes the
current token's own K/V, so the decode token sees every prefix token and every suffix token up to
and including itself). Softmax attention splits exactly over a partition of the keys: each part
returns its normalised output o and its log-sum-exp lse = log Σ_j exp(s·q·k_j), and

    o = (e^{lse1} o1 + e^{lse2} o2) / (e^{lse1} + e^{lse2}),   lse = logaddexp(lse1, lse2).

The prefix part is where the speed is: the n·group queries that share a KV head form one
[n·group, d] × [d, P] matrix product, so the prefix KV is read once per step instead of n times.

Shapes (grouped-query attention, heads = kv_heads × group, query head h reads KV head h // group):
    q            [n, heads, d]                one decode token per sample
    prefix k, v  [P, kv_heads, d]             shared by all samples
    suffix k, v  [n, S, kv_heads, d]          per sample (every live sample has S tokens: the
                                              cache drops a sample's rows when it finishes)
    o            [n, heads, d] float32,  lse [n, heads] float32 (natural log)

Any strides are accepted (the transformers cache's [n, kv_heads, S, d] tensors are passed as
permuted views, no copies). One Triton kernel serves both parts: a program takes a block of query
rows that share one KV sequence (any rows of any samples for the prefix, whose KV has sample
stride 0; the ``group`` rows of one sample for the suffix) and one chunk of that sequence
(flash-decoding split, so a long prefix fills the GPU even at small n); chunks merge by the
formula above. ``*_ref`` functions are the plain torch references. The public functions run
Triton on CUDA tensors, and on CPU tensors when TRITON_INTERPRET=1; otherwise the reference.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch reference still works
    triton = None


def use_triton(t: torch.Tensor) -> bool:
    """Triton on CUDA; on CPU only under the Triton interpreter (TRITON_INTERPRET=1)."""
    return triton is not None and (t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


# ---------------------------------------------------------------------------------------------
# torch references
# ---------------------------------------------------------------------------------------------


def _attend_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q [n, kv_heads, group, d]; k, v [n or 1, kv_heads, L, d].
    Returns o [n, kv_heads * group, d] and lse [n, kv_heads * group], float32."""
    s = torch.einsum("nhgd,nhld->nhgl", q.float(), k.float().expand(q.shape[0], -1, -1, -1)) * scale
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)  # an empty part: lse = -inf, o = 0
    o = torch.einsum("nhgl,nhld->nhgd", p, v.float().expand(q.shape[0], -1, -1, -1))
    n = q.shape[0]
    return o.reshape(n, -1, q.shape[-1]), lse.reshape(n, -1)


def _group_queries(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    n, heads, d = q.shape
    if heads % kv_heads:
        raise ValueError(f"q has {heads} heads, not a multiple of the KV's {kv_heads} heads")
    return q.reshape(n, kv_heads, heads // kv_heads, d)


def prefix_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [n, heads, d] over the shared prefix k, v [P, kv_heads, d] -> (o, lse)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kv = lambda x: x.permute(1, 0, 2)[None]  # [1, kv_heads, P, d]
    return _attend_ref(_group_queries(q, k.shape[1]), kv(k), kv(v), scale)


def suffix_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [n, heads, d] over each sample's own k, v [n, S, kv_heads, d] -> (o, lse)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    kv = lambda x: x.permute(0, 2, 1, 3)  # [n, kv_heads, S, d]
    return _attend_ref(_group_queries(q, k.shape[2]), kv(k), kv(v), scale)


def merge_attention(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge m partial attentions over disjoint key sets: o [m, ..., d], lse [m, ...] ->
    (Σ_i e^{lse_i} o_i / Σ_i e^{lse_i}, logsumexp_i lse_i), computed in float32. A part with
    lse = -inf (no keys) gets weight 0."""
    lse = lse.float()
    total = torch.logsumexp(lse, dim=0)
    w = torch.exp(lse - total).nan_to_num(0.0)
    return (w[..., None] * o.float()).sum(dim=0), total


def merge_two(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor,
              lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """o = (e^{lse1} o1 + e^{lse2} o2) / (e^{lse1} + e^{lse2}), lse = logaddexp(lse1, lse2)."""
    return merge_attention(torch.stack([o1.float(), o2.float()]), torch.stack([lse1, lse2]))


# ---------------------------------------------------------------------------------------------
# Triton kernel: a block of query rows sharing one KV sequence, over one chunk of that sequence
# ---------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _attn_chunk_kernel(
        Q, K, V, O, LSE,
        stride_qn, stride_qh, stride_qd,
        stride_kn, stride_kl, stride_kh, stride_kd,
        stride_vn, stride_vl, stride_vh, stride_vd,
        stride_os, stride_on, stride_oh,
        stride_ls, stride_ln,
        n_rows, kv_len, chunk_len, scale,
        GROUP: tl.constexpr, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_DTYPE: tl.constexpr,
    ):
        """Grid (row blocks, kv_heads, chunks). Query row r of KV head h is sample r // GROUP,
        head h * GROUP + r % GROUP. This program attends rows [pid_m * ROWS, +ROWS) to keys
        [chunk * chunk_len, +chunk_len) of the KV of sample (pid_m * ROWS) // GROUP (the sample
        stride is 0 for the shared prefix) with an online softmax, and writes o and lse."""
        pid_m, kv_head, chunk = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        row0 = pid_m * ROWS
        offs_m = tl.arange(0, BLOCK_M)
        rows = row0 + offs_m
        row_ok = (offs_m < ROWS) & (rows < n_rows)
        sample = rows // GROUP
        head = kv_head * GROUP + rows % GROUP
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d < HEAD_DIM

        q = tl.load(Q + sample[:, None] * stride_qn + head[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(DOT_DTYPE)
        kv_sample = row0 // GROUP
        lo = chunk * chunk_len
        hi = tl.minimum(lo + chunk_len, kv_len)
        K += kv_sample * stride_kn + kv_head * stride_kh
        V += kv_sample * stride_vn + kv_head * stride_vh

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start in range(lo, hi, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            n_ok = offs_n < hi
            k = tl.load(K + offs_n[:, None] * stride_kl + offs_d[None, :] * stride_kd,
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0).to(DOT_DTYPE)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            s = tl.where(n_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(s - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(V + offs_n[:, None] * stride_vl + offs_d[None, :] * stride_vd,
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0).to(DOT_DTYPE)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
            m_i = m_new

        empty = l_i == 0.0
        o = acc / tl.where(empty, 1.0, l_i)[:, None]
        lse = tl.where(empty, float("-inf"), m_i + tl.log(tl.where(empty, 1.0, l_i)))
        tl.store(O + chunk * stride_os + sample[:, None] * stride_on + head[:, None] * stride_oh + offs_d[None, :],
                 o, mask=row_ok[:, None] & d_ok[None, :])
        tl.store(LSE + chunk * stride_ls + sample * stride_ln + head, lse, mask=row_ok)


def _dot_dtype(q: torch.Tensor):
    """Operand type of the matrix products: the input's, except bfloat16 under the CPU interpreter,
    whose tl.dot mishandles it (exact upcast to float32; the GPU keeps bfloat16 tensor cores)."""
    if q.dtype == torch.bfloat16 and not q.is_cuda:
        return tl.float32
    return {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[q.dtype]


def _num_chunks(kv_len: int, programs: int, block_n: int, device: torch.device) -> int:
    """Split the KV into chunks until the grid has about four programs per SM (1 off-GPU)."""
    if device.type != "cuda" or kv_len <= block_n:
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = max(1, -(-4 * sms // programs))
    return min(want, -(-kv_len // (4 * block_n)) or 1)


def _attend_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shared: bool, scale: float,
                   num_chunks: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """k, v [n or 1 (shared), L, kv_heads, d] as strided views; see the module docstring."""
    n, heads, d = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    block_d = max(16, triton.next_power_of_2(d))
    block_n = 64 if block_d <= 64 else 32
    if shared:  # any n * group rows share the KV: big row blocks, read the prefix once per block
        block_m = 64 if n * group >= 64 else max(16, triton.next_power_of_2(n * group))
        rows = block_m
    else:  # one sample's group rows per program
        block_m, rows = max(16, triton.next_power_of_2(group)), group
    row_blocks = triton.cdiv(n * group, rows)
    if num_chunks is None:
        num_chunks = _num_chunks(kv_len, row_blocks * kv_heads, block_n, q.device)
    chunk_len = triton.cdiv(triton.cdiv(max(kv_len, 1), num_chunks), block_n) * block_n
    num_chunks = triton.cdiv(max(kv_len, 1), chunk_len)
    o = torch.empty(num_chunks, n, heads, d, device=q.device, dtype=torch.float32)
    lse = torch.empty(num_chunks, n, heads, device=q.device, dtype=torch.float32)
    stride_kn = 0 if shared else k.stride(0)
    stride_vn = 0 if shared else v.stride(0)
    _attn_chunk_kernel[(row_blocks, kv_heads, num_chunks)](
        q, k, v, o, lse,
        q.stride(0), q.stride(1), q.stride(2),
        stride_kn, k.stride(1), k.stride(2), k.stride(3),
        stride_vn, v.stride(1), v.stride(2), v.stride(3),
        o.stride(0), o.stride(1), o.stride(2),
        lse.stride(0), lse.stride(1),
        n * group, kv_len, chunk_len, scale,
        GROUP=group, ROWS=rows, HEAD_DIM=d,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, DOT_DTYPE=_dot_dtype(q),
    )
    if num_chunks == 1:
        return o[0], lse[0]
    return merge_attention(o, lse)


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_dim: int) -> None:
    if q.dim() != 3 or k.shape != v.shape or k.dim() != kv_dim + 1 or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"bad shapes: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[-2]:
        raise ValueError(f"q has {q.shape[1]} heads, not a multiple of the KV's {k.shape[-2]} heads")


def prefix_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     num_chunks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q [n, heads, d] over the shared prefix k, v [P, kv_heads, d] -> (o [n, heads, d], lse [n, heads]),
    both float32. ``num_chunks`` overrides the flash-decoding split of the prefix (Triton only)."""
    _check(q, k, v, 2)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return prefix_attention_ref(q, k, v, scale)
    return _attend_triton(q, k[None], v[None], True, scale, num_chunks)


def suffix_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     num_chunks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q [n, heads, d] over each sample's own k, v [n, S, kv_heads, d] -> (o [n, heads, d],
    lse [n, heads]), float32."""
    _check(q, k, v, 3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return suffix_attention_ref(q, k, v, scale)
    return _attend_triton(q, k, v, False, scale, num_chunks)


def shared_prefix_attention(q: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor,
                            suffix_k: torch.Tensor, suffix_v: torch.Tensor,
                            scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention of q [n, heads, d] over prefix [P, kv_heads, d] ++ suffix [n, S, kv_heads, d]:
    prefix part + suffix part, merged exactly. Returns o [n, heads, d] in q's dtype and lse float32."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o1, lse1 = prefix_attention(q, prefix_k, prefix_v, scale)
    o2, lse2 = suffix_attention(q, suffix_k, suffix_v, scale)
    o, lse = merge_two(o1, lse1, o2, lse2)
    return o.to(q.dtype), lse
