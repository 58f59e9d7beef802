"""Batch-invariant seeded sampling from logits: temperature, top-k, top-p.

Every random number is a pure function of (seed, sample_idx, step, token): the Philox4x32-10
counter-based generator (Salmon et al. 2011, the generator behind ``tl.rand`` and cuRAND) with

    key = (seed mod 2^32, seed >> 32),   counter = (token, step, sample_idx mod 2^32, sample_idx >> 32),

so a sample's tokens never depend on which other samples share its batch, their order, or how the
batch is split (given the same logits). The torch reference implements Philox4x32-10 with int64
tensors (32x32-bit products split into 16-bit limbs so nothing overflows) and reproduces Triton's
``tl.philox`` bit for bit. A word x becomes u = (⌊x / 2^8⌋ + 1/2) / 2^24, exactly representable in
float32 and strictly inside (0, 1).

Sampling is Gumbel-max on the filtered distribution: with z = logits / T,

    token = argmax_{v : z_v ≥ cutoff} z_v − log(−log u_v),

which draws v with probability softmax(z) renormalised over the kept tokens. The per-row cutoff is
the smallest kept z: top-k keeps the k largest, then top-p keeps the shortest prefix of the
remaining tokens (renormalised, in decreasing order) whose mass reaches p; tokens tied with the
cutoff are kept. The cutoff needs a sort, done in torch per row (so batch-invariant) and shared by
both paths; the Triton kernel fuses the scaling, the cutoff, Philox and the running argmax in one
pass over the vocabulary without materialising a [batch, vocab] noise tensor. T = 0 is argmax
(first index on ties) and ignores the filters.

Triton and the reference give the same tokens: bit-identical scores under the interpreter; on a
GPU ``log`` may differ from torch's in the last ulp, which can only flip a token whose two best
scores agree to an ulp.
"""

from __future__ import annotations

import torch

from .prefix_attention import triton, use_triton

if triton is not None:
    import triton.language as tl

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_TWO_M24 = 2.0**-24


def _mulhilo(a: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of a·b for a in [0, 2^32) (int64 tensor) and a 32-bit constant b,
    via b = bh·2^16 + bl so every partial product stays below 2^48."""
    t, u = a * (b & 0xFFFF), a * (b >> 16)
    return (u + (t >> 16)) >> 16, (((u & 0xFFFF) << 16) + t) & _M32


def philox4x32(c0, c1, c2, c3, k0, k1, rounds: int = 10) -> tuple[torch.Tensor, ...]:
    """Philox4x32-``rounds`` on int64 tensors holding uint32 values (broadcast together).
    Round: (c0, c1, c2, c3) <- (hi(B·c2) ^ c1 ^ k0, lo(B·c2), hi(A·c0) ^ c3 ^ k1, lo(A·c0)),
    then the key (k0, k1) advances by the Weyl constants."""
    for _ in range(rounds):
        hi_b, lo_b = _mulhilo(c2, _ROUND_B)
        hi_a, lo_a = _mulhilo(c0, _ROUND_A)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _M32, (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


def uniforms(seed: torch.Tensor, sample_idx: torch.Tensor, step: torch.Tensor, vocab: int) -> torch.Tensor:
    """u [B, vocab] float32 in (0, 1) for keys seed, sample_idx, step: int64 [B] (non-negative)."""
    col = lambda x: x.long()[:, None]
    seed, sample_idx, step = col(seed), col(sample_idx), col(step)
    token = torch.arange(vocab, device=seed.device, dtype=torch.int64)[None, :]
    x, _, _, _ = philox4x32(token, step & _M32, sample_idx & _M32, sample_idx >> 32, seed & _M32, seed >> 32)
    return ((x >> 8).float() + 0.5) * _TWO_M24


def cutoffs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Per-row smallest kept scaled logit z = logits / T (float32 [B]); -inf when nothing is filtered."""
    z = _scaled(logits, temperature)
    if top_k <= 0 and top_p >= 1.0:
        return torch.full(z.shape[:1], float("-inf"), device=z.device)
    vals = z.sort(dim=-1, descending=True).values
    keep = torch.ones_like(vals, dtype=torch.bool)
    if 0 < top_k < vals.shape[-1]:
        keep[:, top_k:] = False
    if top_p < 1.0:
        probs = torch.softmax(vals.masked_fill(~keep, float("-inf")), dim=-1)
        keep &= (torch.cumsum(probs, dim=-1) - probs) < top_p  # mass strictly before this token
    return vals.masked_fill(~keep, float("inf")).min(dim=-1).values


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """z = logits · fl32(1/T): one correctly rounded float32 multiply, the same in both paths."""
    return logits.float() * torch.tensor(1.0 / temperature, dtype=torch.float32, device=logits.device)


def _keys(logits: torch.Tensor, seed, sample_idx, step) -> tuple[torch.Tensor, ...]:
    b = logits.shape[0]
    as_col = lambda x: torch.as_tensor(x, dtype=torch.int64, device=logits.device).expand(b).contiguous()
    return as_col(seed), as_col(sample_idx), as_col(step)


def sample_ref(logits: torch.Tensor, seed, sample_idx, step, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Torch reference of ``sample``: token ids int64 [B]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    seed, sample_idx, step = _keys(logits, seed, sample_idx, step)
    z = _scaled(logits, temperature)
    cut = cutoffs(logits, temperature, top_k, top_p)
    gumbel = -torch.log(-torch.log(uniforms(seed, sample_idx, step, logits.shape[-1])))
    return (z + gumbel).masked_fill(z < cut[:, None], float("-inf")).argmax(dim=-1)


if triton is not None:

    @triton.jit
    def _sample_kernel(LOGITS, stride_b, CUT, SEED, IDX, STEP, OUT, vocab, inv_t,
                       GREEDY: tl.constexpr, BLOCK_V: tl.constexpr):
        """One program per row: running argmax over vocabulary blocks of z + Gumbel(Philox)."""
        row = tl.program_id(0)
        seed = tl.load(SEED + row)
        idx = tl.load(IDX + row)
        zero = tl.zeros([BLOCK_V], tl.uint32)
        c1 = zero + tl.load(STEP + row).to(tl.uint32)
        c2 = zero + (idx & 0xFFFFFFFF).to(tl.uint32)
        c3 = zero + (idx >> 32).to(tl.uint32)
        cut = tl.load(CUT + row)
        best = tl.full([], float("-inf"), tl.float32)
        best_idx = tl.full([], 0, tl.int32)
        for start in range(0, vocab, BLOCK_V):
            offs = start + tl.arange(0, BLOCK_V)
            ok = offs < vocab
            x = tl.load(LOGITS + row * stride_b + offs, mask=ok, other=float("-inf")).to(tl.float32)
            if GREEDY:
                score = x
            else:
                z = x * inv_t
                bits, _, _, _ = tl.philox(seed, offs.to(tl.uint32), c1, c2, c3)
                u = ((bits >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # 2^-24
                score = tl.where(ok & (z >= cut), z - tl.log(-tl.log(u)), float("-inf"))
            block_best = tl.max(score, axis=0)
            block_idx = start + tl.argmax(score, axis=0)
            best_idx = tl.where(block_best > best, block_idx, best_idx)
            best = tl.maximum(best, block_best)
        tl.store(OUT + row, best_idx.to(tl.int64))


def sample(logits: torch.Tensor, seed, sample_idx, step, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Token ids int64 [B] from logits [B, vocab]; seed, sample_idx, step: int or int64 [B].
    Triton on CUDA (or under TRITON_INTERPRET=1), else ``sample_ref``; both give the same tokens."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, vocab], got shape {tuple(logits.shape)}")
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
    if not use_triton(logits):
        return sample_ref(logits, seed, sample_idx, step, temperature, top_k, top_p)
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    seed, sample_idx, step = _keys(logits, seed, sample_idx, step)
    greedy = temperature == 0
    cut = torch.zeros(logits.shape[0], device=logits.device) if greedy else cutoffs(logits, temperature, top_k, top_p)
    inv_t = 1.0 if greedy else torch.tensor(1.0 / temperature, dtype=torch.float32).item()
    out = torch.empty(logits.shape[0], dtype=torch.int64, device=logits.device)
    block_v = min(4096, triton.next_power_of_2(logits.shape[-1]))
    _sample_kernel[(logits.shape[0],)](logits, logits.stride(0), cut, seed, sample_idx, step, out,
                                       logits.shape[-1], inv_t, GREEDY=greedy, BLOCK_V=block_v)
    return out
