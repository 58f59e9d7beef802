"""Batch-invariant seeded sampling from logits: temperature, top-k, top-p, by inverse CDF.

A sample with seed s draws one uniform per decode step t from the Philox4x32-10 counter-based
generator (Salmon et al. 2011, the generator behind cuRAND and ``tl.rand``):

    key = (s mod 2^32, ⌊s / 2^32⌋ mod 2^32),   counter = (t, 0, 0, 0),   u = (⌊x0 / 2^9⌋ + 1/2) / 2^23,

x0 the first output word; u has 24 significant bits, so it is exact in float32 and lies in
[2^-24, 1 − 2^-24]. The torch implementation works on int64 tensors (32x32-bit products split
into 16-bit limbs so nothing overflows), so the uniforms are bit-identical on every device and
need no generator state.

The token is the first (in vocabulary order) whose cumulative filtered probability reaches u: with
z = logits · fl32(1/T), the kept tokens are those with z ≥ the row's cutoff, and token v is drawn
with probability softmax(z) renormalised over them. The cutoff is the smallest kept z: top-k keeps
the k largest, then top-p keeps the shortest prefix of the remaining tokens (renormalised, in
decreasing order) whose mass reaches p; tokens tied with the cutoff are kept; min-p then drops
the tokens with z < max z + log(min_p) (probability below min_p times the most likely token's;
renormalising does not change that ratio, so this is transformers' order: top-k, top-p, min-p).
T = 0 is argmax (first index on ties) and ignores the filters.

Penalties (:class:`Penalties`) rewrite the raw logits before all of that, as vLLM and transformers
do: CTRL's repetition penalty r on every token seen in the prompt or the completion (logit / r if
positive, logit · r otherwise), then OpenAI's presence α and frequency β penalties on the
completion's tokens (logit − α·[count > 0] − β·count).

Every step of a row is a function of that row's logits, seed and step only: a sample's tokens do
not depend on the other rows of its batch, their order or how the batch is split, given the same
logits. Batched matmuls do change logits in the last bits (~3e-5 on SmolLM2-135M in float32
between batch shapes), which flips a token when u falls within the CDF's resulting drift of an
interval edge: in practice only in the vocabulary's tail at T = 1 untruncated, where intervals are
~1e-6 wide (measured: 3 of 96 16-token completions differ between a padded batch and one problem
per batch; 0 of 96 with top-p 0.95).

Why inverse CDF and not Gumbel-max (argmax of z + Gumbel noise, which flips only on near-ties of
the two best scores): Gumbel-max needs one random number per vocabulary entry per step; measured
on one CPU core at SmolLM2's 49,152 tokens and 64 rows, Gumbel-max on Philox noise took 1.2-1.5 s
per step, 17-34x the inverse-CDF draw with its uniforms in two runs on a shared machine, and more
than the model's forward
(tests/bench/bench_sampling.py, results/bench/sampling.md). Inverse CDF needs one number per row
per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_TWO_M23 = 2.0**-23


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


def uniforms(seeds: Sequence[int], steps: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """u [len(seeds), steps] float32 in (0, 1): row b, column t is the uniform of seed ``seeds[b]``
    (any non-negative int < 2^64) at step t."""
    if any(s < 0 or s >> 64 for s in seeds):
        raise ValueError(f"seeds: expected integers in [0, 2^64), got {min(seeds)}..{max(seeds)}")
    key = torch.tensor([[s & _M32, (s >> 32) & _M32] for s in seeds], dtype=torch.int64, device=device)
    key = key.reshape(-1, 2)
    step = torch.arange(steps, dtype=torch.int64, device=device)[None, :]
    zero = torch.zeros_like(step)
    x, _, _, _ = philox4x32(step, zero, zero, zero, key[:, :1], key[:, 1:])
    return ((x >> 9).float() + 0.5) * _TWO_M23


def cutoffs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
            min_p: float = 0.0) -> torch.Tensor:
    """Per-row smallest kept scaled logit z = logits / T (float32 [B]); -inf when nothing is filtered."""
    z = _scaled(logits, temperature)
    floor = torch.full(z.shape[:1], float("-inf"), device=z.device)
    if min_p > 0:
        floor = z.max(dim=-1).values + math.log(min_p)
    if top_k <= 0 and top_p >= 1.0:
        return floor
    vals = z.sort(dim=-1, descending=True).values
    keep = torch.ones_like(vals, dtype=torch.bool)
    if 0 < top_k < vals.shape[-1]:
        keep[:, top_k:] = False
    if top_p < 1.0:
        probs = torch.softmax(vals.masked_fill(~keep, float("-inf")), dim=-1)
        keep &= (torch.cumsum(probs, dim=-1) - probs) < top_p  # mass strictly before this token
    return torch.maximum(vals.masked_fill(~keep, float("inf")).min(dim=-1).values, floor)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """z = logits · fl32(1/T): one correctly rounded float32 multiply, the same in both paths."""
    return logits.float() * torch.tensor(1.0 / temperature, dtype=torch.float32, device=logits.device)


def sample(logits: torch.Tensor, u: torch.Tensor | None, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Token ids int64 [B] from logits [B, vocab] and one uniform per row ``u`` [B] (from
    :func:`uniforms`; unused, and may be None, at temperature 0)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, vocab], got shape {tuple(logits.shape)}")
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0 or not 0.0 <= min_p <= 1.0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0, 0 <= min_p <= 1; got "
                         f"{temperature}, {top_p}, {top_k}, {min_p}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    if u is None or u.shape != logits.shape[:1]:
        raise ValueError(f"u: expected one uniform per row ({logits.shape[0]}), got "
                         f"{None if u is None else tuple(u.shape)}")
    z = _scaled(logits, temperature)
    z = z.masked_fill(z < cutoffs(logits, temperature, top_k, top_p, min_p)[:, None], float("-inf"))
    cdf = torch.softmax(z, dim=-1).cumsum(dim=-1)
    token = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1])[:, None]).squeeze(1)
    return token.clamp_(max=logits.shape[-1] - 1)


class Penalties:
    """Repetition, presence and frequency penalties of a decode batch, row b tracking prompt
    ``prompts[b]`` and the tokens drawn for it (:meth:`add`). Rows are addressed by their index in
    the batch as first built, so a caller that drops finished rows passes the ones left. Memory:
    5 bytes per row per vocabulary entry (a count and a seen-in-prompt flag), 250 MB at 1,024 rows
    of SmolLM2's 49,152 tokens; built only when a penalty is on."""

    def __init__(self, prompts: Sequence[Sequence[int]], vocab: int, repetition: float = 1.0,
                 presence: float = 0.0, frequency: float = 0.0, device: str | torch.device = "cpu") -> None:
        self.repetition, self.presence, self.frequency = repetition, presence, frequency
        self.counts = torch.zeros(len(prompts), vocab, dtype=torch.int32, device=device)  # completion tokens
        self.in_prompt = torch.zeros(len(prompts), vocab, dtype=torch.bool, device=device)
        for b, ids in enumerate(prompts):
            self.in_prompt[b, torch.tensor(list(ids), dtype=torch.int64, device=device)] = True

    @classmethod
    def of(cls, settings, prompts: Sequence[Sequence[int]], vocab: int,
           device: str | torch.device = "cpu") -> Penalties | None:
        """The penalties of ``settings`` (a SamplingSettings), or None when all are off."""
        if (settings.repetition_penalty, settings.presence_penalty, settings.frequency_penalty) == (1.0, 0.0, 0.0):
            return None
        return cls(prompts, vocab, settings.repetition_penalty, settings.presence_penalty,
                   settings.frequency_penalty, device)

    def apply(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """Penalised float32 logits [len(rows), vocab] of batch rows ``rows``."""
        index = torch.tensor(list(rows), dtype=torch.int64, device=self.counts.device)
        counts = self.counts[index]
        z = logits.float()
        if self.repetition != 1.0:
            seen = self.in_prompt[index] | (counts > 0)
            z = torch.where(seen, torch.where(z > 0, z / self.repetition, z * self.repetition), z)
        return z - self.presence * (counts > 0) - self.frequency * counts

    def add(self, tokens: torch.Tensor, rows: Sequence[int]) -> None:
        """Count ``tokens`` [len(rows)], drawn for batch rows ``rows``."""
        index = torch.tensor(list(rows), dtype=torch.int64, device=self.counts.device)
        self.counts[index, tokens.to(self.counts.device)] += 1
