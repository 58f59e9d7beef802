"""Inference-cost meter: parameter counts and forward FLOPs of a decoder-only transformer from its
HF config alone (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, Gemma3, GPT-NeoX/Pythia, GPT-2).

Counting convention (that of ``torch.utils.flop_counter.FlopCounterMode``): only matrix products
count, a multiply-add is 2 FLOPs; norms, activations, softmax, rotary, biases and embedding
lookups count 0. One token of a forward pass that attends to ``c`` cached tokens (so ``c + 1``
keys, itself included; fewer in a sliding-window layer of window W: ``min(c + 1, W)``) costs

    forward_flops(c) = 2 · (matmul weights: every layer's q, k, v, o and MLP projections + LM head)
                     + Σ_layers 4 · n_heads · head_dim · keys          (QKᵀ and AV, per query head)

GQA shrinks the k/v projections but not the score matmuls, which run per query head.

A completion of T tokens after a prompt of P tokens costs what an inference engine (vLLM, HF
``generate``) does: the prefill runs all P prompt tokens (contexts 0..P-1) with the LM head on the
last one only (its logits give completion token 1); decode then feeds completion tokens 1..T-1
(contexts P..P+T-2), each a full forward with the LM head. The last sampled token is never fed.

T² conventions beside the exact count: inference C_inf = 2N FLOPs per token processed, training
C_train = 6ND. Both are reported with N = total and N = non-embedding parameters; embedding
parameters are the token (and learned position) embeddings plus an untied output matrix.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import DataError

if TYPE_CHECKING:  # transformers (and the torch it imports) load only where a config is built
    from transformers import PretrainedConfig

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt_neox", "gpt2")


@dataclass(frozen=True)
class Shape:
    """The dimensions of a decoder-only transformer that set its parameter and FLOP counts."""

    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated_mlp: bool  # gate, up, down (SwiGLU/GeGLU) vs up, down
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    norms_per_layer: int  # hidden-sized norm vectors per block (LayerNorm weight + bias = 2)
    final_norms: int
    qk_norm: bool  # head_dim-sized RMSNorm on q and on k (Qwen3, Gemma3)
    tied: bool
    positions: int  # rows of a learned position embedding (GPT-2), else 0
    windows: tuple[float, ...]  # per-layer attention window in keys; inf = full attention

    @property
    def head_params(self) -> int:
        """LM-head matmul weights (a matmul even when tied to the input embedding)."""
        return self.vocab * self.hidden

    @property
    def layer_matmul_params(self) -> int:
        """Weights of one block's q, k, v, o and MLP projections."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return h * q + 2 * h * kv + q * h + (3 if self.gated_mlp else 2) * h * self.ffn


def _check_sizes(c: PretrainedConfig | Mapping[str, Any]) -> None:
    """Sizes that divide or count must be positive integers (absent ones take the family's default)."""
    for field in ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "vocab_size"):
        value = c.get(field, 1) if isinstance(c, Mapping) else getattr(c, field, 1)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataError(f"model config: field {field!r} must be an integer >= 1, got {value!r}")


def as_config(config: PretrainedConfig | Mapping[str, Any]) -> PretrainedConfig:
    """A text-model PretrainedConfig from a config object or a config.json dict (defaults filled)."""
    if isinstance(config, Mapping):
        model_type = config.get("model_type")
        if not model_type:
            raise DataError("model config: field 'model_type' is missing")
        _check_sizes(config)
        from transformers import AutoConfig

        try:
            config = AutoConfig.for_model(model_type, **{k: v for k, v in config.items() if k != "model_type"})
        except ValueError:
            raise DataError(f"model config: unknown model_type {model_type!r}") from None
    return config.get_text_config()


def model_shape(config: PretrainedConfig | Mapping[str, Any]) -> Shape:
    """Read a :class:`Shape` from an HF config; ``ValueError`` for an unsupported model_type."""
    c = as_config(config)
    kind = c.model_type
    if kind not in FAMILIES:
        raise DataError(f"model config: model_type {kind!r} is not metered; supported: {', '.join(FAMILIES)}")
    _check_sizes(c)
    h, heads = c.hidden_size, c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    bias = bool(getattr(c, "attention_bias", False))
    layer_types = getattr(c, "layer_types", None) or ["full_attention"] * c.num_hidden_layers
    window = getattr(c, "sliding_window", None)
    if getattr(c, "layer_types", None) is None and window:  # Mistral: every layer slides
        layer_types = ["sliding_attention"] * c.num_hidden_layers
    windows = tuple(float(window) if t == "sliding_attention" and window else float("inf") for t in layer_types)
    common = dict(model_type=kind, vocab=c.vocab_size, hidden=h, layers=c.num_hidden_layers, heads=heads,
                  kv_heads=kv_heads, head_dim=head_dim, tied=bool(c.tie_word_embeddings), windows=windows)
    if kind in ("gpt2", "gpt_neox"):
        ffn = (c.n_inner or 4 * h) if kind == "gpt2" else c.intermediate_size
        return Shape(**common, ffn=ffn, gated_mlp=False, qkv_bias=kind == "gpt2" or bias,
                     o_bias=kind == "gpt2" or bias, mlp_bias=True, norms_per_layer=4, final_norms=2,
                     qk_norm=False, positions=c.n_positions if kind == "gpt2" else 0)
    return Shape(**common, ffn=c.intermediate_size, gated_mlp=True, qkv_bias=bias or kind == "qwen2",
                 o_bias=bias and kind != "qwen2", mlp_bias=bool(getattr(c, "mlp_bias", False)),
                 norms_per_layer=4 if kind in ("gemma2", "gemma3_text") else 2, final_norms=1,
                 qk_norm=kind in ("qwen3", "gemma3_text"), positions=0)


def param_counts(config: PretrainedConfig | Mapping[str, Any]) -> dict[str, int]:
    """Parameters of the causal-LM model: ``total`` (= sum of p.numel(), tied weights once),
    ``embedding`` (token + position embeddings + untied output matrix) and ``non_embedding``."""
    s = model_shape(config)
    h, q, kv = s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim
    bias = s.qkv_bias * (q + 2 * kv) + s.o_bias * h + s.mlp_bias * ((2 if s.gated_mlp else 1) * s.ffn + h)
    layer = s.layer_matmul_params + bias + s.norms_per_layer * h + s.qk_norm * 2 * s.head_dim
    embedding = s.vocab * h + s.positions * h + (0 if s.tied else s.head_params)
    non_embedding = s.layers * layer + s.final_norms * h
    return {"total": embedding + non_embedding, "embedding": embedding, "non_embedding": non_embedding}


def _keys_sum(m: np.ndarray, windows: tuple[float, ...]) -> np.ndarray:
    """Σ_layers Σ_{j=1..m} min(j, W_layer): keys attended by the tokens at contexts 0..m-1 (float64)."""
    m = np.asarray(m, dtype=np.float64)
    total = np.zeros_like(m)
    for w in set(windows):
        full = m * (m + 1) / 2
        capped = w * (w + 1) / 2 + (m - w) * w if np.isfinite(w) else full
        total += windows.count(w) * np.where(m <= w, full, capped)
    return total


def _attn_flops_per_key(s: Shape) -> int:
    """QKᵀ and AV FLOPs per (query token, key, layer): 2 · 2 · n_heads · head_dim."""
    return 4 * s.heads * s.head_dim


def forward_flops(config: PretrainedConfig | Mapping[str, Any], context_len) -> np.ndarray | float:
    """FLOPs of one token's full forward (LM head included) attending to ``context_len`` cached
    tokens, i.e. to context_len + 1 keys with itself (module docstring). Broadcasts over arrays."""
    s = model_shape(config)
    c = np.asarray(context_len, dtype=np.float64)
    if np.any(c < 0):
        raise DataError("context_len: expected a count of cached tokens >= 0")
    keys = sum(s.windows.count(w) * np.minimum(c + 1, w) for w in set(s.windows))
    out = 2.0 * (s.layers * s.layer_matmul_params + s.head_params) + _attn_flops_per_key(s) * keys
    return float(out) if out.ndim == 0 else out


def _prefill(s: Shape, prompt: np.ndarray) -> np.ndarray:
    """Body at contexts 0..P-1 plus one LM head (none for an empty prompt)."""
    body = 2.0 * s.layers * s.layer_matmul_params * prompt + _attn_flops_per_key(s) * _keys_sum(prompt, s.windows)
    return body + 2.0 * s.head_params * (prompt > 0)


def _decode(s: Shape, prompt: np.ndarray, completion: np.ndarray) -> np.ndarray:
    """T-1 full forwards at contexts P..P+T-2."""
    steps = np.maximum(completion - 1, 0)
    attn = _keys_sum(prompt + steps, s.windows) - _keys_sum(prompt, s.windows)
    return 2.0 * (s.layers * s.layer_matmul_params + s.head_params) * steps + _attn_flops_per_key(s) * attn


def prefill_flops(config: PretrainedConfig | Mapping[str, Any], prompt_len) -> np.ndarray | float:
    """FLOPs to prefill a prompt of P tokens: Σ_{c<P} (body + attention at c), LM head once."""
    out = _prefill(model_shape(config), _counts(prompt_len, "prompt_len"))
    return float(out) if out.ndim == 0 else out


def decode_flops(config: PretrainedConfig | Mapping[str, Any], prompt_len, completion_len) -> np.ndarray | float:
    """FLOPs to sample T tokens after a prefilled P-token prompt: T-1 full forwards at contexts
    P..P+T-2 (the first token comes from the prefill logits)."""
    out = _decode(model_shape(config), _counts(prompt_len, "prompt_len"), _counts(completion_len, "completion_len"))
    return float(out) if out.ndim == 0 else out


def train_flops(n_params: float, tokens: float) -> float:
    """The Chinchilla/T² training cost C_train = 6 · N · D FLOPs."""
    return 6.0 * n_params * tokens


def _counts(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64)
    if np.any(arr < 0):
        raise DataError(f"{name}: expected token counts >= 0")
    return arr


def sampling_cost(config: PretrainedConfig | Mapping[str, Any], prompt_tokens: Sequence[int],
                  completion_tokens: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Inference cost of a sampling run, as a flat JSON-able dict for cost.json.

    prompt_tokens[i]: problem i's prompt length; completion_tokens[i]: the lengths of its samples.
    ``*_flops`` keys prefill each prompt once (prefix shared by its samples); ``*_unshared`` keys
    prefill it once per sample. ``flops_2N_*`` = 2 · N · tokens processed (T² convention).
    """
    if len(prompt_tokens) != len(completion_tokens):
        raise ValueError(f"completion_tokens: expected one list per problem ({len(prompt_tokens)}), "
                         f"got {len(completion_tokens)}")
    s = model_shape(config)
    params = param_counts(config)
    prompt = _counts(prompt_tokens, "prompt_tokens").reshape(-1)
    n = np.fromiter(map(len, completion_tokens), dtype=np.int64, count=len(completion_tokens))
    completion = _counts(np.fromiter(itertools.chain.from_iterable(completion_tokens), dtype=np.int64,
                                     count=int(n.sum())), "completion_tokens")
    prefill = _prefill(s, prompt)
    decode = float(_decode(s, np.repeat(prompt, n), completion).sum())
    tokens = {"prompt_tokens": int(prompt.sum()), "prompt_tokens_unshared": int((prompt * n).sum()),
              "completion_tokens": int(completion.sum())}
    served = tokens["prompt_tokens"] + tokens["completion_tokens"]
    served_unshared = tokens["prompt_tokens_unshared"] + tokens["completion_tokens"]
    record: dict[str, Any] = {
        "model_type": s.model_type, "params_total": params["total"],
        "params_non_embedding": params["non_embedding"],
        "problems": len(prompt), "completions": int(n.sum()), **tokens,
        "prefill_flops": float(prefill.sum()), "prefill_flops_unshared": float((prefill * n).sum()),
        "decode_flops": decode,
    }
    record["total_flops"] = record["prefill_flops"] + decode
    record["total_flops_unshared"] = record["prefill_flops_unshared"] + decode
    for name, key in (("total", "params_total"), ("non_embedding", "params_non_embedding")):
        record[f"flops_2N_{name}"] = 2.0 * record[key] * served
        record[f"flops_2N_{name}_unshared"] = 2.0 * record[key] * served_unshared
    return record


def load_config(spec: str | os.PathLike) -> PretrainedConfig:
    """An HF config from a config.json path, a model folder, an HF hub id, or ``smollm2-135m``
    (resolved by :func:`harness.models.resolve_model`)."""
    from transformers import AutoConfig

    spec = str(spec)
    path = Path(spec)
    if path.is_file():
        try:
            config = as_config(json.loads(path.read_text()))
            model_shape(config)
            return config
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not a JSON model config ({e.msg} at line {e.lineno})") from None
        except ValueError as e:
            raise DataError(f"{path}: {e}") from None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DataError(f"{path}: model folder has no config.json")
        return as_config(AutoConfig.from_pretrained(path))
    if spec.lower() == "smollm2-135m":
        from harness.models import resolve_model

        return load_config(resolve_model(spec))
    if spec.endswith(".json") or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise DataError(f"{spec}: no such config file or model folder")
    try:
        return as_config(AutoConfig.from_pretrained(spec))
    except (OSError, ValueError) as e:
        raise DataError(f"{spec}: not a config.json, model folder or loadable HF hub id ({type(e).__name__})") from None


def cost_summary(config: PretrainedConfig | Mapping[str, Any], prompt_len: int, completion_len: int,
                 n: int) -> dict[str, Any]:
    """The cost of n samples of T tokens after one P-token prompt: :func:`sampling_cost`'s record
    plus prompt_len, completion_len, n and the per-token forward FLOPs at context 0
    (``forward_flops_first``) and at context P + T − 1 (``forward_flops_last``)."""
    record = sampling_cost(config, [prompt_len], [[completion_len] * n])
    return {**record, "prompt_len": prompt_len, "completion_len": completion_len, "n": n,
            "forward_flops_first": float(forward_flops(config, 0)),
            "forward_flops_last": float(forward_flops(config, prompt_len + completion_len - 1))}
