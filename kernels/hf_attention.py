"""Shared-prefix decoding for transformers models (Llama, Mistral, Qwen2 families).

The prompt's KV is stored ONCE per problem ([1, kv_heads, P, d] per layer) while n samples decode;
each sample keeps only its own generated tokens' KV ([n, kv_heads, S, d]). Wiring, all public
transformers API (5.x):

- ``SharedPrefixCache`` (a ``Cache`` of ``SharedPrefixLayer``s). The first ``update`` of a layer
  (the batch-1 prompt forward) stores the prefix; later updates append the new token's K/V to the
  suffix buffer and return ``SharedKV(prefix, suffix)`` pairs instead of concatenated tensors.
- ``shared_prefix_attention_forward``, registered as ``AttentionInterface`` "t2_prefix": on
  ``SharedKV`` it runs ``prefix_attention.shared_prefix_attention`` (Triton on CUDA, the torch
  reference on CPU); on plain tensors (the prompt forward) causal SDPA.

The decode loop that uses them is the hf backend's (``harness.samplers.hf``, ``attention="prefix"``).

No attention mask is built for "t2_prefix" (it is not in ``AttentionMaskInterface``), so prompts
must be unpadded: one problem per call, which is how repeated sampling works anyway.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer

from .prefix_attention import shared_prefix_attention

ATTN_NAME = "t2_prefix"


class SharedKV(NamedTuple):
    """One layer's keys (or values) for a decode step: prefix [1, kv_heads, P, d], suffix [n, kv_heads, S, d]."""

    prefix: torch.Tensor
    suffix: torch.Tensor


class SharedPrefixLayer(DynamicLayer):
    """Prefix K/V stored once; per-sample suffix K/V in a buffer that doubles when full."""

    is_croppable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.suffix_keys: torch.Tensor | None = None  # [n, kv_heads, capacity, d]
        self.suffix_values: torch.Tensor | None = None
        self.suffix_len = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:  # the prompt forward: this is the shared prefix
            if key_states.shape[0] != 1:
                raise ValueError(f"SharedPrefixCache: the prompt forward must have batch 1, got {key_states.shape[0]}")
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
            return key_states, value_states
        n, kv_heads, new, d = key_states.shape
        if self.suffix_keys is None:
            cap = max(16, new)
            self.suffix_keys = key_states.new_empty(n, kv_heads, cap, d)
            self.suffix_values = value_states.new_empty(n, kv_heads, cap, d)
        elif self.suffix_len + new > self.suffix_keys.shape[2]:
            grow = lambda buf: torch.cat([buf, torch.empty_like(buf)], dim=2)
            self.suffix_keys, self.suffix_values = grow(self.suffix_keys), grow(self.suffix_values)
        end = self.suffix_len + new
        self.suffix_keys[:, :, self.suffix_len:end] = key_states
        self.suffix_values[:, :, self.suffix_len:end] = value_states
        self.suffix_len = end
        return (SharedKV(self.keys, self.suffix_keys[:, :, :end]),
                SharedKV(self.values, self.suffix_values[:, :, :end]))

    def get_seq_length(self) -> int:
        return 0 if not self.is_initialized else self.keys.shape[-2] + self.suffix_len

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only these samples (the prefix is shared and stays)."""
        if self.suffix_keys is not None:
            self.suffix_keys, self.suffix_values = self.suffix_keys[indices], self.suffix_values[indices]

    reorder_cache = batch_select_indices

    def reset(self) -> None:
        self.suffix_keys = self.suffix_values = None
        self.suffix_len = 0
        super().reset()


class SharedPrefixCache(Cache):
    """KV cache for n samples of one prompt: one ``SharedPrefixLayer`` per attention layer."""

    def __init__(self):
        super().__init__(layer_class_to_replicate=SharedPrefixLayer)

    def fork(self) -> SharedPrefixCache:
        """A cache with the same prefix (shared, not copied) and no suffix: decode another group of
        samples of the same prompt without running the prompt again."""
        other = SharedPrefixCache()
        for layer in self.layers:
            twin = SharedPrefixLayer()
            twin.lazy_initialization(layer.keys, layer.values)
            twin.keys, twin.values = layer.keys, layer.values
            other.layers.append(twin)
        return other


def shared_prefix_attention_forward(module: torch.nn.Module, query: torch.Tensor, key, value,
                                    attention_mask: torch.Tensor | None, scaling: float | None = None,
                                    dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [b, heads, q_len, d]; key/value either tensors
    [b, kv_heads, L, d] (prompt forward: causal SDPA) or ``SharedKV`` (decode: q_len = 1, prefix part
    + suffix part + log-sum-exp merge). Returns ([b, q_len, heads, d], None)."""
    window = kwargs.get("sliding_window")
    if not isinstance(key, SharedKV):
        if attention_mask is not None:
            raise ValueError("t2_prefix attention takes unpadded prompts (got an attention mask)")
        if window is not None and key.shape[2] > window:
            raise ValueError(f"t2_prefix attention: {key.shape[2]} tokens exceed the sliding window {window}")
        out = F.scaled_dot_product_attention(query, key, value, is_causal=query.shape[2] > 1, scale=scaling,
                                             enable_gqa=query.shape[1] != key.shape[1])
        return out.transpose(1, 2), None
    if query.shape[2] != 1:
        raise ValueError(f"t2_prefix attention decodes one token per sample per step, got {query.shape[2]}")
    total = key.prefix.shape[2] + key.suffix.shape[2]
    if window is not None and total > window:
        raise ValueError(f"t2_prefix attention: {total} tokens exceed the sliding window {window}")
    o, _ = shared_prefix_attention(
        query[:, :, 0],
        key.prefix[0].transpose(0, 1), value.prefix[0].transpose(0, 1),  # [P, kv_heads, d] views
        key.suffix.transpose(1, 2), value.suffix.transpose(1, 2),  # [n, S, kv_heads, d] views
        scale=scaling,
    )
    return o[:, None], None


def register() -> None:
    """Register ``shared_prefix_attention_forward`` as the "t2_prefix" attention implementation."""
    AttentionInterface.register(ATTN_NAME, shared_prefix_attention_forward)


@contextlib.contextmanager
def attention_implementation(model, name: str):
    """Run the block with ``model`` using attention implementation ``name``, then restore it."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)
