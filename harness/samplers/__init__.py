"""Sampler backends: draw n completions per prompt, and score gold-answer likelihoods.

Two real implementations share this interface: ``vllm`` (production, high throughput) and ``hf``
(transformers; the portable reference). ``get_backend(name, model, **options)`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from harness.errors import InvalidSetting


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are drawn. Sample i of every problem uses seed ``seed + i``.

    n: completions per prompt. temperature: softmax temperature (0 = greedy). top_p: nucleus mass
    (1.0 = off). top_k: keep the k most likely tokens (0 = off). max_tokens: new tokens per
    completion. stop: strings that end a completion (not included in its text).
    """

    n: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    """One sampled completion; token counts are in tokens of the model's tokenizer."""

    sample_idx: int
    seed: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    cumulative_logprob: float


class Backend(Protocol):
    name: str
    tokenizer: Any  # the model's HF tokenizer (the driver applies chat templates with it)

    def model_info(self) -> dict[str, Any]:
        """Model id/path, revision, HF config dict, parameter counts, device, library versions:
        keys "model", "revision", "config" (dict), "params" ({"total", "non_embedding"}), "dtype",
        "device", "backend", "versions" ({package: version})."""
        ...

    def sample(self, prompts: Sequence[str], settings: SamplingSettings) -> list[list[Completion]]:
        """``settings.n`` completions for each prompt, in prompt order, sample_idx 0..n-1."""
        ...

    def gold_nll(self, prompts: Sequence[str], answers: Sequence[str]) -> list[tuple[float, int]]:
        """Teacher-forced NLL (nats, summed over tokens) of each answer given its prompt, with the
        number of answer tokens."""
        ...

    def close(self) -> None:
        """Free the model (weights, engine processes, GPU memory) now; the backend is unusable after."""
        ...


BACKENDS = {"hf": "harness.samplers.hf:HFBackend", "vllm": "harness.samplers.vllm:VLLMBackend"}


def get_backend(name: str, model: str, **options: Any) -> Backend:
    """The backend ``name`` ("hf" or "vllm") loading ``model`` (a resolved folder or HF id), built
    with ``options`` (hf: device, dtype, max_batch; vllm: dtype, max_model_len,
    gpu_memory_utilization, tensor_parallel_size, data_parallel_size). Imported lazily."""
    import importlib

    if name not in BACKENDS:
        raise InvalidSetting("backend", name, f"one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(model, **options)
